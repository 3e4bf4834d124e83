//! Private Prometheus Alertmanagers for notification tests: Debian's `prometheus-alertmanager`
//! (0.25) on a free loopback port, with clustering off and its state in a temporary directory.
//!
//! The binary is `DRIFTGUARD_TEST_ALERTMANAGER`, else `prometheus-alertmanager` on `PATH`, else
//! `/usr/bin/prometheus-alertmanager`; `scripts/test.sh` installs the package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::process::{path_str, spawn_listening};
use crate::receiver::request;

/// The message of every failure caused by a missing Alertmanager binary.
pub const NOT_INSTALLED: &str = "Alertmanager is not installed for the tests: run \
    `apt-get install -y --no-install-recommends prometheus-alertmanager` (as root; or run \
    scripts/test.sh) or export DRIFTGUARD_TEST_ALERTMANAGER=<path to an alertmanager binary>";

/// Where Debian's package puts the binary.
const DEBIAN_BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// How long [`PrivateAlertmanager::start`] waits for `GET /-/ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The timeout of each API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration: one receiver, `null`, that sends nothing; alerts are grouped at once.
const CONFIG: &str = "\
route:
  receiver: 'null'
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: 'null'
";

/// An Alertmanager of its own on `127.0.0.1:<free port>`, without clustering, its storage and
/// configuration in a temporary directory. Its process is killed (by PID) on drop.
#[derive(Debug)]
pub struct PrivateAlertmanager {
    child: Child,
    port: u16,
    state: tempfile::TempDir,
}

/// The Alertmanager binary: `DRIFTGUARD_TEST_ALERTMANAGER`, else `prometheus-alertmanager` on
/// `PATH`, else `/usr/bin/prometheus-alertmanager`. Fails with [`NOT_INSTALLED`] when none is a
/// file.
pub fn alertmanager_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DRIFTGUARD_TEST_ALERTMANAGER")
        && !path.is_empty()
    {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "DRIFTGUARD_TEST_ALERTMANAGER names no file ({}). {NOT_INSTALLED}",
            path.display()
        );
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus-alertmanager"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    let debian = PathBuf::from(DEBIAN_BINARY);
    if debian.is_file() {
        return Ok(debian);
    }
    bail!("{NOT_INSTALLED}")
}

// === impl PrivateAlertmanager ===

impl PrivateAlertmanager {
    /// Starts a private Alertmanager and waits until `GET /-/ready` answers 200 (30 s at most; a
    /// failure carries its log).
    pub fn start() -> Result<PrivateAlertmanager> {
        let binary = alertmanager_binary()?;
        let state = tempfile::Builder::new()
            .prefix("driftguard-alertmanager-")
            .tempdir()
            .context("could not create a state directory for a private Alertmanager")?;
        let config = state.path().join("am.yml");
        std::fs::write(&config, CONFIG).context("could not write the Alertmanager config")?;
        let storage = state.path().join("data");
        std::fs::create_dir_all(&storage)
            .context("could not create the Alertmanager storage directory")?;
        let log = state.path().join("alertmanager.log");
        let (config, storage) = (
            path_str(&config)?.to_owned(),
            path_str(&storage)?.to_owned(),
        );
        let (child, port) = spawn_listening("a private Alertmanager", &log, |port| {
            let mut command = Command::new(&binary);
            command
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .arg(format!("--storage.path={storage}"))
                .arg(format!("--config.file={config}"))
                .arg("--log.level=warn");
            command
        })
        .with_context(|| format!("could not start {}", binary.display()))?;
        let mut alertmanager = PrivateAlertmanager { child, port, state };
        alertmanager.wait_ready()?;
        Ok(alertmanager)
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing `/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port of its API.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state directory (`am.yml`, `data/`, `alertmanager.log`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Its log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// Every alert it holds, whatever its state: `GET /api/v2/alerts` with `active`, `silenced`,
    /// `inhibited` and `unprocessed` all true. A JSON array of gettable alerts (`labels`,
    /// `status.state`, `status.silencedBy`, ...).
    pub fn alerts(&self) -> Result<Value> {
        self.call(
            "GET",
            "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true",
            None,
        )
    }

    /// Posts `alerts` (a JSON array of postable alerts: `labels`, `annotations`, `startsAt`, ...)
    /// to `POST /api/v2/alerts`.
    pub fn post_alerts(&self, alerts: &Value) -> Result<()> {
        self.call("POST", "/api/v2/alerts", Some(alerts))?;
        Ok(())
    }

    /// Creates a silence from now for `duration` whose matchers are the label equalities
    /// `matchers` (`POST /api/v2/silences`); returns its `silenceID`.
    pub fn silence(&self, matchers: &[(&str, &str)], duration: Duration) -> Result<String> {
        let now = chrono::Utc::now();
        let ends = now
            + chrono::Duration::from_std(duration).context("the silence duration is too long")?;
        let matchers: Vec<Value> = matchers
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value, "isRegex": false, "isEqual": true}))
            .collect();
        let body = json!({
            "matchers": matchers,
            "startsAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "createdBy": "driftguard-tests",
            "comment": "silenced by a DriftGuard test",
        });
        let answer = self.call("POST", "/api/v2/silences", Some(&body))?;
        answer["silenceID"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("POST /api/v2/silences returned no silenceID: {answer}"))
    }

    /// Calls the API at `path` and returns the JSON answer (`null` for an empty body); a status
    /// other than 2xx is an error carrying the body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.url());
        let payload = match body {
            Some(value) => serde_json::to_vec(value)?,
            None => Vec::new(),
        };
        let headers: &[(&str, &str)] = if body.is_some() {
            &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ]
        } else {
            &[("accept", "application/json")]
        };
        let response = request(method, &url, headers, &payload, CALL_TIMEOUT)?;
        let text = String::from_utf8_lossy(&response.body);
        if !(200..300).contains(&response.status) {
            bail!(
                "{method} {url} answered {}: {}",
                response.status,
                text.trim()
            );
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {url} answered no JSON: {}", text.trim()))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the private Alertmanager exited before it was ready ({status}):\n{}",
                    self.log().trim()
                );
            }
            let last = match request("GET", &url, &[], &[], Duration::from_secs(2)) {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => format!("status {}", response.status),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the private Alertmanager on port {} was not ready within {} s (last: \
                     {last}); its log:\n{}",
                    self.port,
                    READY_WITHIN.as_secs(),
                    self.log().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateAlertmanager {
    fn drop(&mut self) {
        // Child::kill signals our own PID only.
        if let Err(error) = self.child.kill() {
            eprintln!("killing the private Alertmanager failed: {error}");
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `alerts()` until `done` holds for the list (10 s at most).
    fn wait_alerts(
        am: &PrivateAlertmanager,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alerts = am.alerts()?;
            let list = alerts.as_array().cloned().unwrap_or_default();
            if done(&list) {
                return Ok(list);
            }
            if Instant::now() >= deadline {
                bail!("the alerts never matched: {alerts}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn drift_alerts(list: &[Value]) -> Vec<&Value> {
        list.iter()
            .filter(|a| a["labels"]["resource_id"] == "Deployment:ns:x")
            .collect()
    }

    #[test]
    fn lists_a_posted_alert_and_suppresses_it_under_a_silence() -> Result<()> {
        let am = PrivateAlertmanager::start()?;
        assert!(am.url().starts_with("http://127.0.0.1:"));
        am.post_alerts(&json!([{
            "labels": {
                "alertname": "KubernetesDrift",
                "severity": "high",
                "resource_id": "Deployment:ns:x",
            },
            "annotations": {"summary": "replicas drifted"},
        }]))?;
        let list = wait_alerts(&am, |list| drift_alerts(list).len() == 1)?;
        let alert = drift_alerts(&list)[0];
        assert_eq!(alert["labels"]["alertname"], "KubernetesDrift");
        assert_eq!(alert["labels"]["severity"], "high");

        let id = am.silence(
            &[("resource_id", "Deployment:ns:x")],
            Duration::from_secs(3600),
        )?;
        assert!(!id.is_empty());
        let list = wait_alerts(&am, |list| {
            drift_alerts(list)
                .first()
                .is_some_and(|a| a["status"]["state"] == "suppressed")
        })?;
        let alert = drift_alerts(&list)[0];
        let silenced_by = alert["status"]["silencedBy"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(silenced_by, [Value::String(id)], "{alert}");
        Ok(())
    }

    #[test]
    fn the_binary_is_found() -> Result<()> {
        assert!(alertmanager_binary()?.is_file());
        Ok(())
    }
}

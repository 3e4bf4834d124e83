//! `driftguard serve` as a subprocess, and a minimal HTTP/1.1 client to talk to it.
//!
//! The client is deliberately tiny (one request per connection, `Connection: close`) so tests need
//! no async runtime; it is enough for JSON APIs on loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A running `driftguard serve`; killed on drop. Its output goes to `log_path()`.
pub struct ServeProcess {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A free loopback port (bound then released; a tiny race is acceptable in tests).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl ServeProcess {
    /// Writes `config_yaml` (which must not set `server.port`/`server.address`: they are added)
    /// to a temp file and starts `binary serve --config FILE` with `env`, then waits until
    /// `/health` answers (not `/ready`: tests decide what readiness they wait for).
    pub fn start(binary: &Path, config_yaml: &str, env: &[(&str, &str)]) -> Result<ServeProcess> {
        let dir = tempfile::tempdir().context("temp dir for serve")?;
        let port = free_port()?;
        let config = format!("{config_yaml}\nserver:\n  address: 127.0.0.1\n  port: {port}\n");
        let config_path = dir.path().join("driftguard.yaml");
        std::fs::write(&config_path, config).context("writing the serve config")?;
        let log = std::fs::File::create(dir.path().join("serve.log")).context("serve log")?;
        let log_err = log.try_clone()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("KUBECONFIG")
            .env_remove("MONGODB_URI")
            .env_remove("MONGODB_HOST")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = ServeProcess { child, port, dir };
        process.wait_for(Duration::from_secs(60), |p| {
            Ok(p.get("/health").map(|(s, _)| s == 200).unwrap_or(false))
        })?;
        Ok(process)
    }

    /// The process id (for `/proc/<pid>/status`: peak memory, liveness).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls `condition` every 100 ms until it is true; fails with the log tail after `timeout`
    /// or when the process exits.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut condition: impl FnMut(&ServeProcess) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "driftguard serve exited ({status}); log:\n{}",
                    tail(&self.log())
                );
            }
            match condition(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "condition not met within {timeout:?} (last error: {last_error}); log:\n{}",
                    tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` → (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http("GET", self.port, path, None, &[])
    }

    /// `GET path` parsed as JSON, requiring status 200.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            bail!("GET {path} answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }

    /// `POST path` with an optional JSON body → (status, body).
    pub fn post(&self, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        http("POST", self.port, path, body, &[])
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, `"KILL"`, …) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.child.id());
        }
        Ok(())
    }

    /// `kill -9`, then waits for the exit.
    pub fn kill_hard(&mut self) -> Result<()> {
        self.child.kill().context("kill -9")?;
        self.child
            .wait()
            .context("waiting for the killed process")?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("driftguard serve did not stop within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 60 lines of the log that say what the service did: the access log of the test's
/// own polling (`INFO request …`) would otherwise fill the tail and hide the cause.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(" INFO request "))
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// One HTTP/1.1 request to `127.0.0.1:port`; returns (status, body).
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

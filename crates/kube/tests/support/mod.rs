//! Helpers for the cluster tests: the control plane from `DRIFTGUARD_TEST_KUBECONFIG`, a fresh
//! namespace per test, `kubectl`, and waiting for live events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use driftguard_config::KubernetesConfig;
use driftguard_core::SecretHasher;
use driftguard_kube::LiveEvent;
use tokio::sync::mpsc;

/// Generous wait for anything the API server has to deliver.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The shared plane's kubeconfig; fails (never skips) when it is not given.
pub fn kubeconfig() -> String {
    match std::env::var("DRIFTGUARD_TEST_KUBECONFIG") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!(
            "DRIFTGUARD_TEST_KUBECONFIG is not set: start the local control plane with \
             `eval \"$(scripts/control-plane.sh up)\"` (it prints the export line) and run the tests again"
        ),
    }
}

/// The repository root (for `scripts/control-plane.sh`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A key for Secret digests in tests.
pub fn hasher() -> SecretHasher {
    SecretHasher::new(b"driftguard-test-key-0123456789ab".to_vec())
}

/// `kubernetes.*` pointing at `kubeconfig`.
pub fn k8s_config(kubeconfig: &str) -> KubernetesConfig {
    KubernetesConfig {
        config_path: kubeconfig.to_owned(),
        ..KubernetesConfig::default()
    }
}

/// A client for `kubeconfig`.
pub async fn client(kubeconfig: &str) -> kube::Client {
    driftguard_kube::connect(&k8s_config(kubeconfig))
        .await
        .unwrap()
}

/// Runs kubectl; panics with its stderr on failure.
pub fn kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> String {
    try_kubectl(kubeconfig, args, stdin)
        .unwrap_or_else(|err| panic!("kubectl {}: {err}", args.join(" ")))
}

/// Runs kubectl; the error is its stderr.
pub fn try_kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A fresh namespace, deleted (without waiting: there is no namespace controller) on drop.
pub struct TestNamespace {
    pub name: String,
    pub kubeconfig: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call (DNS-1123).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos % 0xfffff)
}

impl TestNamespace {
    /// Creates `dgk-<test>-…` on the plane behind `kubeconfig`.
    pub fn create(kubeconfig: &str, test: &str) -> Self {
        let name = unique(&format!("dgk-{test}"));
        kubectl(kubeconfig, &["create", "namespace", &name], None);
        Self {
            name,
            kubeconfig: kubeconfig.to_owned(),
        }
    }

    /// kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        kubectl(&self.kubeconfig, &all, None)
    }

    /// `kubectl apply -f -` in this namespace.
    pub fn apply(&self, yaml: &str) -> String {
        kubectl(
            &self.kubeconfig,
            &["-n", &self.name, "apply", "-f", "-"],
            Some(yaml),
        )
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &self.kubeconfig,
            &["delete", "namespace", &self.name, "--wait=false"],
            None,
        );
    }
}

/// A CustomResourceDefinition with a group unique to the test: kind `Widget`, plural `widgets`,
/// short name `wg`. Deleted on drop.
pub struct TestCrd {
    pub group: String,
    pub kubeconfig: String,
}

impl TestCrd {
    pub fn install(kubeconfig: &str, test: &str) -> Self {
        let group = format!("{}.driftguard.test", unique(test));
        let yaml = format!(
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#
        );
        kubectl(kubeconfig, &["apply", "-f", "-"], Some(&yaml));
        kubectl(
            kubeconfig,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/widgets.{group}"),
            ],
            None,
        );
        Self {
            group,
            kubeconfig: kubeconfig.to_owned(),
        }
    }

    pub fn resource(&self) -> String {
        format!("widgets.{}", self.group)
    }
}

impl Drop for TestCrd {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &self.kubeconfig,
            &["delete", "crd", &self.resource(), "--wait=false"],
            None,
        );
    }
}

/// The receiving side of the watchers' channel, remembering everything received.
pub struct Events {
    pub rx: mpsc::Receiver<LiveEvent>,
    /// Everything received, in order (for assertions and failure messages).
    pub seen: Vec<LiveEvent>,
    /// Received but not yet matched by a wait (so waits for concurrent events may come in any
    /// order).
    pending: Vec<LiveEvent>,
}

impl Events {
    pub fn channel() -> (mpsc::Sender<LiveEvent>, Self) {
        let (tx, rx) = mpsc::channel(100_000);
        let events = Self {
            rx,
            seen: Vec::new(),
            pending: Vec::new(),
        };
        (tx, events)
    }

    /// Waits for an event matching `pred` that no earlier wait consumed; panics after `timeout`
    /// listing what was received.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&LiveEvent) -> bool,
    ) -> LiveEvent {
        if let Some(pos) = self.pending.iter().position(&pred) {
            return self.pending.remove(pos);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                    self.pending.push(event);
                }
                Ok(None) => panic!("event channel closed while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {timeout:?}; received: {:#?}",
                    self.seen.iter().map(summary).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits until a first list of every kind in `kinds` completed (in any order).
    pub async fn wait_synced(&mut self, kinds: &[&str]) {
        for kind in kinds {
            self.wait_for(&format!("first list of {kind}"), TIMEOUT, |e| {
                synced(e, kind)
            })
            .await;
        }
    }

    /// Moves whatever is queued into `seen`, and forgets unmatched events.
    pub fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            self.seen.push(event);
        }
        self.pending.clear();
    }
}

/// A one-line description of an event (no object content).
pub fn summary(event: &LiveEvent) -> String {
    match event {
        LiveEvent::Applied { object, .. } => format!(
            "Applied {} rv={}",
            object.key,
            object.resource_version.as_deref().unwrap_or("?")
        ),
        LiveEvent::Deleted { key, .. } => format!("Deleted {key}"),
        LiveEvent::Synced {
            kind,
            namespace,
            keys,
            ..
        } => format!("Synced {kind} {namespace:?} ({} objects)", keys.len()),
        LiveEvent::KindStatus {
            kind,
            namespace,
            status,
            ..
        } => format!("KindStatus {kind} {namespace:?} {status:?}"),
    }
}

/// True for an `Applied` of `kind` `name`.
pub fn applied(event: &LiveEvent, kind: &str, name: &str) -> bool {
    matches!(event, LiveEvent::Applied { object, .. } if object.key.kind == kind && object.key.name == name)
}

/// True for an `Applied` of any kind named `name` in `namespace`.
pub fn applied_in(event: &LiveEvent, namespace: &str, name: &str) -> bool {
    matches!(event, LiveEvent::Applied { object, .. } if object.key.namespace == namespace && object.key.name == name)
}

/// True for a `Deleted` of `kind` `name`.
pub fn deleted(event: &LiveEvent, kind: &str, name: &str) -> bool {
    matches!(event, LiveEvent::Deleted { key, .. } if key.kind == kind && key.name == name)
}

/// True for a `Synced` of `kind`.
pub fn synced(event: &LiveEvent, kind: &str) -> bool {
    matches!(event, LiveEvent::Synced { kind: k, .. } if k.kind == kind)
}

//! The event sink interface (issue 15): a test sink plugged into the real `serve` entry point
//! receives every kind of event — health changes, the startup analysis, a drift detected, its
//! set of changes changing, and its resolution — from a real API server and Git repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftguard_config::{LoadOptions, load};
use driftguard_server::health::Health;
use driftguard_server::run_with_sinks;
use driftguard_server::sink::{Event, EventSink};
use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use tokio::sync::{oneshot, watch};

/// Remembers every event's name and, for record events, `(resource, type)`.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, String)>>);

impl EventSink for Recorder {
    fn publish(&self, event: &Event) {
        let (what, detail) = match event {
            Event::Detected(e) | Event::Changed(e) | Event::Resolved(e) => {
                (e.resource_id.clone(), e.drift_type.clone())
            }
            Event::Analysis(a) => (a.trigger.to_owned(), a.counts.evaluated.to_string()),
            Event::Health(h) => (h.component.clone(), format!("{:?}", h.status)),
        };
        self.0
            .lock()
            .unwrap()
            .push((event.name().to_owned(), what, detail));
    }
}

impl Recorder {
    fn has(&self, name: &str, what: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(n, w, _)| n == name && w == what)
    }

    async fn wait(&self, name: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(45);
        while !self.has(name, what) {
            assert!(
                Instant::now() < deadline,
                "no `{name}` event for {what}: {:#?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_test_sink_receives_every_event_kind() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("sinks").unwrap();
    let yaml = DEPLOYMENT.replace("NS", ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("web.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("DRIFTGUARD_SERVER__PORT", "0".to_owned()),
        ("DRIFTGUARD_GIT__REPOSITORY_URL", repo.url()),
        ("DRIFTGUARD_GIT__POLL_INTERVAL", "1s".to_owned()),
        (
            "DRIFTGUARD_GIT__WORKDIR",
            dir.path().join("git").display().to_string(),
        ),
        (
            "DRIFTGUARD_DATABASE__PATH",
            dir.path().join("dg.db").display().to_string(),
        ),
        (
            "DRIFTGUARD_KUBERNETES__CONFIG_PATH",
            cluster.kubeconfig().display().to_string(),
        ),
        ("DRIFTGUARD_KUBERNETES__NAMESPACES", ns.name().to_owned()),
        ("DRIFTGUARD_KUBERNETES__RESOURCES", "deployments".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let loaded = load(&LoadOptions {
        file: None,
        search_dir: Some(PathBuf::from("/nonexistent-driftguard-dir")),
        env,
        flags: Vec::new(),
    })
    .unwrap();

    let recorder = Arc::new(Recorder::default());
    let (stop, shutdown) = watch::channel(false);
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(run_with_sinks(
        loaded,
        shutdown,
        Some(bound_tx),
        vec![recorder.clone() as Arc<dyn EventSink>],
    ));
    tokio::time::timeout(Duration::from_secs(20), bound_rx)
        .await
        .unwrap()
        .unwrap();

    let id = format!("Deployment:{}:web", ns.name());
    recorder.wait("analysis", "startup").await;
    recorder.wait("health", "store").await;
    assert!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(n, w, d)| n == "health" && w == "git" && d == &format!("{:?}", Health::Ok)),
        "git turned healthy"
    );

    ns.scale("deployment/web", 5).unwrap();
    recorder.wait("detected", &id).await;
    ns.set_image("deployment/web", "web", "nginx:1.28").unwrap();
    recorder.wait("changed", &id).await;
    ns.scale("deployment/web", 2).unwrap();
    ns.set_image("deployment/web", "web", "nginx:1.27").unwrap();
    recorder.wait("resolved", &id).await;
    {
        let events = recorder.0.lock().unwrap();
        let detected = events
            .iter()
            .find(|(n, w, _)| n == "detected" && w == &id)
            .unwrap();
        assert_eq!(detected.2, "Scaling", "{events:#?}");
    }

    let _ = stop.send(true);
    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

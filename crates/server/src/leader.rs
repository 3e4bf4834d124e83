//! Several replicas (issue 19): who leads, what followers do, and the pieces that switch with
//! the role.
//!
//! - [`Leadership`]: the role as the API, `/ready` and the metrics see it. A replica without
//!   `leader_election.enabled` is always the leader.
//! - [`SlotSink`]: the notification sink of the current term. Notifications are delivered by
//!   the leader only; a follower's slot is empty, so it never re-sends stale alerts.
//! - [`pump_run_requests`] and [`mirror_runs`]: a follower's `POST /api/v1/analyze` is queued in
//!   the shared store and the leader takes it; every run's state is written to the store so any
//!   replica answers `GET /api/v1/analysis/{run_id}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use driftguard_store::Store;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::runs::{RunInfo, Runs, Trigger};
use crate::sink::{Event, EventSink};

/// How often the leader looks for analysis requests queued by followers.
pub const REQUEST_POLL: Duration = Duration::from_millis(500);

/// The role as `/ready` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadershipReport {
    /// `leader` or `follower`.
    pub role: &'static str,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// The identity holding the Lease, when known.
    pub holder: Option<String>,
    /// The store term this replica writes with (leader only).
    pub term: Option<u64>,
}

/// This replica's role, shared by the API and the service.
#[derive(Debug)]
pub struct Leadership {
    elected: bool,
    leading: AtomicBool,
    report: Mutex<LeadershipReport>,
}

impl Leadership {
    /// A replica that runs alone: always the leader.
    pub fn single() -> Self {
        Self {
            elected: false,
            leading: AtomicBool::new(true),
            report: Mutex::new(LeadershipReport {
                role: "leader",
                identity: String::new(),
                holder: None,
                term: None,
            }),
        }
    }

    /// A replica taking part in an election (a follower until it wins).
    pub fn elected(identity: &str) -> Self {
        Self {
            elected: true,
            leading: AtomicBool::new(false),
            report: Mutex::new(LeadershipReport {
                role: "follower",
                identity: identity.to_owned(),
                holder: None,
                term: None,
            }),
        }
    }

    /// True when leader election is on.
    pub fn is_elected(&self) -> bool {
        self.elected
    }

    /// True while this replica leads (always, without election).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Records the role.
    pub fn set(&self, leading: bool, holder: Option<String>, term: Option<u64>) {
        self.leading.store(leading, Ordering::Release);
        let mut report = lock(&self.report);
        report.role = if leading { "leader" } else { "follower" };
        report.holder = holder;
        report.term = term;
    }

    /// The role as `/ready` shows it; `None` without election.
    pub fn report(&self) -> Option<LeadershipReport> {
        self.elected.then(|| lock(&self.report).clone())
    }
}

/// An event sink that forwards to whatever sink the current term set (none on a follower).
#[derive(Default)]
pub struct SlotSink {
    slot: RwLock<Option<Arc<dyn EventSink>>>,
}

impl std::fmt::Debug for SlotSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotSink")
            .field("set", &self.get().is_some())
            .finish()
    }
}

impl SlotSink {
    /// Sets (or clears) the sink.
    pub fn set(&self, sink: Option<Arc<dyn EventSink>>) {
        *self
            .slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sink;
    }

    fn get(&self) -> Option<Arc<dyn EventSink>> {
        self.slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl EventSink for SlotSink {
    fn publish(&self, event: &Event) {
        if let Some(sink) = self.get() {
            sink.publish(event);
        }
    }
}

/// The leader's loop taking analysis requests queued by followers, until `stop`.
pub async fn pump_run_requests(
    store: Arc<dyn Store>,
    runs: Arc<Runs>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    while !*stop.borrow() {
        match store.take_run_requests().await {
            Ok(requests) => {
                failing = false;
                for (id, _) in requests {
                    match Uuid::parse_str(&id) {
                        Ok(id) => {
                            let run = runs.trigger_as(Trigger::Manual, id);
                            tracing::info!(request = %id, run = %run, "analysis requested through another replica");
                        }
                        Err(_) => {
                            tracing::warn!(request = %id, "ignoring an analysis request whose id is not a UUID")
                        }
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::errors::chain(&e), "cannot read queued analysis requests; retrying");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REQUEST_POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Writes every run state change to the store (in order, one writer), so every replica
/// answers `GET /api/v1/analysis/{run_id}`. Returns the callback to give [`Runs::set_mirror`].
pub fn mirror_runs(store: Arc<dyn Store>) -> Box<dyn Fn(&RunInfo) + Send + Sync> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
    tokio::spawn(async move {
        while let Some((id, json)) = rx.recv().await {
            if let Err(e) = store.put_run(&id, &json).await {
                tracing::debug!(run = %id, error = %crate::errors::chain(&e), "could not store a run's state");
            }
        }
    });
    Box::new(move |run: &RunInfo| {
        for id in std::iter::once(run.run_id).chain(run.aliases.iter().copied()) {
            let mut shown = run.clone();
            shown.run_id = id;
            if let Ok(json) = serde_json::to_string(&shown) {
                let _ = tx.send((id.to_string(), json));
            }
        }
    })
}

/// This replica's identity in the Lease: `leader_election.identity`, else the host name (the
/// pod name in Kubernetes), else `driftguard-<pid>`.
pub fn identity(config: &driftguard_config::LeaderElectionConfig) -> String {
    if !config.identity.trim().is_empty() {
        return config.identity.trim().to_owned();
    }
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("driftguard-{}", std::process::id()))
}

/// The Lease's namespace: `leader_election.lease_namespace`, else the namespace of the pod's
/// service account, else `default`.
pub fn lease_namespace(config: &driftguard_config::LeaderElectionConfig) -> String {
    if !config.lease_namespace.trim().is_empty() {
        return config.lease_namespace.trim().to_owned();
    }
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! The Git side of `serve`: a blocking thread that fetches, builds snapshots and hands each new
//! one to the pipeline. A failing fetch or a snapshot over budget keeps the last good snapshot in
//! force and says why on `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use driftguard_core::ResourceKey;
use driftguard_core::state::short_commit;
use driftguard_git::{GitSource, Snapshot, SyncOutcome};
use tokio::sync::mpsc;

use crate::errors::chain;
use crate::health::{Health, Readiness};
use crate::metrics::{CommitLabels, Metrics, ResultLabels};
use crate::retry::backoff;

/// A new Git snapshot for the analyzer.
pub struct GitUpdate {
    /// The snapshot now in force.
    pub snapshot: Arc<Snapshot>,
    /// Desired objects added, changed or removed since the previous one.
    pub changed: Vec<ResourceKey>,
    /// True for the first snapshot (the startup run evaluates everything).
    pub first: bool,
}

/// Fetches every `poll` (backing off while failing) until `stop`; sends each new snapshot.
pub fn git_loop(
    mut source: GitSource,
    poll: Duration,
    tx: mpsc::Sender<GitUpdate>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) {
    let mut failures: u32 = 0;
    let mut have_snapshot = false;
    while !stop.load(Ordering::Relaxed) {
        match source.sync() {
            Ok(outcome) => {
                failures = 0;
                metrics
                    .git_syncs
                    .get_or_create(&ResultLabels {
                        result: "success".to_owned(),
                    })
                    .inc();
                metrics
                    .git_last_success
                    .set(Utc::now().timestamp_millis() as f64 / 1000.0);
                let snapshot = source.snapshot();
                metrics
                    .git_parse_errors
                    .set(i64::try_from(snapshot.errors.len()).unwrap_or(i64::MAX));
                metrics
                    .desired_objects
                    .set(i64::try_from(snapshot.objects.len()).unwrap_or(i64::MAX));
                let parse_note = if snapshot.errors.is_empty() {
                    String::new()
                } else {
                    format!("; {} files do not parse", snapshot.errors.len())
                };
                let status = if snapshot.errors.is_empty() {
                    Health::Ok
                } else {
                    Health::Degraded
                };
                readiness.set(
                    "git",
                    status,
                    format!(
                        "commit {}, {} objects{parse_note}",
                        short_commit(&snapshot.commit),
                        snapshot.objects.len()
                    ),
                );
                if let SyncOutcome::Updated {
                    previous_commit,
                    commit,
                    diff,
                } = outcome
                {
                    metrics.git_commit.clear();
                    metrics
                        .git_commit
                        .get_or_create(&CommitLabels {
                            commit: commit.clone(),
                        })
                        .set(1);
                    for error in &snapshot.errors {
                        tracing::warn!(error = %error, "manifest does not parse; its last good objects stay in force");
                    }
                    tracing::info!(
                        commit = %short_commit(&commit),
                        previous = %short_commit(&previous_commit),
                        objects = snapshot.objects.len(),
                        changed = diff.added.len() + diff.changed.len() + diff.removed.len(),
                        parsed = snapshot.stats.files_parsed,
                        kustomizations_rendered = snapshot.stats.kustomizations_rendered,
                        releases_rendered = snapshot.stats.releases_rendered,
                        "🔀 desired state updated"
                    );
                    let changed = diff.keys().cloned().collect();
                    let update = GitUpdate {
                        snapshot: Arc::new(snapshot.clone()),
                        changed,
                        first: !have_snapshot,
                    };
                    have_snapshot = true;
                    if tx.blocking_send(update).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                metrics
                    .git_syncs
                    .get_or_create(&ResultLabels {
                        result: "error".to_owned(),
                    })
                    .inc();
                let message = chain(&e);
                let status = if have_snapshot {
                    Health::Degraded
                } else {
                    Health::Pending
                };
                // A budget is named on `/ready` (its key is ours, not repository text); the
                // path and commit go to the log only.
                let reason = match &e {
                    driftguard_git::Error::Budget { budget, .. } => {
                        format!("over budget {budget}, last good snapshot kept")
                    }
                    _ => "fetch failing, last good snapshot kept".to_owned(),
                };
                readiness.set("git", status, format!("{reason}: {message}"));
                tracing::warn!(error = %message, attempt = failures, "Git sync failed; the last good snapshot stays in force");
            }
        }
        let wait = if failures == 0 {
            poll
        } else {
            backoff(failures, poll)
        };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(wait));
        }
    }
}

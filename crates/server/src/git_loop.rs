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
use tokio::sync::{mpsc, oneshot};

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
    /// Answered by the pipeline once it has taken the snapshot (and started watching the
    /// kinds it holds). Git is shown in force on `/ready` only then: before, `/ready` could say
    /// `ready` for a moment while a kind Git holds was not even registered, let alone listed.
    pub taken: oneshot::Sender<()>,
}

/// Builds the next snapshot on a thread that ends with the build. Parsing a repository
/// allocates and frees about as much again as the snapshot keeps; freed memory stays cached in
/// the allocating thread's heap, and this loop's thread then sleeps until its next poll. A
/// thread that ends hands its pages back to the allocator's shared arenas, from where they are
/// returned to the system.
fn sync_on_its_own_thread(source: &mut GitSource) -> driftguard_git::Result<SyncOutcome> {
    let built = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("driftguard-git-sync".to_owned())
            .spawn_scoped(scope, || source.sync())
            .ok()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
    });
    // No thread to be had: build here.
    built.unwrap_or_else(|| source.sync())
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
        match sync_on_its_own_thread(&mut source) {
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
                let message = format!(
                    "commit {}, {} objects{parse_note}",
                    short_commit(&snapshot.commit),
                    snapshot.objects.len()
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
                    let (taken, taken_rx) = oneshot::channel();
                    let update = GitUpdate {
                        snapshot: source.shared_snapshot(),
                        changed,
                        first: !have_snapshot,
                        taken,
                    };
                    have_snapshot = true;
                    // The pipeline drops the update unanswered only when it stops.
                    if tx.blocking_send(update).is_err() || taken_rx.blocking_recv().is_err() {
                        return;
                    }
                }
                readiness.set("git", status, message);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use driftguard_config::GitConfig;
    use driftguard_core::secret::SecretHasher;
    use driftguard_test_support::git::TestRepo;

    const CM: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: team\ndata:\n  k: v\n";

    /// `/ready` shows Git in force only after the pipeline took the snapshot: until then a kind
    /// only Git holds is not registered, and `ready` would be a moment's lie.
    #[test]
    fn git_is_ok_on_ready_only_once_the_pipeline_took_the_snapshot() {
        let repo = TestRepo::with_files(&[("cm.yaml", CM)]).unwrap();
        let work = tempfile::tempdir().unwrap();
        let cfg = GitConfig {
            repository_url: repo.url(),
            default_branch: "main".to_owned(),
            workdir: work.path().join("git").display().to_string(),
            poll_interval: Duration::from_millis(50),
            ..GitConfig::default()
        };
        let hasher = SecretHasher::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let source = GitSource::open(&cfg, "default", hasher).unwrap();
        let readiness = Arc::new(Readiness::default());
        readiness.register("git", true, "waiting for the first fetch");
        let (tx, mut rx) = mpsc::channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (readiness, stop) = (readiness.clone(), stop.clone());
            std::thread::spawn(move || {
                git_loop(
                    source,
                    cfg.poll_interval,
                    tx,
                    readiness,
                    Arc::new(Metrics::new()),
                    stop,
                );
            })
        };
        let update = rx.blocking_recv().expect("the first snapshot");
        assert!(update.first);
        assert_eq!(
            update.snapshot.objects.len(),
            1,
            "{:?}",
            update.snapshot.errors
        );
        // Several polls go by while the pipeline has not answered: Git stays pending.
        std::thread::sleep(Duration::from_millis(300));
        let git = readiness.get("git").unwrap();
        assert_eq!(git.status, Health::Pending, "{git:?}");
        update.taken.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while readiness.get("git").unwrap().status != Health::Ok {
            assert!(Instant::now() < deadline, "Git never shown in force");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(readiness.get("git").unwrap().message.contains("1 objects"));
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        thread.join().unwrap();
    }
}

//! Full analysis runs: single-flight, with exactly one queued follow-up (contract §5).
//!
//! A trigger while nothing runs creates a run that starts at once. Triggers while a run is going
//! share one queued follow-up run (the same `run_id`), which starts after the current run ends —
//! so every trigger's run starts after the trigger.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

/// Why a run was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `POST /api/v1/analyze`.
    Manual,
    /// `drift_detection.interval`.
    Periodic,
    /// Service start.
    Startup,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for the current run to finish.
    Queued,
    /// Going.
    Running,
    /// Finished; every resource was evaluated.
    Completed,
    /// Finished with errors (some sources could not be read); what could be analysed was.
    Failed,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Resources evaluated.
    pub evaluated: u64,
    /// Records active after the run.
    pub active: u64,
    /// Episodes opened by the run.
    pub detected: u64,
    /// Episodes resolved by the run.
    pub resolved: u64,
    /// Records written.
    pub written: u64,
}

impl RunCounts {
    /// Adds the counts of one more batch of the same run; `active` is the latest figure.
    pub fn add(&mut self, part: &RunCounts) {
        self.evaluated += part.evaluated;
        self.detected += part.detected;
        self.resolved += part.resolved;
        self.written += part.written;
        self.active = part.active;
    }
}

/// One analysis run, as `GET /api/v1/analysis/{run_id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Id.
    pub run_id: Uuid,
    /// Why.
    pub trigger: Trigger,
    /// State.
    pub status: RunStatus,
    /// First request time.
    pub requested_at: DateTime<Utc>,
    /// Requests folded into this run.
    pub requests: u64,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Commit analysed.
    pub git_commit: Option<String>,
    /// Counts.
    pub counts: RunCounts,
    /// Errors met (sources that could not be read), without Secret values.
    pub errors: Vec<String>,
    /// Ids of requests queued through other replicas and folded into this run (issue 19):
    /// each shows this run's state under its own id.
    #[serde(skip)]
    pub aliases: Vec<Uuid>,
}

#[derive(Debug, Default)]
struct State {
    running: Option<RunInfo>,
    queued: Option<RunInfo>,
    done: VecDeque<RunInfo>,
}

/// Called with a run's new state, outside the registry's lock.
pub type RunMirror = Box<dyn Fn(&RunInfo) + Send + Sync>;

/// The run registry shared by the API and the analyzer.
#[derive(Default)]
pub struct Runs {
    state: Mutex<State>,
    wake: Notify,
    mirror: std::sync::RwLock<Option<RunMirror>>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("state", &*lock(&self.state))
            .finish_non_exhaustive()
    }
}

/// How many finished runs are kept for `GET /api/v1/analysis/{run_id}`.
pub const KEPT_RUNS: usize = 200;

// === impl Runs ===

impl Runs {
    /// Requests a run; returns the id of the run that will serve this request.
    pub fn trigger(&self, trigger: Trigger) -> Uuid {
        self.request(trigger, None)
    }

    /// Requests a run for a request that already has its id (queued through another replica):
    /// the id names the new run, or, when a run is already queued, shows that run's state.
    pub fn trigger_as(&self, trigger: Trigger, id: Uuid) -> Uuid {
        self.request(trigger, Some(id))
    }

    /// Sets (or clears) the callback told of every run state change (the store mirror).
    pub fn set_mirror(&self, mirror: Option<RunMirror>) {
        *self
            .mirror
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mirror;
    }

    fn mirrored(&self, run: Option<RunInfo>) {
        if let Some(run) = run
            && let Some(mirror) = self
                .mirror
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
        {
            mirror(&run);
        }
    }

    fn request(&self, trigger: Trigger, given: Option<Uuid>) -> Uuid {
        let now = Utc::now();
        let (id, changed) = {
            let mut state = lock(&self.state);
            if let Some(queued) = state.queued.as_mut() {
                queued.requests += 1;
                if let Some(alias) = given.filter(|g| *g != queued.run_id) {
                    queued.aliases.push(alias);
                }
                (queued.run_id, queued.clone())
            } else {
                let run = RunInfo {
                    run_id: given.unwrap_or_else(Uuid::new_v4),
                    trigger,
                    status: RunStatus::Queued,
                    requested_at: now,
                    requests: 1,
                    started_at: None,
                    finished_at: None,
                    git_commit: None,
                    counts: RunCounts::default(),
                    errors: Vec::new(),
                    aliases: Vec::new(),
                };
                let id = run.run_id;
                state.queued = Some(run.clone());
                (id, run)
            }
        };
        self.mirrored(Some(changed));
        self.wake.notify_one();
        id
    }

    /// Waits until a queued run may start and marks it running. Only the analyzer calls this.
    pub async fn next(&self) -> RunInfo {
        loop {
            let notified = self.wake.notified();
            if let Some(run) = self.try_start() {
                return run;
            }
            notified.await;
        }
    }

    /// Starts the queued run if nothing is running.
    pub fn try_start(&self) -> Option<RunInfo> {
        let run = {
            let mut state = lock(&self.state);
            if state.running.is_some() {
                return None;
            }
            let mut run = state.queued.take()?;
            run.status = RunStatus::Running;
            run.started_at = Some(Utc::now());
            state.running = Some(run.clone());
            run
        };
        self.mirrored(Some(run.clone()));
        Some(run)
    }

    /// Records the end of the running run.
    pub fn finish(
        &self,
        run_id: Uuid,
        git_commit: Option<String>,
        counts: RunCounts,
        errors: Vec<String>,
    ) {
        let mut state = lock(&self.state);
        let mut finished = None;
        if let Some(mut run) = state.running.take_if(|r| r.run_id == run_id) {
            run.finished_at = Some(Utc::now());
            run.status = if errors.is_empty() {
                RunStatus::Completed
            } else {
                RunStatus::Failed
            };
            run.git_commit = git_commit;
            run.counts = counts;
            run.errors = errors;
            finished = Some(run.clone());
            state.done.push_front(run);
            state.done.truncate(KEPT_RUNS);
        }
        drop(state);
        self.mirrored(finished);
        self.wake.notify_one();
    }

    /// Ends the running run as failed with `reason` (this replica stopped leading mid-run), so
    /// the next term's runs can start.
    pub fn interrupt(&self, reason: &str) {
        let running = lock(&self.state).running.as_ref().map(|r| r.run_id);
        if let Some(id) = running {
            self.finish(id, None, RunCounts::default(), vec![reason.to_owned()]);
        }
    }

    /// A run by id (queued, running or one of the last [`KEPT_RUNS`] finished); an alias
    /// shows its run under its own id.
    pub fn get(&self, run_id: Uuid) -> Option<RunInfo> {
        let state = lock(&self.state);
        state
            .running
            .iter()
            .chain(state.queued.iter())
            .chain(state.done.iter())
            .find(|r| r.run_id == run_id || r.aliases.contains(&run_id))
            .map(|r| RunInfo {
                run_id,
                ..r.clone()
            })
    }

    /// True while a run is going.
    pub fn is_running(&self) -> bool {
        lock(&self.state).running.is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the registry half-updated in a harmful way.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn triggers_during_a_run_share_one_follow_up() {
        let runs = Runs::default();
        let first = runs.trigger(Trigger::Manual);
        let started = runs.try_start().unwrap();
        assert_eq!(started.run_id, first);
        let a = runs.trigger(Trigger::Manual);
        let b = runs.trigger(Trigger::Periodic);
        assert_eq!(a, b, "triggers during a run queue exactly one follow-up");
        assert_ne!(a, first);
        assert!(runs.try_start().is_none(), "single flight");
        runs.finish(first, None, RunCounts::default(), Vec::new());
        let follow_up = runs.try_start().unwrap();
        assert_eq!(follow_up.run_id, a);
        assert_eq!(follow_up.requests, 2);
        assert!(follow_up.started_at.unwrap() >= follow_up.requested_at);
        assert_eq!(runs.get(first).unwrap().status, RunStatus::Completed);
        assert_eq!(runs.get(a).unwrap().status, RunStatus::Running);
    }

    #[test]
    fn requests_from_other_replicas_keep_their_ids_and_every_change_is_mirrored() {
        let runs = Runs::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        runs.set_mirror(Some(Box::new(move |run: &RunInfo| {
            lock(&log).push((run.run_id, run.status, run.aliases.clone()));
        })));
        let remote = Uuid::new_v4();
        assert_eq!(
            runs.trigger_as(Trigger::Manual, remote),
            remote,
            "names the new run"
        );
        let started = runs.try_start().unwrap();
        assert_eq!(started.run_id, remote);
        let local = runs.trigger(Trigger::Manual);
        let folded = Uuid::new_v4();
        assert_eq!(
            runs.trigger_as(Trigger::Manual, folded),
            local,
            "folded into the queued run"
        );
        assert_eq!(
            runs.get(folded).unwrap().run_id,
            folded,
            "an alias shows under its own id"
        );
        assert_eq!(runs.get(folded).unwrap().status, RunStatus::Queued);
        runs.finish(remote, None, RunCounts::default(), Vec::new());
        let log = lock(&seen).clone();
        let statuses: Vec<_> = log.iter().map(|(id, s, _)| (*id, *s)).collect();
        assert_eq!(
            statuses,
            vec![
                (remote, RunStatus::Queued),
                (remote, RunStatus::Running),
                (local, RunStatus::Queued),
                (local, RunStatus::Queued),
                (remote, RunStatus::Completed),
            ]
        );
        assert_eq!(log[3].2, vec![folded], "the mirror learns the alias");
    }
}

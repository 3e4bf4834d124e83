//! The pipeline of `serve`: one task that takes a closed set of inputs ([`Input`]) — a live
//! object changed, the Git snapshot moved, a full analysis run may start, the periodic tick,
//! shutdown — evaluates what they touch through the one evaluation path
//! ([`crate::evaluate`]), writes the changed verdicts to the store and publishes what happened
//! to the event sinks ([`crate::sink`]).
//!
//! A live change re-evaluates only that resource; a new commit re-evaluates the desired objects
//! that changed (and the removed ones); a full analysis evaluates everything, writing as it goes
//! in chunks of [`WRITE_CHUNK`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftguard_core::{ResourceKey, SecretHasher};
use driftguard_git::Snapshot;
use driftguard_kube::{GroupKind, LiveEvent};
use driftguard_store::{BufferedStore, Store};
use tokio::sync::{mpsc, watch};

use crate::analyzer::{Analyzer, key_of};
use crate::evaluate::{LiveView, Scope};
use crate::git_loop::GitUpdate;
use crate::health::Readiness;
use crate::metrics::{KindLabels, Metrics};
use crate::runs::{RunCounts, RunInfo, Runs, Trigger};
use crate::sink::{AnalysisEvent, Event, Sinks};

/// Most live events folded into one store batch.
const LIVE_BATCH: usize = 512;
/// Most writes one store batch carries: an analysis writes as it goes, so its memory peak is
/// one chunk, not every record twice.
const WRITE_CHUNK: usize = 500;

mod batch;

pub use crate::watched::WatchedLive;
use batch::Batch;

/// Inputs of the pipeline.
enum Input {
    Live(LiveEvent),
    Git(GitUpdate),
    Run(RunInfo),
    Tick,
    Shutdown,
}

/// The pipeline's state.
pub struct Pipeline {
    /// The current view and the state machine.
    pub analyzer: Analyzer,
    /// The live objects, as the watches see them.
    pub live: WatchedLive,
    /// Scope of the configuration.
    pub scope: Scope,
    /// For reading objects in another apiVersion.
    pub client: kube::Client,
    /// Digests what is read that way.
    pub hasher: SecretHasher,
    /// The store (behind its outage buffer).
    pub store: Arc<dyn Store>,
    /// The outage buffer, for its resync flag.
    pub buffered: Arc<BufferedStore>,
    /// Metrics the pipeline owns (record gauges, watched objects, latency).
    pub metrics: Arc<Metrics>,
    /// Readiness, for the watch components.
    pub readiness: Arc<Readiness>,
    /// Analysis runs.
    pub runs: Arc<Runs>,
    /// Where events go.
    pub sinks: Sinks,
    snapshot: Option<Arc<Snapshot>>,
}

// === impl Pipeline ===

impl Pipeline {
    /// A pipeline with no snapshot yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        analyzer: Analyzer,
        live: WatchedLive,
        scope: Scope,
        client: kube::Client,
        hasher: SecretHasher,
        buffered: Arc<BufferedStore>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        runs: Arc<Runs>,
        sinks: Sinks,
    ) -> Self {
        Self {
            analyzer,
            live,
            scope,
            client,
            hasher,
            store: buffered.clone(),
            buffered,
            metrics,
            readiness,
            runs,
            sinks,
            snapshot: None,
        }
    }

    /// Runs until shutdown.
    pub async fn run(
        &mut self,
        mut live_rx: mpsc::Receiver<LiveEvent>,
        mut git_rx: mpsc::Receiver<GitUpdate>,
        periodic: Option<Duration>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = periodic.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let runs = self.runs.clone();
        loop {
            let input = tokio::select! {
                biased;
                _ = shutdown.changed() => Input::Shutdown,
                Some(update) = git_rx.recv() => Input::Git(update),
                Some(event) = live_rx.recv() => Input::Live(event),
                run = runs.next(), if self.snapshot.is_some() => Input::Run(run),
                _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => Input::Tick,
            };
            match input {
                Input::Shutdown => return,
                Input::Tick => {
                    runs.trigger(Trigger::Periodic);
                }
                Input::Git(update) => self.on_git(update).await,
                Input::Live(first) => {
                    let mut events = vec![first];
                    while events.len() < LIVE_BATCH {
                        match live_rx.try_recv() {
                            Ok(e) => events.push(e),
                            Err(_) => break,
                        }
                    }
                    self.on_live(events).await;
                }
                Input::Run(run) => self.full_analysis(run).await,
            }
            if self.buffered.take_resync_needed() {
                tracing::warn!(
                    "writes were dropped during a store outage; the next full analysis rewrites every record"
                );
                self.analyzer.set_force_writes(true);
                runs.trigger(Trigger::Periodic);
            }
        }
    }

    async fn on_git(&mut self, update: GitUpdate) {
        let GitUpdate {
            snapshot,
            changed,
            first,
            taken,
        } = update;
        // Kinds Git holds that nobody configured are watched too; their first list evaluates
        // them (`Synced`). Their readiness components exist before Git says `ok`.
        self.live.adopt_kinds(&snapshot, &self.readiness);
        let _ = taken.send(());
        self.snapshot = Some(snapshot);
        if first {
            // The first snapshot: everything is evaluated by the startup run.
            return;
        }
        let mut batch = Batch::default();
        for key in &changed {
            self.evaluate_into(key, &mut batch, None).await;
        }
        self.commit_batch(batch).await;
    }

    async fn on_live(&mut self, events: Vec<LiveEvent>) {
        let mut batch = Batch::default();
        let mut seen_keys: HashSet<ResourceKey> = HashSet::new();
        for event in events {
            match event {
                // A key counts as seen only once it could be evaluated: an event that arrives
                // before its kind has listed is skipped, and the kind's `Synced` in the same
                // batch must still evaluate it.
                LiveEvent::Applied { object, seen_at } => {
                    if self.live.trustworthy(&object.key) && seen_keys.insert(object.key.clone()) {
                        self.evaluate_into(&object.key, &mut batch, Some(seen_at))
                            .await;
                    }
                }
                LiveEvent::Deleted { key, seen_at } => {
                    if self.live.trustworthy(&key) && seen_keys.insert(key.clone()) {
                        self.evaluate_into(&key, &mut batch, Some(seen_at)).await;
                    }
                }
                LiveEvent::Synced {
                    kind,
                    namespace,
                    keys,
                    ..
                } => {
                    self.metrics
                        .watched_objects
                        .get_or_create(&KindLabels {
                            kind: kind.kind.clone(),
                        })
                        .set(i64::try_from(self.live.cache.len(&kind)).unwrap_or(i64::MAX));
                    self.live
                        .update_readiness(&kind, &self.readiness, &self.metrics);
                    // The namespaces that listed before the kind was trusted as a whole were
                    // skipped: evaluate all of them once it is.
                    let (namespace, keys) = if self.live.newly_settled(&kind) {
                        (None, self.live.cache.keys(&kind))
                    } else {
                        (namespace, keys)
                    };
                    self.evaluate_kind(
                        &kind,
                        namespace.as_deref(),
                        keys,
                        &mut batch,
                        &mut seen_keys,
                    )
                    .await;
                }
                LiveEvent::KindStatus { kind, .. } => {
                    if self.live.drop_if_refused(&kind, &self.readiness) {
                        continue;
                    }
                    self.live
                        .update_readiness(&kind, &self.readiness, &self.metrics);
                    // A watch that failed after listing resumes without a new list (kube-rs
                    // carries on from its resource version, or a probe finds the API server
                    // again): only this status says the kind is whole again, and what was
                    // skipped while it was not (other namespaces' lists, events) is evaluated
                    // now.
                    if self.live.newly_settled(&kind) {
                        let keys = self.live.cache.keys(&kind);
                        self.evaluate_kind(&kind, None, keys, &mut batch, &mut seen_keys)
                            .await;
                    }
                }
            }
        }
        self.commit_batch(batch).await;
    }

    /// Evaluates every identity of `kind` (in `namespace`, or all) after a (re)list or once the
    /// kind is trusted again. A key counts as seen only when it could be evaluated, so a later
    /// event of the same batch that makes the kind trusted still evaluates it.
    async fn evaluate_kind(
        &mut self,
        kind: &GroupKind,
        namespace: Option<&str>,
        listed: Vec<ResourceKey>,
        batch: &mut Batch,
        seen_keys: &mut HashSet<ResourceKey>,
    ) {
        for key in self.keys_of_kind(kind, namespace, listed) {
            if !self.live.trustworthy(&key) || !seen_keys.insert(key.clone()) {
                continue;
            }
            self.evaluate_into(&key, batch, None).await;
            if batch.writes.len() >= WRITE_CHUNK {
                self.commit_batch(std::mem::take(batch)).await;
            }
        }
    }

    /// Every identity of `kind` worth evaluating after a (re)list: desired objects, listed
    /// objects and records.
    fn keys_of_kind(
        &self,
        kind: &GroupKind,
        namespace: Option<&str>,
        listed: Vec<ResourceKey>,
    ) -> Vec<ResourceKey> {
        let in_ns = |k: &ResourceKey| namespace.is_none_or(|ns| k.namespace == ns);
        let mut keys: Vec<ResourceKey> = listed;
        if let Some(snapshot) = &self.snapshot {
            keys.extend(
                snapshot
                    .objects
                    .keys()
                    .filter(|k| k.group == kind.group && k.kind == kind.kind && in_ns(k))
                    .cloned(),
            );
        }
        keys.extend(
            self.analyzer
                .record_keys()
                .into_iter()
                .filter(|k| k.group == kind.group && k.kind == kind.kind && in_ns(k)),
        );
        keys
    }

    async fn full_analysis(&mut self, run: RunInfo) {
        let started = Instant::now();
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let mut keys: Vec<ResourceKey> = snapshot.objects.keys().cloned().collect();
        let mut seen: HashSet<ResourceKey> = keys.iter().cloned().collect();
        let mut more: Vec<ResourceKey> = self.analyzer.records().map(key_of).collect();
        for gk in self.live.kinds.keys() {
            more.extend(self.live.cache.keys(gk));
        }
        for key in more {
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let mut batch = Batch::default();
        let mut counts = RunCounts::default();
        let mut errors: Vec<String> = Vec::new();
        let mut untrusted = 0u64;
        let mut unchanged = 0u64;
        for key in &keys {
            if !self.live.trustworthy(key) && snapshot.objects.contains_key(key) {
                untrusted += 1;
            }
            self.evaluate_into(key, &mut batch, None).await;
            if batch.writes.len() >= WRITE_CHUNK {
                unchanged += batch.unchanged;
                // Written as it goes: a first analysis of a large cluster (or the rewrite after
                // an outage) never holds every record twice, once in the view and once in a
                // batch.
                errors.extend(batch.errors.iter().cloned());
                let part = self.commit_batch(std::mem::take(&mut batch)).await;
                counts.add(&part);
            }
        }
        errors.extend(batch.errors.iter().cloned());
        unchanged += batch.unchanged;
        for e in &snapshot.errors {
            errors.push(e.to_string());
        }
        for (gk, kind) in &self.live.kinds {
            if let Some(r) = self.live.readiness.kind(gk)
                && let Some(m) = r.state.message()
            {
                errors.push(format!("{}: {}", kind.plural, m));
            }
        }
        let part = self.commit_batch(batch).await;
        counts.add(&part);
        self.analyzer.set_force_writes(false);
        self.refresh_record_metrics();
        // A resource whose inputs are those of its last evaluation is passed over unread.
        tracing::debug!(
            resources = keys.len(),
            unchanged,
            written = counts.written,
            ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            "full analysis done"
        );
        self.sinks.publish(&Event::Analysis(AnalysisEvent {
            run_id: run.run_id.to_string(),
            trigger: trigger_name(run.trigger),
            commit: snapshot.commit.clone(),
            counts: counts.clone(),
            skipped_unwatched: untrusted,
            errors: errors.len(),
            duration: started.elapsed(),
            time: Utc::now(),
        }));
        self.runs
            .finish(run.run_id, Some(snapshot.commit.clone()), counts, errors);
    }
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Periodic => "periodic",
        Trigger::Startup => "startup",
    }
}

//! The pipeline of `serve`: one task that takes a closed set of inputs ([`Input`]) — a live
//! object changed, the Git snapshot moved, a full analysis run may start, the periodic tick,
//! shutdown — evaluates what they touch through the one evaluation path
//! ([`crate::evaluate`]), writes the changed verdicts to the store and publishes what happened
//! to the event sinks ([`crate::sink`]).
//!
//! A live change re-evaluates only that resource; a new commit re-evaluates the desired objects
//! that changed (and the removed ones); a full analysis evaluates everything, writing as it goes
//! in chunks of [`WRITE_CHUNK`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftguard_core::state::Event as Lifecycle;
use driftguard_core::{DriftStatus, LiveObject, ResourceKey, SecretHasher};
use driftguard_git::Snapshot;
use driftguard_kube::{GroupKind, KindState, LiveCache, LiveEvent, ResolvedKind};
use driftguard_store::{BufferedStore, Store, Write};
use tokio::sync::{mpsc, watch};

use crate::analyzer::{Analyzer, key_of};
use crate::evaluate::{Evaluated, Evaluation, LiveView, Scope, evaluate};
use crate::git_loop::GitUpdate;
use crate::health::{Health, Readiness};
use crate::metrics::{KindLabels, Metrics, RecordLabels};
use crate::runs::{RunCounts, RunInfo, Runs, Trigger};
use crate::sink::{AnalysisEvent, Event, RecordEvent, Sinks, headline};

/// Most live events folded into one store batch.
const LIVE_BATCH: usize = 512;
/// Most writes one store batch carries: an analysis writes as it goes, so its memory peak is
/// one chunk, not every record twice.
const WRITE_CHUNK: usize = 500;

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

/// The live objects of `serve`: the watch cache, trusted per kind once listed and healthy.
pub struct WatchedLive {
    /// The cache.
    pub cache: LiveCache,
    /// Each kind's watch state.
    pub readiness: driftguard_kube::Readiness,
    /// The watched kinds.
    pub kinds: HashMap<GroupKind, ResolvedKind>,
}

impl LiveView for WatchedLive {
    fn trustworthy(&self, key: &ResourceKey) -> bool {
        let gk = GroupKind::new(key.group.clone(), key.kind.clone());
        if !self.kinds.contains_key(&gk) {
            return false;
        }
        self.readiness
            .kind(&gk)
            .is_some_and(|r| r.listed_once && matches!(r.state, KindState::Ready))
    }

    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        self.cache.lookup(key)
    }
}

/// The writes and outcomes of evaluating a set of resources.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    events: Vec<Event>,
    /// Watch-event times of live changes in this batch, for the detection latency.
    seen: Vec<DateTime<Utc>>,
    evaluated: u64,
    errors: Vec<String>,
}

/// The readiness component of a watched kind.
pub fn component(kind: &ResolvedKind) -> String {
    if kind.group.is_empty() {
        format!("watch/{}", kind.plural)
    } else {
        format!("watch/{}.{}", kind.plural, kind.group)
    }
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
        let first = update.first;
        self.snapshot = Some(update.snapshot);
        if first {
            // The first snapshot: everything is evaluated by the startup run.
            return;
        }
        let mut batch = Batch::default();
        for key in &update.changed {
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
                    self.update_kind_readiness(&kind);
                    for key in self.keys_of_kind(&kind, namespace.as_deref(), keys) {
                        if seen_keys.insert(key.clone()) {
                            self.evaluate_into(&key, &mut batch, None).await;
                            if batch.writes.len() >= WRITE_CHUNK {
                                self.commit_batch(std::mem::take(&mut batch)).await;
                            }
                        }
                    }
                }
                LiveEvent::KindStatus { kind, .. } => self.update_kind_readiness(&kind),
            }
        }
        self.commit_batch(batch).await;
    }

    fn update_kind_readiness(&self, kind: &GroupKind) {
        let Some(resolved) = self.live.kinds.get(kind) else {
            return;
        };
        let name = component(resolved);
        let Some(state) = self.live.readiness.kind(kind) else {
            return;
        };
        let (health, message, error) = match &state.state {
            KindState::Pending => (Health::Pending, "listing".to_owned(), false),
            KindState::Ready => (
                Health::Ok,
                format!("{} objects", self.live.cache.len(kind)),
                false,
            ),
            KindState::Forbidden(m) => (Health::Degraded, format!("forbidden: {m}"), true),
            KindState::Error(m) => (Health::Degraded, format!("failing: {m}"), true),
            KindState::Reconnecting(m) => (Health::Degraded, format!("reconnecting: {m}"), true),
        };
        if matches!(state.state, KindState::Forbidden(_)) {
            self.readiness.set_not_required(&name);
        }
        self.readiness.set(&name, health, message);
        self.metrics
            .watch_errors
            .get_or_create(&KindLabels {
                kind: kind.kind.clone(),
            })
            .set(i64::from(error));
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

    async fn evaluate_into(
        &mut self,
        key: &ResourceKey,
        batch: &mut Batch,
        seen_at: Option<DateTime<Utc>>,
    ) {
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let evaluation = Evaluation {
            scope: &self.scope,
            client: &self.client,
            hasher: &self.hasher,
        };
        let now = Utc::now();
        let outcome = match evaluate(
            &evaluation,
            &mut self.analyzer,
            &self.live,
            &snapshot,
            key,
            now,
        )
        .await
        {
            Evaluated::Skipped => return,
            Evaluated::Failed(e) => {
                tracing::error!(resource = %key.resource_id(), error = %e, "skipping evaluation");
                batch.errors.push(format!("{}: {e}", key.resource_id()));
                return;
            }
            Evaluated::Done(outcome) => *outcome,
        };
        batch.evaluated += 1;
        let Some(write) = outcome.write else {
            return;
        };
        let episode = match &write {
            Write::Upsert { episode, .. } => episode.as_ref(),
            Write::Remove {
                closing_episode, ..
            } => closing_episode.as_ref(),
            Write::Episode { episode, .. } => Some(episode),
        };
        let (drift_type, severity) = match (episode, outcome.record.as_ref()) {
            (Some(e), _) => (
                e.drift_type
                    .map_or("none".to_owned(), |t| t.as_str().to_owned()),
                e.severity
                    .map_or("none".to_owned(), |s| s.as_str().to_owned()),
            ),
            (None, Some(r)) => headline(r),
            (None, None) => ("none".to_owned(), "none".to_owned()),
        };
        batch.writes.push(write);
        if let Some(seen) = seen_at {
            batch.seen.push(seen);
        }
        let event = |record| RecordEvent {
            resource_id: key.resource_id(),
            record,
            drift_type: drift_type.clone(),
            severity: severity.clone(),
            time: now,
        };
        match outcome.event {
            Some(Lifecycle::Detected) if outcome.record.is_some() => {
                // The headline of a detection is the record's own.
                let mut e = event(outcome.record.clone());
                if let Some(r) = &outcome.record {
                    (e.drift_type, e.severity) = headline(r);
                }
                batch.events.push(Event::Detected(e));
            }
            Some(Lifecycle::Continued) if outcome.record.is_some() => {
                let mut e = event(outcome.record.clone());
                if let Some(r) = &outcome.record {
                    (e.drift_type, e.severity) = headline(r);
                }
                batch.events.push(Event::Changed(e));
            }
            Some(Lifecycle::Resolved) => batch.events.push(Event::Resolved(event(outcome.record))),
            _ => {}
        }
    }

    /// Writes the batch, then publishes its events; returns its counts.
    async fn commit_batch(&mut self, batch: Batch) -> RunCounts {
        let Batch {
            writes,
            events,
            seen,
            evaluated,
            errors,
        } = batch;
        let written = writes.len() as u64;
        if !writes.is_empty() {
            // The store sits behind the outage buffer: a write it cannot take now is kept and
            // retried there, so the view in memory is what the store holds or will hold.
            let result = self.store.apply(&writes).await;
            self.metrics.store_op("apply", result.is_ok());
            if let Err(e) = result {
                tracing::error!(error = %crate::errors::chain(&e), writes = writes.len(), "writing drift records failed");
            }
        }
        let now = Utc::now();
        for seen_at in seen {
            let latency = (now - seen_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            self.metrics.detection_latency.observe(latency);
        }
        let mut counts = RunCounts {
            evaluated,
            written,
            ..RunCounts::default()
        };
        for event in &events {
            match event {
                Event::Detected(_) => counts.detected += 1,
                Event::Resolved(_) => counts.resolved += 1,
                _ => {}
            }
            self.sinks.publish(event);
        }
        for error in &errors {
            tracing::warn!(error = %error, "resource could not be evaluated");
        }
        if written > 0 {
            self.refresh_record_metrics();
        }
        counts.active = self
            .analyzer
            .records()
            .filter(|r| r.drift_status == DriftStatus::Active)
            .count() as u64;
        counts
    }

    fn refresh_record_metrics(&self) {
        let mut counts: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
        for r in self.analyzer.records() {
            let (t, s) = if r.drift_status == DriftStatus::Active {
                headline(r)
            } else {
                ("none".to_owned(), "none".to_owned())
            };
            *counts
                .entry((r.drift_status.as_str().to_owned(), s, t, r.kind.clone()))
                .or_default() += 1;
        }
        self.metrics.records.clear();
        for ((status, severity, r#type, kind), n) in counts {
            self.metrics
                .records
                .get_or_create(&RecordLabels {
                    status,
                    severity,
                    r#type,
                    kind,
                })
                .set(n);
        }
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
        for key in &keys {
            if !self.live.trustworthy(key) && snapshot.objects.contains_key(key) {
                untrusted += 1;
            }
            self.evaluate_into(key, &mut batch, None).await;
            if batch.writes.len() >= WRITE_CHUNK {
                // Written as it goes: a first analysis of a large cluster (or the rewrite after
                // an outage) never holds every record twice, once in the view and once in a
                // batch.
                errors.extend(batch.errors.iter().cloned());
                let part = self.commit_batch(std::mem::take(&mut batch)).await;
                counts.add(&part);
            }
        }
        errors.extend(batch.errors.iter().cloned());
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

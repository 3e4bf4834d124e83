//! The analyzer: turns (desired, live) pairs into record transitions and store writes.
//!
//! It owns the current view of records (loaded from the store at start, so an active drift stays
//! the same episode across restarts) and is driven by the service loop in [`crate::service`].
//! It does no IO itself: where Git writes each changed field ([`FieldLines`]) is asked of the
//! caller's snapshot, only for resources with changes.
//!
//! The records it keeps in memory carry no `desired_state`/`live_state`: those are written to the
//! store with every changed verdict, and the state machine compares verdicts by hashes and
//! changes, so keeping two normalised objects per resource in memory would only cost space.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use driftguard_core::engine::{self, Comparison, EngineConfig};
use driftguard_core::state::{self, Event, Observation, ResolutionCause};
use driftguard_core::{
    DesiredObject, DriftRecord, DriftStatus, FieldPath, LiveObject, ResourceKey,
};
use driftguard_store::Write;

use crate::metrics::RecordLabels;
use crate::unmanaged::{Claim, was_in_git};

/// What evaluating one resource produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The write to send to the store, when the verdict changed.
    pub write: Option<Write>,
    /// The lifecycle event, for logs and metrics.
    pub event: Option<Event>,
    /// The record after evaluation (absent when the resource left the view), without
    /// `desired_state`/`live_state` (the write has them).
    pub record: Option<DriftRecord>,
}

/// Where Git writes each field of a desired object: the line of each change
/// ([`driftguard_core::Change::source_line`]).
pub trait FieldLines {
    /// For each of `fields` of `desired`, the 1-based line of its file where Git writes it (or
    /// its nearest ancestor Git writes), `None` when unknown; as many answers as fields.
    fn field_lines(&self, desired: &DesiredObject, fields: &[&FieldPath]) -> Vec<Option<usize>>;
}

/// No line is known (tests, and callers without a snapshot).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLines;

impl FieldLines for NoLines {
    fn field_lines(&self, _: &DesiredObject, fields: &[&FieldPath]) -> Vec<Option<usize>> {
        vec![None; fields.len()]
    }
}

/// A snapshot reads the object's file again (only on a miss of its small cache).
impl FieldLines for driftguard_git::Snapshot {
    fn field_lines(&self, desired: &DesiredObject, fields: &[&FieldPath]) -> Vec<Option<usize>> {
        driftguard_git::Snapshot::field_lines(self, desired, fields)
    }
}

/// The analyzer's state.
#[derive(Debug)]
pub struct Analyzer {
    engine: EngineConfig,
    report_unmanaged: bool,
    /// What may be reported unmanaged without having been in Git (see [`crate::unmanaged`]).
    claim: Claim,
    /// Boxed: a record is 544 bytes, and the table keeps a slot per bucket (a quarter to a half
    /// of them empty) and, while it grows, the old table and the new one at once.
    records: HashMap<String, Box<DriftRecord>>,
    /// Write every evaluated verdict, changed or not (after the store lost writes).
    force: bool,
    /// The [`Inputs`] of each resource's last evaluation, by a hash of its key: a full analysis
    /// passes over a resource whose inputs are the same (see [`Analyzer::unchanged`]).
    memo: HashMap<u64, Inputs>,
    /// How many records there are per gauge labels (status, headline, kind), kept as records
    /// come and go: the gauges and a batch's active count cost a handful of entries, not a
    /// pass over every record (which at 50,000 records was most of a live change's latency).
    tally: HashMap<RecordLabels, i64>,
}

/// The labels a record is counted under in `driftguard_drift_records`: its status, and the
/// headline type and severity while it is active (`none` otherwise).
pub fn labels_of(record: &DriftRecord) -> RecordLabels {
    let (r#type, severity) = if record.drift_status == DriftStatus::Active {
        crate::sink::headline(record)
    } else {
        ("none".to_owned(), "none".to_owned())
    };
    RecordLabels {
        status: record.drift_status.as_str().to_owned(),
        severity,
        r#type,
        kind: record.kind.clone(),
    }
}

/// Everything one evaluation depends on besides the analyzer's own state, reduced to 128 bits:
/// the key; the desired object (its apiVersion, the hashes of its text and of its normalised
/// state, where Git holds it, its warnings); the live object's `resourceVersion` (the API
/// server changes it with every write to the object, and it identifies the content the watch
/// cache holds); and the snapshot's commit. The engine configuration and the claim are the
/// analyzer's: changing the engine forgets every memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs(u128);

impl Inputs {
    /// The inputs of evaluating `key` with `desired`, the live object at `live_version`
    /// (`None`: absent), and `commit`.
    pub fn of(
        key: &ResourceKey,
        desired: Option<&DesiredObject>,
        live_version: Option<&str>,
        commit: Option<&str>,
    ) -> Self {
        // Two SipHash passes with different prefixes: a collision of both is what it would take
        // for a change to be passed over.
        let half = |prefix: u8| {
            let mut h = DefaultHasher::new();
            prefix.hash(&mut h);
            key.hash(&mut h);
            match desired {
                Some(d) => {
                    1u8.hash(&mut h);
                    d.api_version.hash(&mut h);
                    d.hash.hash(&mut h);
                    d.state_hash.hash(&mut h);
                    d.source.hash(&mut h);
                    d.warnings.len().hash(&mut h);
                    for w in &d.warnings {
                        w.field.to_string().hash(&mut h);
                        w.code.hash(&mut h);
                        w.message.hash(&mut h);
                    }
                }
                None => 0u8.hash(&mut h),
            }
            live_version.hash(&mut h);
            commit.hash(&mut h);
            h.finish()
        };
        Self((u128::from(half(0)) << 64) | u128::from(half(1)))
    }
}

fn memo_key(key: &ResourceKey) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

// === impl Analyzer ===

impl Analyzer {
    /// An analyzer starting from the store's current view.
    pub fn new(engine: EngineConfig, report_unmanaged: bool, current: Vec<DriftRecord>) -> Self {
        let mut analyzer = Self {
            engine,
            report_unmanaged,
            claim: Claim::default(),
            records: HashMap::with_capacity(current.len()),
            force: false,
            memo: HashMap::new(),
            tally: HashMap::new(),
        };
        for record in current {
            analyzer.put(without_states(record));
        }
        analyzer
    }

    /// Records per gauge labels ([`labels_of`]); labels with no record are absent.
    pub fn tally(&self) -> impl Iterator<Item = (&RecordLabels, i64)> {
        self.tally.iter().map(|(labels, n)| (labels, *n))
    }

    /// How many records are active.
    pub fn active(&self) -> u64 {
        self.tally
            .iter()
            .filter(|(labels, _)| labels.status == DriftStatus::Active.as_str())
            .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
            .sum()
    }

    fn count(&mut self, record: &DriftRecord, delta: i64) {
        match self.tally.entry(labels_of(record)) {
            Entry::Occupied(mut n) => {
                *n.get_mut() += delta;
                if *n.get() <= 0 {
                    n.remove();
                }
            }
            Entry::Vacant(n) => {
                if delta > 0 {
                    n.insert(delta);
                }
            }
        }
    }

    /// Puts a record in the view, keeping the tally.
    fn put(&mut self, record: DriftRecord) {
        self.count(&record, 1);
        if let Some(old) = self
            .records
            .insert(record.resource_id.clone(), Box::new(record))
        {
            self.count(&old, -1);
        }
    }

    /// The same analyzer claiming unmanaged objects in `claim`'s scope (default: namespaced
    /// objects of every namespace, no cluster-scoped object).
    pub fn with_claim(mut self, claim: Claim) -> Self {
        self.claim = claim;
        self
    }

    /// The record currently held for `resource_id`.
    pub fn record(&self, resource_id: &str) -> Option<&DriftRecord> {
        self.records.get(resource_id).map(|r| &**r)
    }

    /// Every record of the current view.
    pub fn records(&self) -> impl Iterator<Item = &DriftRecord> {
        self.records.values().map(|r| &**r)
    }

    /// The identity of every record of the current view.
    pub fn record_keys(&self) -> Vec<ResourceKey> {
        self.records.values().map(|r| key_of(r)).collect()
    }

    /// While on, every evaluation writes its verdict even when unchanged — used once the store
    /// dropped buffered writes, so the next full analysis rewrites the truth.
    pub fn set_force_writes(&mut self, force: bool) {
        self.force = force;
    }

    /// Replaces the engine configuration (ignore rules, appliers, controllers); every verdict
    /// may change, so no evaluation is passed over until it ran again.
    pub fn set_engine(&mut self, engine: EngineConfig) {
        self.engine = engine;
        self.memo.clear();
    }

    /// True when `key` was last evaluated with the same `inputs` and nothing forces a write:
    /// evaluating it again would change nothing (a verdict reached from the same inputs and
    /// the record it produced is the same verdict, [`state::advance`]), so a full analysis may
    /// pass over it without reading its live object.
    pub fn unchanged(&self, key: &ResourceKey, inputs: Inputs) -> bool {
        !self.force && self.memo.get(&memo_key(key)) == Some(&inputs)
    }

    /// Remembers the inputs `key` was just evaluated with. A resource in neither Git nor the
    /// cluster is forgotten (its memo would only grow with churn).
    pub fn remember(&mut self, key: &ResourceKey, inputs: Inputs, present: bool) {
        if present {
            self.memo.insert(memo_key(key), inputs);
        } else {
            self.memo.remove(&memo_key(key));
        }
    }

    /// How many resources have remembered inputs.
    pub fn remembered(&self) -> usize {
        self.memo.len()
    }

    /// Evaluates one resource. `desired` is its object in the current Git snapshot, `live` its
    /// object in the live cache; `commit` the commit of the snapshot. Changes get no line.
    pub fn evaluate(
        &mut self,
        key: &ResourceKey,
        desired: Option<&DesiredObject>,
        live: Option<&LiveObject>,
        commit: Option<&str>,
        now: DateTime<Utc>,
    ) -> Outcome {
        self.evaluate_with_lines(key, desired, live, commit, now, &NoLines)
    }

    /// [`Analyzer::evaluate`], each change of a managed resource getting its line from `lines`
    /// (asked only when there are changes).
    pub fn evaluate_with_lines(
        &mut self,
        key: &ResourceKey,
        desired: Option<&DesiredObject>,
        live: Option<&LiveObject>,
        commit: Option<&str>,
        now: DateTime<Utc>,
        lines: &dyn FieldLines,
    ) -> Outcome {
        let id = key.resource_id();
        let previous = self.records.get(&id).map(|r| &**r);
        let commit_owned = commit.filter(|c| !c.is_empty()).map(str::to_owned);
        // The desired state parsed for the comparison, kept for the record a write carries.
        let mut desired_state = None;
        let mut observation = match (desired, live) {
            (Some(d), Some(l)) => {
                let state = desired_state.insert(d.state.value());
                let comparison = engine::compare_state(d, state, l, &self.engine);
                let cause = (comparison.changes.is_empty() && comparison.ignored > 0)
                    .then_some(ResolutionCause::IgnoreRule);
                observe(
                    key,
                    &d.api_version,
                    true,
                    comparison,
                    commit_owned,
                    Some(d),
                    cause,
                )
            }
            (Some(d), None) => {
                let comparison = engine::missing(d, &self.engine);
                observe(
                    key,
                    &d.api_version,
                    true,
                    comparison,
                    commit_owned,
                    Some(d),
                    None,
                )
            }
            (None, Some(l)) => {
                let from_git = previous.is_some_and(was_in_git);
                if self.report_unmanaged && (from_git || self.claim.claims(l)) {
                    let comparison = engine::unmanaged(l, &self.engine);
                    let cause = (previous.is_some_and(|p| p.managed))
                        .then_some(ResolutionCause::RemovedFromGit);
                    let mut observation = observe(
                        key,
                        &l.api_version,
                        false,
                        comparison,
                        commit_owned,
                        None,
                        cause,
                    );
                    // An orphan of Git remembers where Git held it: that is what keeps it
                    // claimed after the managed record is gone (and across restarts).
                    if from_git {
                        observation.source_path = previous.and_then(|p| p.source_path.clone());
                        observation.source_line = previous.and_then(|p| p.source_line);
                    }
                    observation
                } else if self.report_unmanaged && previous.is_some_and(|p| !p.managed) {
                    // An unmanaged record DriftGuard does not claim (any more): e.g. one of every
                    // Namespace of the cluster, stored before claims existed. It leaves the view.
                    let closing = previous.and_then(|p| unclaimed_episode(p, now));
                    return self.remove(&id, closing);
                } else {
                    match previous {
                        None => return Outcome::default(),
                        // It was in Git and drifted: the drift ends because Git let it go.
                        Some(p) if p.drift_status == DriftStatus::Active || p.managed => {
                            let comparison = Comparison {
                                changes: Vec::new(),
                                desired_hash: String::new(),
                                live_hash: String::new(),
                                ignored: 0,
                                warnings: Vec::new(),
                            };
                            if p.drift_status == DriftStatus::None {
                                return self.remove(&id, None);
                            }
                            observe(
                                key,
                                &l.api_version,
                                false,
                                comparison,
                                commit_owned,
                                None,
                                Some(ResolutionCause::RemovedFromGit),
                            )
                        }
                        // An unmanaged record kept from before (report_unmanaged was on) or a
                        // resolution already recorded: keep it until the object goes away.
                        Some(p) if p.drift_status == DriftStatus::Resolved => {
                            return Outcome {
                                record: Some(p.clone()),
                                ..Outcome::default()
                            };
                        }
                        Some(_) => return self.remove(&id, None),
                    }
                }
            }
            (None, None) => {
                let closing = previous.and_then(|p| state::leave_view(p, commit, now));
                if previous.is_none() {
                    return Outcome::default();
                }
                return self.remove(&id, closing);
            }
        };
        if let Some(d) = desired
            && !observation.changes.is_empty()
        {
            let fields: Vec<&FieldPath> = observation.changes.iter().map(|c| &c.field).collect();
            let found = lines.field_lines(d, &fields);
            for (change, line) in observation.changes.iter_mut().zip(found) {
                change.source_line = line;
            }
        }
        let transition = state::advance(previous, observation, now);
        if !transition.changed {
            if self.force {
                return Outcome {
                    write: Some(Write::Upsert {
                        record: with_states(
                            transition.record.clone(),
                            desired_state,
                            desired,
                            live,
                        ),
                        episode: None,
                    }),
                    event: None,
                    record: Some(transition.record),
                };
            }
            return Outcome {
                record: Some(transition.record),
                ..Outcome::default()
            };
        }
        // Memory and the outcome keep the record without the normalised objects; only the
        // write carries them (one copy per write, not one per holder).
        self.put(transition.record.clone());
        Outcome {
            write: Some(Write::Upsert {
                record: with_states(transition.record.clone(), desired_state, desired, live),
                episode: transition.episode,
            }),
            event: transition.event,
            record: Some(transition.record),
        }
    }

    fn remove(&mut self, id: &str, closing: Option<driftguard_core::Episode>) -> Outcome {
        let event = closing.as_ref().map(|_| Event::Resolved);
        if let Some(old) = self.records.remove(id) {
            self.count(&old, -1);
        }
        Outcome {
            write: Some(Write::Remove {
                resource_id: id.to_owned(),
                closing_episode: closing,
            }),
            event,
            record: None,
        }
    }
}

/// The closing episode of an active unmanaged record that is no longer claimed.
fn unclaimed_episode(
    previous: &DriftRecord,
    now: DateTime<Utc>,
) -> Option<driftguard_core::Episode> {
    (previous.drift_status == DriftStatus::Active).then(|| {
        let headline = previous.drift_type.zip(previous.severity);
        driftguard_core::Episode {
            first_detected: previous.first_detected.unwrap_or(now),
            resolved_at: Some(now),
            resolution_message: Some(
                "no longer reported as unmanaged: outside the watched namespaces and label selector, and never in Git"
                    .to_owned(),
            ),
            drift_type: headline.map(|(t, _)| t),
            severity: headline.map(|(_, s)| s),
            changes: previous.drift_details.clone(),
            git_commit: previous.git_commit.clone(),
        }
    })
}

/// The observation behind one verdict: a comparison's output with empty hashes turned into
/// absent values, and the source of the desired object. It carries no normalised objects: they
/// are copied into a record by [`with_states`] only when the record is written.
pub(crate) fn observe(
    key: &ResourceKey,
    api_version: &str,
    managed: bool,
    comparison: Comparison,
    git_commit: Option<String>,
    desired: Option<&DesiredObject>,
    cause: Option<ResolutionCause>,
) -> Observation {
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Observation {
        key: key.clone(),
        api_version: api_version.to_owned(),
        managed,
        changes: comparison.changes,
        warnings: comparison.warnings,
        desired_state: None,
        live_state: None,
        desired_hash: non_empty(comparison.desired_hash),
        live_hash: non_empty(comparison.live_hash),
        git_commit,
        source_path: desired.map(|d| d.source.source_path()),
        source_line: desired.and_then(|d| d.source.line),
        helm_release: desired.and_then(|d| d.source.helm_release.clone()),
        cause,
    }
}

/// A record with the normalised desired and live objects of its verdict (for the store and
/// the API); records kept in memory go without them. `parsed` is `desired`'s state when the
/// comparison parsed it already.
pub(crate) fn with_states(
    mut record: DriftRecord,
    parsed: Option<serde_json::Value>,
    desired: Option<&DesiredObject>,
    live: Option<&LiveObject>,
) -> DriftRecord {
    record.desired_state = parsed.or_else(|| desired.map(|d| d.state.value()));
    record.live_state = live.map(|l| l.object.clone());
    record
}

fn without_states(mut record: DriftRecord) -> DriftRecord {
    record.desired_state = None;
    record.live_state = None;
    record
}

/// The identity of a stored record.
pub fn key_of(record: &DriftRecord) -> ResourceKey {
    ResourceKey::from_api_version(
        &record.api_version,
        record.kind.clone(),
        record.namespace.clone(),
        record.name.clone(),
    )
}

#[cfg(test)]
mod skip_props;
#[cfg(test)]
mod tests;

//! Evaluating into a batch, and committing it: the store write, the latency, the events.

use chrono::{DateTime, Utc};
use driftguard_core::ResourceKey;
use driftguard_core::state::Event as Lifecycle;
use driftguard_store::Write;

use super::Pipeline;
use crate::evaluate::{Evaluated, Evaluation, evaluate};
use crate::runs::RunCounts;
use crate::sink::{Event, RecordEvent, headline};

/// The writes and outcomes of evaluating a set of resources.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) writes: Vec<Write>,
    pub(super) events: Vec<Event>,
    /// Watch-event times of live changes in this batch, for the detection latency.
    pub(super) seen: Vec<DateTime<Utc>>,
    pub(super) evaluated: u64,
    /// Of those, how many were passed over: the same inputs as their last evaluation.
    pub(super) unchanged: u64,
    pub(super) errors: Vec<String>,
}

// === impl Pipeline ===

impl Pipeline {
    pub(super) async fn evaluate_into(
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
            Evaluated::Unchanged => {
                batch.evaluated += 1;
                batch.unchanged += 1;
                return;
            }
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
    pub(super) async fn commit_batch(&mut self, batch: Batch) -> RunCounts {
        let Batch {
            writes,
            events,
            seen,
            evaluated,
            unchanged: _,
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
        counts.active = self.analyzer.active();
        counts
    }

    /// Sets `driftguard_drift_records` from the analyzer's tally (a handful of label sets).
    pub(super) fn refresh_record_metrics(&self) {
        self.metrics.records.clear();
        for (labels, n) in self.analyzer.tally() {
            self.metrics.records.get_or_create(labels).set(n);
        }
    }
}

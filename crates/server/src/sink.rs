//! What the service tells the world: one event type, one small sink interface.
//!
//! The pipeline publishes an [`Event`] when a drift is detected, changes or is resolved, when an
//! analysis run finishes, and when a component's health changes. Every consumer is an
//! [`EventSink`]: the log ([`LogSink`]) and the metrics ([`MetricsSink`]) are the first two; a
//! notifier or a live page plugs in the same way, without touching the pipeline.
//!
//! Sinks are called on the pipeline's task, in order, and must not block: one that does IO
//! queues the event and returns.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftguard_core::DriftRecord;
use driftguard_core::state::short_commit;

use crate::health::{Health, Readiness, public_message};
use crate::metrics::{Metrics, ResultLabels, TriggerLabels, TypeLabels};
use crate::runs::RunCounts;

/// Something that happened, for every sink.
#[derive(Debug, Clone)]
pub enum Event {
    /// A drift episode opened.
    Detected(RecordEvent),
    /// An active drift's set of changes changed.
    Changed(RecordEvent),
    /// A drift episode closed (or the resource left the view).
    Resolved(RecordEvent),
    /// An analysis run finished.
    Analysis(AnalysisEvent),
    /// A component's health changed.
    Health(HealthEvent),
}

/// A record's lifecycle event.
#[derive(Debug, Clone)]
pub struct RecordEvent {
    /// `Kind:namespace:name`.
    pub resource_id: String,
    /// The record after the event, without states (absent when the resource left the view).
    pub record: Option<DriftRecord>,
    /// Drift type of the episode (`none` when unknown).
    pub drift_type: String,
    /// Severity of the episode (`none` when unknown).
    pub severity: String,
    /// When it was seen.
    pub time: DateTime<Utc>,
}

/// A finished analysis run.
#[derive(Debug, Clone)]
pub struct AnalysisEvent {
    /// Run id.
    pub run_id: String,
    /// `startup`, `periodic` or `manual`.
    pub trigger: &'static str,
    /// Commit analysed.
    pub commit: String,
    /// Counts of the run.
    pub counts: RunCounts,
    /// Resources in Git whose kind was not watchable.
    pub skipped_unwatched: u64,
    /// Errors met.
    pub errors: usize,
    /// How long it took.
    pub duration: Duration,
    /// When it finished.
    pub time: DateTime<Utc>,
}

/// A component's new health (its public message: no paths, hosts or error chains).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthEvent {
    /// `store`, `git`, `kubernetes`, `watch/<plural>`.
    pub component: String,
    /// New status.
    pub status: Health,
    /// Short reason.
    pub message: String,
    /// When it changed.
    pub time: DateTime<Utc>,
}

/// A consumer of events.
pub trait EventSink: Send + Sync {
    /// Takes one event; must not block.
    fn publish(&self, event: &Event);
}

/// Every sink of the service, called in order.
#[derive(Clone, Default)]
pub struct Sinks(Vec<Arc<dyn EventSink>>);

// === impl Event ===

impl Event {
    /// The event's name on the wire (contract §9): `detected`, `changed`, `resolved`,
    /// `analysis`, `health`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Detected(_) => "detected",
            Event::Changed(_) => "changed",
            Event::Resolved(_) => "resolved",
            Event::Analysis(_) => "analysis",
            Event::Health(_) => "health",
        }
    }
}

// === impl Sinks ===

impl Sinks {
    /// The given sinks.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Self {
        Self(sinks)
    }

    /// Adds a sink.
    pub fn push(&mut self, sink: Arc<dyn EventSink>) {
        self.0.push(sink);
    }

    /// These sinks followed by `more`.
    pub fn with(mut self, more: Vec<Arc<dyn EventSink>>) -> Self {
        self.0.extend(more);
        self
    }

    /// Hands `event` to every sink.
    pub fn publish(&self, event: &Event) {
        for sink in &self.0 {
            sink.publish(event);
        }
    }
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sinks({})", self.0.len())
    }
}

/// The log: one line per event, with the emoji headlines of the original product.
#[derive(Debug, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn publish(&self, event: &Event) {
        match event {
            Event::Detected(e) => {
                let changes = e.record.as_ref().map_or(0, |r| r.drift_details.len());
                tracing::warn!(resource = %e.resource_id, drift_type = %e.drift_type, severity = %e.severity, changes, fields = %fields(e.record.as_ref()), "⚠️ drift detected");
            }
            Event::Changed(e) => {
                tracing::info!(resource = %e.resource_id, drift_type = %e.drift_type, severity = %e.severity, fields = %fields(e.record.as_ref()), "🔄 drift continued");
            }
            Event::Resolved(e) => {
                let record = e.record.as_ref();
                let message = record
                    .and_then(|r| r.resolution_message.clone())
                    .unwrap_or_else(|| "resource left the view".to_owned());
                let seconds = record
                    .and_then(|r| r.first_detected.map(|f| (e.time - f).num_seconds()))
                    .unwrap_or(0);
                tracing::info!(resource = %e.resource_id, message = %message, drift_seconds = seconds, "✅ drift resolved");
            }
            Event::Analysis(a) => {
                tracing::info!(
                    run_id = %a.run_id,
                    trigger = a.trigger,
                    commit = %short_commit(&a.commit),
                    evaluated = a.counts.evaluated,
                    active = a.counts.active,
                    detected = a.counts.detected,
                    resolved = a.counts.resolved,
                    skipped_unwatched = a.skipped_unwatched,
                    errors = a.errors,
                    duration_ms = a.duration.as_millis() as u64,
                    "📊 analysis completed"
                );
            }
            Event::Health(h) => match h.status {
                Health::Ok => {
                    tracing::info!(component = %h.component, message = %h.message, "component healthy")
                }
                Health::Pending => {
                    tracing::info!(component = %h.component, message = %h.message, "component pending")
                }
                Health::Degraded | Health::Down => {
                    tracing::warn!(component = %h.component, status = ?h.status, message = %h.message, "component unhealthy")
                }
            },
        }
    }
}

/// The metrics: detections, resolutions and analysis runs.
#[derive(Debug)]
pub struct MetricsSink(pub Arc<Metrics>);

impl EventSink for MetricsSink {
    fn publish(&self, event: &Event) {
        let labels = |e: &RecordEvent| TypeLabels {
            r#type: e.drift_type.clone(),
            severity: e.severity.clone(),
        };
        match event {
            Event::Detected(e) => self.0.detections.get_or_create(&labels(e)).inc(),
            Event::Resolved(e) => self.0.resolutions.get_or_create(&labels(e)).inc(),
            Event::Changed(_) | Event::Health(_) => 0,
            Event::Analysis(a) => {
                self.0
                    .analysis_duration
                    .get_or_create(&TriggerLabels {
                        trigger: a.trigger.to_owned(),
                    })
                    .observe(a.duration.as_secs_f64());
                let result = if a.errors == 0 { "success" } else { "error" };
                self.0
                    .analysis_runs
                    .get_or_create(&ResultLabels {
                        result: result.to_owned(),
                    })
                    .inc()
            }
        };
    }
}

/// Every component's health change goes to the sinks too, with its public message.
pub fn publish_health(readiness: &Readiness, sinks: Sinks) {
    readiness.on_change(Box::new(
        move |component: &str, status: Health, message: &str| {
            sinks.publish(&Event::Health(HealthEvent {
                component: component.to_owned(),
                status,
                message: public_message(component, status, message),
                time: Utc::now(),
            }));
        },
    ));
}

/// A record's headline type and severity (`none` when unset).
pub(crate) fn headline(record: &DriftRecord) -> (String, String) {
    (
        record
            .drift_type
            .map_or("none".to_owned(), |t| t.as_str().to_owned()),
        record
            .severity
            .map_or("none".to_owned(), |s| s.as_str().to_owned()),
    )
}

fn fields(record: Option<&DriftRecord>) -> String {
    let Some(record) = record else {
        return String::new();
    };
    let fields: Vec<String> = record
        .drift_details
        .iter()
        .take(5)
        .map(|c| c.field.to_string())
        .collect();
    let more = record.drift_details.len().saturating_sub(5);
    if more > 0 {
        format!("{} (+{more} more)", fields.join(", "))
    } else {
        fields.join(", ")
    }
}

//! Prometheus metrics. Label values are bounded: kinds come from the configured resources,
//! routes are templates, statuses and types are closed sets.

mod text_format;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use self::text_format::openmetrics_to_text;

/// `status`, `severity`, `type`, `kind` of current records.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// active, resolved, none.
    pub status: String,
    /// Headline severity, `none` when not active.
    pub severity: String,
    /// Headline type, `none` when not active.
    pub r#type: String,
    /// Kind.
    pub kind: String,
}

/// Type and severity of a detection or resolution.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    /// Drift type.
    pub r#type: String,
    /// Severity.
    pub severity: String,
}

/// One label: `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success / error (or a closed set per metric).
    pub result: String,
}

/// One label: `trigger`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// manual, periodic, startup, live, git.
    pub trigger: String,
}

/// One label: `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind.
    pub kind: String,
}

/// One label: `commit`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// Full commit SHA.
    pub commit: String,
}

/// HTTP request labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template, e.g. `/api/v1/drift-records/{resourceId}`.
    pub route: String,
    /// Method.
    pub method: String,
    /// Status code.
    pub status: String,
}

/// Store operation labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// Operation: apply, list, get, history, statistics, ping.
    pub operation: String,
    /// success / error.
    pub result: String,
}

/// One label: `sink` (`alertmanager`, `slack`, `webhook/<name>`: the configured sinks).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink.
    pub sink: String,
}

/// `sink` and `result` of notification deliveries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The sink.
    pub sink: String,
    /// `delivered`, `retried` (a failed attempt that will be retried), `rejected` (the sink
    /// refused it with a 4xx: dropped) or `dropped` (past the queue bound).
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Current records by status/severity/type/kind.
    pub records: Family<RecordLabels, Gauge>,
    /// Episodes opened.
    pub detections: Family<TypeLabels, Counter>,
    /// Episodes resolved.
    pub resolutions: Family<TypeLabels, Counter>,
    /// Full analysis duration.
    pub analysis_duration: HistogramFamily<TriggerLabels>,
    /// Full analyses by result.
    pub analysis_runs: Family<ResultLabels, Counter>,
    /// Watch event received → record stored.
    pub detection_latency: Histogram,
    /// Git syncs by result.
    pub git_syncs: Family<ResultLabels, Counter>,
    /// Unix time of the last successful Git sync.
    pub git_last_success: Gauge<f64, AtomicU64>,
    /// 1 for the commit in force.
    pub git_commit: Family<CommitLabels, Gauge>,
    /// Files of the repository that do not parse.
    pub git_parse_errors: Gauge,
    /// Desired objects rendered from Git.
    pub desired_objects: Gauge,
    /// Watched objects per kind.
    pub watched_objects: Family<KindLabels, Gauge>,
    /// Kinds whose watch is forbidden or failing.
    pub watch_errors: Family<KindLabels, Gauge>,
    /// HTTP requests.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP latency.
    pub http_duration: HistogramFamily<HttpLabels>,
    /// Store operations.
    pub store_operations: Family<StoreLabels, Counter>,
    /// Writes waiting in the outage buffer.
    pub store_pending_writes: Gauge,
    /// Notification events by sink and result.
    pub notifications: Family<DeliveryLabels, Counter>,
    /// Notification messages (`POST`s) delivered per sink: a group counts once.
    pub notification_messages: Family<SinkLabels, Counter>,
    /// Notification events waiting per sink.
    pub notification_queue: Family<SinkLabels, Gauge>,
    /// Age of the oldest undelivered notification event per sink (0 when none).
    pub notification_oldest: Family<SinkLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this replica leads (or runs alone), 0 while it follows (issue 19).
    pub leader: Gauge,
    /// The store term this replica writes with while it leads (0 when it never led).
    pub leader_term: Gauge,
    /// Leadership changes of this replica (acquired or lost).
    pub leader_transitions: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let records = Family::<RecordLabels, Gauge>::default();
        let detections = Family::<TypeLabels, Counter>::default();
        let resolutions = Family::<TypeLabels, Counter>::default();
        let analysis_duration: HistogramFamily<TriggerLabels> =
            Family::new_with_constructor(latency_histogram);
        let analysis_runs = Family::<ResultLabels, Counter>::default();
        let detection_latency = latency_histogram();
        let git_syncs = Family::<ResultLabels, Counter>::default();
        let git_last_success = Gauge::<f64, AtomicU64>::default();
        let git_commit = Family::<CommitLabels, Gauge>::default();
        let git_parse_errors = Gauge::default();
        let desired_objects = Gauge::default();
        let watched_objects = Family::<KindLabels, Gauge>::default();
        let watch_errors = Family::<KindLabels, Gauge>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        let store_operations = Family::<StoreLabels, Counter>::default();
        let store_pending_writes = Gauge::default();
        let notifications = Family::<DeliveryLabels, Counter>::default();
        let notification_messages = Family::<SinkLabels, Counter>::default();
        let notification_queue = Family::<SinkLabels, Gauge>::default();
        let notification_oldest = Family::<SinkLabels, Gauge<f64, AtomicU64>>::default();
        let leader = Gauge::default();
        let leader_term = Gauge::default();
        let leader_transitions = Counter::default();

        let r = &mut registry;
        r.register(
            "driftguard_drift_records",
            "Current drift records by status, headline severity, headline type and kind",
            records.clone(),
        );
        r.register(
            "driftguard_detections",
            "Drift episodes opened",
            detections.clone(),
        );
        r.register(
            "driftguard_resolutions",
            "Drift episodes resolved",
            resolutions.clone(),
        );
        r.register(
            "driftguard_analysis_duration_seconds",
            "Duration of full analyses",
            analysis_duration.clone(),
        );
        r.register(
            "driftguard_analysis_runs",
            "Full analyses by result",
            analysis_runs.clone(),
        );
        r.register(
            "driftguard_detection_latency_seconds",
            "Time from a watch event being received to its record being stored",
            detection_latency.clone(),
        );
        r.register(
            "driftguard_git_syncs",
            "Git fetches by result",
            git_syncs.clone(),
        );
        r.register(
            "driftguard_git_last_success_timestamp_seconds",
            "Unix time of the last successful Git sync",
            git_last_success.clone(),
        );
        r.register(
            "driftguard_git_commit_info",
            "The commit in force (value 1)",
            git_commit.clone(),
        );
        r.register(
            "driftguard_git_unparsable_files",
            "Repository files that do not parse at the commit in force",
            git_parse_errors.clone(),
        );
        r.register(
            "driftguard_desired_objects",
            "Objects rendered from Git",
            desired_objects.clone(),
        );
        r.register(
            "driftguard_watched_objects",
            "Live objects held per kind",
            watched_objects.clone(),
        );
        r.register(
            "driftguard_watch_failing",
            "1 while a kind's watch is forbidden or failing, else 0",
            watch_errors.clone(),
        );
        r.register(
            "driftguard_http_requests",
            "HTTP requests by route template, method and status",
            http_requests.clone(),
        );
        r.register(
            "driftguard_http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        r.register(
            "driftguard_store_operations",
            "Store operations by result",
            store_operations.clone(),
        );
        r.register(
            "driftguard_store_pending_writes",
            "Writes waiting in the outage buffer",
            store_pending_writes.clone(),
        );
        r.register(
            "driftguard_notifications",
            "Notification events by sink and result (delivered, retried, rejected, dropped)",
            notifications.clone(),
        );
        r.register(
            "driftguard_notification_messages",
            "Notification messages delivered per sink (a group of events counts once)",
            notification_messages.clone(),
        );
        r.register(
            "driftguard_notification_queue_depth",
            "Notification events waiting per sink",
            notification_queue.clone(),
        );
        r.register(
            "driftguard_notification_oldest_undelivered_seconds",
            "Age of the oldest undelivered notification event per sink (0 when none)",
            notification_oldest.clone(),
        );
        r.register(
            "driftguard_leader",
            "1 while this replica leads (or runs alone), 0 while it follows",
            leader.clone(),
        );
        r.register(
            "driftguard_leader_term",
            "The store term this replica writes with while it leads",
            leader_term.clone(),
        );
        r.register(
            "driftguard_leader_transitions",
            "Times this replica started or stopped leading",
            leader_transitions.clone(),
        );

        // Series of closed label sets exist from the start, so dashboards and alert rules see
        // them (at zero) before the first event.
        for t in driftguard_core::DriftType::ALL {
            for s in driftguard_core::Severity::ALL {
                let labels = TypeLabels {
                    r#type: t.as_str().to_owned(),
                    severity: s.as_str().to_owned(),
                };
                let _ = detections.get_or_create(&labels);
                let _ = resolutions.get_or_create(&labels);
            }
        }
        for result in ["success", "error"] {
            let labels = ResultLabels {
                result: result.to_owned(),
            };
            let _ = analysis_runs.get_or_create(&labels);
            let _ = git_syncs.get_or_create(&labels);
        }
        for trigger in ["startup", "periodic", "manual"] {
            let _ = analysis_duration.get_or_create(&TriggerLabels {
                trigger: trigger.to_owned(),
            });
        }
        Self {
            registry,
            records,
            detections,
            resolutions,
            analysis_duration,
            analysis_runs,
            detection_latency,
            git_syncs,
            git_last_success,
            git_commit,
            git_parse_errors,
            desired_objects,
            watched_objects,
            watch_errors,
            http_requests,
            http_duration,
            store_operations,
            store_pending_writes,
            notifications,
            notification_messages,
            notification_queue,
            notification_oldest,
            leader,
            leader_term,
            leader_transitions,
        }
    }

    /// The OpenMetrics 1.0.0 text exposition ([`OPENMETRICS_CONTENT_TYPE`]), `# EOF` at the end.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text exposition 0.0.4 ([`TEXT_CONTENT_TYPE`]), for scrapers that
    /// do not ask for OpenMetrics (and for `promtool check metrics`).
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// Counts a store operation.
    pub fn store_op(&self, operation: &str, ok: bool) {
        self.store_operations
            .get_or_create(&StoreLabels {
                operation: operation.to_owned(),
                result: if ok { "success" } else { "error" }.to_owned(),
            })
            .inc();
    }
}

/// Content type of the OpenMetrics exposition ([`Metrics::encode`]).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text exposition ([`Metrics::encode_text`]).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let m = Metrics::new();
        m.store_op("apply", true);
        m.detection_latency.observe(0.05);
        m.records
            .get_or_create(&RecordLabels {
                status: "active".into(),
                severity: "medium".into(),
                r#type: "Scaling".into(),
                kind: "Deployment".into(),
            })
            .set(1);
        let text = m.encode();
        for name in [
            "driftguard_drift_records{status=\"active\",severity=\"medium\",type=\"Scaling\",kind=\"Deployment\"} 1",
            "driftguard_detections_total{type=\"Scaling\",severity=\"medium\"} 0",
            "driftguard_resolutions_total{type=\"MissingResource\",severity=\"high\"} 0",
            "driftguard_analysis_runs_total{result=\"error\"} 0",
            "driftguard_git_syncs_total{result=\"success\"} 0",
            "driftguard_analysis_duration_seconds_count{trigger=\"periodic\"} 0",
            "driftguard_detection_latency_seconds_bucket",
            "driftguard_store_operations_total{operation=\"apply\",result=\"success\"} 1",
            "driftguard_git_last_success_timestamp_seconds",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    }

    #[test]
    fn text_format_names_counter_families_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.store_op("apply", true);
        let text = m.encode_text();
        assert!(text.contains("# TYPE driftguard_store_operations_total counter\n"));
        assert!(
            text.contains("# HELP driftguard_store_operations_total Store operations by result.\n")
        );
        assert!(text.contains("# TYPE driftguard_store_pending_writes gauge\n"));
        assert!(text.contains("# TYPE driftguard_detection_latency_seconds histogram\n"));
        assert!(!text.contains("# EOF"));
    }
}

//! Notifications (issue 17, contract §9): what Alertmanager, a Slack-compatible webhook and
//! generic webhooks are sent, and which events each sink takes.
//!
//! [`payload`] turns a [`Notice`] (a record event) into the JSON each sink receives, [`route`]
//! decides whether a sink takes it (both pure); [`deliver`] posts one group of messages to a
//! sink, and [`worker`] is the event sink `serve` publishes to: an outbox in the store, one
//! worker per sink with grouping, retries and Alertmanager's re-sends.
//!
//! Secret values never reach a payload: records hold Secret data only as keyed digests
//! (contract §2.3), payloads carry changes but never the desired or live objects, and the
//! sinks' own secrets (signing secrets, URLs with tokens) are only used to sign and address.

pub mod deliver;
pub mod payload;
pub mod route;
pub mod worker;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftType, Severity};

use crate::sink::{Event, RecordEvent};

/// The event kinds a sink can be told about (`notifications.*.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A drift episode opened.
    Detected,
    /// An open episode's changes or severity changed.
    Changed,
    /// An episode closed.
    Resolved,
    /// A component's health changed.
    Health,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 4] = [
        EventKind::Detected,
        EventKind::Changed,
        EventKind::Resolved,
        EventKind::Health,
    ];

    /// `detected`, `changed`, `resolved` or `health`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Detected => "detected",
            EventKind::Changed => "changed",
            EventKind::Resolved => "resolved",
            EventKind::Health => "health",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown event {s:?} (expected detected, changed, resolved or health)")
            })
    }
}

/// One record event as the sinks see it.
///
/// `drift_type` and `severity` are the episode's: a resolved record has neither, so the
/// event carries the values the episode had before it closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// What happened (never [`EventKind::Health`]).
    pub event: EventKind,
    /// The record after the event.
    pub record: DriftRecord,
    /// Headline drift type of the episode.
    pub drift_type: Option<DriftType>,
    /// Headline severity of the episode.
    pub severity: Option<Severity>,
    /// When the event was seen.
    pub time: DateTime<Utc>,
}

impl Notice {
    /// A notice whose episode type and severity are the record's own (right while active).
    pub fn new(event: EventKind, record: DriftRecord, time: DateTime<Utc>) -> Self {
        Self {
            event,
            drift_type: record.drift_type,
            severity: record.severity,
            record,
            time,
        }
    }

    /// The notice for a pipeline event: `None` for analysis and health events, and for a
    /// record event without its record (the resource left the view before it was written).
    /// The record's states are dropped: no payload needs them.
    pub fn from_event(event: &Event) -> Option<Self> {
        let (kind, e): (EventKind, &RecordEvent) = match event {
            Event::Detected(e) => (EventKind::Detected, e),
            Event::Changed(e) => (EventKind::Changed, e),
            Event::Resolved(e) => (EventKind::Resolved, e),
            Event::Analysis(_) | Event::Health(_) => return None,
        };
        let mut record = e.record.clone()?;
        record.desired_state = None;
        record.live_state = None;
        Some(Self {
            event: kind,
            drift_type: e.drift_type.parse().ok().or(record.drift_type),
            severity: e.severity.parse().ok().or(record.severity),
            record,
            time: e.time,
        })
    }
}

/// Where links in payloads point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The address DriftGuard is reached at from where the notification is read
    /// (`https://driftguard.example.com`); without it payloads carry no links.
    pub base_url: Option<String>,
}

impl Links {
    /// `<base>/api/v1/drift-records/<resource id>`.
    pub fn record(&self, resource_id: &str) -> Option<String> {
        let base = self.base_url.as_deref()?.trim_end_matches('/');
        Some(format!(
            "{base}/api/v1/drift-records/{}",
            encode_path_segment(resource_id)
        ))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `:`.
fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]
    //! Records for the payload and routing tests.

    use chrono::TimeZone;
    use driftguard_core::{Change, DriftStatus, FieldPath, Op};
    use serde_json::json;

    use super::*;

    pub fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 10, minute, 0).unwrap()
    }

    pub fn change(field: &str, from: serde_json::Value, to: serde_json::Value) -> Change {
        Change {
            field: FieldPath::parse(field).unwrap(),
            op: Op::Changed,
            from: Some(from),
            to: Some(to),
            drift_type: DriftType::Scaling,
            severity: Severity::Medium,
            manager: Some("kubectl-edit".to_owned()),
            changed_at: Some(at(1)),
            source_line: None,
        }
    }

    /// An active record of `kind/namespace/name` with one `spec.replicas` change.
    pub fn record(kind: &str, namespace: &str, name: &str) -> DriftRecord {
        let resource_id = format!("{kind}:{namespace}:{name}");
        DriftRecord {
            id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, resource_id.as_bytes()),
            resource_id,
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            api_version: "apps/v1".to_owned(),
            drift_detected: true,
            drift_status: DriftStatus::Active,
            drift_details: vec![change("spec.replicas", json!(3), json!(5))],
            warnings: Vec::new(),
            drift_type: Some(DriftType::Scaling),
            severity: Some(Severity::Medium),
            desired_state: Some(json!({"spec": {"replicas": 3}})),
            live_state: Some(json!({"spec": {"replicas": 5}})),
            last_known_good_hash: Some("aaaa".to_owned()),
            live_hash: Some("bbbb".to_owned()),
            git_commit: Some("0123456789abcdef".to_owned()),
            source_path: Some("apps/web.yaml#0".to_owned()),
            source_line: None,
            helm_release: None,
            managed: true,
            first_detected: Some(at(2)),
            resolved_at: None,
            resolution_message: None,
            last_updated: at(2),
            created_at: at(0),
        }
    }

    /// The same record after its episode closed.
    pub fn resolved(mut record: DriftRecord) -> Notice {
        let (drift_type, severity) = (record.drift_type, record.severity);
        record.drift_detected = false;
        record.drift_status = DriftStatus::Resolved;
        record.drift_details.clear();
        record.drift_type = None;
        record.severity = None;
        record.resolved_at = Some(at(7));
        record.resolution_message = Some("matches Git again (commit 0123456)".to_owned());
        record.last_updated = at(7);
        Notice {
            event: EventKind::Resolved,
            record,
            drift_type,
            severity,
            time: at(7),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::testing::*;
    use super::*;

    #[test]
    fn event_kinds_round_trip_and_unknown_ones_are_named() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        }
        assert!(
            "deleted"
                .parse::<EventKind>()
                .unwrap_err()
                .contains("deleted")
        );
    }

    #[test]
    fn a_notice_from_a_pipeline_event_keeps_the_episode_and_drops_the_states() {
        let resolved = resolved(record("Deployment", "prod", "web"));
        let event = Event::Resolved(RecordEvent {
            resource_id: resolved.record.resource_id.clone(),
            record: Some(resolved.record.clone()),
            drift_type: "Scaling".to_owned(),
            severity: "medium".to_owned(),
            time: at(7),
        });
        let notice = Notice::from_event(&event).unwrap();
        assert_eq!(notice.event, EventKind::Resolved);
        assert_eq!(notice.drift_type, Some(DriftType::Scaling));
        assert_eq!(notice.severity, Some(Severity::Medium));
        assert_eq!(notice.record.live_state, None);
        assert_eq!(notice.record.desired_state, None);

        let gone = Event::Resolved(RecordEvent {
            resource_id: "Deployment:prod:web".to_owned(),
            record: None,
            drift_type: "none".to_owned(),
            severity: "none".to_owned(),
            time: at(7),
        });
        assert_eq!(Notice::from_event(&gone), None);
    }

    #[test]
    fn record_links_use_the_api_path_and_encode_the_id() {
        let links = Links {
            base_url: Some("https://dg.example.com/".to_owned()),
        };
        assert_eq!(
            links.record("Deployment:prod:web").unwrap(),
            "https://dg.example.com/api/v1/drift-records/Deployment:prod:web"
        );
        assert_eq!(
            links.record("ClusterRole::system:a b").unwrap(),
            "https://dg.example.com/api/v1/drift-records/ClusterRole::system:a%20b"
        );
        assert_eq!(Links::default().record("Deployment:prod:web"), None);
    }
}

//! Notification fixtures shared by `tests/notify_delivery.rs` and `benches/notify.rs`: sink
//! configurations pointing at a local receiver, and record events.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use driftguard_config::{AlertmanagerConfig, NotificationsConfig, SlackConfig, WebhookConfig};
use driftguard_core::DriftRecord;
use driftguard_server::sink::{Event, RecordEvent};
use driftguard_test_support::receiver::Receiver;
use serde_json::json;

/// The webhook's signing secret.
pub const SECRET: &str = "whsec-delivery-test";
const EVENTS: &[&str] = &["detected", "changed", "resolved"];

pub fn events() -> Vec<String> {
    EVENTS.iter().map(|e| (*e).to_owned()).collect()
}

pub fn webhook(url: String) -> WebhookConfig {
    WebhookConfig {
        name: "ops".to_owned(),
        url,
        secret: Some(SECRET.to_owned()),
        headers: BTreeMap::from([("X-Team".to_owned(), "platform".to_owned())]),
        min_severity: "low".to_owned(),
        namespaces: Vec::new(),
        kinds: Vec::new(),
        drift_types: Vec::new(),
        events: events(),
    }
}

/// Alertmanager, Slack and one webhook, all on `receiver` (paths `/am`, `/slack`, `/hook`).
pub fn three_sinks(receiver: &Receiver) -> NotificationsConfig {
    NotificationsConfig {
        external_url: Some("https://driftguard.example.com".to_owned()),
        alertmanager: Some(AlertmanagerConfig {
            url: receiver.url("/am"),
            resend_interval: Duration::from_secs(3600),
            min_severity: "low".to_owned(),
            namespaces: Vec::new(),
            kinds: Vec::new(),
            drift_types: Vec::new(),
            events: events(),
        }),
        slack: Some(SlackConfig {
            webhook_url: receiver.url("/slack"),
            min_severity: "low".to_owned(),
            namespaces: Vec::new(),
            kinds: Vec::new(),
            drift_types: Vec::new(),
            events: events(),
        }),
        webhooks: vec![webhook(receiver.url("/hook"))],
    }
}

pub fn record(namespace: &str, name: &str, replicas: u64) -> DriftRecord {
    let resource_id = format!("Deployment:{namespace}:{name}");
    serde_json::from_value(json!({
        "id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, resource_id.as_bytes()),
        "resource_id": resource_id,
        "kind": "Deployment",
        "namespace": namespace,
        "name": name,
        "api_version": "apps/v1",
        "drift_detected": true,
        "drift_status": "active",
        "drift_details": [{
            "field": "spec.replicas", "op": "changed", "from": 2, "to": replicas,
            "type": "Scaling", "severity": "medium", "manager": "kubectl-scale",
            "changed_at": "2026-11-30T10:00:00Z"
        }],
        "warnings": [],
        "drift_type": "Scaling",
        "severity": "medium",
        "desired_state": null,
        "live_state": null,
        "last_known_good_hash": null,
        "live_hash": null,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "source_path": "apps/deploy.yaml#0",
        "managed": true,
        "first_detected": "2026-11-30T10:00:00Z",
        "resolved_at": null,
        "resolution_message": null,
        "last_updated": "2026-11-30T10:00:00Z",
        "created_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap()
}

pub fn detected(record: DriftRecord) -> Event {
    Event::Detected(RecordEvent {
        resource_id: record.resource_id.clone(),
        drift_type: "Scaling".to_owned(),
        severity: "medium".to_owned(),
        record: Some(record),
        time: Utc::now(),
    })
}

pub fn resolved(mut record: DriftRecord) -> Event {
    record.drift_status = driftguard_core::DriftStatus::Resolved;
    record.drift_detected = false;
    record.drift_details.clear();
    record.drift_type = None;
    record.severity = None;
    record.resolved_at = Some(Utc::now());
    record.resolution_message = Some("live object matches Git again".to_owned());
    Event::Resolved(RecordEvent {
        resource_id: record.resource_id.clone(),
        drift_type: "Scaling".to_owned(),
        severity: "medium".to_owned(),
        record: Some(record),
        time: Utc::now(),
    })
}

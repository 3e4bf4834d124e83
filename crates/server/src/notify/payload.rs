//! What each sink is sent (contract §9): Alertmanager v2 alerts, Slack incoming-webhook
//! messages, and the versioned generic webhook body with its HMAC-SHA256 signature.
//!
//! Payloads carry a record's identity, status and changes, never its desired or live objects;
//! Secret values in changes are the keyed digests the record already holds.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use driftguard_config::WebhookConfig;
use driftguard_core::state::short_commit;
use driftguard_core::{Change, DriftStatus};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{EventKind, Links, Notice};
use crate::sink::HealthEvent;

/// `alertname` of every alert.
pub const ALERT_NAME: &str = "KubernetesDrift";
/// The generic webhook body's `version`.
pub const WEBHOOK_VERSION: u64 = 1;
/// `sha256=<hex HMAC-SHA256 of the body>`, when the webhook has a secret.
pub const SIGNATURE_HEADER: &str = "X-DriftGuard-Signature";
/// The event name (`detected`, …) of a webhook delivery.
pub const EVENT_HEADER: &str = "X-DriftGuard-Event";
/// The body's `idempotency_key`, repeated for receivers that dedupe on headers.
pub const IDEMPOTENCY_HEADER: &str = "X-DriftGuard-Idempotency-Key";
/// Resources listed in one Slack message; the rest are counted.
pub const SLACK_MAX_LISTED: usize = 20;
/// Changed fields listed per resource in a Slack message; the rest are counted.
pub const SLACK_MAX_FIELDS: usize = 10;
/// Characters of a value shown in Slack before it is cut with `…`.
const SLACK_MAX_VALUE: usize = 80;
/// Characters of the Alertmanager `description` annotation before it is cut.
const ALERT_MAX_DESCRIPTION: usize = 4000;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn severity_name(notice: &Notice) -> &'static str {
    notice.severity.map_or("none", |s| s.as_str())
}

fn drift_type_name(notice: &Notice) -> &'static str {
    notice.drift_type.map_or("none", |t| t.as_str())
}

/// `Kind/namespace/name`, or `Kind/name` for a cluster-scoped resource.
fn display_name(notice: &Notice) -> String {
    let r = &notice.record;
    if r.namespace.is_empty() {
        format!("{}/{}", r.kind, r.name)
    } else {
        format!("{}/{}/{}", r.kind, r.namespace, r.name)
    }
}

/// The managers that wrote the changed fields, sorted, once each.
fn managers(changes: &[Change]) -> Vec<&str> {
    changes
        .iter()
        .filter_map(|c| c.manager.as_deref())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A value as text: strings bare, anything else as compact JSON, `(absent)` for none.
fn value_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `field: from → to`.
fn change_line(change: &Change, max_value: usize) -> String {
    format!(
        "{}: {} → {}",
        change.field,
        cut(&value_text(change.from.as_ref()), max_value),
        cut(&value_text(change.to.as_ref()), max_value)
    )
}

/// One line saying what happened.
fn summary(notice: &Notice) -> String {
    let what = display_name(notice);
    match notice.event {
        EventKind::Detected => format!(
            "{what} drifted from Git ({}, severity {})",
            drift_type_name(notice),
            severity_name(notice)
        ),
        EventKind::Changed => format!(
            "{what} drift changed ({}, severity {})",
            drift_type_name(notice),
            severity_name(notice)
        ),
        EventKind::Resolved => match time_to_resolve(notice) {
            Some(took) => format!("{what} matches Git again after {took}"),
            None => format!("{what} matches Git again"),
        },
        EventKind::Health => what,
    }
}

/// The episode's length, e.g. `5m`, when it is resolved.
fn time_to_resolve(notice: &Notice) -> Option<String> {
    let r = &notice.record;
    let seconds = (r.resolved_at? - r.first_detected?).num_seconds().max(0);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    Some(if out.is_empty() { "0s".to_owned() } else { out })
}

// === Alertmanager ===

/// The labels of a notice's alert. They identify the alert to Alertmanager: when an episode's
/// severity or drift type changes, the alert under the old labels must be ended separately.
/// `namespace` is left out for a cluster-scoped resource (Prometheus reads an empty label as
/// absent).
pub fn alert_labels(notice: &Notice) -> Map<String, Value> {
    let r = &notice.record;
    let mut labels = Map::new();
    labels.insert("alertname".into(), ALERT_NAME.into());
    labels.insert("severity".into(), severity_name(notice).into());
    if !r.namespace.is_empty() {
        labels.insert("namespace".into(), r.namespace.clone().into());
    }
    labels.insert("kind".into(), r.kind.clone().into());
    labels.insert("name".into(), r.name.clone().into());
    labels.insert("drift_type".into(), drift_type_name(notice).into());
    labels.insert("resource_id".into(), r.resource_id.clone().into());
    labels
}

/// One Alertmanager v2 alert (an element of the `POST /api/v2/alerts` array).
///
/// `startsAt` is the episode's start; `endsAt` is set on `resolved` (the resolution time) and
/// left out otherwise, so Alertmanager keeps the alert for its `resolve_timeout` after each send.
pub fn alertmanager_alert(notice: &Notice, links: &Links) -> Value {
    let r = &notice.record;
    let mut annotations = Map::new();
    annotations.insert("summary".into(), summary(notice).into());
    if !r.drift_details.is_empty() {
        let fields: Vec<String> = r
            .drift_details
            .iter()
            .map(|c| c.field.to_string())
            .collect();
        annotations.insert("changed_fields".into(), fields.join(", ").into());
        let lines: Vec<String> = r
            .drift_details
            .iter()
            .map(|c| change_line(c, SLACK_MAX_VALUE))
            .collect();
        annotations.insert(
            "description".into(),
            cut(&lines.join("\n"), ALERT_MAX_DESCRIPTION).into(),
        );
        let managers = managers(&r.drift_details);
        if !managers.is_empty() {
            annotations.insert("manager".into(), managers.join(", ").into());
        }
    }
    if let Some(message) = &r.resolution_message
        && notice.event == EventKind::Resolved
    {
        annotations.insert("resolution".into(), message.clone().into());
    }
    if let Some(commit) = &r.git_commit {
        annotations.insert("git_commit".into(), commit.clone().into());
    }
    if let Some(source) = &r.source_path {
        annotations.insert("source_path".into(), source.clone().into());
    }
    let link = links.record(&r.resource_id);
    if let Some(link) = &link {
        annotations.insert("record".into(), link.clone().into());
    }
    let mut alert = Map::new();
    alert.insert("labels".into(), Value::Object(alert_labels(notice)));
    alert.insert("annotations".into(), Value::Object(annotations));
    alert.insert(
        "startsAt".into(),
        time(r.first_detected.unwrap_or(notice.time)).into(),
    );
    if notice.event == EventKind::Resolved {
        alert.insert(
            "endsAt".into(),
            time(r.resolved_at.unwrap_or(notice.time)).into(),
        );
    }
    if let Some(link) = link {
        alert.insert("generatorURL".into(), link.into());
    }
    Value::Object(alert)
}

/// The body of one `POST /api/v2/alerts`: an array of alerts.
pub fn alertmanager_alerts(notices: &[Notice], links: &Links) -> Value {
    Value::Array(
        notices
            .iter()
            .map(|n| alertmanager_alert(n, links))
            .collect(),
    )
}

// === Slack ===

/// Slack's three characters with meaning in message text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_icon(notice: &Notice) -> &'static str {
    match (notice.event, notice.severity) {
        (EventKind::Resolved, _) => ":white_check_mark:",
        (_, Some(driftguard_core::Severity::High)) => ":red_circle:",
        (_, Some(driftguard_core::Severity::Medium)) => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    }
}

fn slack_entry(notice: &Notice, links: &Links) -> String {
    let r = &notice.record;
    let mut lines = vec![format!(
        "{} *{}* `{}` — {}, severity *{}*",
        slack_icon(notice),
        notice.event,
        slack_escape(&display_name(notice)),
        drift_type_name(notice),
        severity_name(notice)
    )];
    for change in r.drift_details.iter().take(SLACK_MAX_FIELDS) {
        let mut line = format!(
            "    • `{}`",
            slack_escape(&change_line(change, SLACK_MAX_VALUE))
        );
        if let Some(manager) = &change.manager {
            line.push_str(&format!(" by {}", slack_escape(manager)));
        }
        if let Some(at) = change.changed_at {
            line.push_str(&format!(" at {}", time(at)));
        }
        lines.push(line);
    }
    if r.drift_details.len() > SLACK_MAX_FIELDS {
        lines.push(format!(
            "    • and {} more fields",
            r.drift_details.len() - SLACK_MAX_FIELDS
        ));
    }
    if notice.event == EventKind::Resolved {
        let mut line = format!(
            "    resolved at {}",
            time(r.resolved_at.unwrap_or(notice.time))
        );
        if let Some(took) = time_to_resolve(notice) {
            line.push_str(&format!(" after {took}"));
        }
        if let Some(message) = &r.resolution_message {
            line.push_str(&format!(": {}", slack_escape(message)));
        }
        lines.push(line);
    } else {
        lines.push(format!("    seen at {}", time(notice.time)));
    }
    if let Some(link) = links.record(&r.resource_id) {
        lines.push(format!("    <{link}|record>"));
    }
    lines.join("\n")
}

/// One Slack incoming-webhook message (`{"text": …}`, mrkdwn) for a group of record events:
/// a headline counting them by event, then each resource with its changed fields (`from → to`,
/// manager, time). At most [`SLACK_MAX_LISTED`] resources are listed, then `and N more`.
pub fn slack_message(notices: &[Notice], links: &Links) -> Value {
    let count = |kind: EventKind| notices.iter().filter(|n| n.event == kind).count();
    let counts: Vec<String> = [EventKind::Detected, EventKind::Changed, EventKind::Resolved]
        .into_iter()
        .filter(|k| count(*k) > 0)
        .map(|k| format!("{} {k}", count(k)))
        .collect();
    let headline = if notices.len() == 1 {
        format!("*DriftGuard*: {}", slack_escape(&summary(&notices[0])))
    } else {
        format!(
            "*DriftGuard*: {} resources ({})",
            notices.len(),
            counts.join(", ")
        )
    };
    let mut parts = vec![headline];
    parts.extend(
        notices
            .iter()
            .take(SLACK_MAX_LISTED)
            .map(|n| slack_entry(n, links)),
    );
    if notices.len() > SLACK_MAX_LISTED {
        parts.push(format!("…and {} more", notices.len() - SLACK_MAX_LISTED));
    }
    json!({ "text": parts.join("\n") })
}

/// A Slack message for components' health changes, a line each.
pub fn slack_health_message(events: &[&HealthEvent]) -> Value {
    let lines: Vec<String> = events
        .iter()
        .map(|event| {
            format!(
                "*DriftGuard*: component `{}` is *{}*: {} ({})",
                slack_escape(&event.component),
                health_name(event),
                slack_escape(&event.message),
                time(event.time)
            )
        })
        .collect();
    json!({ "text": lines.join("\n") })
}

fn health_name(event: &HealthEvent) -> String {
    serde_json::to_value(event.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

// === Generic webhook ===

/// `<record uuid>:<episode first_detected>:<event>`, the same for every delivery of one event.
/// An episode may change more than once, so a `changed` key also carries the record's
/// `last_updated`: `<uuid>:<first_detected>:changed:<last_updated>`.
pub fn idempotency_key(notice: &Notice) -> String {
    let r = &notice.record;
    let first = r.first_detected.map(time).unwrap_or_default();
    match notice.event {
        EventKind::Changed => format!("{}:{first}:changed:{}", r.id, time(r.last_updated)),
        event => format!("{}:{first}:{event}", r.id),
    }
}

/// The generic webhook body (version 1):
///
/// ```json
/// { "version": 1, "event": "detected", "idempotency_key": "…", "time": "…",
///   "record": { "id", "resource_id", "kind", "namespace", "name", "api_version",
///               "drift_status", "drift_type", "severity", "changes": [contract §2.1 changes],
///               "managers", "managed", "git_commit", "source_path", "helm_release",
///               "first_detected", "resolved_at", "resolution_message", "last_updated", "url" } }
/// ```
///
/// `drift_type` and `severity` are the episode's (kept on `resolved`); a `resolved` body adds
/// `duration_seconds`. Fields without a value are `null`.
pub fn webhook_body(notice: &Notice, links: &Links) -> Value {
    let r = &notice.record;
    let duration = match (r.first_detected, r.resolved_at) {
        (Some(start), Some(end)) if notice.event == EventKind::Resolved => {
            Some((end - start).num_seconds())
        }
        _ => None,
    };
    let status = match r.drift_status {
        DriftStatus::Active => "active",
        DriftStatus::Resolved => "resolved",
        DriftStatus::None => "none",
    };
    json!({
        "version": WEBHOOK_VERSION,
        "event": notice.event.as_str(),
        "idempotency_key": idempotency_key(notice),
        "time": time(notice.time),
        "record": {
            "id": r.id,
            "resource_id": r.resource_id,
            "kind": r.kind,
            "namespace": r.namespace,
            "name": r.name,
            "api_version": r.api_version,
            "drift_status": status,
            "drift_type": notice.drift_type.map(|t| t.as_str()),
            "severity": notice.severity.map(|s| s.as_str()),
            "changes": r.drift_details,
            "managers": managers(&r.drift_details),
            "managed": r.managed,
            "git_commit": r.git_commit,
            "git_commit_short": r.git_commit.as_deref().map(short_commit),
            "source_path": r.source_path,
            "helm_release": r.helm_release,
            "first_detected": r.first_detected.map(time),
            "resolved_at": r.resolved_at.map(time),
            "resolution_message": r.resolution_message,
            "duration_seconds": duration,
            "last_updated": time(r.last_updated),
            "url": links.record(&r.resource_id),
        },
    })
}

/// The generic webhook body for a component's health change:
/// `{ "version": 1, "event": "health", "idempotency_key", "time", "health": { component, status, message } }`.
pub fn webhook_health_body(event: &HealthEvent) -> Value {
    let status = health_name(event);
    json!({
        "version": WEBHOOK_VERSION,
        "event": EventKind::Health.as_str(),
        "idempotency_key": format!("health:{}:{status}:{}", event.component, time(event.time)),
        "time": time(event.time),
        "health": {
            "component": event.component,
            "status": status,
            "message": event.message,
        },
    })
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; the error arm exists only for fixed-key MACs.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return "sha256=".to_owned();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers of one webhook delivery of `body`: JSON content type, the event, the
/// idempotency key, the signature when the webhook has a secret, then the configured ones
/// (which cannot replace these; the configuration refuses them).
pub fn webhook_headers(
    config: &WebhookConfig,
    event: &str,
    idempotency_key: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (EVENT_HEADER.to_owned(), event.to_owned()),
        (IDEMPOTENCY_HEADER.to_owned(), idempotency_key.to_owned()),
    ];
    if let Some(secret) = &config.secret {
        headers.push((
            SIGNATURE_HEADER.to_owned(),
            signature(secret.as_bytes(), body),
        ));
    }
    headers.extend(config.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    headers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use driftguard_core::{DriftType, SecretHasher, Severity};
    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::health::Health;

    fn links() -> Links {
        Links {
            base_url: Some("https://dg.example.com".to_owned()),
        }
    }

    fn detected() -> Notice {
        Notice::new(
            EventKind::Detected,
            record("Deployment", "prod", "web"),
            at(2),
        )
    }

    #[test]
    fn an_alert_carries_the_contract_labels_and_annotations() {
        let alert = alertmanager_alert(&detected(), &links());
        assert_eq!(
            alert["labels"],
            json!({
                "alertname": "KubernetesDrift",
                "severity": "medium",
                "namespace": "prod",
                "kind": "Deployment",
                "name": "web",
                "drift_type": "Scaling",
                "resource_id": "Deployment:prod:web",
            })
        );
        let a = &alert["annotations"];
        assert_eq!(
            a["summary"],
            "Deployment/prod/web drifted from Git (Scaling, severity medium)"
        );
        assert_eq!(a["changed_fields"], "spec.replicas");
        assert_eq!(a["description"], "spec.replicas: 3 → 5");
        assert_eq!(a["manager"], "kubectl-edit");
        assert_eq!(
            a["record"],
            "https://dg.example.com/api/v1/drift-records/Deployment:prod:web"
        );
        assert_eq!(alert["generatorURL"], a["record"]);
        assert_eq!(alert["startsAt"], "2026-11-30T10:02:00.000Z");
        assert!(alert.get("endsAt").is_none());
        // Every label value and annotation is a string (Alertmanager's LabelSet).
        for (_, v) in alert["labels"].as_object().unwrap() {
            assert!(v.is_string());
        }
        for (_, v) in alert["annotations"].as_object().unwrap() {
            assert!(v.is_string());
        }
    }

    #[test]
    fn a_resolved_alert_keeps_its_labels_and_ends() {
        let open = alertmanager_alert(&detected(), &links());
        let closed = alertmanager_alert(&resolved(record("Deployment", "prod", "web")), &links());
        assert_eq!(
            open["labels"], closed["labels"],
            "same alert to Alertmanager"
        );
        assert_eq!(closed["startsAt"], "2026-11-30T10:02:00.000Z");
        assert_eq!(closed["endsAt"], "2026-11-30T10:07:00.000Z");
        assert_eq!(
            closed["annotations"]["summary"],
            "Deployment/prod/web matches Git again after 5m"
        );
        assert_eq!(
            closed["annotations"]["resolution"],
            "matches Git again (commit 0123456)"
        );
    }

    #[test]
    fn a_cluster_scoped_alert_has_no_namespace_label_and_no_links_without_a_base() {
        let mut r = record("ClusterRole", "", "admin");
        r.severity = Some(Severity::High);
        r.drift_type = Some(DriftType::SecurityChange);
        let alerts = alertmanager_alerts(
            &[Notice::new(EventKind::Detected, r, at(2))],
            &Links::default(),
        );
        let alert = &alerts[0];
        assert!(alert["labels"].get("namespace").is_none());
        assert_eq!(alert["labels"]["severity"], "high");
        assert_eq!(alert["labels"]["resource_id"], "ClusterRole::admin");
        assert!(alert.get("generatorURL").is_none());
        assert!(alert["annotations"].get("record").is_none());
    }

    #[test]
    fn a_slack_message_names_resource_severity_fields_manager_and_time() {
        let text = slack_message(&[detected()], &links())["text"]
            .as_str()
            .unwrap()
            .to_owned();
        for expected in [
            "Deployment/prod/web drifted from Git (Scaling, severity medium)",
            "*detected* `Deployment/prod/web`",
            "severity *medium*",
            "spec.replicas: 3 → 5",
            "by kubectl-edit",
            "at 2026-11-30T10:01:00.000Z",
            "<https://dg.example.com/api/v1/drift-records/Deployment:prod:web|record>",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
        let resolved = slack_message(&[resolved(record("Deployment", "prod", "web"))], &links());
        let text = resolved["text"].as_str().unwrap();
        assert!(text.contains(":white_check_mark: *resolved*"), "{text}");
        assert!(text.contains("after 5m: matches Git again"), "{text}");
    }

    #[test]
    fn many_resources_become_one_grouped_message() {
        let notices: Vec<Notice> = (0..500)
            .map(|i| {
                let mut r = record("Deployment", "prod", &format!("web-{i:03}"));
                r.drift_details = (0..15)
                    .map(|f| change(&format!("metadata.labels.l{f:02}"), json!("a"), json!("b")))
                    .collect();
                Notice::new(EventKind::Detected, r, at(2))
            })
            .collect();
        let text = slack_message(&notices, &links())["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.starts_with("*DriftGuard*: 500 resources (500 detected)"),
            "{text}"
        );
        assert!(text.contains("`Deployment/prod/web-019`"));
        assert!(!text.contains("`Deployment/prod/web-020`"));
        assert!(text.ends_with("…and 480 more"), "{text}");
        assert!(text.contains("metadata.labels.l09"));
        assert!(!text.contains("metadata.labels.l10"));
        assert!(text.contains("and 5 more fields"));
        assert!(text.len() < 40_000, "Slack's text limit: {}", text.len());
    }

    #[test]
    fn slack_text_escapes_and_cuts_values() {
        let mut r = record("ConfigMap", "prod", "cfg");
        r.drift_details = vec![change(
            "data.html",
            json!("<b>&</b>"),
            json!("x".repeat(500)),
        )];
        let text = slack_message(&[Notice::new(EventKind::Changed, r, at(2))], &links())["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("&lt;b&gt;&amp;&lt;/b&gt;"), "{text}");
        assert!(!text.contains(&"x".repeat(81)));
        assert!(text.contains(&format!("{}…", "x".repeat(79))));
    }

    #[test]
    fn the_webhook_body_is_versioned_and_keyed_per_episode_and_event() {
        let body = webhook_body(&detected(), &links());
        let id = record("Deployment", "prod", "web").id;
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "detected");
        assert_eq!(
            body["idempotency_key"],
            format!("{id}:2026-11-30T10:02:00.000Z:detected")
        );
        let rec = &body["record"];
        assert_eq!(rec["id"], id.to_string());
        assert_eq!(rec["resource_id"], "Deployment:prod:web");
        assert_eq!(rec["drift_status"], "active");
        assert_eq!(rec["drift_type"], "Scaling");
        assert_eq!(rec["severity"], "medium");
        assert_eq!(rec["changes"][0]["field"], "spec.replicas");
        assert_eq!(rec["changes"][0]["op"], "changed");
        assert_eq!(rec["changes"][0]["from"], 3);
        assert_eq!(rec["changes"][0]["to"], 5);
        assert_eq!(rec["changes"][0]["type"], "Scaling");
        assert_eq!(rec["managers"], json!(["kubectl-edit"]));
        assert_eq!(rec["git_commit_short"], "0123456");
        assert!(rec.get("desired_state").is_none() && rec.get("live_state").is_none());

        let closed = webhook_body(&resolved(record("Deployment", "prod", "web")), &links());
        assert_eq!(
            closed["idempotency_key"],
            format!("{id}:2026-11-30T10:02:00.000Z:resolved")
        );
        assert_eq!(closed["record"]["drift_status"], "resolved");
        assert_eq!(closed["record"]["severity"], "medium", "the episode's");
        assert_eq!(closed["record"]["duration_seconds"], 300);
        assert_eq!(closed["record"]["changes"], json!([]));

        // Two changes of one episode are two events; a redelivery is the same one.
        let mut changed = Notice::new(
            EventKind::Changed,
            record("Deployment", "prod", "web"),
            at(3),
        );
        changed.record.last_updated = at(3);
        let first = idempotency_key(&changed);
        assert_eq!(first, idempotency_key(&changed.clone()));
        changed.record.last_updated = at(4);
        assert_ne!(first, idempotency_key(&changed));
        // A new episode of the same resource is a new key.
        let mut next = detected();
        next.record.first_detected = Some(at(9));
        assert_ne!(idempotency_key(&next), idempotency_key(&detected()));
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_body_checked_independently() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = serde_json::to_vec(&webhook_body(&detected(), &links())).unwrap();
        let config = WebhookConfig {
            name: "audit".to_owned(),
            url: "https://hooks.example.com/in".to_owned(),
            secret: Some("signing-secret".to_owned()),
            headers: [("Authorization".to_owned(), "Bearer t".to_owned())].into(),
            min_severity: "low".to_owned(),
            namespaces: vec![],
            kinds: vec![],
            drift_types: vec![],
            events: vec!["detected".to_owned()],
        };
        let headers = webhook_headers(&config, "detected", "k", &body);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let sent = get(SIGNATURE_HEADER).unwrap();
        // What a receiver does: recompute with its own HMAC and compare.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"signing-secret").unwrap();
        mac.update(&body);
        let hex_sig = sent.strip_prefix("sha256=").unwrap();
        mac.verify_slice(&hex::decode(hex_sig).unwrap()).unwrap();
        // A changed body does not verify.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"signing-secret").unwrap();
        mac.update(&[body.as_slice(), b" "].concat());
        assert!(mac.verify_slice(&hex::decode(hex_sig).unwrap()).is_err());
        assert_eq!(get("Content-Type").unwrap(), "application/json");
        assert_eq!(get(EVENT_HEADER).unwrap(), "detected");
        assert_eq!(get(IDEMPOTENCY_HEADER).unwrap(), "k");
        assert_eq!(get("Authorization").unwrap(), "Bearer t");
        let unsigned = WebhookConfig {
            secret: None,
            ..config
        };
        assert!(
            webhook_headers(&unsigned, "detected", "k", &body)
                .iter()
                .all(|(k, _)| k != SIGNATURE_HEADER)
        );
    }

    #[test]
    fn health_payloads() {
        let event = HealthEvent {
            component: "git".to_owned(),
            status: Health::Degraded,
            message: "fetch failing".to_owned(),
            time: at(5),
        };
        let body = webhook_health_body(&event);
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "health");
        assert_eq!(
            body["health"],
            json!({"component": "git", "status": "degraded", "message": "fetch failing"})
        );
        assert_eq!(
            body["idempotency_key"],
            "health:git:degraded:2026-11-30T10:05:00.000Z"
        );
        let text = slack_health_message(&[&event])["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.contains("`git` is *degraded*: fetch failing"),
            "{text}"
        );
    }

    #[test]
    fn a_canary_secret_value_is_in_no_payload() {
        const CANARY: &str = "canary-Zx9-do-not-leak";
        let base64_canary = "Y2FuYXJ5LVp4OS1kby1ub3QtbGVhaw==";
        let hasher = SecretHasher::new(b"installation-key-0123456789abcdef".to_vec());
        // The Secret as the edge stores it: values digested before any record is built.
        let mut live = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                    format!("{{\"data\":{{\"password\":\"{base64_canary}\"}}}}")}},
            "data": {"password": base64_canary},
        });
        hasher.redact(&mut live);
        let digest = live["data"]["password"].as_str().unwrap().to_owned();
        assert!(digest.starts_with("hmac-sha256:"));
        let mut r = record("Secret", "prod", "db");
        r.api_version = "v1".to_owned();
        r.drift_type = Some(DriftType::SecretChange);
        r.severity = Some(Severity::High);
        let mut c = change(
            "data.password",
            json!("hmac-sha256:00"),
            json!(digest.clone()),
        );
        c.drift_type = DriftType::SecretChange;
        c.severity = Severity::High;
        r.drift_details = vec![c];
        r.live_state = Some(live);
        let notices = [
            Notice::new(EventKind::Detected, r.clone(), at(2)),
            Notice::new(EventKind::Changed, r.clone(), at(3)),
            resolved(r),
        ];
        let secret_url = Links {
            base_url: Some("https://dg.example.com".to_owned()),
        };
        let mut payloads = vec![
            alertmanager_alerts(&notices, &secret_url),
            slack_message(&notices, &secret_url),
        ];
        payloads.extend(notices.iter().map(|n| webhook_body(n, &secret_url)));
        let config = WebhookConfig {
            name: "audit".to_owned(),
            url: "https://hooks.example.com/in?token=URL-TOKEN-canary".to_owned(),
            secret: Some("SIGNING-canary".to_owned()),
            headers: Default::default(),
            min_severity: "low".to_owned(),
            namespaces: vec![],
            kinds: vec![],
            drift_types: vec![],
            events: vec!["detected".to_owned()],
        };
        let mut seen_digest = false;
        for payload in &payloads {
            let text = payload.to_string();
            for secret in [CANARY, base64_canary, "URL-TOKEN-canary", "SIGNING-canary"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            seen_digest |= text.contains(&digest);
            let body = serde_json::to_vec(payload).unwrap();
            for (_, value) in webhook_headers(&config, "detected", "k", &body) {
                assert!(!value.contains("SIGNING-canary") && !value.contains(CANARY));
            }
        }
        assert!(seen_digest, "the change is shown as its digest");
    }
}

//! Notification benchmark (issue 17), no cluster: the real notifier (outbox in a real SQLite
//! store) delivering to a real local HTTP receiver.
//!
//! - **Cost on detection**: the time `publish` takes per event with three sinks configured
//!   (Alertmanager, Slack, webhook) — the only part of notification that runs on the
//!   pipeline's task, so the only part that can add to detection latency — compared with the
//!   same loop and no notifier. (`scripts/bench/serve.py --notify` measures detection latency
//!   end to end with and without sinks.)
//! - **Delivery rate** of one webhook sink: `DGN_BENCH_EVENTS` events (default 10,000, the
//!   queue bound) published in bursts of 1,000 every 100 ms; the time until the receiver has
//!   them all (outbox writes, grouping, signing and HTTP included), the number of requests it
//!   took, and how many were dropped (none expected below the bound).
//!
//! Run: `cargo bench -p driftguard-server --bench notify`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftguard_config::{AlertmanagerConfig, NotificationsConfig, SlackConfig, WebhookConfig};
use driftguard_core::DriftRecord;
use driftguard_server::health::Readiness;
use driftguard_server::metrics::Metrics;
use driftguard_server::notify::deliver::Sink;
use driftguard_server::notify::worker::notifier;
use driftguard_server::sink::{Event, EventSink, RecordEvent, Sinks};
use driftguard_store::{SqliteStore, Store};
use driftguard_test_support::receiver::Receiver;
use serde_json::json;
use tokio::sync::watch;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn all_events() -> Vec<String> {
    ["detected", "changed", "resolved"]
        .iter()
        .map(|e| (*e).to_owned())
        .collect()
}

fn webhook(url: String) -> WebhookConfig {
    WebhookConfig {
        name: "bench".to_owned(),
        url,
        secret: Some("bench-secret".to_owned()),
        headers: BTreeMap::new(),
        min_severity: "low".to_owned(),
        namespaces: Vec::new(),
        kinds: Vec::new(),
        drift_types: Vec::new(),
        events: all_events(),
    }
}

fn detected(i: usize) -> Event {
    let resource_id = format!("ConfigMap:bench:cm-{i:06}");
    let record: DriftRecord = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, resource_id.as_bytes()),
        "resource_id": resource_id, "kind": "ConfigMap", "namespace": "bench",
        "name": format!("cm-{i:06}"), "api_version": "v1", "drift_detected": true,
        "drift_status": "active",
        "drift_details": [{"field": "data[\"mode\"]", "op": "changed", "from": "steady",
            "to": format!("drifted-{i}"), "type": "ConfigMapChange", "severity": "medium",
            "manager": "kubectl-patch", "changed_at": "2026-11-30T10:00:00Z"}],
        "warnings": [], "drift_type": "ConfigMapChange", "severity": "medium",
        "desired_state": null, "live_state": null, "last_known_good_hash": null,
        "live_hash": null, "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "source_path": "cms.yaml#0", "managed": true,
        "first_detected": "2026-11-30T10:00:00Z", "resolved_at": null,
        "resolution_message": null, "last_updated": "2026-11-30T10:00:00Z",
        "created_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    Event::Detected(RecordEvent {
        resource_id: record.resource_id.clone(),
        drift_type: "ConfigMapChange".to_owned(),
        severity: "medium".to_owned(),
        record: Some(record),
        time: Utc::now(),
    })
}

async fn store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(dir.join("bench.db"), Duration::from_secs(5))
            .await
            .unwrap(),
    )
}

fn start(
    config: &NotificationsConfig,
    store: Arc<dyn Store>,
) -> (Sinks, Arc<Metrics>, watch::Sender<bool>) {
    let metrics = Arc::new(Metrics::new());
    let (sink, workers) = notifier(
        Sink::all(config).unwrap(),
        metrics.clone(),
        Arc::new(Readiness::default()),
    )
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    workers.start(store, &[], stopped).unwrap();
    (Sinks::new(vec![sink as Arc<dyn EventSink>]), metrics, stop)
}

fn dropped(metrics: &Metrics) -> usize {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("driftguard_notifications_total{") && l.contains("dropped"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Mean nanoseconds per `publish` of `events`.
fn publish_cost(sinks: &Sinks, events: &[Event]) -> f64 {
    let started = Instant::now();
    for event in events {
        sinks.publish(event);
    }
    started.elapsed().as_nanos() as f64 / events.len() as f64
}

fn count_events(receiver: &Receiver) -> usize {
    receiver
        .requests()
        .iter()
        .map(|r| r.idempotency_keys().len())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let receiver = Receiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1. Cost on the pipeline's task.
    let samples = 3000; // below the channel depth: nothing is dropped
    let events: Vec<Event> = (0..samples).map(detected).collect();
    let none = publish_cost(&Sinks::default(), &events);
    let three = NotificationsConfig {
        alertmanager: Some(AlertmanagerConfig {
            url: receiver.url("/am"),
            resend_interval: Duration::from_secs(3600),
            min_severity: "low".to_owned(),
            namespaces: Vec::new(),
            kinds: Vec::new(),
            drift_types: Vec::new(),
            events: all_events(),
        }),
        slack: Some(SlackConfig {
            webhook_url: receiver.url("/slack"),
            min_severity: "low".to_owned(),
            namespaces: Vec::new(),
            kinds: Vec::new(),
            drift_types: Vec::new(),
            events: all_events(),
        }),
        webhooks: vec![webhook(receiver.url("/hook"))],
        external_url: None,
    };
    let (sinks, _, stop) = start(&three, store(dir.path()).await);
    let with_three = publish_cost(&sinks, &events);
    println!(
        "publish on the pipeline's task, {samples} detections: no notifier {:.2} µs/event, three sinks {:.2} µs/event (+{:.2} µs)",
        none / 1000.0,
        with_three / 1000.0,
        (with_three - none) / 1000.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(true);
    receiver.clear();

    // 2. Delivery rate of one webhook sink.
    let total = env_usize("DGN_BENCH_EVENTS", 10_000);
    let rate_dir = tempfile::tempdir().unwrap();
    let one = NotificationsConfig {
        webhooks: vec![webhook(receiver.url("/hook"))],
        ..NotificationsConfig::default()
    };
    let (sinks, metrics, stop) = start(&one, store(rate_dir.path()).await);
    let events: Vec<Event> = (0..total).map(detected).collect();
    let started = Instant::now();
    for chunk in events.chunks(1000) {
        for event in chunk {
            sinks.publish(event);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut delivered = 0;
    while delivered + dropped(&metrics) < total {
        assert!(
            Instant::now() < deadline,
            "{delivered} of {total} delivered and {} dropped after 300 s",
            dropped(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered = count_events(&receiver);
    }
    let took = started.elapsed();
    println!(
        "delivery rate, one signed webhook, {total} events in bursts of 1,000 every 100 ms: {delivered} delivered in {took:.2?} ({:.0} events/s, {} requests, {} dropped; includes the 1 s grouping wait, outbox writes and removals)",
        delivered as f64 / took.as_secs_f64(),
        receiver.requests().len(),
        dropped(&metrics)
    );
    let _ = stop.send(true);
}

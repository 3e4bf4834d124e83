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

use std::sync::Arc;
use std::time::{Duration, Instant};

use driftguard_config::NotificationsConfig;
use driftguard_server::health::Readiness;
use driftguard_server::metrics::Metrics;
use driftguard_server::notify::deliver::Sink;
use driftguard_server::notify::worker::notifier;
use driftguard_server::sink::{Event, EventSink, Sinks};
use driftguard_store::{SqliteStore, Store};
use driftguard_test_support::receiver::Receiver;
use tokio::sync::watch;

#[path = "../tests/support/notify.rs"]
#[allow(dead_code)] // `resolved` is for the tests
mod fixtures;
use fixtures::{detected, record, three_sinks, webhook};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A detection of the `i`-th Deployment.
fn detected_n(i: usize) -> Event {
    detected(record("bench", &format!("app-{i:06}"), 5))
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
    let events: Vec<Event> = (0..samples).map(detected_n).collect();
    let none = publish_cost(&Sinks::default(), &events);
    let three = three_sinks(&receiver);
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
    let events: Vec<Event> = (0..total).map(detected_n).collect();
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

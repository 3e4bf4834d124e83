//! Notification delivery (issue 17) without a cluster: the real notifier (outbox in a real
//! SQLite store, one worker per sink) delivering to a real local HTTP receiver. Grouping of a
//! burst, retries through an outage, the outbox across a restart, deduplication by
//! idempotency key, refusals, signatures and the per-sink metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftguard_config::NotificationsConfig;
use driftguard_server::health::{Health, Readiness};
use driftguard_server::metrics::Metrics;
use driftguard_server::notify::deliver::Sink;
use driftguard_server::notify::worker::{GROUP_WAIT, notifier};
use driftguard_server::sink::{Event, EventSink};
use driftguard_store::SqliteStore;
use driftguard_store::Store;
use driftguard_test_support::receiver::{Received, Receiver};
use serde_json::{Value, json};
use tokio::sync::watch;

#[path = "support/notify.rs"]
mod fixtures;
use fixtures::{SECRET, detected, record, resolved, three_sinks, webhook};

struct Running {
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    stop: watch::Sender<bool>,
}

impl Running {
    fn start(config: &NotificationsConfig, store: Arc<dyn Store>) -> Running {
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::default());
        let (sink, workers) = notifier(
            Sink::all(config).unwrap(),
            metrics.clone(),
            readiness.clone(),
        )
        .unwrap();
        let (stop, stopped) = watch::channel(false);
        workers.start(store, &[], stopped).unwrap();
        Running {
            sink,
            metrics,
            readiness,
            stop,
        }
    }

    fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.metrics.encode();
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0)
    }
}

impl Running {
    /// Waits (30 s at most) until the sample of `name` with `labels` reaches `at_least`.
    async fn wait_metric(&self, name: &str, labels: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.metric(name, labels);
            if value >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{{{labels}}} is {value}, not {at_least}, after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(dir.join("dg.db"), Duration::from_secs(5))
            .await
            .unwrap(),
    )
}

async fn wait_for(receiver: &Receiver, what: &str, done: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.requests();
        if done(&got) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s; received {} requests: {:#?}",
            got.len(),
            got.iter().map(|r| (&r.path, r.text())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on<'a>(requests: &'a [Received], path: &str) -> Vec<&'a Received> {
    requests
        .iter()
        .filter(|r| r.path.starts_with(path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_detections_is_one_message_per_sink_with_every_resource() {
    let receiver = Receiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(&three_sinks(&receiver), open_store(dir.path()).await);
    let started = Instant::now();
    for i in 0..500 {
        running
            .sink
            .publish(&detected(record("burst", &format!("app-{i:03}"), 5)));
    }
    let published_in = started.elapsed();
    wait_for(&receiver, "all 500 events on the webhook", |got| {
        on(got, "/hook")
            .iter()
            .map(|r| r.idempotency_keys().len())
            .sum::<usize>()
            >= 500
            && !on(got, "/am").is_empty()
            && !on(got, "/slack").is_empty()
    })
    .await;
    // Let a straggling extra message show itself before counting.
    tokio::time::sleep(GROUP_WAIT * 2).await;
    let got = receiver.requests();
    let (am, slack, hook) = (on(&got, "/am"), on(&got, "/slack"), on(&got, "/hook"));
    eprintln!(
        "500 detections published in {published_in:?}: {} Alertmanager POSTs, {} Slack messages, {} webhook requests",
        am.len(),
        slack.len(),
        hook.len()
    );
    assert_eq!(am.len(), 1, "one Alertmanager POST");
    assert_eq!(am[0].path, "/am/api/v2/alerts");
    let alerts = am[0].json();
    assert_eq!(alerts.as_array().unwrap().len(), 500);
    assert_eq!(alerts[0]["labels"]["alertname"], "KubernetesDrift");
    assert_eq!(slack.len(), 1, "one Slack message");
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("500 resources (500 detected)"), "{text}");
    assert!(text.contains("…and 480 more"), "{text}");
    assert!(hook.len() <= 2, "{} webhook requests", hook.len());
    let keys: BTreeSet<String> = hook.iter().flat_map(|r| r.idempotency_keys()).collect();
    assert_eq!(keys.len(), 500, "every event once");
    for request in &hook {
        assert!(request.signature_valid(SECRET.as_bytes()));
        assert_eq!(request.header("x-team"), Some("platform"));
        assert_eq!(request.header("x-driftguard-event"), Some("batch"));
        assert_eq!(request.json()["version"], 1);
    }
    assert_eq!(
        running.metric(
            "driftguard_notifications_total",
            "sink=\"webhook/ops\",result=\"delivered\""
        ),
        500.0
    );
    assert_eq!(
        running.metric("driftguard_notification_messages_total", "sink=\"slack\""),
        1.0
    );
    assert_eq!(
        running.metric(
            "driftguard_notification_queue_depth",
            "sink=\"alertmanager\""
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_with_backoff_and_everything_arrives_once_back() {
    let receiver = Receiver::start().unwrap();
    receiver.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut config = three_sinks(&receiver);
    config.alertmanager = None;
    config.slack = None;
    let running = Running::start(&config, open_store(dir.path()).await);
    running.sink.publish(&detected(record("down", "web", 5)));
    // Failing: retried, counted, the queue waits, the sink degrades (readiness does not fail).
    running
        .wait_metric(
            "driftguard_notifications_total",
            "sink=\"webhook/ops\",result=\"retried\"",
            2.0,
        )
        .await;
    running.sink.publish(&resolved(record("down", "web", 5)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        running.metric(
            "driftguard_notification_queue_depth",
            "sink=\"webhook/ops\""
        ),
        2.0
    );
    assert!(
        running.metric(
            "driftguard_notification_oldest_undelivered_seconds",
            "sink=\"webhook/ops\""
        ) > 0.5
    );
    let component = running.readiness.get("notify/webhook/ops").unwrap();
    assert_eq!(component.status, Health::Degraded, "{component:?}");
    assert!(!component.message.contains("127.0.0.1"), "{component:?}");
    // A service whose required parts work is degraded, not unready, while a sink fails.
    running.readiness.register("store", true, "connecting");
    running.readiness.set("store", Health::Ok, "answering");
    let report = running.readiness.report();
    assert_eq!(report.status, "degraded");
    assert!(report.http_ok, "a failing sink never fails readiness");

    receiver.restart().unwrap();
    wait_for(&receiver, "both events after the outage", |got| {
        on(got, "/hook")
            .iter()
            .flat_map(|r| r.idempotency_keys())
            .collect::<BTreeSet<_>>()
            .len()
            == 2
    })
    .await;
    tokio::time::sleep(GROUP_WAIT * 2).await;
    let got = receiver.requests();
    let keys: Vec<String> = on(&got, "/hook")
        .iter()
        .flat_map(|r| r.idempotency_keys())
        .collect();
    assert_eq!(keys.len(), 2, "delivered once each: {keys:?}");
    assert!(keys[0].ends_with(":detected"), "{keys:?}");
    assert!(keys[1].ends_with(":resolved"), "{keys:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.readiness.get("notify/webhook/ops").unwrap().status != Health::Ok {
        assert!(Instant::now() < deadline, "the sink stays degraded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_restart_and_an_event_queued_twice_is_delivered_once() {
    let receiver = Receiver::start().unwrap();
    receiver.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let mut config = three_sinks(&receiver);
    config.alertmanager = None;
    config.slack = None;
    let store = open_store(dir.path()).await;
    let first = Running::start(&config, store.clone());
    let event = detected(record("restart", "api", 7));
    first.sink.publish(&event);
    first.sink.publish(&event);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.outbox_pending().await.unwrap().is_empty() || receiver.requests().is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = store.outbox_pending().await.unwrap();
    assert_eq!(pending.len(), 1, "one entry per (sink, key): {pending:?}");
    assert_eq!(pending[0].sink, "webhook/ops");
    // The stored payload is the record event, never a state.
    assert!(!pending[0].payload.contains("desired_state\":{"));
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A new notifier on the same store (the process restarted) delivers it, once, even when
    // the same event is published again meanwhile.
    receiver.set_status(200);
    let before = receiver.requests().len();
    let second = Running::start(&config, open_store(dir.path()).await);
    second.sink.publish(&event);
    wait_for(&receiver, "the event left in the outbox", |got| {
        got.len() > before
    })
    .await;
    tokio::time::sleep(GROUP_WAIT * 2).await;
    let got = receiver.requests();
    let delivered: Vec<String> = got[before..]
        .iter()
        .filter(|r| r.path == "/hook")
        .flat_map(|r| r.idempotency_keys())
        .collect();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.outbox_pending().await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "delivered but still in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_not_retried_and_routing_filters_per_sink() {
    let receiver = Receiver::start().unwrap();
    receiver.set_status(400);
    let dir = tempfile::tempdir().unwrap();
    let mut config = three_sinks(&receiver);
    config.alertmanager = None;
    // Slack takes only `high` drift: a medium one never reaches it.
    if let Some(slack) = config.slack.as_mut() {
        slack.min_severity = "high".to_owned();
    }
    let store = open_store(dir.path()).await;
    let running = Running::start(&config, store.clone());
    running.sink.publish(&detected(record("refused", "api", 3)));
    running
        .wait_metric(
            "driftguard_notifications_total",
            "sink=\"webhook/ops\",result=\"rejected\"",
            1.0,
        )
        .await;
    tokio::time::sleep(GROUP_WAIT * 3).await;
    let got = receiver.requests();
    assert_eq!(on(&got, "/hook").len(), 1, "a 400 is not retried");
    assert!(on(&got, "/slack").is_empty(), "slack takes high only");
    assert!(store.outbox_pending().await.unwrap().is_empty());
    let component = running.readiness.get("notify/webhook/ops").unwrap();
    assert_eq!(component.status, Health::Degraded);
    assert!(
        component.message.starts_with("refused: answered 400"),
        "{component:?}"
    );
}

/// Payloads never carry a desired or live object: a value only present in the states does
/// not leave the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_carry_changes_never_states() {
    let receiver = Receiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(&three_sinks(&receiver), open_store(dir.path()).await);
    let mut r = record("states", "api", 4);
    let canary = "state-canary-7f3a91";
    r.desired_state = Some(json!({"spec": {"token": canary}}));
    r.live_state = Some(json!({"spec": {"token": canary}}));
    running.sink.publish(&detected(r));
    wait_for(&receiver, "all three sinks", |got| {
        ["/am", "/slack", "/hook"]
            .iter()
            .all(|p| !on(got, p).is_empty())
    })
    .await;
    for request in receiver.requests() {
        let text = request.text();
        assert!(!text.contains(canary), "{}: {text}", request.path);
        assert!(!text.contains(SECRET), "{}: {text}", request.path);
        let body: Value = request.json();
        assert!(body.is_object() || body.is_array());
    }
}

/// Component health reaches sinks that take `health` only when a failure lasts the hold,
/// and its recovery only when the failure was told; a blip is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_failures_are_told_once_they_last_and_blips_never() {
    let receiver = Receiver::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut hook = webhook(receiver.url("/hook"));
    hook.events = vec!["health".to_owned()];
    let config = NotificationsConfig {
        webhooks: vec![hook],
        ..NotificationsConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let hold = Duration::from_millis(300);
    let (sink, workers) = driftguard_server::notify::worker::notifier_with_hold(
        Sink::all(&config).unwrap(),
        metrics,
        readiness.clone(),
        hold,
    )
    .unwrap();
    let (_stop, stopped) = watch::channel(false);
    workers
        .start(open_store(dir.path()).await, &[], stopped)
        .unwrap();
    let change = |component: &str, status: Health, message: &str| {
        readiness.register(component, true, "starting");
        readiness.set(component, status, message);
        sink.publish(&Event::Health(driftguard_server::sink::HealthEvent {
            component: component.to_owned(),
            status,
            message: message.to_owned(),
            time: Utc::now(),
        }));
    };
    // A blip: failing, then fine again within the hold.
    change("kubernetes", Health::Degraded, "API server failing");
    tokio::time::sleep(hold / 3).await;
    change("kubernetes", Health::Ok, "answering");
    // A lasting failure, then its recovery.
    change("git", Health::Degraded, "fetch failing");
    wait_for(&receiver, "the lasting git failure", |got| !got.is_empty()).await;
    change("git", Health::Ok, "commit 3f2a9c1, 12 objects");
    wait_for(&receiver, "the git recovery", |got| got.len() >= 2).await;
    tokio::time::sleep(hold * 2 + GROUP_WAIT).await;
    let got = receiver.requests();
    let told: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["health"]["component"].as_str().unwrap().to_owned(),
                body["health"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        told,
        vec![
            ("git".to_owned(), "degraded".to_owned()),
            ("git".to_owned(), "ok".to_owned())
        ],
        "{told:?}"
    );
    assert!(got.iter().all(|r| r.signature_valid(SECRET.as_bytes())));
}

//! Delivery: the [`NotifySink`] the pipeline publishes to, and one worker task per sink that
//! keeps an outbox in the store, groups bursts, retries with backoff and, for Alertmanager,
//! re-sends active alerts.
//!
//! - **Never in detection's way.** `publish` converts the event and `try_send`s it to each
//!   sink's channel ([`CHANNEL`] deep); it never waits. A full channel drops the event for
//!   that sink and counts it (`result="dropped"`).
//! - **At least once, across restarts.** A worker writes what it receives to the store's
//!   outbox before its first delivery attempt and removes it once delivered; at start it
//!   loads what the outbox still holds. The (sink, idempotency key) pair is the outbox's
//!   primary key, so an event queued twice is delivered once; a crash between a delivery
//!   and its removal delivers it again with the same key (receivers dedupe on it).
//! - **Grouping.** A worker waits [`GROUP_WAIT`] after the oldest waiting event, then sends
//!   everything waiting (up to the sink's group size) as one message: 500 resources drifting
//!   at once are one Alertmanager `POST`, one Slack message, two webhook batches.
//! - **Retries.** A failed delivery (connection, timeout, 408, 429, 5xx) is retried with
//!   exponential backoff from 1 s to [`MAX_BACKOFF`], with up to 50 % jitter; a 4xx answer is
//!   not (`rejected`: the same body would be refused again), and is logged.
//! - **Bounded.** At most [`QUEUE_BOUND`] events wait per sink; past it the oldest are
//!   dropped (and removed from the outbox), counted and logged: a sink down for hours costs
//!   bounded memory and store space, and what it receives when back is the newest.
//! - **Health.** Each sink is a `/ready` component `notify/<sink>` that is never required: a
//!   failing sink shows as `degraded`, it never makes the service unready.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftStatus, DriftType, Severity};
use driftguard_store::{OutboxEntry, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::deliver::{self, Failure, Message, Sink, Target};
use super::payload::alertmanager_alert;
use super::{EventKind, Notice};
use crate::health::{Health, Readiness};
use crate::metrics::{DeliveryLabels, Metrics, SinkLabels};
use crate::sink::{Event, EventSink, HealthEvent};

/// Events buffered between the pipeline and one worker.
pub const CHANNEL: usize = 4096;
/// Most events waiting per sink; past it the oldest are dropped.
pub const QUEUE_BOUND: usize = 10_000;
/// How long a worker waits after the oldest waiting event before sending: a burst becomes
/// one message.
pub const GROUP_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Consecutive failed attempts before the sink shows as degraded on `/ready`.
const DEGRADED_AFTER: u32 = 2;
/// Alerts per Alertmanager `POST` when re-sending the active ones.
const RESEND_CHUNK: usize = 500;
/// How long a component must stay failing before sinks that take `health` are told (and they
/// hear of its recovery only if they heard of the failure): a Git fetch that fails once, or
/// a watch that reconnects, is not worth a message.
pub const HEALTH_HOLD: Duration = Duration::from_secs(60);

/// The sink the pipeline publishes to: routes each event to the workers that take it.
pub struct NotifySink {
    lanes: Arc<Vec<Lane>>,
    health: Arc<HealthGate>,
}

/// Holds component health changes back for [`HEALTH_HOLD`].
struct HealthGate {
    readiness: Arc<Readiness>,
    hold: Duration,
    /// Components whose failure the sinks were told about.
    told: std::sync::Mutex<HashSet<String>>,
}

struct Lane {
    sink: Arc<Sink>,
    tx: mpsc::Sender<Arc<Message>>,
    metrics: Arc<Metrics>,
}

/// The workers, created with the sink and started once the store answers.
pub struct Workers {
    pending: Vec<(Arc<Sink>, mpsc::Receiver<Arc<Message>>)>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// What the outbox holds for one event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Stored {
    Record {
        event: String,
        drift_type: Option<DriftType>,
        severity: Option<Severity>,
        time: DateTime<Utc>,
        record: Box<DriftRecord>,
    },
    Health {
        component: String,
        status: Health,
        message: String,
        time: DateTime<Utc>,
    },
}

/// One waiting event.
struct Item {
    key: String,
    /// Shared by every sink that takes the event: routing copies a pointer, not a record.
    message: Arc<Message>,
    queued_at: DateTime<Utc>,
    /// When this worker took it (grouping waits from here).
    arrived: Instant,
    /// Written to the outbox.
    durable: bool,
}

struct Worker {
    sink: Arc<Sink>,
    rx: mpsc::Receiver<Arc<Message>>,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    queue: VecDeque<Item>,
    keys: HashSet<String>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Alertmanager: the last notice sent per active resource (re-sent every interval; its
    /// labels are ended when an episode's labels change).
    active: HashMap<String, Notice>,
}

/// The sink and its workers for `config`; `None` when no sink is configured.
pub fn notifier(
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Option<(Arc<NotifySink>, Workers)> {
    notifier_with_hold(sinks, metrics, readiness, HEALTH_HOLD)
}

/// [`notifier`] with another health hold (tests).
pub fn notifier_with_hold(
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    hold: Duration,
) -> Option<(Arc<NotifySink>, Workers)> {
    if sinks.is_empty() {
        return None;
    }
    let mut lanes = Vec::new();
    let mut pending = Vec::new();
    for sink in sinks {
        let sink = Arc::new(sink);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let component = component(&sink);
        readiness.register(&component, false, "starting");
        readiness.set(&component, Health::Ok, "no deliveries yet");
        for result in ["delivered", "retried", "rejected", "dropped"] {
            let _ = metrics.notifications.get_or_create(&DeliveryLabels {
                sink: sink.name.clone(),
                result: result.to_owned(),
            });
        }
        let labels = SinkLabels {
            sink: sink.name.clone(),
        };
        let _ = metrics.notification_messages.get_or_create(&labels);
        let _ = metrics.notification_queue.get_or_create(&labels);
        let _ = metrics.notification_oldest.get_or_create(&labels);
        lanes.push(Lane {
            sink: sink.clone(),
            tx,
            metrics: metrics.clone(),
        });
        pending.push((sink, rx));
    }
    Some((
        Arc::new(NotifySink {
            lanes: Arc::new(lanes),
            health: Arc::new(HealthGate {
                readiness: readiness.clone(),
                hold,
                told: std::sync::Mutex::new(HashSet::new()),
            }),
        }),
        Workers {
            pending,
            metrics,
            readiness,
        },
    ))
}

/// The readiness component of a sink: `notify/<sink>`.
pub fn component(sink: &Sink) -> String {
    format!("notify/{}", sink.name)
}

// === impl NotifySink ===

impl EventSink for NotifySink {
    fn publish(&self, event: &Event) {
        let message = match event {
            Event::Health(h) if h.component.starts_with("notify/") => return,
            Event::Health(h) => {
                self.hold_health(h.clone());
                return;
            }
            other => match Notice::from_event(other) {
                Some(notice) => Message::Record(Box::new(notice)),
                None => return,
            },
        };
        route(&self.lanes, &Arc::new(message));
    }
}

impl NotifySink {
    /// A failure is passed on once it has lasted [`HEALTH_HOLD`] (the component's state has
    /// not changed since); a recovery only when its failure was.
    fn hold_health(&self, event: HealthEvent) {
        if !self.lanes.iter().any(|l| l.sink.route.accepts_health()) {
            return;
        }
        let failing = matches!(event.status, Health::Degraded | Health::Down);
        if !failing {
            let told = self
                .health
                .told
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&event.component);
            if told {
                route(&self.lanes, &Arc::new(Message::Health(event)));
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lanes = self.lanes.clone();
        let gate = self.health.clone();
        runtime.spawn(async move {
            tokio::time::sleep(gate.hold).await;
            let still = gate
                .readiness
                .get(&event.component)
                .is_some_and(|c| c.status == event.status && c.since <= event.time);
            if !still {
                return;
            }
            let first = gate
                .told
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(event.component.clone());
            if first {
                route(&lanes, &Arc::new(Message::Health(event)));
            }
        });
    }
}

/// Hands `message` to every lane whose sink takes it, never waiting.
fn route(lanes: &[Lane], message: &Arc<Message>) {
    for lane in lanes {
        if !lane.sink.takes(message) {
            continue;
        }
        if lane.tx.try_send(Arc::clone(message)).is_err() {
            lane.metrics
                .notifications
                .get_or_create(&DeliveryLabels {
                    sink: lane.sink.name.clone(),
                    result: "dropped".to_owned(),
                })
                .inc();
            tracing::warn!(sink = %lane.sink.name, "notification channel full; event dropped");
        }
    }
}

// === impl Workers ===

impl Workers {
    /// Starts one worker per sink. `current` is the store's current view: Alertmanager's
    /// worker re-sends the active records its route takes. The outbox is read in the
    /// background (retried while the store does not answer).
    pub fn start(
        self,
        store: Arc<dyn Store>,
        current: &[DriftRecord],
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let client = deliver::client()?;
        let Workers {
            pending,
            metrics,
            readiness,
        } = self;
        let sinks: Vec<Arc<Sink>> = pending.iter().map(|(s, _)| s.clone()).collect();
        let mut senders = Vec::new();
        for (sink, rx) in pending {
            let active = match sink.target {
                Target::Alertmanager { .. } => current
                    .iter()
                    .filter(|r| r.drift_status == DriftStatus::Active)
                    .map(|r| {
                        let mut record = r.clone();
                        record.desired_state = None;
                        record.live_state = None;
                        Notice::new(EventKind::Detected, record, Utc::now())
                    })
                    .filter(|n| sink.route.accepts(n))
                    .map(|n| (n.record.resource_id.clone(), n))
                    .collect(),
                _ => HashMap::new(),
            };
            let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
            senders.push((sink.name.clone(), loaded_tx));
            let worker = Worker {
                sink,
                rx,
                store: store.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                queue: VecDeque::new(),
                keys: HashSet::new(),
                failures: 0,
                retry_at: None,
                active,
            };
            tokio::spawn(worker.run(loaded_rx, shutdown.clone()));
        }
        tokio::spawn(load_outbox(store, sinks, senders, shutdown));
        Ok(())
    }
}

/// Reads the outbox (retrying while the store does not answer) and hands each worker its
/// entries; entries of sinks no longer configured are removed.
async fn load_outbox(
    store: Arc<dyn Store>,
    sinks: Vec<Arc<Sink>>,
    senders: Vec<(String, tokio::sync::oneshot::Sender<Vec<OutboxEntry>>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0;
    let entries = loop {
        match store.outbox_pending().await {
            Ok(entries) => break entries,
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "reading the notification outbox failed; retrying");
                if !crate::retry::pause(
                    crate::retry::backoff(attempt, Duration::from_secs(30)),
                    &mut shutdown,
                )
                .await
                {
                    return;
                }
                attempt += 1;
            }
        }
    };
    let mut by_sink: HashMap<String, Vec<OutboxEntry>> = HashMap::new();
    for entry in entries {
        by_sink.entry(entry.sink.clone()).or_default().push(entry);
    }
    for (name, tx) in senders {
        let _ = tx.send(by_sink.remove(&name).unwrap_or_default());
    }
    for (name, orphans) in by_sink {
        if sinks.iter().any(|s| s.name == name) {
            continue;
        }
        tracing::warn!(sink = %name, events = orphans.len(), "the outbox holds events for a sink no longer configured; dropping them");
        let keys: Vec<String> = orphans.into_iter().map(|e| e.key).collect();
        if let Err(e) = store.outbox_remove(&name, &keys).await {
            tracing::warn!(sink = %name, error = %crate::errors::chain(&e), "removing them failed");
        }
    }
}

fn encode(message: &Message) -> Option<String> {
    let stored = match message {
        Message::Record(n) => Stored::Record {
            event: n.event.as_str().to_owned(),
            drift_type: n.drift_type,
            severity: n.severity,
            time: n.time,
            record: Box::new(n.record.clone()),
        },
        Message::Health(h) => Stored::Health {
            component: h.component.clone(),
            status: h.status,
            message: h.message.clone(),
            time: h.time,
        },
    };
    serde_json::to_string(&stored).ok()
}

fn decode(payload: &str) -> Result<Message, String> {
    let stored: Stored = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    Ok(match stored {
        Stored::Record {
            event,
            drift_type,
            severity,
            time,
            record,
        } => Message::Record(Box::new(Notice {
            event: event.parse()?,
            record: *record,
            drift_type,
            severity,
            time,
        })),
        Stored::Health {
            component,
            status,
            message,
            time,
        } => Message::Health(HealthEvent {
            component,
            status,
            message,
            time,
        }),
    })
}

/// Backoff before attempt `failures + 1`: the service's backoff (1 s after the first failure,
/// doubling to [`MAX_BACKOFF`]) plus up to 50 % jitter, so sinks, and replicas, do not retry
/// in step.
fn backoff(failures: u32) -> Duration {
    let base = crate::retry::backoff(failures, MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

// === impl Worker ===

impl Worker {
    fn labels(&self) -> SinkLabels {
        SinkLabels {
            sink: self.sink.name.clone(),
        }
    }

    fn count(&self, result: &str, n: usize) {
        self.metrics
            .notifications
            .get_or_create(&DeliveryLabels {
                sink: self.sink.name.clone(),
                result: result.to_owned(),
            })
            .inc_by(n as u64);
    }

    async fn run(
        mut self,
        loaded: tokio::sync::oneshot::Receiver<Vec<OutboxEntry>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // What the outbox held comes first: it is older than anything published since.
        tokio::select! {
            entries = loaded => {
                if let Ok(entries) = entries {
                    self.take_outbox(entries);
                }
            }
            _ = shutdown.changed() => return,
        }
        let mut resend = match self.sink.target {
            Target::Alertmanager {
                resend_interval, ..
            } => Some(tokio::time::interval(resend_interval)),
            _ => None,
        };
        loop {
            self.refresh_gauges();
            let due = self.due();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                received = self.rx.recv() => {
                    let Some(first) = received else { return };
                    let mut batch = vec![first];
                    while let Ok(more) = self.rx.try_recv() {
                        batch.push(more);
                    }
                    self.take(batch);
                    self.persist().await;
                }
                _ = sleep_until(due), if due.is_some() => self.send_group().await,
                _ = tick(&mut resend), if resend.is_some() => self.resend_active().await,
            }
        }
    }

    fn take_outbox(&mut self, entries: Vec<OutboxEntry>) {
        let now = Instant::now();
        let mut bad = Vec::new();
        for entry in entries {
            match decode(&entry.payload) {
                Ok(message) => {
                    if self.keys.insert(entry.key.clone()) {
                        self.queue.push_back(Item {
                            key: entry.key,
                            message: Arc::new(message),
                            queued_at: entry.queued_at,
                            arrived: now,
                            durable: true,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(sink = %self.sink.name, key = %entry.key, error = %e, "unreadable outbox entry dropped");
                    bad.push(entry.key);
                }
            }
        }
        if !self.queue.is_empty() {
            tracing::info!(sink = %self.sink.name, events = self.queue.len(), "delivering notifications left in the outbox");
        }
        if !bad.is_empty() {
            let store = self.store.clone();
            let sink = self.sink.name.clone();
            tokio::spawn(async move {
                let _ = store.outbox_remove(&sink, &bad).await;
            });
        }
        self.bound();
    }

    fn take(&mut self, batch: Vec<Arc<Message>>) {
        let now = Instant::now();
        for message in batch {
            let key = message.key();
            if !self.keys.insert(key.clone()) {
                continue;
            }
            self.queue.push_back(Item {
                key,
                message,
                queued_at: Utc::now(),
                arrived: now,
                durable: false,
            });
        }
        self.bound();
    }

    /// Drops the oldest events past [`QUEUE_BOUND`].
    fn bound(&mut self) {
        if self.queue.len() <= QUEUE_BOUND {
            return;
        }
        let excess = self.queue.len() - QUEUE_BOUND;
        let dropped: Vec<Item> = self.queue.drain(..excess).collect();
        for item in &dropped {
            self.keys.remove(&item.key);
        }
        self.count("dropped", dropped.len());
        tracing::warn!(sink = %self.sink.name, dropped = dropped.len(), bound = QUEUE_BOUND, "notification queue full; the oldest events were dropped");
        let keys: Vec<String> = dropped
            .into_iter()
            .filter(|i| i.durable)
            .map(|i| i.key)
            .collect();
        if !keys.is_empty() {
            let store = self.store.clone();
            let sink = self.sink.name.clone();
            tokio::spawn(async move {
                let _ = store.outbox_remove(&sink, &keys).await;
            });
        }
    }

    /// Writes events not yet in the outbox. A store that does not answer leaves them in
    /// memory (delivered all the same; retried here before each delivery).
    async fn persist(&mut self) {
        let entries: Vec<OutboxEntry> = self
            .queue
            .iter()
            .filter(|i| !i.durable)
            .filter_map(|i| {
                Some(OutboxEntry {
                    sink: self.sink.name.clone(),
                    key: i.key.clone(),
                    payload: encode(&i.message)?,
                    queued_at: i.queued_at,
                })
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        match self.store.outbox_push(&entries).await {
            Ok(()) => {
                for item in self.queue.iter_mut() {
                    item.durable = true;
                }
            }
            Err(e) => {
                tracing::warn!(sink = %self.sink.name, events = entries.len(), error = %crate::errors::chain(&e), "cannot write notifications to the outbox; delivering from memory");
            }
        }
    }

    /// When the next group goes: [`GROUP_WAIT`] after the oldest waiting event arrived, at
    /// once when a full group waits, never before the retry time.
    fn due(&self) -> Option<Instant> {
        let first = self.queue.front()?;
        let grouped = if self.queue.len() >= self.sink.group_max() {
            Instant::now()
        } else {
            first.arrived + GROUP_WAIT
        };
        Some(match self.retry_at {
            Some(retry) => retry.max(grouped),
            None => grouped,
        })
    }

    async fn send_group(&mut self) {
        self.persist().await;
        let Some(first) = self.queue.front() else {
            return;
        };
        let n = self
            .queue
            .iter()
            .take(self.sink.group_max())
            .take_while(|i| i.message.same_sort(&first.message))
            .count();
        let group: Vec<&Message> = self.queue.iter().take(n).map(|i| &*i.message).collect();
        let now = Utc::now();
        let ended = self.ended_alerts(&group, now);
        let request = self.sink.request(&group, &ended, now);
        let counts = deliver::count_events(&group);
        let result = deliver::post(&self.client, self.sink.url(), request).await;
        match result {
            Ok(()) => {
                let items: Vec<Item> = self.queue.drain(..n).collect();
                self.delivered(&items);
                tracing::info!(sink = %self.sink.name, events = ?counts, "notification delivered");
                self.failures = 0;
                self.retry_at = None;
                self.readiness.set(
                    &component(&self.sink),
                    Health::Ok,
                    format!("delivered {} events", n),
                );
                self.forget(items).await;
            }
            Err(Failure {
                retry: true,
                message,
            }) => {
                self.failures += 1;
                let wait = backoff(self.failures);
                self.retry_at = Some(Instant::now() + wait);
                self.count("retried", n);
                tracing::warn!(sink = %self.sink.name, url = %self.sink.shown_url(), events = n, attempt = self.failures, retry_in_ms = wait.as_millis() as u64, error = %message, "notification delivery failed; retrying");
                if self.failures >= DEGRADED_AFTER {
                    self.readiness.set(
                        &component(&self.sink),
                        Health::Degraded,
                        format!("failing: {}", first_line(&message)),
                    );
                }
            }
            Err(Failure {
                retry: false,
                message,
            }) => {
                let items: Vec<Item> = self.queue.drain(..n).collect();
                self.count("rejected", n);
                tracing::error!(sink = %self.sink.name, url = %self.sink.shown_url(), events = n, error = %message, "the sink refused the notification; it is dropped");
                self.failures = 0;
                self.retry_at = None;
                self.readiness.set(
                    &component(&self.sink),
                    Health::Degraded,
                    format!("refused: {}", first_line(&message)),
                );
                self.forget(items).await;
            }
        }
    }

    fn delivered(&mut self, items: &[Item]) {
        self.count("delivered", items.len());
        self.metrics
            .notification_messages
            .get_or_create(&self.labels())
            .inc();
        if !matches!(self.sink.target, Target::Alertmanager { .. }) {
            return;
        }
        for item in items {
            if let Message::Record(notice) = &*item.message {
                let id = notice.record.resource_id.clone();
                if notice.event == EventKind::Resolved {
                    self.active.remove(&id);
                } else {
                    self.active.insert(id, (**notice).clone());
                }
            }
        }
    }

    /// Removes delivered (or refused) events from the outbox and the queue's key set.
    async fn forget(&mut self, items: Vec<Item>) {
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            self.keys.remove(&item.key);
            if item.durable {
                keys.push(item.key);
            }
        }
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.store.outbox_remove(&self.sink.name, &keys).await {
            tracing::warn!(sink = %self.sink.name, events = keys.len(), error = %crate::errors::chain(&e), "delivered notifications stay in the outbox; they will be delivered again (same idempotency keys) after a restart");
        }
    }

    /// Alertmanager: the alerts of active episodes whose labels (severity, drift type) this
    /// group changes, ended now — Alertmanager identifies an alert by its labels.
    fn ended_alerts(&self, group: &[&Message], now: DateTime<Utc>) -> Vec<Value> {
        if !matches!(self.sink.target, Target::Alertmanager { .. }) {
            return Vec::new();
        }
        let mut ended = Vec::new();
        for message in group {
            let Message::Record(notice) = message else {
                continue;
            };
            let Some(previous) = self.active.get(&notice.record.resource_id) else {
                continue;
            };
            if super::payload::alert_labels(previous) == super::payload::alert_labels(notice) {
                continue;
            }
            let mut old = previous.clone();
            old.event = EventKind::Resolved;
            old.record.resolved_at = Some(now);
            old.time = now;
            ended.push(alertmanager_alert(&old, &self.sink.links));
        }
        ended
    }

    /// Alertmanager: every active alert again, so none expires while its drift lasts.
    async fn resend_active(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let notices: Vec<&Notice> = self.active.values().collect();
        for chunk in notices.chunks(RESEND_CHUNK) {
            let alerts: Vec<Value> = chunk
                .iter()
                .map(|n| alertmanager_alert(n, &self.sink.links))
                .collect();
            let request = deliver::json_request(&Value::Array(alerts));
            if let Err(f) = deliver::post(&self.client, self.sink.url(), request).await {
                tracing::warn!(sink = %self.sink.name, url = %self.sink.shown_url(), alerts = chunk.len(), error = %f.message, "re-sending active alerts failed; next interval retries");
                self.readiness.set(
                    &component(&self.sink),
                    Health::Degraded,
                    format!("failing: {}", first_line(&f.message)),
                );
                return;
            }
        }
        tracing::debug!(sink = %self.sink.name, alerts = self.active.len(), "active alerts re-sent");
    }

    fn refresh_gauges(&self) {
        let labels = self.labels();
        self.metrics
            .notification_queue
            .get_or_create(&labels)
            .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        // The queue is oldest first: what the outbox held, then events as they arrived.
        let oldest = self.queue.front().map_or(0.0, |i| {
            (Utc::now() - i.queued_at).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.metrics
            .notification_oldest
            .get_or_create(&labels)
            .set(oldest);
    }
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::*;
    use super::*;

    #[test]
    fn outbox_payloads_round_trip() {
        let notice = Notice::new(EventKind::Detected, record("Deployment", "a", "b"), at(2));
        let message = Message::Record(Box::new(notice));
        let back = decode(&encode(&message).unwrap()).unwrap();
        assert_eq!(back, message);
        let health = Message::Health(HealthEvent {
            component: "git".to_owned(),
            status: Health::Degraded,
            message: "fetch failing".to_owned(),
            time: at(3),
        });
        assert_eq!(decode(&encode(&health).unwrap()).unwrap(), health);
        assert!(decode("{\"type\":\"record\"}").is_err());
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_at_most_half_jitter() {
        for (failures, base) in [(1u32, 1u64), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let wait = backoff(failures);
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait <= base.mul_f64(1.5),
                "{failures}: {wait:?}"
            );
        }
    }
}

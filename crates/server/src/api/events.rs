//! `GET /api/v1/events` (contract §9): the sink events as server-sent events.
//!
//! [`EventHub`] is an [`EventSink`]: `publish` encodes the event once and hands it to a
//! broadcast channel (nothing is encoded while nobody listens), so a hundred open streams cost
//! the pipeline one encoding and one channel send. Each stream reads the channel on its own
//! task; a stream too slow to keep up skips what it missed and is told so in an SSE comment
//! (`: lagged, N events skipped`), then goes on — the detection path never waits for a reader.
//!
//! Event names: `detected`, `changed`, `resolved`, `analysis`, `health`. `data` is one line of
//! JSON with at least `resource_id`, `drift_status`, `drift_type`, `severity` and `time`
//! (`null` where they do not apply): for record events it is the record (without desired and
//! live states) plus `time`, with `drift_type` and `severity` of the episode (kept on
//! `resolved`). A comment is sent every 15 s so proxies keep the connection open. Streams end
//! when the service stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

use super::ApiState;
use crate::sink::{Event, EventSink, RecordEvent};

/// Events buffered per stream before a slow reader skips some.
pub const STREAM_BUFFER: usize = 1024;
/// Interval of the keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One encoded event.
#[derive(Debug, Clone)]
struct Wire {
    name: &'static str,
    data: String,
}

/// The broadcast behind `GET /api/v1/events`.
#[derive(Debug)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Wire>>,
    closed: watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(STREAM_BUFFER);
        let (closed, _) = watch::channel(false);
        Self { tx, closed }
    }
}

impl EventHub {
    /// Open streams.
    pub fn streams(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Ends every stream (the service is stopping) and refuses new ones.
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    fn subscribe(&self) -> (broadcast::Receiver<Arc<Wire>>, watch::Receiver<bool>) {
        (self.tx.subscribe(), self.closed.subscribe())
    }
}

impl EventSink for EventHub {
    fn publish(&self, event: &Event) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let wire = Wire {
            name: event.name(),
            data: data(event).to_string(),
        };
        let _ = self.tx.send(Arc::new(wire));
    }
}

/// The JSON `data` of one event.
fn data(event: &Event) -> Value {
    match event {
        Event::Detected(e) | Event::Changed(e) | Event::Resolved(e) => record_data(e),
        Event::Analysis(a) => json!({
            "resource_id": null, "drift_status": null, "drift_type": null, "severity": null,
            "time": a.time,
            "run_id": a.run_id,
            "trigger": a.trigger,
            "commit": a.commit,
            "evaluated": a.counts.evaluated,
            "active": a.counts.active,
            "detected": a.counts.detected,
            "resolved": a.counts.resolved,
            "errors": a.errors,
            "duration_ms": u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX),
        }),
        Event::Health(h) => json!({
            "resource_id": null, "drift_status": null, "drift_type": null, "severity": null,
            "time": h.time,
            "component": h.component,
            "status": h.status,
            "message": h.message,
        }),
    }
}

fn record_data(e: &RecordEvent) -> Value {
    let mut object = match e.record.as_ref().map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map,
        // The resource left the view before its record was written: its identity only.
        _ => {
            let mut map = Map::new();
            map.insert("resource_id".into(), e.resource_id.clone().into());
            map.insert("drift_status".into(), "resolved".into());
            map
        }
    };
    object.remove("desired_state");
    object.remove("live_state");
    let episode = |value: &str| {
        if value == "none" {
            Value::Null
        } else {
            Value::String(value.to_owned())
        }
    };
    object.insert("drift_type".into(), episode(&e.drift_type));
    object.insert("severity".into(), episode(&e.severity));
    object.insert("time".into(), json!(e.time));
    Value::Object(object)
}

/// `GET /api/v1/events`.
pub async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (rx, closed) = state.events.subscribe();
    let stream = futures::stream::unfold((rx, closed), |(mut rx, mut closed)| async move {
        loop {
            if *closed.borrow() {
                return None;
            }
            let item = tokio::select! {
                received = rx.recv() => received,
                changed = closed.changed() => {
                    if changed.is_err() || *closed.borrow() {
                        return None;
                    }
                    continue;
                }
            };
            let event = match item {
                Ok(wire) => SseEvent::default()
                    .event(wire.name)
                    .data(wire.data.as_str()),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    SseEvent::default().comment(format!("lagged, {skipped} events skipped"))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, closed)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::Utc;

    use super::*;
    use crate::health::Health;
    use crate::sink::HealthEvent;

    #[test]
    fn nothing_is_encoded_without_a_stream_and_every_event_has_the_contract_keys() {
        let hub = EventHub::default();
        let health = Event::Health(HealthEvent {
            component: "git".into(),
            status: Health::Degraded,
            message: "fetch failing".into(),
            time: Utc::now(),
        });
        hub.publish(&health);
        let (mut rx, _) = hub.subscribe();
        assert!(rx.try_recv().is_err(), "published before anyone listened");
        hub.publish(&health);
        let wire = rx.try_recv().unwrap();
        assert_eq!(wire.name, "health");
        let data: Value = serde_json::from_str(&wire.data).unwrap();
        for key in [
            "resource_id",
            "drift_status",
            "drift_type",
            "severity",
            "time",
        ] {
            assert!(data.get(key).is_some(), "{key} missing: {data}");
        }
        assert_eq!(data["component"], "git");
        assert_eq!(data["status"], "degraded");
        assert!(!wire.data.contains('\n'), "one line of JSON");
    }

    #[test]
    fn a_record_event_without_its_record_still_names_the_resource() {
        let data = record_data(&RecordEvent {
            resource_id: "Deployment:prod:web".into(),
            record: None,
            drift_type: "Scaling".into(),
            severity: "none".into(),
            time: Utc::now(),
        });
        assert_eq!(data["resource_id"], "Deployment:prod:web");
        assert_eq!(data["drift_type"], "Scaling");
        assert_eq!(data["severity"], Value::Null);
        assert!(data["time"].is_string());
    }
}

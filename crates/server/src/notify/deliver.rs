//! The sinks as configured, and one HTTP delivery of a group of messages to one of them.
//!
//! A group is made of messages of one sort (record events, or component health events): each
//! group is exactly one `POST`, so a group is delivered or not as a whole.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftguard_config::{NotificationsConfig, WebhookConfig, redacted_url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::payload::{
    WEBHOOK_VERSION, alertmanager_alert, idempotency_key, slack_health_message, slack_message,
    webhook_body, webhook_headers, webhook_health_body,
};
use super::route::Route;
use super::{EventKind, Links, Notice};
use crate::sink::HealthEvent;

/// Time one delivery may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to connect to a sink.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Characters of a sink's answer kept in an error message.
const ANSWER_CHARS: usize = 200;

/// What a sink is sent: a record event or a component's health.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A drift was detected, changed or resolved.
    Record(Box<Notice>),
    /// A component's health changed.
    Health(HealthEvent),
}

/// Where a sink's messages go.
#[derive(Clone, PartialEq)]
pub enum Target {
    /// `POST <url>/api/v2/alerts`.
    Alertmanager {
        /// The alerts endpoint.
        alerts_url: String,
        /// How often active alerts are sent again.
        resend_interval: Duration,
    },
    /// A Slack-compatible incoming webhook.
    Slack {
        /// The webhook URL (holds a token).
        url: String,
    },
    /// A generic webhook.
    Webhook(Box<WebhookConfig>),
}

/// One configured sink.
#[derive(Clone)]
pub struct Sink {
    /// `alertmanager`, `slack` or `webhook/<name>`: its outbox name, metrics label and
    /// `/ready` component (`notify/<name>`).
    pub name: String,
    /// Where it goes.
    pub target: Target,
    /// What it takes.
    pub route: Route,
    /// Links in payloads.
    pub links: Links,
}

/// A delivery that did not succeed. `message` never holds the sink's URL (it may hold a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Worth retrying (connection errors, timeouts, 408, 429, 5xx); a 4xx answer is not: the
    /// same body would be refused again.
    pub retry: bool,
    /// What went wrong.
    pub message: String,
}

/// One `POST`: body and headers.
#[derive(Debug, Clone)]
pub struct Request {
    /// JSON body.
    pub body: Vec<u8>,
    /// Headers (content type included).
    pub headers: Vec<(String, String)>,
}

// === impl Message ===

impl Message {
    /// The idempotency key: the same for every delivery of one event, unique per event.
    pub fn key(&self) -> String {
        match self {
            Message::Record(notice) => idempotency_key(notice),
            Message::Health(h) => format!(
                "health:{}:{}:{}",
                h.component,
                serde_json::to_value(h.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                h.time.timestamp_nanos_opt().unwrap_or_default()
            ),
        }
    }

    /// Whether two messages may travel in one group.
    pub fn same_sort(&self, other: &Message) -> bool {
        matches!(
            (self, other),
            (Message::Record(_), Message::Record(_)) | (Message::Health(_), Message::Health(_))
        )
    }
}

// === impl Sink ===

impl Sink {
    /// Every configured sink, in order: Alertmanager, Slack, webhooks.
    pub fn all(config: &NotificationsConfig) -> Result<Vec<Sink>, String> {
        let links = Links {
            base_url: config.external_url.clone(),
        };
        let mut sinks = Vec::new();
        if let Some(am) = &config.alertmanager {
            sinks.push(Sink {
                name: "alertmanager".to_owned(),
                target: Target::Alertmanager {
                    alerts_url: format!("{}/api/v2/alerts", am.url.trim_end_matches('/')),
                    resend_interval: am.resend_interval,
                },
                route: Route::new(&am.filter())
                    .map_err(|e| format!("notifications.alertmanager.{e}"))?,
                links: links.clone(),
            });
        }
        if let Some(slack) = &config.slack {
            sinks.push(Sink {
                name: "slack".to_owned(),
                target: Target::Slack {
                    url: slack.webhook_url.clone(),
                },
                route: Route::new(&slack.filter())
                    .map_err(|e| format!("notifications.slack.{e}"))?,
                links: links.clone(),
            });
        }
        for (i, hook) in config.webhooks.iter().enumerate() {
            sinks.push(Sink {
                name: format!("webhook/{}", hook.name),
                target: Target::Webhook(Box::new(hook.clone())),
                route: Route::new(&hook.filter())
                    .map_err(|e| format!("notifications.webhooks[{i}].{e}"))?,
                links: links.clone(),
            });
        }
        Ok(sinks)
    }

    /// Whether this sink takes `message`. Alertmanager takes record events only: component
    /// health reaches it through DriftGuard's own metrics and alert rules.
    pub fn takes(&self, message: &Message) -> bool {
        match message {
            Message::Record(notice) => self.route.accepts(notice),
            Message::Health(_) => {
                !matches!(self.target, Target::Alertmanager { .. }) && self.route.accepts_health()
            }
        }
    }

    /// Most messages in one group: one Alertmanager `POST` carries many alerts, a Slack message
    /// lists a few and counts the rest, a webhook batch stays below a few hundred kilobytes.
    pub fn group_max(&self) -> usize {
        match self.target {
            Target::Alertmanager { .. } => 500,
            Target::Slack { .. } => 1000,
            Target::Webhook(_) => 250,
        }
    }

    /// The URL messages are posted to.
    pub fn url(&self) -> &str {
        match &self.target {
            Target::Alertmanager { alerts_url, .. } => alerts_url,
            Target::Slack { url } => url,
            Target::Webhook(hook) => &hook.url,
        }
    }

    /// The URL as it may be shown (no path, query or user info).
    pub fn shown_url(&self) -> String {
        redacted_url(self.url())
    }

    /// The request delivering `group` (messages of one sort, see [`Message::same_sort`]).
    /// `ended` are Alertmanager alerts to end alongside (an episode whose labels changed).
    pub fn request(&self, group: &[&Message], ended: &[Value], now: DateTime<Utc>) -> Request {
        let notices: Vec<Notice> = group
            .iter()
            .filter_map(|m| match m {
                Message::Record(n) => Some((**n).clone()),
                Message::Health(_) => None,
            })
            .collect();
        match &self.target {
            Target::Alertmanager { .. } => {
                let mut alerts: Vec<Value> = notices
                    .iter()
                    .map(|n| alertmanager_alert(n, &self.links))
                    .collect();
                alerts.extend(ended.iter().cloned());
                json_request(&Value::Array(alerts))
            }
            Target::Slack { .. } => {
                let body = if notices.is_empty() {
                    let health: Vec<&HealthEvent> = group
                        .iter()
                        .filter_map(|m| match m {
                            Message::Health(h) => Some(h),
                            Message::Record(_) => None,
                        })
                        .collect();
                    slack_health_message(&health)
                } else {
                    slack_message(&notices, &self.links)
                };
                json_request(&body)
            }
            Target::Webhook(hook) => {
                let bodies: Vec<Value> = group
                    .iter()
                    .map(|m| match m {
                        Message::Record(n) => webhook_body(n, &self.links),
                        Message::Health(h) => webhook_health_body(h),
                    })
                    .collect();
                let (body, event, key) = match bodies.as_slice() {
                    [one] => (
                        one.clone(),
                        one["event"].as_str().unwrap_or_default().to_owned(),
                        one["idempotency_key"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    _ => {
                        let key = batch_key(group);
                        (
                            json!({
                                "version": WEBHOOK_VERSION,
                                "event": "batch",
                                "idempotency_key": key,
                                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                                "events": bodies,
                            }),
                            "batch".to_owned(),
                            key,
                        )
                    }
                };
                let body = body.to_string().into_bytes();
                let headers = webhook_headers(hook, &event, &key, &body);
                Request { body, headers }
            }
        }
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("url", &self.shown_url())
            .finish_non_exhaustive()
    }
}

/// A JSON `POST` of `body` (Alertmanager and Slack; webhooks add their own headers).
pub fn json_request(body: &Value) -> Request {
    Request {
        body: body.to_string().into_bytes(),
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
    }
}

/// `batch:<sha256 of the events' keys>`: the same for every delivery of the same group.
fn batch_key(group: &[&Message]) -> String {
    let mut hash = Sha256::new();
    for m in group {
        hash.update(m.key().as_bytes());
        hash.update([0]);
    }
    format!("batch:{}", hex::encode(hash.finalize()))
}

/// The HTTP client of the notifier: timeouts, no redirects (a redirect could carry a token
/// elsewhere).
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("driftguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the notification HTTP client: {e}"))
}

/// Posts `request` to `url`. Success is any 2xx answer.
pub async fn post(client: &reqwest::Client, url: &str, request: Request) -> Result<(), Failure> {
    let mut builder = client.post(url).body(request.body);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder.send().await.map_err(|e| Failure {
        retry: true,
        message: describe(&e.without_url()),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(ANSWER_CHARS)
        .collect();
    Err(Failure {
        retry: status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT,
        message: format!("answered {}: {}", status.as_u16(), answer.trim()),
    })
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut message = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Counts messages by event, for logs.
pub fn count_events(group: &[&Message]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for m in group {
        let name = match m {
            Message::Record(n) => n.event.as_str(),
            Message::Health(_) => EventKind::Health.as_str(),
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

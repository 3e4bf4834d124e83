//! The HTTP API (contract §5) over a real SQLite store, plus a fake store for outages.
//!
//! Each test gets its own temporary database. The OpenAPI document is snapshot-tested against
//! `tests/snapshots/openapi.json`; after a deliberate API change, regenerate it with
//!
//! ```text
//! UPDATE_SNAPSHOTS=1 cargo test -p driftguard-server --test api api_openapi_matches_snapshot
//! ```
//!
//! and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use driftguard_core::{
    Change, DriftRecord, DriftStatus, DriftType, Episode, FieldPath, Op, Severity,
};
use driftguard_server::api::{self, ApiState};
use driftguard_server::health::{Health, Readiness};
use driftguard_server::metrics::Metrics;
use driftguard_server::openapi;
use driftguard_server::runs::Runs;
use driftguard_store::{
    Error as StoreError, OutboxEntry, Page, RecordQuery, SqliteStore, Statistics, Store, Write,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;
use uuid::Uuid;

const TOKEN: &str = "s3cret-t0ken";

// === fixtures ===

struct Harness {
    router: Router,
    state: ApiState,
    _dir: Option<TempDir>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a JSON error answer with this status and code.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert!(
            self.content_type().starts_with("application/json"),
            "{:?}",
            self.headers
        );
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {body}"
        );
        assert_eq!(body.as_object().unwrap().len(), 2, "body: {body}");
    }
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, day, hour, 0, 0).unwrap()
}

fn change(field: &str, drift_type: DriftType, severity: Severity) -> Change {
    Change {
        field: FieldPath::parse(field).unwrap(),
        op: Op::Changed,
        from: Some(json!(2)),
        to: Some(json!(4)),
        drift_type,
        severity,
        manager: Some("kubectl-edit".into()),
        changed_at: Some(at(2, 0)),
        source_line: None,
    }
}

/// A record; `changes` are already sorted and the first is the headline.
fn record(
    resource_id: &str,
    status: DriftStatus,
    changes: Vec<Change>,
    updated: DateTime<Utc>,
) -> DriftRecord {
    let mut parts = resource_id.splitn(3, ':');
    let kind = parts.next().unwrap().to_owned();
    let namespace = parts.next().unwrap().to_owned();
    let name = parts.next().unwrap().to_owned();
    let active = status == DriftStatus::Active;
    let headline = changes.first().filter(|_| active);
    DriftRecord {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, resource_id.as_bytes()),
        resource_id: resource_id.to_owned(),
        api_version: if kind == "ClusterRole" {
            "rbac.authorization.k8s.io/v1"
        } else {
            "v1"
        }
        .into(),
        kind,
        namespace,
        name,
        drift_detected: active,
        drift_status: status,
        drift_type: headline.map(|c| c.drift_type),
        severity: headline.map(|c| c.severity),
        drift_details: if active { changes } else { Vec::new() },
        warnings: Vec::new(),
        desired_state: Some(json!({"spec": {"replicas": 2}})),
        live_state: Some(json!({"spec": {"replicas": 4}})),
        last_known_good_hash: Some(format!("sha256:{}", "a".repeat(64))),
        live_hash: Some(format!("sha256:{}", "b".repeat(64))),
        git_commit: Some("3f2a9c1".repeat(5) + "abcde"),
        source_path: Some("apps/web.yaml#0".into()),
        source_line: None,
        helm_release: None,
        managed: true,
        first_detected: (status != DriftStatus::None).then(|| at(1, 0)),
        resolved_at: (status == DriftStatus::Resolved).then(|| at(1, 6)),
        resolution_message: (status == DriftStatus::Resolved)
            .then(|| "live state matches Git again at commit 3f2a9c1".to_owned()),
        last_updated: updated,
        created_at: at(1, 0),
    }
}

fn episode(start: DateTime<Utc>, end: Option<DateTime<Utc>>, drift_type: DriftType) -> Episode {
    Episode {
        first_detected: start,
        resolved_at: end,
        resolution_message: end.map(|_| "reverted".to_owned()),
        drift_type: Some(drift_type),
        severity: Some(Severity::High),
        changes: vec![change("spec.replicas", drift_type, Severity::High)],
        git_commit: Some("c".repeat(40)),
    }
}

/// Six records, ordered by resource id:
/// `ClusterRole::view-drift` (active, SecurityChange high, cluster-scoped),
/// `ConfigMap:prod:settings` (resolved), `Deployment:prod:api` (active, ConfigurationChange
/// medium), `Deployment:prod:web` (active, Scaling high + VersionChange high),
/// `Secret:staging:creds` (none), `Service:staging:web` (none).
fn fixture() -> Vec<Write> {
    let upsert = |record: DriftRecord, episode: Option<Episode>| Write::Upsert { record, episode };
    vec![
        upsert(
            record(
                "Deployment:prod:web",
                DriftStatus::Active,
                vec![
                    change("spec.replicas", DriftType::Scaling, Severity::High),
                    change(
                        "spec.template.spec.containers[name=web].image",
                        DriftType::VersionChange,
                        Severity::High,
                    ),
                ],
                at(3, 0),
            ),
            Some(episode(at(1, 0), None, DriftType::Scaling)),
        ),
        Write::Episode {
            resource_id: "Deployment:prod:web".into(),
            episode: episode(
                Utc.with_ymd_and_hms(2024, 4, 1, 0, 0, 0).unwrap(),
                Some(Utc.with_ymd_and_hms(2024, 4, 2, 0, 0, 0).unwrap()),
                DriftType::LabelChange,
            ),
        },
        upsert(
            record(
                "Deployment:prod:api",
                DriftStatus::Active,
                vec![change(
                    "spec.template.spec.containers[name=api].args",
                    DriftType::ConfigurationChange,
                    Severity::Medium,
                )],
                at(2, 12),
            ),
            Some(episode(at(2, 0), None, DriftType::ConfigurationChange)),
        ),
        upsert(
            record(
                "ConfigMap:prod:settings",
                DriftStatus::Resolved,
                Vec::new(),
                Utc.with_ymd_and_hms(2024, 4, 20, 0, 0, 0).unwrap(),
            ),
            Some(episode(
                at(1, 0),
                Some(at(1, 6)),
                DriftType::ConfigMapChange,
            )),
        ),
        upsert(
            record(
                "Service:staging:web",
                DriftStatus::None,
                Vec::new(),
                at(1, 0),
            ),
            None,
        ),
        upsert(
            record(
                "ClusterRole::view-drift",
                DriftStatus::Active,
                vec![change("rules", DriftType::SecurityChange, Severity::High)],
                at(4, 0),
            ),
            Some(episode(at(4, 0), None, DriftType::SecurityChange)),
        ),
        upsert(
            record(
                "Secret:staging:creds",
                DriftStatus::None,
                Vec::new(),
                at(1, 0),
            ),
            None,
        ),
        // A resource that left the current view: its history stays.
        upsert(
            record(
                "Job:prod:migrate",
                DriftStatus::Active,
                vec![change(
                    "spec.parallelism",
                    DriftType::GenericChange,
                    Severity::Medium,
                )],
                at(1, 0),
            ),
            Some(episode(at(1, 0), None, DriftType::GenericChange)),
        ),
        Write::Remove {
            resource_id: "Job:prod:migrate".into(),
            closing_episode: Some(episode(at(1, 0), Some(at(1, 3)), DriftType::GenericChange)),
        },
    ]
}

fn state(store: Arc<dyn Store>, token: Option<&str>) -> ApiState {
    ApiState {
        store,
        runs: Arc::new(Runs::default()),
        readiness: Arc::new(Readiness::default()),
        metrics: Arc::new(Metrics::new()),
        auth_token: token.map(Arc::from),
        events: Arc::default(),
        source_web: None,
        leadership: std::sync::Arc::new(driftguard_server::leader::Leadership::single()),
    }
}

async fn harness_with(token: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("api.db"), Duration::from_secs(5))
        .await
        .unwrap();
    store.apply(&fixture()).await.unwrap();
    let state = state(Arc::new(store), token);
    Harness {
        router: api::router(state.clone()),
        state,
        _dir: Some(dir),
    }
}

async fn harness() -> Harness {
    harness_with(None).await
}

async fn call(router: &Router, method: Method, uri: &str, token: Option<&str>) -> Reply {
    let response = request(router, method, uri, &bearer(token)).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// `Authorization: Bearer <token>` when there is a token.
fn bearer(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

/// Sends a request without a body; the response's body is left unread.
async fn request(
    router: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
) -> axum::response::Response {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Opens a streaming response (`GET`) and returns its head and body without reading it all.
async fn open_stream(
    router: &Router,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, HeaderMap, Body) {
    let (parts, body) = request(router, Method::GET, uri, &bearer(token))
        .await
        .into_parts();
    (parts.status, parts.headers, body)
}

/// Reads `body` until it holds `count` SSE events (blocks separated by a blank line) that
/// are not comments, or 10 s pass.
async fn read_events(body: Body, count: usize) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let mut body = body.into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|block| block.lines().any(|l| l.starts_with("event:")))
            .filter(|block| block.lines().any(|l| l.starts_with("data:")))
            .map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_owned())
                        .unwrap_or_default()
                };
                (
                    field("event:"),
                    serde_json::from_str(&field("data:")).unwrap(),
                )
            })
            .collect();
        if events.len() >= count {
            return events;
        }
        let data = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("only {} events within 10 s: {text}", events.len()))
            .expect("the stream ended")
            .unwrap();
        text.push_str(std::str::from_utf8(&data).unwrap());
    }
}

async fn get(h: &Harness, uri: &str) -> Reply {
    call(&h.router, Method::GET, uri, None).await
}

/// The resource ids of a listing, after checking its envelope.
fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.text);
    let body = reply.json();
    let records = body["drift_records"]
        .as_array()
        .expect("drift_records is an array");
    assert_eq!(body["count"], records.len(), "count is the page size");
    records
        .iter()
        .map(|r| r["resource_id"].as_str().unwrap().to_owned())
        .collect()
}

// === listings ===

#[tokio::test]
async fn api_lists_every_record_ordered_by_resource_id() {
    let h = harness().await;
    let reply = get(&h, "/api/v1/drift-records").await;
    assert_eq!(
        ids(&reply),
        [
            "ClusterRole::view-drift",
            "ConfigMap:prod:settings",
            "Deployment:prod:api",
            "Deployment:prod:web",
            "Secret:staging:creds",
            "Service:staging:web",
        ]
    );
    let body = reply.json();
    assert_eq!(body["total"], 6);
    assert!(body.get("status").is_none());
    let web = &body["drift_records"][3];
    assert_eq!(web["drift_type"], "Scaling");
    assert_eq!(web["severity"], "high");
    assert_eq!(web["drift_details"][1]["type"], "VersionChange");
    assert_eq!(web["drift_details"][0]["field"], "spec.replicas");
    let none = &body["drift_records"][5];
    assert_eq!(none["drift_details"], json!([]), "[] never null");
    assert_eq!(none["drift_type"], Value::Null);
    assert_eq!(none["first_detected"], Value::Null);
}

#[tokio::test]
async fn api_filters_each_parameter() {
    let h = harness().await;
    let cases: &[(&str, &[&str])] = &[
        (
            "namespace=prod",
            &[
                "ConfigMap:prod:settings",
                "Deployment:prod:api",
                "Deployment:prod:web",
            ],
        ),
        ("namespace=", &["ClusterRole::view-drift"]),
        (
            "kind=Deployment",
            &["Deployment:prod:api", "Deployment:prod:web"],
        ),
        (
            "drift_detected=true",
            &[
                "ClusterRole::view-drift",
                "Deployment:prod:api",
                "Deployment:prod:web",
            ],
        ),
        (
            "drift_detected=false",
            &[
                "ConfigMap:prod:settings",
                "Secret:staging:creds",
                "Service:staging:web",
            ],
        ),
        (
            "status=active",
            &[
                "ClusterRole::view-drift",
                "Deployment:prod:api",
                "Deployment:prod:web",
            ],
        ),
        ("status=resolved", &["ConfigMap:prod:settings"]),
        (
            "status=none",
            &["Secret:staging:creds", "Service:staging:web"],
        ),
        (
            "severity=high",
            &["ClusterRole::view-drift", "Deployment:prod:web"],
        ),
        ("severity=medium", &["Deployment:prod:api"]),
        ("severity=low", &[]),
        // `type` matches any change, not only the headline.
        ("type=VersionChange", &["Deployment:prod:web"]),
        ("type=Scaling", &["Deployment:prod:web"]),
        ("type=SecurityChange", &["ClusterRole::view-drift"]),
        (
            "since=2024-05-03T00:00:00Z",
            &["ClusterRole::view-drift", "Deployment:prod:web"],
        ),
        (
            "since=2024-05-03T02:00:00%2B02:00",
            &["ClusterRole::view-drift", "Deployment:prod:web"],
        ),
        ("since=2024-05-04T00:00:00.000000001Z", &[]),
        (
            "namespace=prod&kind=Deployment&severity=high",
            &["Deployment:prod:web"],
        ),
        ("kind=Nope", &[]),
    ];
    for (query, expected) in cases {
        let reply = get(&h, &format!("/api/v1/drift-records?{query}")).await;
        assert_eq!(ids(&reply), *expected, "?{query}");
        assert_eq!(reply.json()["total"], expected.len(), "?{query}");
    }
}

#[tokio::test]
async fn api_pages_with_total_before_paging() {
    let h = harness().await;
    let reply = get(&h, "/api/v1/drift-records?limit=2").await;
    assert_eq!(
        ids(&reply),
        ["ClusterRole::view-drift", "ConfigMap:prod:settings"]
    );
    assert_eq!(reply.json()["total"], 6);
    let reply = get(&h, "/api/v1/drift-records?limit=2&offset=4").await;
    assert_eq!(ids(&reply), ["Secret:staging:creds", "Service:staging:web"]);
    assert_eq!(reply.json()["total"], 6);
    let reply = get(&h, "/api/v1/drift-records?offset=100").await;
    assert_eq!(reply.json()["drift_records"], json!([]), "[] never null");
    assert_eq!(reply.json()["count"], 0);
    assert_eq!(reply.json()["total"], 6);
    let reply = get(
        &h,
        "/api/v1/drift-records?offset=9223372036854775807&limit=10000",
    )
    .await;
    assert_eq!(ids(&reply), Vec::<String>::new());
    let reply = get(&h, "/api/v1/drift-records?status=active&limit=1&offset=1").await;
    assert_eq!(ids(&reply), ["Deployment:prod:api"]);
    assert_eq!(reply.json()["total"], 3);
}

#[tokio::test]
async fn api_rejects_each_bad_parameter_with_400_json() {
    let h = harness().await;
    let cases = [
        ("drift_detected=yes", "invalid_parameter"),
        ("drift_detected=1", "invalid_parameter"),
        ("drift_detected=", "invalid_parameter"),
        ("status=open", "invalid_parameter"),
        ("status=Active", "invalid_parameter"),
        ("severity=critical", "invalid_parameter"),
        ("type=scaling", "invalid_parameter"),
        ("type=", "invalid_parameter"),
        ("since=yesterday", "invalid_parameter"),
        ("since=2024-05-01", "invalid_parameter"),
        ("limit=0", "invalid_parameter"),
        ("limit=10001", "invalid_parameter"),
        ("limit=-1", "invalid_parameter"),
        ("limit=ten", "invalid_parameter"),
        ("limit=", "invalid_parameter"),
        ("offset=-1", "invalid_parameter"),
        ("offset=1.5", "invalid_parameter"),
        ("offset=9223372036854775808", "invalid_parameter"),
        ("namspace=prod", "unknown_parameter"),
        ("limit=1&limit=2", "duplicate_parameter"),
    ];
    for (query, code) in cases {
        for route in ["/api/v1/drift-records", "/api/v1/drift-records/active"] {
            let reply = get(&h, &format!("{route}?{query}")).await;
            reply.assert_error(StatusCode::BAD_REQUEST, code);
        }
    }
    let reply = get(&h, "/api/v1/drift-records?limit=0").await;
    assert!(reply.json()["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn api_active_and_resolved_force_the_status() {
    let h = harness().await;
    let reply = get(&h, "/api/v1/drift-records/active").await;
    assert_eq!(
        ids(&reply),
        [
            "ClusterRole::view-drift",
            "Deployment:prod:api",
            "Deployment:prod:web"
        ]
    );
    assert_eq!(reply.json()["status"], "active");
    assert_eq!(reply.json()["total"], 3);
    let reply = get(&h, "/api/v1/drift-records/active?namespace=prod&limit=1").await;
    assert_eq!(ids(&reply), ["Deployment:prod:api"]);
    assert_eq!(reply.json()["total"], 2);
    let reply = get(&h, "/api/v1/drift-records/active?status=active").await;
    assert_eq!(reply.json()["total"], 3);
    get(&h, "/api/v1/drift-records/active?status=resolved")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "conflicting_parameter");

    let reply = get(&h, "/api/v1/drift-records/resolved").await;
    assert_eq!(ids(&reply), ["ConfigMap:prod:settings"]);
    assert_eq!(reply.json()["status"], "resolved");
    let reply = get(&h, "/api/v1/drift-records/resolved?kind=Deployment").await;
    assert_eq!(reply.json()["drift_records"], json!([]));
    assert_eq!(reply.json()["status"], "resolved");
}

// === one record, history ===

#[tokio::test]
async fn api_gets_one_record_by_resource_id() {
    let h = harness().await;
    for uri in [
        "/api/v1/drift-records/Deployment:prod:web",
        "/api/v1/drift-records/Deployment%3Aprod%3Aweb",
        "/api/v1/drift-records/Deployment%3aprod%3aweb",
    ] {
        let reply = get(&h, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text);
        let body = reply.json();
        assert_eq!(
            body["resource_id"], "Deployment:prod:web",
            "the bare record"
        );
        assert_eq!(body["drift_status"], "active");
        assert_eq!(
            body["id"],
            Uuid::new_v5(&Uuid::NAMESPACE_OID, b"Deployment:prod:web").to_string()
        );
    }
    let reply = get(&h, "/api/v1/drift-records/ClusterRole::view-drift").await;
    assert_eq!(reply.json()["namespace"], "");

    get(&h, "/api/v1/drift-records/Deployment:prod:nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // A resource that left the view has history but no record.
    get(&h, "/api/v1/drift-records/Job:prod:migrate")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // `/active` and `/resolved` are listings, never resource ids.
    assert_eq!(
        get(&h, "/api/v1/drift-records/active").await.json()["status"],
        "active"
    );
    assert_eq!(
        get(&h, "/api/v1/drift-records/resolved").await.json()["status"],
        "resolved"
    );
    // Invalid UTF-8 after percent-decoding.
    get(&h, "/api/v1/drift-records/%FF%FE")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_path");
}

#[tokio::test]
async fn api_history_is_newest_first_and_outlives_the_record() {
    let h = harness().await;
    let reply = get(&h, "/api/v1/drift-records/Deployment%3Aprod%3Aweb/history").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["resource_id"], "Deployment:prod:web");
    let episodes = body["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2);
    assert_eq!(episodes[0]["first_detected"], "2024-05-01T00:00:00Z");
    assert_eq!(episodes[0]["resolved_at"], Value::Null);
    assert_eq!(episodes[1]["drift_type"], "LabelChange");
    assert_eq!(episodes[1]["resolution_message"], "reverted");
    let keys: BTreeSet<&str> = episodes[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "first_detected",
            "resolved_at",
            "resolution_message",
            "drift_type",
            "severity",
            "changes",
            "git_commit"
        ])
    );
    assert_eq!(episodes[0]["changes"][0]["field"], "spec.replicas");

    let reply = get(&h, "/api/v1/drift-records/Job:prod:migrate/history").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.json()["episodes"][0]["resolved_at"],
        "2024-05-01T03:00:00Z"
    );

    let reply = get(&h, "/api/v1/drift-records/Service:staging:web/history").await;
    assert_eq!(
        reply.json()["episodes"],
        json!([]),
        "known, never drifted: [] not null"
    );

    get(&h, "/api/v1/drift-records/Deployment:prod:nope/history")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn api_statistics_counts_and_rounds() {
    let h = harness().await;
    let reply = get(&h, "/api/v1/statistics").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let stats = &reply.json()["statistics"];
    assert_eq!(stats["total_records"], 6);
    assert_eq!(stats["active_drift"], 3);
    assert_eq!(stats["resolved_drift"], 1);
    assert_eq!(stats["no_drift"], 2);
    assert_eq!(stats["active_percentage"], 50.0);
    assert_eq!(stats["resolved_percentage"], 16.67);
    for key in ["recent_active_drift", "recent_resolutions"] {
        assert!(stats[key].is_u64(), "{key}: {stats}");
    }
}

// === store failures ===

/// A store that fails every call, as an outage (`Unavailable`) or a backend failure.
struct FailingStore {
    unavailable: bool,
}

impl FailingStore {
    fn fail<T>(&self, operation: &'static str) -> driftguard_store::Result<T> {
        // The source carries record contents; they must never reach an answer.
        let source = "record {\"data\":{\"password\":\"hunter2\"}} unreadable".into();
        Err(if self.unavailable {
            StoreError::Unavailable { operation, source }
        } else {
            StoreError::Backend { operation, source }
        })
    }
}

#[async_trait]
impl Store for FailingStore {
    async fn ping(&self) -> driftguard_store::Result<()> {
        self.fail("pinging")
    }
    async fn installation_key(&self) -> driftguard_store::Result<Vec<u8>> {
        self.fail("reading the installation key")
    }
    async fn load_current(&self) -> driftguard_store::Result<Vec<DriftRecord>> {
        self.fail("loading the current view")
    }
    async fn apply(&self, _batch: &[Write]) -> driftguard_store::Result<()> {
        self.fail("writing an analysis batch")
    }
    async fn list(&self, _query: &RecordQuery) -> driftguard_store::Result<Page> {
        self.fail("listing records")
    }
    async fn get(&self, _resource_id: &str) -> driftguard_store::Result<Option<DriftRecord>> {
        self.fail("reading a record")
    }
    async fn history(&self, _resource_id: &str) -> driftguard_store::Result<Option<Vec<Episode>>> {
        self.fail("reading history")
    }
    async fn statistics(&self, _now: DateTime<Utc>) -> driftguard_store::Result<Statistics> {
        self.fail("computing statistics")
    }
    async fn outbox_push(&self, _entries: &[OutboxEntry]) -> driftguard_store::Result<()> {
        self.fail("queueing notifications")
    }
    async fn outbox_pending(&self) -> driftguard_store::Result<Vec<OutboxEntry>> {
        self.fail("reading the outbox")
    }
    async fn outbox_remove(&self, _sink: &str, _keys: &[String]) -> driftguard_store::Result<()> {
        self.fail("removing notifications")
    }
    async fn claim_term(&self, _lease_term: u64, _holder: &str) -> driftguard_store::Result<u64> {
        self.fail("claiming the writer's term")
    }
    async fn request_run(
        &self,
        _run_id: &str,
        _requested_at: DateTime<Utc>,
    ) -> driftguard_store::Result<()> {
        self.fail("queueing an analysis request")
    }
    async fn take_run_requests(&self) -> driftguard_store::Result<Vec<(String, DateTime<Utc>)>> {
        self.fail("taking analysis requests")
    }
    async fn put_run(&self, _run_id: &str, _json: &str) -> driftguard_store::Result<()> {
        self.fail("storing an analysis run")
    }
    async fn get_run(&self, _run_id: &str) -> driftguard_store::Result<Option<String>> {
        self.fail("reading an analysis run")
    }
}

fn failing(unavailable: bool) -> Harness {
    let state = state(Arc::new(FailingStore { unavailable }), None);
    Harness {
        router: api::router(state.clone()),
        state,
        _dir: None,
    }
}

const STORE_ROUTES: [&str; 6] = [
    "/api/v1/drift-records",
    "/api/v1/drift-records/active",
    "/api/v1/drift-records/resolved",
    "/api/v1/drift-records/Deployment:prod:web",
    "/api/v1/drift-records/Deployment:prod:web/history",
    "/api/v1/statistics",
];

#[tokio::test]
async fn api_store_outage_is_503_never_404() {
    let h = failing(true);
    for uri in STORE_ROUTES {
        let reply = get(&h, uri).await;
        reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
        assert!(reply.headers.contains_key(header::RETRY_AFTER), "{uri}");
        assert!(!reply.text.contains("hunter2"), "{uri}: {}", reply.text);
    }
    // Validation still comes first.
    get(&h, "/api/v1/drift-records?limit=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    let metrics = get(&h, "/metrics").await.text;
    assert!(
        metrics.contains("driftguard_store_operations_total{operation=\"get\",result=\"error\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn api_store_failure_is_500_without_record_contents() {
    let h = failing(false);
    for uri in STORE_ROUTES {
        let reply = get(&h, uri).await;
        reply.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "store_error");
        assert!(!reply.text.contains("hunter2"), "{uri}: {}", reply.text);
        assert!(!reply.text.contains("password"), "{uri}: {}", reply.text);
    }
}

// === routing errors ===

#[tokio::test]
async fn api_unknown_routes_are_404_json_and_wrong_methods_405_json() {
    let h = harness().await;
    for uri in [
        "/nope",
        "/api/v1/nope",
        "/api/v1/drift-records/",
        "/api/v2/drift-records",
        "/ui/nope",
    ] {
        get(&h, uri)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let reply = call(&h.router, Method::DELETE, "/api/v1/drift-records", None).await;
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(
        reply
            .headers
            .get(header::ALLOW)
            .is_some_and(|v| v.to_str().unwrap().contains("GET"))
    );
    let reply = call(&h.router, Method::GET, "/api/v1/analyze", None).await;
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.headers.get(header::ALLOW).unwrap(), "POST");
    call(&h.router, Method::POST, "/health", None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

// === auth ===

#[tokio::test]
async fn api_bearer_token_guards_only_the_api() {
    let h = harness_with(Some(TOKEN)).await;
    for uri in [
        "/api/v1/drift-records",
        "/api/v1/statistics",
        "/api/v1/openapi.json",
        "/api/v1/nope",
    ] {
        let reply = call(&h.router, Method::GET, uri, None).await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(
            reply
                .headers
                .get(header::WWW_AUTHENTICATE)
                .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
            "{uri}"
        );
        call(&h.router, Method::GET, uri, Some("wrong"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        call(&h.router, Method::GET, uri, Some(&format!("{TOKEN}x")))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    call(&h.router, Method::POST, "/api/v1/analyze", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // A Basic header is not a bearer token.
    let request = Request::get("/api/v1/drift-records")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.router.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let reply = call(&h.router, Method::GET, "/api/v1/drift-records", Some(TOKEN)).await;
    assert_eq!(ids(&reply).len(), 6);
    let reply = call(&h.router, Method::POST, "/api/v1/analyze", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    call(&h.router, Method::GET, "/api/v1/nope", Some(TOKEN))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    assert_eq!(get(&h, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&h, "/metrics").await.status, StatusCode::OK);
    assert_eq!(
        get(&h, "/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "open, just not ready"
    );
}

#[tokio::test]
async fn api_empty_token_disables_auth() {
    let h = harness_with(Some("")).await;
    assert_eq!(
        get(&h, "/api/v1/drift-records").await.status,
        StatusCode::OK
    );
}

// === cross-site requests ===

async fn analyze_with(h: &Harness, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/analyze");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = h
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn api_analyze_refuses_cross_site_requests() {
    let h = harness().await;
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ],
        vec![
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ],
        vec![
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8081"),
        ],
        vec![("host", "localhost:8080"), ("origin", "null")],
        vec![("origin", "http://localhost:8080")],
    ] {
        let reply = analyze_with(&h, &headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(
            reply.content_type().starts_with("application/json"),
            "{headers:?}"
        );
        assert_eq!(reply.json()["error"], "cross_site_request", "{headers:?}");
    }
    assert!(
        h.state.runs.try_start().is_none(),
        "no refused request started a run"
    );
    for headers in [
        // curl, scripts, CI: no browser headers.
        vec![],
        vec![("host", "127.0.0.1:8080")],
        vec![("sec-fetch-site", "same-origin")],
        vec![("sec-fetch-site", "none")],
        vec![
            ("sec-fetch-site", "same-origin"),
            ("host", "driftguard.example:8080"),
            ("origin", "http://DriftGuard.example:8080"),
        ],
        vec![
            ("host", "driftguard.example"),
            ("origin", "http://driftguard.example"),
        ],
        vec![
            ("host", "driftguard.example:443"),
            ("origin", "https://driftguard.example"),
        ],
    ] {
        let reply = analyze_with(&h, &headers).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{headers:?}: {}",
            reply.text
        );
    }
}

// === health, readiness, metrics ===

#[tokio::test]
async fn api_health_is_liveness_only() {
    let h = failing(true);
    let reply = get(&h, "/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["message"], "Service is running");
    let time = body["time"].as_str().unwrap();
    assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert!(time.ends_with('Z'), "{time}");
}

#[tokio::test]
async fn api_ready_follows_readiness() {
    let h = harness().await;
    let readiness = &h.state.readiness;
    readiness.register("store", true, "connecting");
    readiness.register("git", true, "first fetch");
    let reply = get(&h, "/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["status"], "not ready");
    assert_eq!(reply.json()["components"]["store"]["status"], "pending");

    readiness.set("store", Health::Ok, "ok");
    readiness.set("git", Health::Ok, "commit abc1234, 3 objects");
    let reply = get(&h, "/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    let git = &body["components"]["git"];
    assert_eq!(git["status"], "ok");
    assert_eq!(git["message"], "commit abc1234, 3 objects");
    assert!(git["since"].is_string());

    readiness.set("git", Health::Degraded, "fetch failed");
    let reply = get(&h, "/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["status"], "degraded");

    readiness.set("store", Health::Down, "unreachable");
    let reply = get(&h, "/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["status"], "not ready");
}

#[tokio::test]
async fn api_ready_shows_short_reasons_without_paths_or_hosts() {
    let h = harness().await;
    let readiness = &h.state.readiness;
    readiness.set(
        "store",
        Health::Down,
        "store unavailable while opening the database: unable to open database file: \
         /var/lib/private/driftguard.db",
    );
    readiness.set(
        "git",
        Health::Degraded,
        "fetch failing, last good snapshot kept: cannot fetch https://git.internal.example/org/repo.git",
    );
    readiness.set(
        "watch/secrets",
        Health::Degraded,
        "forbidden: secrets is forbidden: User \"system:serviceaccount:dg:dg\" cannot list",
    );
    readiness.set(
        "kubernetes",
        Health::Pending,
        "error trying to connect: tcp connect error: 10.96.0.1:443",
    );
    let reply = get(&h, "/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    for leak in [
        "/var/lib",
        "driftguard.db",
        "git.internal.example",
        "serviceaccount",
        "10.96.0.1",
    ] {
        assert!(!reply.text.contains(leak), "{leak} in {}", reply.text);
    }
    let body = reply.json();
    assert_eq!(body["components"]["store"]["message"], "unreachable");
    assert_eq!(
        body["components"]["git"]["message"],
        "fetch failing, last good snapshot kept"
    );
    assert_eq!(body["components"]["watch/secrets"]["message"], "forbidden");
    assert_eq!(
        body["components"]["kubernetes"]["message"],
        "waiting for the API server"
    );
    // The state itself keeps the detail (for the log and for tests).
    assert!(
        readiness
            .get("store")
            .unwrap()
            .message
            .contains("driftguard.db")
    );
}

#[tokio::test]
async fn api_metrics_label_requests_by_route_template() {
    let h = harness().await;
    get(&h, "/api/v1/drift-records/Deployment:prod:web").await;
    get(&h, "/api/v1/drift-records/Deployment:prod:nope").await;
    get(&h, "/api/v1/drift-records?limit=0").await;
    get(&h, "/no/such/route").await;
    let reply = get(&h, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = reply.text;
    for line in [
        "driftguard_http_requests_total{route=\"/api/v1/drift-records/{resourceId}\",method=\"GET\",status=\"200\"} 1",
        "driftguard_http_requests_total{route=\"/api/v1/drift-records/{resourceId}\",method=\"GET\",status=\"404\"} 1",
        "driftguard_http_requests_total{route=\"/api/v1/drift-records\",method=\"GET\",status=\"400\"} 1",
        "driftguard_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "driftguard_http_request_duration_seconds_count{route=\"/api/v1/drift-records/{resourceId}\",method=\"GET\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(
        !text.contains("Deployment:prod"),
        "resource ids never become labels"
    );
    assert!(!text.contains("/no/such/route"));
}

// === analysis runs ===

#[tokio::test]
async fn api_analyze_answers_202_and_the_run_can_be_looked_up() {
    let h = harness().await;
    let reply = call(&h.router, Method::POST, "/api/v1/analyze", None).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["message"], "Drift analysis triggered successfully");
    assert_eq!(body["status"], "started");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&run_id).is_ok());
    assert_eq!(
        reply.headers.get(header::LOCATION).unwrap(),
        &format!("/api/v1/analysis/{run_id}")
    );

    // A second trigger before the run starts joins it.
    let again = call(&h.router, Method::POST, "/api/v1/analyze", None)
        .await
        .json();
    assert_eq!(again["run_id"], run_id.as_str());

    let reply = get(&h, &format!("/api/v1/analysis/{run_id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let run = reply.json();
    assert_eq!(run["run_id"], run_id.as_str());
    assert_eq!(run["status"], "queued");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["requests"], 2);

    let started = h.state.runs.try_start().unwrap();
    h.state.runs.finish(
        started.run_id,
        Some("c".repeat(40)),
        Default::default(),
        vec!["git: timeout".into()],
    );
    let run = get(&h, &format!("/api/v1/analysis/{run_id}")).await.json();
    assert_eq!(run["status"], "failed");
    assert_eq!(run["errors"], json!(["git: timeout"]));
    assert!(run["finished_at"].is_string());

    get(&h, &format!("/api/v1/analysis/{}", Uuid::new_v4()))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    get(&h, "/api/v1/analysis/not-a-uuid")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
}

// === OpenAPI ===

async fn served_document(h: &Harness) -> Value {
    let reply = get(h, "/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("application/json"));
    reply.json()
}

#[tokio::test]
async fn api_openapi_matches_snapshot() {
    // The snapshot is the document of a server with a token: every part of it.
    let h = harness_with(Some(TOKEN)).await;
    let reply = call(&h.router, Method::GET, "/api/v1/openapi.json", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let served = reply.json();
    assert_eq!(served, openapi::document(true));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pretty).unwrap();
        return;
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    // Compared as JSON values: key order depends on serde_json's `preserve_order` feature,
    // which other crates of the workspace may switch on.
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert!(
        snapshot == served,
        "the served OpenAPI document differs from {}; if the API change is deliberate, rerun with \
         UPDATE_SNAPSHOTS=1 and review the diff",
        path.display()
    );
}

#[tokio::test]
async fn api_openapi_declares_the_bearer_scheme_only_when_a_token_is_configured() {
    let open = served_document(&harness().await).await;
    assert!(open["components"]["securitySchemes"].is_null(), "{open}");
    assert!(open["components"]["responses"]["Unauthorized"].is_null());
    assert_eq!(open, openapi::document(false));

    let h = harness_with(Some(TOKEN)).await;
    let reply = call(&h.router, Method::GET, "/api/v1/openapi.json", Some(TOKEN)).await;
    let document = reply.json();
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    for (path, item) in document["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            if path.starts_with("/api/v1") {
                // Every status code the API can answer under /api/v1 is listed.
                assert!(op["responses"]["401"].is_object(), "{path}: 401");
                assert_eq!(op["security"], json!([{ "bearerAuth": [] }]), "{path}");
            } else {
                assert!(op["security"].is_null(), "{path} is open");
            }
        }
    }
    // The two documents differ by exactly the auth parts.
    let mut stripped = document.clone();
    stripped["components"]
        .as_object_mut()
        .unwrap()
        .remove("securitySchemes");
    stripped["components"]["responses"]
        .as_object_mut()
        .unwrap()
        .remove("Unauthorized");
    for item in stripped["paths"].as_object_mut().unwrap().values_mut() {
        for op in item.as_object_mut().unwrap().values_mut() {
            op.as_object_mut().unwrap().remove("security");
            op["responses"].as_object_mut().unwrap().remove("401");
        }
    }
    assert_eq!(stripped, open);
}

#[tokio::test]
async fn api_openapi_documents_every_route_and_nothing_else() {
    let h = harness().await;
    let document = served_document(&h).await;
    assert_eq!(document["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = api::routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(documented, served);
    // And the router really serves each of them (no fallback 404, no 405).
    for (method, path) in &served {
        let uri = path
            .replace("{resourceId}", "Deployment:prod:web")
            .replace("{run_id}", &Uuid::new_v4().to_string());
        if path == "/api/v1/events" {
            // A stream that stays open: its head is enough.
            let (status, headers, _) = open_stream(&h.router, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
            continue;
        }
        let reply = call(&h.router, method.parse().unwrap(), &uri, None).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            !reply.text.contains("no route for"),
            "{method} {path} fell through to the fallback"
        );
    }
    // Every documented parameter of a path template is declared.
    for (path, item) in document["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            let declared: Vec<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&document, p)["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    declared.iter().any(|d| d == name),
                    "{path}: {name} undeclared"
                );
            }
            // Without a token nothing answers 401, and no operation claims a security scheme.
            assert!(
                op["responses"]["401"].is_null(),
                "{path}: 401 without a token"
            );
            assert!(op["security"].is_null(), "{path}: security without a token");
        }
    }
    let list_params: Vec<String> = document["paths"]["/api/v1/drift-records"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| resolve(&document, p)["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(list_params, api::LIST_PARAMETERS);
}

fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"))
        }
        None => value,
    }
}

/// Keys of the schema's `properties`, and whether all are required.
fn schema_keys(document: &Value, name: &str) -> BTreeSet<String> {
    let schema = &document["components"]["schemas"][name];
    let properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(properties, required, "{name}: every key is always present");
    properties
}

fn object_keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn api_openapi_schemas_name_every_key_served() {
    let h = harness().await;
    let document = served_document(&h).await;
    let list = get(&h, "/api/v1/drift-records").await.json();
    let web = &list["drift_records"][3];
    assert_eq!(schema_keys(&document, "DriftRecord"), object_keys(web));
    assert_eq!(
        schema_keys(&document, "Change"),
        object_keys(&web["drift_details"][0])
    );
    assert_eq!(schema_keys(&document, "RecordList"), object_keys(&list));
    let active = get(&h, "/api/v1/drift-records/active").await.json();
    assert_eq!(
        schema_keys(&document, "ActiveRecordList"),
        object_keys(&active)
    );
    let history = get(&h, "/api/v1/drift-records/Deployment:prod:web/history")
        .await
        .json();
    assert_eq!(schema_keys(&document, "History"), object_keys(&history));
    assert_eq!(
        schema_keys(&document, "Episode"),
        object_keys(&history["episodes"][0])
    );
    let stats = get(&h, "/api/v1/statistics").await.json();
    assert_eq!(
        schema_keys(&document, "StatisticsResponse"),
        object_keys(&stats)
    );
    assert_eq!(
        schema_keys(&document, "Statistics"),
        object_keys(&stats["statistics"])
    );
    let started = call(&h.router, Method::POST, "/api/v1/analyze", None)
        .await
        .json();
    assert_eq!(
        schema_keys(&document, "AnalyzeResponse"),
        object_keys(&started)
    );
    let run = get(
        &h,
        &format!("/api/v1/analysis/{}", started["run_id"].as_str().unwrap()),
    )
    .await
    .json();
    assert_eq!(schema_keys(&document, "RunInfo"), object_keys(&run));
    let health = get(&h, "/health").await.json();
    assert_eq!(schema_keys(&document, "Health"), object_keys(&health));
    let error = get(&h, "/nope").await.json();
    assert_eq!(schema_keys(&document, "Error"), object_keys(&error));
    h.state.readiness.register("store", true, "connecting");
    let ready = get(&h, "/ready").await.json();
    assert_eq!(schema_keys(&document, "Readiness"), object_keys(&ready));
    assert_eq!(
        schema_keys(&document, "Component"),
        object_keys(&ready["components"]["store"])
    );
    // Closed enums match the core's.
    let types: Vec<&str> = DriftType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(
        document["components"]["parameters"]["type"]["schema"]["enum"],
        json!(types)
    );
}

// === keyset paging ===

#[tokio::test]
async fn api_pages_after_a_resource_id() {
    let h = harness().await;
    let reply = get(
        &h,
        "/api/v1/drift-records?after=ConfigMap:prod:settings&limit=2",
    )
    .await;
    assert_eq!(ids(&reply), ["Deployment:prod:api", "Deployment:prod:web"]);
    assert_eq!(reply.json()["total"], 6, "total counts every match");
    // The next page starts after the last id of this one; a percent-encoded key works too.
    let reply = get(
        &h,
        "/api/v1/drift-records?after=Deployment%3Aprod%3Aweb&limit=2",
    )
    .await;
    assert_eq!(ids(&reply), ["Secret:staging:creds", "Service:staging:web"]);
    let reply = get(&h, "/api/v1/drift-records?after=Service:staging:web").await;
    assert_eq!(ids(&reply), Vec::<String>::new());
    assert_eq!(reply.json()["drift_records"], json!([]), "[] never null");
    // A key no record has; with a filter and on the forced-status listings.
    let reply = get(&h, "/api/v1/drift-records?after=D&namespace=prod").await;
    assert_eq!(ids(&reply), ["Deployment:prod:api", "Deployment:prod:web"]);
    assert_eq!(reply.json()["total"], 3);
    let reply = get(
        &h,
        "/api/v1/drift-records/active?after=ClusterRole::view-drift",
    )
    .await;
    assert_eq!(ids(&reply), ["Deployment:prod:api", "Deployment:prod:web"]);
    assert_eq!(reply.json()["total"], 3);
    // Walking by the last id visits every record once, in order.
    let all = ids(&get(&h, "/api/v1/drift-records").await);
    let mut walked = Vec::new();
    let mut uri = "/api/v1/drift-records?limit=4".to_owned();
    loop {
        let page = ids(&get(&h, &uri).await);
        let Some(last) = page.last() else { break };
        uri = format!("/api/v1/drift-records?limit=4&after={last}");
        walked.extend(page);
    }
    assert_eq!(walked, all);
}

#[tokio::test]
async fn api_rejects_after_with_offset_naming_both() {
    let h = harness().await;
    for query in ["after=a&offset=0", "offset=2&after=Deployment:prod:api"] {
        let reply = get(&h, &format!("/api/v1/drift-records?{query}")).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "conflicting_parameter");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("`after`") && message.contains("`offset`"),
            "{message}"
        );
    }
    get(&h, "/api/v1/drift-records?after=a&after=b")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "duplicate_parameter");
}

// === HTTP conventions: request id, access log, compression ===

async fn send(router: &Router, uri: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let headers: Vec<(&str, String)> = headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    request(router, Method::GET, uri, &headers).await
}

fn request_id_of(response: &axum::response::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every answer carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn api_echoes_a_sane_request_id_and_replaces_others() {
    let h = harness().await;
    let given = "req-42_a.B";
    for uri in [
        "/health",
        "/api/v1/drift-records",
        "/no/such/route",
        "/metrics",
    ] {
        let response = send(&h.router, uri, &[("x-request-id", given)]).await;
        assert_eq!(request_id_of(&response), given, "{uri}");
    }
    for insane in ["", "has space", "semi;colon", &"x".repeat(65), "ünï"] {
        let response = send(&h.router, "/health", &[("x-request-id", insane)]).await;
        let id = request_id_of(&response);
        assert_ne!(id, insane);
        Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id:?} is not a UUID: {e}"));
    }
    let a = request_id_of(&send(&h.router, "/health", &[]).await);
    let b = request_id_of(&send(&h.router, "/health", &[]).await);
    Uuid::parse_str(&a).unwrap();
    assert_ne!(a, b, "a new id per request");
    // Errors answered before the handler (401) carry it too.
    let h = harness_with(Some(TOKEN)).await;
    let response = send(&h.router, "/api/v1/statistics", &[("x-request-id", given)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(request_id_of(&response), given);
}

/// What a `tracing` subscriber writes, read back as JSON lines.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[tokio::test]
async fn api_access_log_has_one_line_per_request_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = harness_with(Some(TOKEN)).await;
    let secret_query = "/api/v1/drift-records?namespace=hunter2-ns&limit=2&access_token=hunter2";
    let response = send(
        &h.router,
        secret_query,
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("x-request-id", "trace-me-1"),
        ],
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "unknown parameter"
    );
    let response = send(
        &h.router,
        "/api/v1/drift-records/Deployment:prod:web?limit=1",
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let generated = request_id_of(&response);
    let response = send(
        &h.router,
        "/api/v1/statistics",
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let lines = captured.lines();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "driftguard::access")
        .collect();
    assert_eq!(access.len(), 3, "one line per request: {lines:#?}");
    let first = access[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["request_id"], "trace-me-1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/api/v1/drift-records");
    assert_eq!(first["path"], "/api/v1/drift-records");
    assert_eq!(first["query"], "namespace,limit,?", "names only: {first}");
    assert_eq!(first["status"], 400);
    assert!(first["latency_ms"].as_f64().is_some(), "{first}");
    assert!(first["bytes"].as_u64().is_some_and(|b| b > 0), "{first}");
    let second = access[1];
    assert_eq!(second["request_id"], generated.as_str());
    assert_eq!(second["route"], "/api/v1/drift-records/{resourceId}");
    assert_eq!(second["path"], "/api/v1/drift-records/Deployment:prod:web");
    assert_eq!(second["status"], 200);
    assert_eq!(access[2]["status"], 401);
    // Neither query values nor the token appear anywhere in the log.
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in ["hunter2", TOKEN, "wrong", "Bearer"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

/// A store of `n` active records with two changes each, for a large page.
async fn large_harness(n: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("large.db"), Duration::from_secs(5))
        .await
        .unwrap();
    let writes: Vec<Write> = (0..n)
        .map(|i| Write::Upsert {
            record: record(
                &format!("Deployment:load:app-{i:05}"),
                DriftStatus::Active,
                vec![
                    change("spec.replicas", DriftType::Scaling, Severity::High),
                    change(
                        "spec.template.spec.containers[name=app].image",
                        DriftType::VersionChange,
                        Severity::High,
                    ),
                ],
                at(3, 0),
            ),
            episode: None,
        })
        .collect();
    store.apply(&writes).await.unwrap();
    let state = state(Arc::new(store), None);
    Harness {
        router: api::router(state.clone()),
        state,
        _dir: Some(dir),
    }
}

/// The body of `response` decoded by tower-http's client-side decompression.
async fn decompressed(response: axum::response::Response) -> Vec<u8> {
    let mut slot = Some(response);
    let inner = tower::service_fn(move |_request: Request<Body>| {
        let response = slot.take().expect("called once");
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let response = tower_http::decompression::Decompression::new(inner)
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn api_large_page_is_gzip_or_br_as_asked_and_decodes_to_the_same_json() {
    let h = large_harness(2_000).await;
    let uri = "/api/v1/drift-records?limit=10000";
    let plain = send(&h.router, uri, &[]).await;
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain_bytes = axum::body::to_bytes(plain.into_body(), usize::MAX)
        .await
        .unwrap();
    let plain_json: Value = serde_json::from_slice(&plain_bytes).unwrap();
    assert_eq!(plain_json["count"], 2_000);
    for (accept, encoding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("br;q=1.0, gzip;q=0.5", "br"),
        ("gzip, deflate", "gzip"),
    ] {
        let response = send(&h.router, uri, &[("accept-encoding", accept)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some(encoding),
            "Accept-Encoding: {accept}"
        );
        assert!(
            response.headers().get_all("vary").iter().any(|v| v
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding")),
            "{:?}",
            response.headers()
        );
        assert!(response.headers().contains_key("x-request-id"));
        // Measure the compressed size on a second, identical request.
        let raw = send(&h.router, uri, &[("accept-encoding", accept)]).await;
        let compressed = axum::body::to_bytes(raw.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(
            compressed.len() * 5 < plain_bytes.len(),
            "{encoding}: {} of {} bytes",
            compressed.len(),
            plain_bytes.len()
        );
        let decoded: Value = serde_json::from_slice(&decompressed(response).await).unwrap();
        assert_eq!(decoded, plain_json, "{encoding}");
    }
    // Not asked: not compressed.
    let response = send(&h.router, uri, &[("accept-encoding", "identity")]).await;
    assert_eq!(response.headers().get("content-encoding"), None);
}

#[tokio::test]
async fn api_events_stream_sink_events_with_the_contract_keys_and_need_the_token() {
    use driftguard_server::sink::{Event, EventSink, HealthEvent, RecordEvent};
    let h = harness_with(Some(TOKEN)).await;
    // Without the token: 401, like the rest of /api/v1.
    let (status, _, _) = open_stream(&h.router, "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers, body) = open_stream(&h.router, "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(
        headers.get(header::CONTENT_ENCODING).is_none(),
        "never compressed"
    );
    assert_eq!(h.state.events.streams(), 1);
    let mut record = record(
        "Deployment:prod:web",
        DriftStatus::Active,
        vec![change(
            "spec.replicas",
            DriftType::Scaling,
            Severity::Medium,
        )],
        at(1, 0),
    );
    record.desired_state = Some(json!({"spec": {"replicas": 3}}));
    h.state.events.publish(&Event::Detected(RecordEvent {
        resource_id: record.resource_id.clone(),
        drift_type: "Scaling".to_owned(),
        severity: "medium".to_owned(),
        record: Some(record),
        time: Utc::now(),
    }));
    h.state.events.publish(&Event::Health(HealthEvent {
        component: "git".to_owned(),
        status: Health::Degraded,
        message: "fetch failing".to_owned(),
        time: Utc::now(),
    }));
    let events = read_events(body, 2).await;
    assert_eq!(events[0].0, "detected");
    assert_eq!(events[1].0, "health");
    for (name, data) in &events {
        for key in [
            "resource_id",
            "drift_status",
            "drift_type",
            "severity",
            "time",
        ] {
            assert!(data.get(key).is_some(), "{name}: {key} missing in {data}");
        }
    }
    assert_eq!(events[0].1["resource_id"], "Deployment:prod:web");
    assert_eq!(events[0].1["drift_type"], "Scaling");
    assert!(
        events[0].1.get("desired_state").is_none(),
        "states stay out"
    );
    assert_eq!(events[1].1["component"], "git");

    // Closing the hub (the service stops) ends every stream.
    let (_, _, body) = open_stream(&h.router, "/api/v1/events", Some(TOKEN)).await;
    h.state.events.close();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        use futures::StreamExt;
        let mut body = body.into_data_stream();
        while let Some(data) = body.next().await {
            data.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end when the hub closed");
}

/// The dashboard's page and assets: served from the binary with a strict policy, no inline
/// script or style, and small.
#[tokio::test]
async fn ui_is_served_with_a_strict_policy_no_inline_code_and_a_small_weight() {
    let h = harness().await;
    let mut weight = 0;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/login", "text/html; charset=utf-8"),
    ] {
        let reply = get(&h, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers[header::CONTENT_TYPE], content_type, "{path}");
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        if path != "/ui/login" {
            weight += reply.text.len();
        }
        if content_type.starts_with("text/html") {
            // Every script has a src, no element carries an event handler or a style.
            for (i, _) in reply.text.match_indices("<script") {
                let tag = &reply.text[i..i + reply.text[i..].find('>').unwrap()];
                assert!(tag.contains("src="), "{path}: inline script {tag}");
            }
            assert!(!reply.text.contains(" style="), "{path}");
            assert!(!reply.text.contains(" onclick="), "{path}");
            assert!(
                !reply.text.contains("http://") && !reply.text.contains("https://"),
                "{path}: nothing from elsewhere"
            );
        }
    }
    // The whole first load (page, script, stylesheet), uncompressed: under the 150 KB budget.
    assert!(weight < 150 * 1024, "first load weighs {weight} bytes");
    // The repository's web address reaches the page in a meta tag, escaped.
    let mut linked = h.state.clone();
    linked.source_web = Some(Arc::from("https://git.example.com/org/repo\"><script>"));
    let page = call(&api::router(linked), Method::GET, "/", None).await;
    assert!(
        page.text.contains(
            r#"<meta name="driftguard-source" content="https://git.example.com/org/repo&quot;&gt;&lt;script&gt;">"#
        ),
        "{}",
        page.text
    );
    // The script never writes API data as HTML.
    let script = get(&h, "/ui/app.js").await.text;
    assert!(!script.contains("innerHTML"), "innerHTML in app.js");
    // The dashboard is not an API route: not in the OpenAPI document, not under the token
    // check by itself (the page answers; its data needs the token).
    assert!(
        !api::routes()
            .iter()
            .any(|(_, p)| *p == "/" || p.starts_with("/ui"))
    );
}

/// With a token: the page sends to the login form; a wrong token is refused; the right one
/// sets an HttpOnly, SameSite=Strict cookie (a digest, never the token) that opens the page,
/// the API and the event stream.
#[tokio::test]
async fn ui_with_a_token_needs_a_session_cookie_set_by_the_login_form() {
    let h = harness_with(Some(TOKEN)).await;
    let reply = get(&h, "/").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/ui/login");

    let post = |body: String| {
        let router = h.router.clone();
        async move {
            router
                .oneshot(
                    Request::builder()
                        .method(Method::POST)
                        .uri("/ui/login")
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap()
        }
    };
    let wrong = post("token=nope".to_owned()).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let right = post(format!("token={TOKEN}")).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[header::LOCATION], "/");
    let cookie = right.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("driftguard_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains(TOKEN),
        "the token itself is in the cookie: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    let with_cookie = |uri: &'static str, cookie: &str| {
        let headers = [("cookie", cookie.to_owned())];
        let router = h.router.clone();
        async move { request(&router, Method::GET, uri, &headers).await.status() }
    };
    assert_eq!(with_cookie("/", &session).await, StatusCode::OK);
    assert_eq!(
        with_cookie("/api/v1/statistics", &session).await,
        StatusCode::OK
    );
    assert_eq!(
        with_cookie("/api/v1/events", &session).await,
        StatusCode::OK
    );
    // A forged or stale cookie opens nothing.
    assert_eq!(
        with_cookie("/api/v1/statistics", "driftguard_session=00").await,
        StatusCode::UNAUTHORIZED
    );
}

//! The HTTP API (contract §5): routes, query validation, JSON errors, the optional bearer token
//! and per-route HTTP metrics.
//!
//! [`router`] builds every route of [`routes`] over an [`ApiState`]. Decisions the contract
//! leaves open:
//!
//! - **Unknown query parameters are a 400** (`unknown_parameter`), and so is a parameter given
//!   twice (`duplicate_parameter`): a misspelt filter (`?namspace=prod`) must not silently return
//!   every record.
//! - `namespace=` (empty) selects cluster-scoped records, whose namespace is `""`.
//! - `/drift-records/active` and `/resolved` accept `status` only when it repeats the forced
//!   value; any other value is a 400 (`conflicting_parameter`).
//! - `since` is RFC 3339. A `+` offset sent unencoded arrives as a space; that one form is
//!   repaired rather than rejected. Instants before 1678 (outside the store's nanosecond range)
//!   select everything, as every record is younger.
//! - `offset` ranges over `0..=9223372036854775807`; `limit` over `1..=10000` (default 500).
//! - `after=<resource_id>` is keyset paging: records whose `resource_id` sorts after it (byte
//!   order, the listing's order; it need not exist). Pass the last `resource_id` of a page to get
//!   the next: unlike `offset`, a record added or removed meanwhile neither repeats nor skips
//!   one, and the store seeks instead of counting. `total` still counts every match.
//!   `after` with `offset` is a 400 (`conflicting_parameter`) naming both.
//! - `GET /metrics` is content-negotiated: OpenMetrics 1.0.0 (`# EOF` at the end) when `Accept`
//!   prefers `application/openmetrics-text` (as Prometheus asks), else the Prometheus text
//!   format 0.0.4 (curl, `promtool check metrics`, older scrapers); `Vary: Accept`.
//! - Every response carries `x-request-id`, is access-logged and may be compressed
//!   ([`crate::http::with_conventions`]).
//! - Errors are `{"error":"<code>","message":"<detail>"}` with a snake_case code. Store outages
//!   are 503 with `Retry-After`; other store failures are 500 with a message naming only the
//!   operation (the error chain is logged once, here).
//! - With a token configured (non-empty), every path under `/api/v1` — unknown ones too — needs
//!   `Authorization: Bearer <token>`; the SHA-256 digests of the given and the expected token
//!   are compared in constant time, so neither the content nor the length of the token leaks
//!   through timing. `/health`, `/ready` and `/metrics` stay open.
//! - `POST /api/v1/analyze` refuses (403 `cross_site_request`) a request a browser marks
//!   `Sec-Fetch-Site: cross-site` or whose `Origin` is not the origin of its `Host`: a web page
//!   cannot fire analyses at an API it can reach.
//! - `/ready` shows per component a short reason ("unreachable", "fetch failing", "forbidden");
//!   the detailed message, which may name paths and hosts, goes to the log only
//!   ([`crate::health::public_message`]).
//! - The OpenAPI document declares the bearer scheme only when a token is configured.
//! - HTTP metrics are labelled by route template (`unmatched` for unknown paths), by method
//!   (`other` for extension methods, to bound the label set) and by status code.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use driftguard_core::canonical::text_hash;
use driftguard_core::{DriftStatus, DriftType, Episode, Severity};
use driftguard_store::{DEFAULT_LIMIT, MAX_LIMIT, RecordQuery, Store};
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use uuid::Uuid;

use crate::health::Readiness;
use crate::metrics::{HttpLabels, Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::runs::{Runs, Trigger};

/// Prefix of the versioned API; every path under it is behind the bearer token when one is set.
pub const API_PREFIX: &str = "/api/v1";

/// Query parameters of the record listings, in documentation order.
pub const LIST_PARAMETERS: [&str; 10] = [
    "namespace",
    "kind",
    "drift_detected",
    "status",
    "severity",
    "type",
    "since",
    "limit",
    "offset",
    "after",
];

/// Largest accepted `offset` (the stores count in signed 64-bit integers).
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Seconds a client is asked to wait after a store outage answer.
const RETRY_AFTER_SECONDS: &str = "5";

/// Longest piece of a request echoed back in an error message.
const MAX_ECHO: usize = 200;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Drift records and history.
    pub store: Arc<dyn Store>,
    /// Analysis runs (`POST /api/v1/analyze`, `GET /api/v1/analysis/{run_id}`).
    pub runs: Arc<Runs>,
    /// Component readiness (`GET /ready`).
    pub readiness: Arc<Readiness>,
    /// Every metric (`GET /metrics`, and the HTTP families this module fills).
    pub metrics: Arc<Metrics>,
    /// Bearer token required under [`API_PREFIX`]; `None` or empty disables the check.
    pub auth_token: Option<Arc<str>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiState")
            .field("auth", &self.token().is_some())
            .finish_non_exhaustive()
    }
}

/// A JSON error answer: `{"error":"<code>","message":"<detail>"}`.
#[derive(Debug, Clone)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct History {
    resource_id: String,
    episodes: Vec<Episode>,
}

type Endpoint = (Method, &'static str, MethodRouter<ApiState>);

/// Every route: method, path template (axum and OpenAPI share the `{name}` syntax).
///
/// [`router`] serves exactly these, so tests can check the OpenAPI document against them.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The API router, every route of contract §5, with JSON 404/405 answers, the bearer token
/// check, HTTP metrics, and the HTTP conventions of [`crate::http::with_conventions`] (request
/// id, access log, compression).
pub fn router(state: ApiState) -> Router {
    let mut router = Router::new();
    for (_, path, endpoint) in endpoints() {
        router = router.route(path, endpoint);
    }
    let router = router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(state.clone(), track_request))
        .with_state(state);
    crate::http::with_conventions(router)
}

fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::GET, "/health", health),
        endpoint(Method::GET, "/ready", ready),
        endpoint(Method::GET, "/metrics", metrics),
        endpoint(Method::GET, "/api/v1/drift-records", list_records),
        endpoint(Method::GET, "/api/v1/drift-records/active", list_active),
        endpoint(Method::GET, "/api/v1/drift-records/resolved", list_resolved),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/{resourceId}",
            get_record,
        ),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/{resourceId}/history",
            get_history,
        ),
        endpoint(Method::GET, "/api/v1/statistics", statistics),
        endpoint(Method::POST, "/api/v1/analyze", analyze),
        endpoint(Method::GET, "/api/v1/analysis/{run_id}", get_run),
        endpoint(Method::GET, "/api/v1/openapi.json", openapi),
    ]
}

fn endpoint<H, T>(method: Method, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    let method_router = match MethodFilter::try_from(method.clone()) {
        Ok(filter) => on(filter, handler),
        // Unreachable with the standard methods `endpoints` uses; a route without a method
        // answers 405, which the route test catches.
        Err(_) => MethodRouter::new(),
    };
    (method, path, method_router)
}

// === impl ApiState ===

impl ApiState {
    fn token(&self) -> Option<&str> {
        self.auth_token.as_deref().filter(|t| !t.is_empty())
    }
}

// === impl ApiError ===

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn invalid(parameter: &str, expected: &str) -> Self {
        Self::bad_request(
            "invalid_parameter",
            format!("invalid value for `{parameter}`: expected {expected}"),
        )
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Maps a store failure: an outage is a 503, anything else a 500 naming only the operation.
    fn store(operation: &'static str, err: &driftguard_store::Error) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %error_chain(err), operation, "store unavailable");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the drift record store is unavailable while {operation}; retry later"),
            )
        } else {
            tracing::error!(error = %error_chain(err), operation, "store failed");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                format!("the drift record store failed while {operation}"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"driftguard\""),
                );
            }
            _ => {}
        }
        response
    }
}

// === handlers: health ===

async fn health() -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "message": "Service is running",
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    }))
}

async fn ready(State(state): State<ApiState>) -> Response {
    let mut report = state.readiness.report();
    // Details (paths, hosts, error chains) are in the log; /ready is open to anyone.
    for (name, component) in &mut report.components {
        component.message =
            crate::health::public_message(name, component.status, &component.message);
    }
    let status = if report.http_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let (content_type, body) = if wants_openmetrics(&headers) {
        (OPENMETRICS_CONTENT_TYPE, state.metrics.encode())
    } else {
        (TEXT_CONTENT_TYPE, state.metrics.encode_text())
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response()
}

/// Whether `Accept` prefers OpenMetrics to the text format: its quality is above 0 and not
/// below that of `text/plain` (or `text/*`, `*/*`). Prometheus sends
/// `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            openmetrics = openmetrics.max(quality);
        } else if ["text/plain", "text/*", "*/*"]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m))
        {
            text = text.max(quality);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

// === handlers: records ===

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn list_records(
    State(state): State<ApiState>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    list(&state, query, None).await
}

async fn list_active(State(state): State<ApiState>, query: RawQuery) -> Result<Response, ApiError> {
    list(&state, query, Some(DriftStatus::Active)).await
}

async fn list_resolved(
    State(state): State<ApiState>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    list(&state, query, Some(DriftStatus::Resolved)).await
}

async fn list(
    state: &ApiState,
    query: RawQuery,
    forced: Option<DriftStatus>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "the query string is not valid URL encoding",
        )
    })?;
    let query = parse_list_query(pairs, forced)?;
    let result = state.store.list_json(&query).await;
    state.metrics.store_op("list", result.is_ok());
    let page = result.map_err(|e| ApiError::store("listing drift records", &e))?;
    // The records arrive as JSON text; the envelope is written around them (the same shape as
    // `RecordList`) rather than decoding and encoding every record again.
    let size: usize = page.records.iter().map(|r| r.len() + 1).sum();
    let mut body = String::with_capacity(size + 96);
    body.push_str(&format!(
        "{{\"count\":{},\"total\":{},",
        page.records.len(),
        page.total
    ));
    if let Some(status) = forced {
        body.push_str(&format!("\"status\":\"{}\",", status.as_str()));
    }
    body.push_str("\"drift_records\":[");
    for (i, record) in page.records.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(record);
    }
    body.push_str("]}");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

async fn get_record(
    State(state): State<ApiState>,
    resource_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let resource_id = path_value(resource_id, "resourceId")?;
    let result = state.store.get(&resource_id).await;
    state.metrics.store_op("get", result.is_ok());
    match result.map_err(|e| ApiError::store("reading a drift record", &e))? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(ApiError::not_found(format!(
            "no drift record for resource {}",
            echo(&resource_id)
        ))),
    }
}

async fn get_history(
    State(state): State<ApiState>,
    resource_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let resource_id = path_value(resource_id, "resourceId")?;
    let result = state.store.history(&resource_id).await;
    state.metrics.store_op("history", result.is_ok());
    match result.map_err(|e| ApiError::store("reading drift history", &e))? {
        Some(episodes) => Ok(Json(History {
            resource_id,
            episodes,
        })
        .into_response()),
        None => Err(ApiError::not_found(format!(
            "no history for resource {}",
            echo(&resource_id)
        ))),
    }
}

async fn statistics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let result = state.store.statistics(Utc::now()).await;
    state.metrics.store_op("statistics", result.is_ok());
    let statistics = result.map_err(|e| ApiError::store("computing statistics", &e))?;
    Ok(Json(json!({ "statistics": statistics })).into_response())
}

// === handlers: analysis ===

async fn analyze(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(reason) = cross_site(&headers, &uri) {
        tracing::warn!(reason, "refused a cross-site analysis trigger");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            format!("{reason}; analyses cannot be triggered from another site"),
        )
        .into_response();
    }
    let run_id = state.runs.trigger(Trigger::Manual);
    let location = format!("{API_PREFIX}/analysis/{run_id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "message": "Drift analysis triggered successfully",
            "status": "started",
            "run_id": run_id,
        })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn get_run(
    State(state): State<ApiState>,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = path_value(run_id, "run_id")?;
    let run_id = Uuid::parse_str(&raw).map_err(|_| ApiError::invalid("run_id", "a UUID"))?;
    match state.runs.get(run_id) {
        Some(run) => Ok(Json(run).into_response()),
        None => Err(ApiError::not_found(format!(
            "no analysis run {run_id} (unknown, or no longer kept)"
        ))),
    }
}

// === handlers: meta ===

async fn openapi(State(state): State<ApiState>) -> Json<Value> {
    static WITH_TOKEN: LazyLock<Value> = LazyLock::new(|| crate::openapi::document(true));
    static OPEN: LazyLock<Value> = LazyLock::new(|| crate::openapi::document(false));
    if state.token().is_some() {
        Json(WITH_TOKEN.clone())
    } else {
        Json(OPEN.clone())
    }
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", echo(uri.path())))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {} (see the Allow header)",
            echo(uri.path())
        ),
    )
}

// === middleware ===

/// Rejects requests under [`API_PREFIX`] without the configured bearer token.
async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.token() else {
        return next.run(request).await;
    };
    if !is_protected(request.uri().path()) {
        return next.run(request).await;
    }
    match bearer_token(request.headers()) {
        Some(given) if token_matches(given, expected) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs an `Authorization: Bearer <token>` header",
        )
        .into_response(),
    }
}

/// Counts requests and their latency by route template, method and status.
async fn track_request(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels {
        route,
        method,
        status: response.status().as_u16().to_string(),
    };
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    state.metrics.http_requests.get_or_create(&labels).inc();
    response
}

// === query and path parsing ===

fn parse_list_query(
    pairs: Vec<(String, String)>,
    forced: Option<DriftStatus>,
) -> Result<RecordQuery, ApiError> {
    let mut query = RecordQuery {
        limit: DEFAULT_LIMIT,
        ..RecordQuery::default()
    };
    let mut seen = HashSet::new();
    for (key, value) in pairs {
        if !LIST_PARAMETERS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {}; accepted: {}",
                    echo(&key),
                    LIST_PARAMETERS.join(", ")
                ),
            ));
        }
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("query parameter `{key}` is given more than once"),
            ));
        }
        match key.as_str() {
            "namespace" => query.namespace = Some(value),
            "kind" => query.kind = Some(value),
            "drift_detected" => {
                query.drift_detected = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::invalid("drift_detected", "true or false")),
                });
            }
            "status" => {
                let status: DriftStatus = value
                    .parse()
                    .map_err(|_| ApiError::invalid("status", "active, resolved or none"))?;
                if let Some(forced) = forced
                    && forced != status
                {
                    return Err(ApiError::bad_request(
                        "conflicting_parameter",
                        format!(
                            "this endpoint lists only `{forced}` records; `status` cannot be `{status}`"
                        ),
                    ));
                }
                query.status = Some(status);
            }
            "severity" => {
                query.severity = Some(
                    value
                        .parse::<Severity>()
                        .map_err(|_| ApiError::invalid("severity", "low, medium or high"))?,
                );
            }
            "type" => {
                query.drift_type = Some(value.parse::<DriftType>().map_err(|_| {
                    ApiError::invalid("type", "a drift type such as Scaling or VersionChange")
                })?);
            }
            "since" => {
                let since = parse_since(&value).ok_or_else(|| {
                    ApiError::invalid("since", "an RFC 3339 time such as 2024-05-01T12:00:00Z")
                })?;
                // The stores count nanoseconds in an i64 (1678–2262); every record is younger
                // than the lower bound, so an earlier `since` is no filter at all.
                let before_range = since.timestamp_nanos_opt().is_none() && since.timestamp() < 0;
                query.since = (!before_range).then_some(since);
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", &format!("an integer from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "offset" => {
                query.offset = value
                    .parse::<u64>()
                    .ok()
                    .filter(|o| *o <= MAX_OFFSET)
                    .ok_or_else(|| {
                        ApiError::invalid("offset", &format!("an integer from 0 to {MAX_OFFSET}"))
                    })?;
            }
            "after" => query.after = Some(value),
            _ => {}
        }
    }
    if seen.contains("after") && seen.contains("offset") {
        return Err(ApiError::bad_request(
            "conflicting_parameter",
            "`after` and `offset` cannot be combined: page by position (`offset`) or after a \
             resource id (`after`, the last `resource_id` of the previous page)",
        ));
    }
    if forced.is_some() {
        query.status = forced;
    }
    Ok(query)
}

/// An RFC 3339 time, `None` when unparsable.
fn parse_since(value: &str) -> Option<DateTime<Utc>> {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok();
    let parsed = parse(value).or_else(|| {
        // `+01:00` sent without percent-encoding arrives as ` 01:00`.
        let at = value.rfind(' ')?;
        parse(&format!("{}+{}", &value[..at], &value[at + 1..]))
    })?;
    Some(parsed.with_timezone(&Utc))
}

fn path_value(value: Result<Path<String>, PathRejection>, name: &str) -> Result<String, ApiError> {
    value.map(|Path(v)| v).map_err(|_| {
        ApiError::bad_request(
            "invalid_path",
            format!("the `{name}` path segment is not valid percent-encoded UTF-8"),
        )
    })
}

fn is_protected(path: &str) -> bool {
    path == API_PREFIX
        || path
            .strip_prefix(API_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
/// Compares digests, not the tokens: equal-length inputs whatever the token's length, and a
/// constant-time comparison of those.
fn token_matches(given: &str, expected: &str) -> bool {
    let given = text_hash(given);
    let expected = text_hash(expected);
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Why a state-changing request is refused as cross-site, if it is: a browser's
/// `Sec-Fetch-Site: cross-site`, or an `Origin` other than the origin of `Host`.
fn cross_site(headers: &HeaderMap, uri: &Uri) -> Option<&'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if fetch_site.is_some_and(|v| v.eq_ignore_ascii_case("cross-site")) {
        return Some("the request was sent cross-site (Sec-Fetch-Site: cross-site)");
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let same = match (origin.to_str().ok().and_then(origin_authority), host) {
        (Some((scheme, authority)), Some(host)) => without_default_port(scheme, authority)
            .eq_ignore_ascii_case(without_default_port(scheme, host.trim())),
        _ => false,
    };
    (!same).then_some("the Origin header names another origin than the request's Host")
}

/// `http://host:port` → (`http`, `host:port`); `None` for `null` and anything else.
fn origin_authority(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@'])
        && (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"));
    valid.then_some((scheme, authority))
}

fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A piece of the request for an error message, JSON-quoted and cut to [`MAX_ECHO`] chars.
fn echo(text: &str) -> String {
    let cut: String = text.chars().take(MAX_ECHO).collect();
    let quoted = Value::String(cut).to_string();
    if text.chars().count() > MAX_ECHO {
        format!("{quoted}…")
    } else {
        quoted
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn since_accepts_rfc3339_and_repairs_an_unencoded_plus() {
        let q = parse_list_query(pairs(&[("since", "2024-05-01T12:00:00 02:00")]), None).unwrap();
        assert_eq!(q.since.unwrap().to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let q = parse_list_query(pairs(&[("since", "0001-01-01T00:00:00Z")]), None).unwrap();
        assert_eq!(q.since, None, "before the store's range selects everything");
        assert!(parse_list_query(pairs(&[("since", "yesterday")]), None).is_err());
    }

    #[test]
    fn forced_status_wins_and_conflicts_are_rejected() {
        let q = parse_list_query(Vec::new(), Some(DriftStatus::Active)).unwrap();
        assert_eq!(q.status, Some(DriftStatus::Active));
        assert!(
            parse_list_query(pairs(&[("status", "active")]), Some(DriftStatus::Active)).is_ok()
        );
        let err =
            parse_list_query(pairs(&[("status", "none")]), Some(DriftStatus::Active)).unwrap_err();
        assert_eq!(err.code, "conflicting_parameter");
    }

    #[test]
    fn after_is_keyset_paging_and_excludes_offset() {
        let q = parse_list_query(pairs(&[("after", "Deployment:prod:api")]), None).unwrap();
        assert_eq!(q.after.as_deref(), Some("Deployment:prod:api"));
        assert_eq!(q.offset, 0);
        let err = parse_list_query(pairs(&[("offset", "0"), ("after", "a")]), None).unwrap_err();
        assert_eq!(err.code, "conflicting_parameter");
        assert!(err.message.contains("`after`") && err.message.contains("`offset`"));
    }

    #[test]
    fn openmetrics_is_served_when_preferred() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_openmetrics(&headers)
        };
        assert!(accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(accept("application/openmetrics-text"));
        assert!(!accept(
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"
        ));
        assert!(!accept("application/openmetrics-text;q=0"));
        assert!(!accept("*/*"));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn only_the_api_prefix_is_protected() {
        assert!(is_protected("/api/v1"));
        assert!(is_protected("/api/v1/drift-records"));
        assert!(!is_protected("/api/v10"));
        assert!(!is_protected("/health"));
    }

    #[test]
    fn echo_quotes_and_truncates() {
        assert_eq!(echo("a\"b"), "\"a\\\"b\"");
        assert!(echo(&"x".repeat(500)).ends_with('…'));
    }
}

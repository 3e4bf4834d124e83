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
//!
//! Files by concern: `state` (what handlers share), `error` (the JSON error answer),
//! `params` (query and path parsing), `records`, `analysis` and `health` (handlers),
//! `middleware` (bearer token, HTTP metrics); this file wires them into the router.

mod analysis;
mod error;
pub mod events;
mod health;
mod middleware;
mod params;
mod records;
mod state;

use std::sync::LazyLock;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware as axum_middleware;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use serde_json::Value;

use self::error::{ApiError, echo};
pub use self::state::{API_PREFIX, ApiState};
pub use crate::http::UNMATCHED_ROUTE;
pub use crate::openapi::{LIST_PARAMETERS, MAX_OFFSET};

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
    // The dashboard (`/`, `/ui/…`): not API routes, so not in `routes()` or the OpenAPI
    // document, but behind the same layers.
    let router = router
        .merge(crate::ui::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(axum_middleware::from_fn_with_state(
            state.clone(),
            middleware::require_token,
        ))
        .layer(axum_middleware::from_fn_with_state(
            state.clone(),
            middleware::track_request,
        ))
        .with_state(state);
    crate::http::with_conventions(router)
}

fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::GET, "/health", health::health),
        endpoint(Method::GET, "/ready", health::ready),
        endpoint(Method::GET, "/metrics", health::metrics),
        endpoint(Method::GET, "/api/v1/drift-records", records::list_records),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/active",
            records::list_active,
        ),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/resolved",
            records::list_resolved,
        ),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/{resourceId}",
            records::get_record,
        ),
        endpoint(
            Method::GET,
            "/api/v1/drift-records/{resourceId}/history",
            records::get_history,
        ),
        endpoint(Method::GET, "/api/v1/statistics", records::statistics),
        endpoint(Method::POST, "/api/v1/analyze", analysis::analyze),
        endpoint(Method::GET, "/api/v1/analysis/{run_id}", analysis::get_run),
        endpoint(Method::GET, "/api/v1/events", events::events),
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

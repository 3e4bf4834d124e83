//! The conventions every response follows (see the module documentation of `http`): request id, access log,
//! compression; and the write timeout, which answers with the request's id.

use std::time::Duration;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;
use tracing::Instrument;
use uuid::Uuid;

/// Route label of requests that matched no route (access log and HTTP metrics).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The request id header, read and answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Tracing target of the access log lines.
pub const ACCESS_LOG_TARGET: &str = "driftguard::access";

/// Longest piece of the path written to the access log.
const MAX_LOGGED_PATH: usize = 200;

/// Adds the request id, the access log and response compression to a router (see the module
/// documentation). The API router applies it.
pub fn with_conventions(router: Router) -> Router {
    // The last layer added runs first: compression wraps the access log, which therefore sees
    // (and counts) the body before compression.
    router
        .layer(axum::middleware::from_fn(access_log))
        .layer(CompressionLayer::new().gzip(true).br(true))
}

/// Adds the write timeout to a router.
pub fn with_write_timeout(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |mut req: Request, next: Next| async move {
            // The id is chosen here, so that a timed-out request answers with the id its log
            // lines carry; the access log inside keeps it (it is sane).
            let id = request_id(req.headers()).unwrap_or_else(|| Uuid::new_v4().to_string());
            let header = HeaderValue::from_str(&id).ok();
            if let Some(value) = &header {
                req.headers_mut().insert(REQUEST_ID, value.clone());
            }
            let method = req.method().clone();
            let path = logged_path(req.uri().path());
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => {
                    // The access log inside never saw an answer; say here what happened.
                    tracing::warn!(
                        target: ACCESS_LOG_TARGET,
                        request_id = %id,
                        %method,
                        path,
                        status = 503,
                        "request timed out (server.write_timeout)"
                    );
                    let mut response = timeout_response(timeout);
                    if let Some(value) = header {
                        response.headers_mut().insert(REQUEST_ID, value);
                    }
                    response
                }
            }
        },
    ))
}

/// Gives the request an id, logs one line when its answer is ready, and returns the id.
async fn access_log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers()).unwrap_or_else(|| Uuid::new_v4().to_string());
    // A sane id or a UUID: always a valid header value.
    let header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &header {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let path = logged_path(request.uri().path());
    let query = query_names(request.uri().query());
    let span = tracing::info_span!("http_request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        request_id = %id,
        %method,
        route,
        path,
        query,
        status = response.status().as_u16(),
        latency_ms,
        bytes = response.body().size_hint().exact(),
        "request"
    );
    if let Some(value) = header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The incoming request id when it is a sane token: 1–[`MAX_REQUEST_ID_LEN`] characters of
/// `[A-Za-z0-9._-]`.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    sane.then(|| value.to_owned())
}

/// The path as logged: no query (it is not part of it), cut to [`MAX_LOGGED_PATH`] characters.
fn logged_path(path: &str) -> String {
    if path.chars().count() > MAX_LOGGED_PATH {
        let cut: String = path.chars().take(MAX_LOGGED_PATH).collect();
        format!("{cut}…")
    } else {
        path.to_owned()
    }
}

/// The names of the query parameters, comma-separated, without their values (a value may be a
/// secret someone put in a URL). Only the API's own parameter names are written; any other
/// (a misspelling, or a token pasted as `?abc…`) is shown as `?`.
fn query_names(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let names: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .map(|name| {
            crate::openapi::LIST_PARAMETERS
                .iter()
                .find(|known| **known == name)
                .copied()
                .unwrap_or("?")
        })
        .take(20)
        .collect();
    names.join(",")
}

fn timeout_response(timeout: Duration) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "timeout",
            "message": format!("the request took longer than server.write_timeout ({}s)", timeout.as_secs_f64()),
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let id = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID, HeaderValue::from_str(value).unwrap());
            request_id(&headers)
        };
        assert_eq!(id("abc-123_x.Y").as_deref(), Some("abc-123_x.Y"));
        assert_eq!(id(&"a".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(id(&"a".repeat(65)), None);
        assert_eq!(id(""), None);
        assert_eq!(id("a b"), None);
        assert_eq!(id("a\"b"), None);
        assert_eq!(id("a/b"), None);
        assert_eq!(request_id(&HeaderMap::new()), None);
    }

    #[test]
    fn query_values_are_never_logged() {
        assert_eq!(query_names(None), "");
        assert_eq!(
            query_names(Some("limit=2&token=s3cret&offset=3")),
            "limit,?,offset"
        );
        assert_eq!(query_names(Some("s3cret&a%20b=1&&offset")), "?,?,offset");
        assert!(logged_path(&"x".repeat(500)).ends_with('…'));
    }

    #[tokio::test]
    async fn a_timed_out_request_answers_with_its_request_id() {
        use tower::ServiceExt;
        let slow = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let router = with_write_timeout(with_conventions(slow), Duration::from_millis(20));
        let request = |id: Option<&str>| {
            let mut builder = Request::builder().uri("/slow");
            if let Some(id) = id {
                builder = builder.header(REQUEST_ID, id);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        let response = router
            .clone()
            .oneshot(request(Some("slow-1")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(REQUEST_ID).unwrap(), "slow-1");
        let response = router.oneshot(request(None)).await.unwrap();
        let id = response
            .headers()
            .get(REQUEST_ID)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(Uuid::parse_str(id).is_ok(), "{id}");
    }

    #[tokio::test]
    async fn event_streams_are_not_compressed() {
        use tower::ServiceExt;
        let body = "data: x\n\n".repeat(100);
        let router = with_conventions(Router::new().route(
            "/events",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    body,
                )
            }),
        ));
        let request = |encoding: &str| {
            Request::builder()
                .uri("/events")
                .header(axum::http::header::ACCEPT_ENCODING, encoding)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let response = router.clone().oneshot(request("gzip, br")).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None);
        assert!(response.headers().contains_key(REQUEST_ID));
    }
}

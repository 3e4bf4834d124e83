//! Middleware of every route: the bearer token check under [`API_PREFIX`] and the HTTP
//! metrics by route template, method and status.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use driftguard_core::canonical::text_hash;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::error::ApiError;
use super::state::{API_PREFIX, ApiState};
use crate::http::UNMATCHED_ROUTE;
use crate::metrics::HttpLabels;

/// Rejects requests under [`API_PREFIX`] without the configured bearer token.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token() else {
        return next.run(request).await;
    };
    if !is_protected(request.uri().path()) {
        return next.run(request).await;
    }
    match bearer_token(request.headers()) {
        Some(given) if token_matches(given, expected) => next.run(request).await,
        // The dashboard's session cookie (set by `POST /ui/login`) stands for the token.
        None if crate::ui::has_session(request.headers(), expected) => next.run(request).await,
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
pub(super) async fn track_request(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
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

fn is_protected(path: &str) -> bool {
    path == API_PREFIX
        || path
            .strip_prefix(API_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Compares digests, not the tokens: equal-length inputs whatever the token's length, and a
/// constant-time comparison of those.
fn token_matches(given: &str, expected: &str) -> bool {
    let given = text_hash(given);
    let expected = text_hash(expected);
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
}

//! JSON error answers: `{"error":"<code>","message":"<detail>"}`, and how a piece of the
//! request is echoed in them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// Seconds a client is asked to wait after a store outage answer.
const RETRY_AFTER_SECONDS: &str = "5";

/// Longest piece of a request echoed back in an error message.
const MAX_ECHO: usize = 200;

/// A JSON error answer: `{"error":"<code>","message":"<detail>"}`.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

// === impl ApiError ===

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn invalid(parameter: &str, expected: &str) -> Self {
        Self::bad_request(
            "invalid_parameter",
            format!("invalid value for `{parameter}`: expected {expected}"),
        )
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Maps a store failure: an outage is a 503, anything else a 500 naming only the operation.
    pub(super) fn store(operation: &'static str, err: &driftguard_store::Error) -> Self {
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

/// A piece of the request for an error message, JSON-quoted and cut to [`MAX_ECHO`] chars.
pub(super) fn echo(text: &str) -> String {
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
    use super::*;

    #[test]
    fn echo_quotes_and_truncates() {
        assert_eq!(echo("a\"b"), "\"a\\\"b\"");
        assert!(echo(&"x".repeat(500)).ends_with('…'));
    }
}

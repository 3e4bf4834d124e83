//! `GET /health`, `GET /ready` and `GET /metrics`: open even when a token is configured.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::state::ApiState;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

pub(super) async fn health() -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "message": "Service is running",
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    }))
}

pub(super) async fn ready(State(state): State<ApiState>) -> Response {
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
    match state.leadership.report() {
        // With several replicas, which one leads and who holds the Lease (issue 19).
        Some(leadership) => {
            let mut body = serde_json::to_value(&report).unwrap_or_default();
            if let (Some(map), Ok(value)) = (body.as_object_mut(), serde_json::to_value(leadership))
            {
                map.insert("leader".to_owned(), value);
            }
            (status, Json(body)).into_response()
        }
        None => (status, Json(report)).into_response(),
    }
}

pub(super) async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;

    use super::*;

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
}

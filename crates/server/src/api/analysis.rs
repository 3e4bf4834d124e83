//! Analysis runs: `POST /api/v1/analyze` (refused when sent cross-site) and
//! `GET /api/v1/analysis/{run_id}`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::error::ApiError;
use super::params::path_value;
use super::state::{API_PREFIX, ApiState};
use crate::runs::Trigger;

pub(super) async fn analyze(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(reason) = cross_site(&headers, &uri) {
        tracing::warn!(reason, "refused a cross-site analysis trigger");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            format!("{reason}; analyses cannot be triggered from another site"),
        )
        .into_response();
    }
    let run_id = if state.leadership.is_leading() {
        state.runs.trigger(Trigger::Manual)
    } else {
        // A follower hands the request to the leader through the shared store (issue 19).
        match queue_with_leader(&state).await {
            Ok(id) => id,
            Err(e) => return e.into_response(),
        }
    };
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

pub(super) async fn get_run(
    State(state): State<ApiState>,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = path_value(run_id, "run_id")?;
    let run_id = Uuid::parse_str(&raw).map_err(|_| ApiError::invalid("run_id", "a UUID"))?;
    if let Some(run) = state.runs.get(run_id) {
        return Ok(Json(run).into_response());
    }
    // Runs started by (or through) another replica are in the shared store.
    if state.leadership.is_elected() {
        let stored = state
            .store
            .get_run(&run_id.to_string())
            .await
            .map_err(|e| ApiError::store("reading an analysis run", &e))?;
        if let Some(json) = stored
            && let Ok(run) = serde_json::from_str::<serde_json::Value>(&json)
        {
            return Ok(Json(run).into_response());
        }
    }
    Err(ApiError::not_found(format!(
        "no analysis run {run_id} (unknown, or no longer kept)"
    )))
}

/// Queues an analysis for the leader in the store; the queued state is stored first so the
/// returned id answers at once on every replica.
async fn queue_with_leader(state: &ApiState) -> Result<Uuid, ApiError> {
    let id = Uuid::new_v4();
    let now = chrono::Utc::now();
    let queued = crate::runs::RunInfo {
        run_id: id,
        trigger: Trigger::Manual,
        status: crate::runs::RunStatus::Queued,
        requested_at: now,
        requests: 1,
        started_at: None,
        finished_at: None,
        git_commit: None,
        counts: crate::runs::RunCounts::default(),
        errors: Vec::new(),
        aliases: Vec::new(),
    };
    let json = serde_json::to_string(&queued).unwrap_or_default();
    let key = id.to_string();
    state
        .store
        .put_run(&key, &json)
        .await
        .map_err(|e| ApiError::store("queueing an analysis", &e))?;
    state
        .store
        .request_run(&key, now)
        .await
        .map_err(|e| ApiError::store("queueing an analysis", &e))?;
    Ok(id)
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

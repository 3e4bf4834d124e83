//! The record handlers: the three listings, one record, its history, and the statistics.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use driftguard_core::{DriftStatus, Episode};
use serde::Serialize;
use serde_json::json;

use super::error::{ApiError, echo};
use super::params::{parse_list_query, path_value};
use super::state::ApiState;

#[derive(Serialize)]
struct History {
    resource_id: String,
    episodes: Vec<Episode>,
}

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(super) async fn list_records(
    State(state): State<ApiState>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    list(&state, query, None).await
}

pub(super) async fn list_active(
    State(state): State<ApiState>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    list(&state, query, Some(DriftStatus::Active)).await
}

pub(super) async fn list_resolved(
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

pub(super) async fn get_record(
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

pub(super) async fn get_history(
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

pub(super) async fn statistics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let result = state.store.statistics(Utc::now()).await;
    state.metrics.store_op("statistics", result.is_ok());
    let statistics = result.map_err(|e| ApiError::store("computing statistics", &e))?;
    Ok(Json(json!({ "statistics": statistics })).into_response())
}

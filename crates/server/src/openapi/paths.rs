//! The paths of the document: one operation per route the API serves (`api::routes`).

use serde_json::{Value, json};

pub(super) fn paths() -> Value {
    json!({
        "/health": {
            "get": {
                "tags": ["health"],
                "operationId": "health",
                "summary": "Liveness",
                "responses": { "200": json_response("The process is up", "Health") }
            }
        },
        "/ready": {
            "get": {
                "tags": ["health"],
                "operationId": "ready",
                "summary": "Readiness per component",
                "description": "200 once the store answers, a first Git snapshot exists and \
                    every permitted watcher has listed once (`degraded`, still 200, when \
                    something fails after that); 503 `not ready` before that and while the \
                    store is unreachable.",
                "responses": {
                    "200": json_response("Ready or degraded", "Readiness"),
                    "503": json_response("Not ready", "Readiness")
                }
            }
        },
        "/metrics": {
            "get": {
                "tags": ["health"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "OpenMetrics 1.0.0 when `Accept` prefers \
                    `application/openmetrics-text` (as Prometheus asks), else the Prometheus \
                    text format 0.0.4.",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {
                            "application/openmetrics-text": { "schema": { "type": "string" } },
                            "text/plain": { "schema": { "type": "string" } }
                        }
                    }
                }
            }
        },
        "/api/v1/drift-records": {
            "get": list_operation(
                "listDriftRecords",
                "Drift records of the current view",
                "All records matching the filters, ordered by resource_id.",
                "#/components/parameters/status",
                "RecordList",
            )
        },
        "/api/v1/drift-records/active": {
            "get": list_operation(
                "listActiveDriftRecords",
                "Records with drift now",
                "Like /api/v1/drift-records with the status filter forced to `active`.",
                "#/components/parameters/statusActive",
                "ActiveRecordList",
            )
        },
        "/api/v1/drift-records/resolved": {
            "get": list_operation(
                "listResolvedDriftRecords",
                "Records whose last drift was resolved",
                "Like /api/v1/drift-records with the status filter forced to `resolved`.",
                "#/components/parameters/statusResolved",
                "ResolvedRecordList",
            )
        },
        "/api/v1/drift-records/{resourceId}": {
            "get": api_operation(json!({
                "tags": ["drift-records"],
                "operationId": "getDriftRecord",
                "summary": "One drift record",
                "parameters": [{ "$ref": "#/components/parameters/resourceId" }],
                "responses": {
                    "200": json_response("The record", "DriftRecord"),
                    "400": error_ref("BadRequest"),
                    "404": error_ref("NotFound"),
                    "500": error_ref("StoreError"),
                    "503": error_ref("StoreUnavailable")
                }
            }))
        },
        "/api/v1/drift-records/{resourceId}/history": {
            "get": api_operation(json!({
                "tags": ["drift-records"],
                "operationId": "getDriftRecordHistory",
                "summary": "Drift episodes of one resource, newest first",
                "description": "Also answers for resources that have left the current view; \
                    404 only for a resource never known.",
                "parameters": [{ "$ref": "#/components/parameters/resourceId" }],
                "responses": {
                    "200": json_response("The episodes", "History"),
                    "400": error_ref("BadRequest"),
                    "404": error_ref("NotFound"),
                    "500": error_ref("StoreError"),
                    "503": error_ref("StoreUnavailable")
                }
            }))
        },
        "/api/v1/statistics": {
            "get": api_operation(json!({
                "tags": ["drift-records"],
                "operationId": "getStatistics",
                "summary": "Counts over the current view and the history",
                "responses": {
                    "200": json_response("Statistics", "StatisticsResponse"),
                    "500": error_ref("StoreError"),
                    "503": error_ref("StoreUnavailable")
                }
            }))
        },
        "/api/v1/analyze": {
            "post": api_operation(json!({
                "tags": ["analysis"],
                "operationId": "triggerAnalysis",
                "summary": "Request a full analysis",
                "description": "Starts a run when none is going; triggers during a run share \
                    one queued follow-up run (and its run_id). No request body.",
                "responses": {
                    "202": {
                        "description": "Accepted",
                        "headers": {
                            "Location": {
                                "description": "Where to follow the run",
                                "schema": { "type": "string" }
                            }
                        },
                        "content": {
                            "application/json": {
                                "schema": { "$ref": "#/components/schemas/AnalyzeResponse" }
                            }
                        }
                    },
                    "403": error_ref("CrossSite")
                }
            }))
        },
        "/api/v1/analysis/{run_id}": {
            "get": api_operation(json!({
                "tags": ["analysis"],
                "operationId": "getAnalysis",
                "summary": "One analysis run",
                "description": "Queued, running, or one of the last finished runs kept.",
                "parameters": [{
                    "name": "run_id",
                    "in": "path",
                    "required": true,
                    "description": "The run_id answered by POST /api/v1/analyze",
                    "schema": { "type": "string", "format": "uuid" }
                }],
                "responses": {
                    "200": json_response("The run", "RunInfo"),
                    "400": error_ref("BadRequest"),
                    "404": error_ref("NotFound")
                }
            }))
        },
        "/api/v1/events": {
            "get": api_operation(json!({
                "tags": ["events"],
                "operationId": "streamEvents",
                "summary": "Server-sent events: drift detected, changed, resolved; analyses; health",
                "description": "A `text/event-stream` that stays open. Event names: `detected`, \
                    `changed`, `resolved`, `analysis`, `health`. Each `data` is one line of JSON \
                    with at least `resource_id`, `drift_status`, `drift_type`, `severity` and \
                    `time` (`null` where they do not apply); for record events it is the record \
                    without its desired and live states, `drift_type` and `severity` being the \
                    episode's. A `: keep-alive` comment comes every 15 s; a reader too slow to keep \
                    up is sent `: lagged, N events skipped` and goes on. The stream ends when the \
                    service stops; reconnect and re-read the records.",
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {
                            "text/event-stream": {
                                "schema": { "type": "string" }
                            }
                        }
                    }
                }
            }))
        },
        "/api/v1/openapi.json": {
            "get": api_operation(json!({
                "tags": ["meta"],
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.0 document",
                        "content": { "application/json": { "schema": { "type": "object" } } }
                    }
                }
            }))
        }
    })
}

fn list_operation(
    operation_id: &str,
    summary: &str,
    description: &str,
    status_parameter: &str,
    list_schema: &str,
) -> Value {
    let mut parameters: Vec<Value> = ["namespace", "kind", "drift_detected"]
        .iter()
        .map(|p| json!({ "$ref": format!("#/components/parameters/{p}") }))
        .collect();
    parameters.push(json!({ "$ref": status_parameter }));
    parameters.extend(
        ["severity", "type", "since", "limit", "offset", "after"]
            .iter()
            .map(|p| json!({ "$ref": format!("#/components/parameters/{p}") })),
    );
    api_operation(json!({
        "tags": ["drift-records"],
        "operationId": operation_id,
        "summary": summary,
        "description": format!(
            "{description} `total` counts every match before paging; `drift_records` is `[]` \
             when nothing matches. Unknown or repeated query parameters are a 400."
        ),
        "parameters": parameters,
        "responses": {
            "200": json_response("One page of records", list_schema),
            "400": error_ref("BadRequest"),
            "500": error_ref("StoreError"),
            "503": error_ref("StoreUnavailable")
        }
    }))
}

/// Adds what every `/api/v1` operation shares: the bearer token and its 401.
fn api_operation(mut operation: Value) -> Value {
    if let Some(op) = operation.as_object_mut() {
        op.insert("security".into(), json!([{ "bearerAuth": [] }]));
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert("401".into(), error_ref("Unauthorized"));
        }
    }
    operation
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{schema}") }
            }
        }
    })
}

fn error_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

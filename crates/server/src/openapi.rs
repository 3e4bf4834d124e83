//! The OpenAPI 3.0 document served at `GET /api/v1/openapi.json`.
//!
//! Built by hand so that it says exactly what [`crate::api`] does: every route, parameter,
//! status code and body schema. It is snapshot-tested (`crates/server/tests/snapshots/`), so a
//! change to the API shows up as a deliberate change to the snapshot.

use driftguard_core::{DriftType, Severity};
use driftguard_store::{DEFAULT_LIMIT, MAX_LIMIT};
use serde_json::{Map, Value, json};

use crate::api::MAX_OFFSET;

/// The OpenAPI 3.0.3 document of the API. `authenticated`: a bearer token is configured, so
/// the document declares the bearer scheme and the 401 answers; without one it declares
/// neither (the API is open, and a document claiming otherwise misleads clients and fuzzers).
pub fn document(authenticated: bool) -> Value {
    let mut document = full_document();
    if !authenticated {
        strip_auth(&mut document);
    }
    document
}

/// Removes the bearer scheme, every operation's `security` and its 401.
fn strip_auth(document: &mut Value) {
    if let Some(components) = document["components"].as_object_mut() {
        components.remove("securitySchemes");
        if let Some(responses) = components
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        {
            responses.remove("Unauthorized");
        }
    }
    if let Some(paths) = document["paths"].as_object_mut() {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(Value::as_object_mut)
        {
            operation.remove("security");
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses.remove("401");
            }
        }
    }
}

fn full_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "DriftGuard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Drift records, their history and statistics, and analysis runs of \
                DriftGuard, a GitOps drift detector. When a bearer token is configured, every \
                path under /api/v1 needs `Authorization: Bearer <token>`; /health, /ready and \
                /metrics are always open. Every error is `{\"error\": code, \"message\": detail}`; \
                unknown routes answer 404 and wrong methods 405 in that shape.",
            "license": { "name": "Apache-2.0" }
        },
        "tags": [
            { "name": "health", "description": "Liveness, readiness and metrics" },
            { "name": "drift-records", "description": "The current view and its history" },
            { "name": "analysis", "description": "Full analysis runs" },
            { "name": "meta", "description": "This document" }
        ],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "responses": responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required under /api/v1 only when the server has \
                        `server.auth_token` (DRIFTGUARD_SERVER__AUTH_TOKEN) set."
                }
            }
        }
    })
}

fn paths() -> Value {
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

fn parameters() -> Value {
    let query = |name: &str, description: &str, schema: Value| {
        json!({
            "name": name,
            "in": "query",
            "required": false,
            "description": description,
            "schema": schema
        })
    };
    let status = |values: &[&str], description: &str| {
        query(
            "status",
            description,
            json!({ "type": "string", "enum": values }),
        )
    };
    json!({
        "namespace": query(
            "namespace",
            "Exact namespace; empty selects cluster-scoped resources",
            json!({ "type": "string" }),
        ),
        "kind": query("kind", "Exact kind, e.g. Deployment", json!({ "type": "string" })),
        "drift_detected": query(
            "drift_detected",
            "`true` or `false`",
            json!({ "type": "boolean" }),
        ),
        "status": status(&["active", "resolved", "none"], "Lifecycle state"),
        "statusActive": status(
            &["active"],
            "Accepted only as `active`, the status this endpoint forces",
        ),
        "statusResolved": status(
            &["resolved"],
            "Accepted only as `resolved`, the status this endpoint forces",
        ),
        "severity": query(
            "severity",
            "Headline severity, exact",
            json!({ "type": "string", "enum": severities() }),
        ),
        "type": query(
            "type",
            "Records with any change of this type",
            json!({ "type": "string", "enum": drift_types() }),
        ),
        "since": query(
            "since",
            "RFC 3339 time; records with last_updated at or after it",
            json!({ "type": "string", "format": "date-time" }),
        ),
        "limit": query(
            "limit",
            "Page size",
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }),
        ),
        "offset": query(
            "offset",
            "Records to skip (ordered by resource_id); not with `after`",
            json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_OFFSET, "default": 0 }),
        ),
        "after": query(
            "after",
            "Keyset paging: only records whose resource_id sorts after this one (byte order); \
             pass the last resource_id of the previous page. `total` is unaffected; not with \
             `offset` (400 `conflicting_parameter`)",
            json!({ "type": "string" }),
        ),
        "resourceId": {
            "name": "resourceId",
            "in": "path",
            "required": true,
            "description": "`Kind:namespace:name`, `Kind::name` for cluster-scoped resources, \
                `Kind.group:namespace:name` when two groups share a kind name; may be \
                percent-encoded",
            "schema": { "type": "string", "pattern": "^[^:/]+:[^:/]*:[^:/]+$" }
        }
    })
}

fn responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {
                "application/json": { "schema": { "$ref": "#/components/schemas/Error" } }
            }
        })
    };
    let mut unavailable = error("The store is unreachable; retry later");
    unavailable["headers"] = json!({
        "Retry-After": { "description": "Seconds to wait", "schema": { "type": "integer" } }
    });
    let mut unauthorized = error("Missing or wrong bearer token (only when a token is configured)");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": { "description": "`Bearer`", "schema": { "type": "string" } }
    });
    json!({
        "BadRequest": error("A query parameter or path segment is invalid, unknown or repeated"),
        "NotFound": error("No such record, history or run"),
        "CrossSite": error(
            "Refused: sent cross-site (`Sec-Fetch-Site: cross-site`, or an `Origin` other than \
             the request's `Host`)"
        ),
        "Unauthorized": unauthorized,
        "StoreError": error("The store failed (the message names only the operation)"),
        "StoreUnavailable": unavailable
    })
}

fn schemas() -> Value {
    let mut schemas = Map::new();
    let mut add = |name: &str, schema: Value| {
        schemas.insert(name.to_owned(), schema);
    };
    add(
        "Error",
        object(
            &[
                (
                    "error",
                    json!({ "type": "string", "description": "Short snake_case code" }),
                ),
                (
                    "message",
                    json!({ "type": "string", "description": "What went wrong" }),
                ),
            ],
            false,
        ),
    );
    add(
        "Health",
        object(
            &[
                ("status", json!({ "type": "string", "enum": ["healthy"] })),
                ("message", json!({ "type": "string" })),
                ("time", date_time(false)),
            ],
            false,
        ),
    );
    add(
        "Readiness",
        object(
            &[
                (
                    "status",
                    json!({ "type": "string", "enum": ["ready", "degraded", "not ready"] }),
                ),
                (
                    "components",
                    json!({
                        "type": "object",
                        "additionalProperties": { "$ref": "#/components/schemas/Component" }
                    }),
                ),
            ],
            false,
        ),
    );
    add(
        "Component",
        object(
            &[
                (
                    "status",
                    json!({ "type": "string", "enum": ["pending", "ok", "degraded", "down"] }),
                ),
                ("message", json!({ "type": "string" })),
                ("since", date_time(false)),
            ],
            false,
        ),
    );
    add("Change", change());
    add("Warning", warning());
    add("DriftRecord", record());
    add("Episode", episode());
    for (name, status) in [
        ("RecordList", None),
        ("ActiveRecordList", Some("active")),
        ("ResolvedRecordList", Some("resolved")),
    ] {
        add(name, record_list(status));
    }
    add(
        "History",
        object(
            &[
                ("resource_id", json!({ "type": "string" })),
                (
                    "episodes",
                    json!({
                        "type": "array",
                        "description": "Newest first",
                        "items": { "$ref": "#/components/schemas/Episode" }
                    }),
                ),
            ],
            false,
        ),
    );
    add(
        "StatisticsResponse",
        object(
            &[(
                "statistics",
                json!({ "$ref": "#/components/schemas/Statistics" }),
            )],
            false,
        ),
    );
    add("Statistics", statistics());
    add(
        "AnalyzeResponse",
        object(
            &[
                (
                    "message",
                    json!({ "type": "string", "enum": ["Drift analysis triggered successfully"] }),
                ),
                ("status", json!({ "type": "string", "enum": ["started"] })),
                ("run_id", json!({ "type": "string", "format": "uuid" })),
            ],
            false,
        ),
    );
    add("RunInfo", run_info());
    Value::Object(schemas)
}

fn record() -> Value {
    let string = json!({ "type": "string" });
    let nullable_string = json!({ "type": "string", "nullable": true });
    let hash = |description: &str| {
        json!({
            "type": "string",
            "nullable": true,
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": description
        })
    };
    let state = |description: &str| {
        json!({
            "type": "object",
            "nullable": true,
            "additionalProperties": true,
            "description": description
        })
    };
    let mut schema = object(
        &[
            (
                "id",
                json!({
                    "type": "string",
                    "format": "uuid",
                    "description": "UUIDv5 of the identity, stable across restarts and stores"
                }),
            ),
            (
                "resource_id",
                json!({
                    "type": "string",
                    "description": "`Kind:namespace:name` (`Kind::name` when cluster-scoped)"
                }),
            ),
            ("kind", string.clone()),
            (
                "namespace",
                json!({ "type": "string", "description": "`\"\"` when cluster-scoped" }),
            ),
            ("name", string.clone()),
            ("api_version", string.clone()),
            (
                "drift_detected",
                json!({
                    "type": "boolean",
                    "description": "True exactly when drift_status is active"
                }),
            ),
            ("drift_status", status_schema()),
            (
                "drift_details",
                json!({
                    "type": "array",
                    "description": "Current changes sorted by field; `[]` when not active",
                    "items": { "$ref": "#/components/schemas/Change" }
                }),
            ),
            (
                "warnings",
                json!({
                    "type": "array",
                    "description": "What Git asks for that the server will never store, and \
                        fields left out of the comparison; never drift (`[]` when none)",
                    "items": { "$ref": "#/components/schemas/Warning" }
                }),
            ),
            (
                "drift_type",
                nullable_enum(&drift_types(), "Headline type; null when not active"),
            ),
            (
                "severity",
                nullable_enum(&severities(), "Headline severity; null when not active"),
            ),
            (
                "desired_state",
                state("Normalised Git object, Secret values digested"),
            ),
            (
                "live_state",
                state("Normalised live object, Secret values digested"),
            ),
            (
                "last_known_good_hash",
                hash("Hash of the canonical JSON of desired_state"),
            ),
            (
                "live_hash",
                hash("Hash of the canonical JSON of live_state"),
            ),
            (
                "git_commit",
                json!({
                    "type": "string",
                    "nullable": true,
                    "description": "Full commit SHA"
                }),
            ),
            (
                "source_path",
                json!({
                    "type": "string",
                    "nullable": true,
                    "description": "`path/in/repo.yaml#N`, N the 0-based document index"
                }),
            ),
            (
                "managed",
                json!({ "type": "boolean", "description": "True when the resource is in Git" }),
            ),
            ("first_detected", date_time(true)),
            ("resolved_at", date_time(true)),
            ("resolution_message", nullable_string),
            ("last_updated", date_time(false)),
            ("created_at", date_time(false)),
        ],
        false,
    );
    schema["description"] = json!("The current verdict for one resource (contract §2)");
    schema
}

fn change() -> Value {
    let any = |description: &str| json!({ "nullable": true, "description": description });
    let mut schema = object(
        &[
            (
                "field",
                json!({
                    "type": "string",
                    "description": "Path such as `spec.template.spec.containers[name=web].image`; \
                        `\"\"` for whole-resource verdicts"
                }),
            ),
            (
                "op",
                json!({ "type": "string", "enum": ["changed", "added", "removed"] }),
            ),
            ("from", any("The Git value; null for added")),
            ("to", any("The live value; null for removed")),
            ("type", json!({ "type": "string", "enum": drift_types() })),
            (
                "severity",
                json!({ "type": "string", "enum": severities() }),
            ),
            (
                "manager",
                json!({
                    "type": "string",
                    "nullable": true,
                    "description": "Field manager that last wrote the path, when known"
                }),
            ),
            ("changed_at", date_time(true)),
        ],
        false,
    );
    schema["description"] = json!("One difference between Git and the cluster (contract §2.1)");
    schema
}

fn warning() -> Value {
    let mut schema = object(
        &[
            (
                "field",
                json!({
                    "type": "string",
                    "description": "Path of the field it is about (same syntax as a change's \
                        field); `\"\"` for the whole manifest"
                }),
            ),
            (
                "code",
                json!({
                    "type": "string",
                    "description": "Stable code, e.g. `server-rewrites`, `duplicate-key`, \
                        `non-deterministic`"
                }),
            ),
            ("message", json!({ "type": "string" })),
        ],
        false,
    );
    schema["description"] =
        json!("Something Git asks for that the server will never store (not drift; contract §9)");
    schema
}

fn episode() -> Value {
    let mut schema = object(
        &[
            ("first_detected", date_time(false)),
            ("resolved_at", date_time(true)),
            (
                "resolution_message",
                json!({ "type": "string", "nullable": true }),
            ),
            ("drift_type", nullable_enum(&drift_types(), "Headline type")),
            (
                "severity",
                nullable_enum(&severities(), "Headline severity"),
            ),
            (
                "changes",
                json!({ "type": "array", "items": { "$ref": "#/components/schemas/Change" } }),
            ),
            ("git_commit", json!({ "type": "string", "nullable": true })),
        ],
        false,
    );
    schema["description"] = json!("One stretch of drift, from detection to resolution");
    schema
}

fn record_list(status: Option<&str>) -> Value {
    let mut properties = vec![
        (
            "count",
            json!({ "type": "integer", "minimum": 0, "description": "Records in this page" }),
        ),
        (
            "total",
            json!({ "type": "integer", "minimum": 0, "description": "Matches before paging" }),
        ),
        (
            "drift_records",
            json!({
                "type": "array",
                "items": { "$ref": "#/components/schemas/DriftRecord" }
            }),
        ),
    ];
    if let Some(status) = status {
        properties.push(("status", json!({ "type": "string", "enum": [status] })));
    }
    object(&properties, false)
}

fn statistics() -> Value {
    let count =
        |description: &str| json!({ "type": "integer", "minimum": 0, "description": description });
    let percent = |description: &str| json!({ "type": "number", "minimum": 0, "maximum": 100, "description": description });
    let mut schema = object(
        &[
            ("total_records", count("Records in the current view")),
            ("active_drift", count("Records active")),
            ("resolved_drift", count("Records resolved")),
            ("no_drift", count("Records without drift")),
            (
                "recent_active_drift",
                count("Active records whose episode started in the last 24 h"),
            ),
            (
                "recent_resolutions",
                count("Episodes resolved in the last 24 h"),
            ),
            (
                "active_percentage",
                percent("active_drift / total_records, 2 decimals"),
            ),
            (
                "resolved_percentage",
                percent("resolved_drift / total_records, 2 decimals"),
            ),
            (
                "by_type",
                json!({
                    "type": "object",
                    "description": "Active records by headline type",
                    "additionalProperties": { "type": "integer", "minimum": 0 }
                }),
            ),
            (
                "by_severity",
                json!({
                    "type": "object",
                    "description": "Active records by headline severity",
                    "additionalProperties": { "type": "integer", "minimum": 0 }
                }),
            ),
            (
                "mttr_seconds",
                json!({
                    "type": "object",
                    "description": "Mean time to resolve in seconds, by headline type and severity",
                    "additionalProperties": { "type": "number" }
                }),
            ),
        ],
        true,
    );
    schema["description"] = json!("Counts over the current view; \"recent\" is the last 24 hours");
    schema
}

fn run_info() -> Value {
    let count = json!({ "type": "integer", "minimum": 0 });
    object(
        &[
            ("run_id", json!({ "type": "string", "format": "uuid" })),
            (
                "trigger",
                json!({ "type": "string", "enum": ["manual", "periodic", "startup"] }),
            ),
            (
                "status",
                json!({
                    "type": "string",
                    "enum": ["queued", "running", "completed", "failed"],
                    "description": "`failed`: finished, but some sources could not be read"
                }),
            ),
            ("requested_at", date_time(false)),
            (
                "requests",
                json!({ "type": "integer", "minimum": 1, "description": "Triggers folded into this run" }),
            ),
            ("started_at", date_time(true)),
            ("finished_at", date_time(true)),
            ("git_commit", json!({ "type": "string", "nullable": true })),
            (
                "counts",
                object(
                    &[
                        ("evaluated", count.clone()),
                        ("active", count.clone()),
                        ("detected", count.clone()),
                        ("resolved", count.clone()),
                        ("written", count),
                    ],
                    false,
                ),
            ),
            (
                "errors",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
        ],
        false,
    )
}

/// An object whose listed properties are all required.
fn object(properties: &[(&str, Value)], open: bool) -> Value {
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": open
    })
}

fn date_time(nullable: bool) -> Value {
    if nullable {
        json!({ "type": "string", "format": "date-time", "nullable": true })
    } else {
        json!({ "type": "string", "format": "date-time" })
    }
}

fn nullable_enum(values: &[&str], description: &str) -> Value {
    // OpenAPI 3.0.3: `nullable` does not widen an `enum`, so null is listed too.
    let mut values: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    values.push(Value::Null);
    json!({ "type": "string", "nullable": true, "enum": values, "description": description })
}

fn status_schema() -> Value {
    json!({ "type": "string", "enum": ["active", "resolved", "none"] })
}

fn drift_types() -> Vec<&'static str> {
    DriftType::ALL.iter().map(|t| t.as_str()).collect()
}

fn severities() -> Vec<&'static str> {
    Severity::ALL.iter().map(|s| s.as_str()).collect()
}

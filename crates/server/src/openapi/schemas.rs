//! The component schemas of the document: every body the API answers with.

use serde_json::{Map, Value, json};

use super::json_schema::{date_time, object};
use super::records::{change, episode, record, record_list, warning};

pub(super) fn schemas() -> Value {
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

//! The schemas of a drift record and its parts: the record, a change, a warning, an episode,
//! and a page of records.

use serde_json::{Value, json};

use super::json_schema::{
    date_time, drift_types, nullable_enum, object, severities, status_schema,
};

pub(super) fn record() -> Value {
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
                "source_line",
                json!({
                    "type": "integer",
                    "minimum": 1,
                    "nullable": true,
                    "description": "1-based line where the document starts in source_path's file; null for Kustomize and Helm output"
                }),
            ),
            (
                "helm_release",
                json!({
                    "type": "string",
                    "nullable": true,
                    "description": "The Helm release that rendered the desired state (source_path is then `<chart>/templates/<file>#N`)"
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

pub(super) fn change() -> Value {
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
            (
                "source_line",
                json!({
                    "type": "integer",
                    "minimum": 1,
                    "nullable": true,
                    "description": "1-based line in the record's source_path file where Git writes \
                        the desired value at this path (for an added field, the line of its \
                        nearest ancestor Git writes); null when unknown: Kustomize and Helm \
                        output (generated text, not the file), resources not in Git, records \
                        stored before changes had lines"
                }),
            ),
        ],
        false,
    );
    schema["description"] = json!("One difference between Git and the cluster (contract §2.1)");
    schema
}

pub(super) fn warning() -> Value {
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

pub(super) fn episode() -> Value {
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

pub(super) fn record_list(status: Option<&str>) -> Value {
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

//! The reusable parameters and error responses of the document, and the parameter contract the
//! API enforces ([`LIST_PARAMETERS`], [`MAX_OFFSET`]).

use driftguard_store::{DEFAULT_LIMIT, MAX_LIMIT};
use serde_json::{Value, json};

use super::json_schema::{drift_types, severities};

/// Query parameters of the record listings, in documentation order.
pub const LIST_PARAMETERS: [&str; 10] = [
    "namespace",
    "kind",
    "drift_detected",
    "status",
    "severity",
    "type",
    "since",
    "limit",
    "offset",
    "after",
];

/// Largest accepted `offset` (the stores count in signed 64-bit integers).
pub const MAX_OFFSET: u64 = i64::MAX as u64;

pub(super) fn parameters() -> Value {
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

pub(super) fn responses() -> Value {
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

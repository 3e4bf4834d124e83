//! The OpenAPI 3.0 document served at `GET /api/v1/openapi.json`.
//!
//! Built by hand so that it says exactly what [`crate::api`] does: every route, parameter,
//! status code and body schema. It is snapshot-tested (`crates/server/tests/snapshots/`), so a
//! change to the API shows up as a deliberate change to the snapshot.
//!
//! Files: `paths` (the operations), `parameters` (reusable parameters and error responses,
//! and the parameter contract the API enforces), `schemas` and `records` (component schemas),
//! `json_schema` (small builders).

mod json_schema;
mod parameters;
mod paths;
mod records;
mod schemas;

use serde_json::{Value, json};

pub use self::parameters::{LIST_PARAMETERS, MAX_OFFSET};

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
            { "name": "events", "description": "Live events as server-sent events" },
            { "name": "meta", "description": "This document" }
        ],
        "paths": paths::paths(),
        "components": {
            "schemas": schemas::schemas(),
            "parameters": parameters::parameters(),
            "responses": parameters::responses(),
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

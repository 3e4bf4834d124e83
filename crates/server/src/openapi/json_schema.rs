//! Small JSON Schema builders shared by the parameters and the schemas.

use driftguard_core::{DriftType, Severity};
use serde_json::{Map, Value, json};

/// An object whose listed properties are all required.
pub(super) fn object(properties: &[(&str, Value)], open: bool) -> Value {
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

pub(super) fn date_time(nullable: bool) -> Value {
    if nullable {
        json!({ "type": "string", "format": "date-time", "nullable": true })
    } else {
        json!({ "type": "string", "format": "date-time" })
    }
}

pub(super) fn nullable_enum(values: &[&str], description: &str) -> Value {
    // OpenAPI 3.0.3: `nullable` does not widen an `enum`, so null is listed too.
    let mut values: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    values.push(Value::Null);
    json!({ "type": "string", "nullable": true, "enum": values, "description": description })
}

pub(super) fn status_schema() -> Value {
    json!({ "type": "string", "enum": ["active", "resolved", "none"] })
}

pub(super) fn drift_types() -> Vec<&'static str> {
    DriftType::ALL.iter().map(|t| t.as_str()).collect()
}

pub(super) fn severities() -> Vec<&'static str> {
    Severity::ALL.iter().map(|s| s.as_str()).collect()
}

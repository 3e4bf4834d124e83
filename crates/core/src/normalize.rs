//! Normalisation: both sides are brought to the form the API server stores, so that only real
//! differences remain.
//!
//! - server-owned metadata (`uid`, `resourceVersion`, `managedFields`, …), `status` and
//!   controller bookkeeping annotations (`kubectl.kubernetes.io/last-applied-configuration`,
//!   `deployment.kubernetes.io/revision`, …) are dropped;
//! - `null` fields, empty lists, empty well-known maps (`labels: {}`) and empty strings outside
//!   user-data maps are dropped, as the API server drops them;
//! - numbers with an integral value are written as integers (`2.0` → `2`);
//! - object keys are sorted.
//!
//! Quantities and int-or-string values keep their spelling (so changes show what was written);
//! the diff compares them by value.

use serde_json::{Map, Number, Value};

use crate::schema::{drop_when_empty, is_user_map};
use crate::secret::LAST_APPLIED_ANNOTATION;

/// Deepest nesting normalised; deeper values are kept as they are.
const MAX_DEPTH: usize = 256;

/// `metadata` fields written by the API server.
const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
];

/// Annotations written by controllers or by `kubectl` itself.
const DROPPED_ANNOTATIONS: [&str; 13] = [
    LAST_APPLIED_ANNOTATION,
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.daemonset.template.generation",
    "control-plane.alpha.kubernetes.io/leader",
    "endpoints.kubernetes.io/last-change-trigger-time",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "pv.kubernetes.io/provisioned-by",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Normalises a whole object (desired or live); see the module documentation.
pub fn normalize(object: &Value) -> Value {
    // Copy everything but what is dropped anyway (the last-applied annotation is often the
    // largest string of the object).
    let Value::Object(map) = object else {
        return normalize_owned(object.clone());
    };
    let copy: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "status")
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("metadata", Value::Object(meta)) => Value::Object(
                    meta.iter()
                        .filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str()))
                        .map(|(k, v)| {
                            let v = match (k.as_str(), v) {
                                ("annotations", Value::Object(annotations)) => Value::Object(
                                    annotations
                                        .iter()
                                        .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
                                        .map(|(k, v)| (k.clone(), v.clone()))
                                        .collect(),
                                ),
                                _ => v.clone(),
                            };
                            (k.clone(), v)
                        })
                        .collect(),
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    normalize_owned(Value::Object(copy))
}

/// Like [`normalize`], consuming the object (no copy).
pub fn normalize_owned(mut object: Value) -> Value {
    if let Value::Object(map) = &mut object {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for key in SERVER_METADATA {
                meta.remove(key);
            }
            if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                for key in DROPPED_ANNOTATIONS {
                    annotations.remove(key);
                }
            }
        }
    }
    if !normalize_in_place(&mut object, None, 0) {
        object = Value::Null;
    }
    object
}

/// Normalises one value found under `key` in place; `false` means "the API server would not
/// store it" (the caller drops it).
fn normalize_in_place(value: &mut Value, key: Option<&str>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return true;
    }
    match value {
        Value::Null => false,
        Value::Number(n) => {
            *n = normalize_number(n);
            true
        }
        Value::Object(map) => {
            let user_map = key.is_some_and(is_user_map);
            map.retain(|k, v| match v {
                // An empty string is a value in a user-data map (`labels: {tier: ""}`) and
                // "unset" in a struct field (`value: ""` on an env var is stored as absent).
                Value::String(s) if s.is_empty() => user_map,
                _ => normalize_in_place(v, Some(k), depth + 1),
            });
            // Keys in order whatever the map type (serde_json keeps insertion order when a
            // dependency enables `preserve_order`): the diff then pairs two maps in one pass and
            // the canonical hash needs no sorting.
            map.sort_keys();
            !(map.is_empty() && key.is_some_and(drop_when_empty))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return false;
            }
            for item in items.iter_mut() {
                // Positions matter inside lists: keep nulls as nulls.
                if !normalize_in_place(item, key, depth + 1) {
                    *item = Value::Null;
                }
            }
            true
        }
        _ => true,
    }
}

/// `2.0` → `2`; other numbers unchanged.
fn normalize_number(n: &Number) -> Number {
    if !n.is_f64() {
        return n.clone();
    }
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() < 9.0e15
    {
        // The bound keeps the conversion exact (below 2^53).
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        return Number::from(i);
    }
    n.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_server_metadata_and_empties() {
        let v = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "uid": "x", "resourceVersion": "1", "labels": {},
                         "annotations": {LAST_APPLIED_ANNOTATION: "{}", "team": "a"}},
            "data": {"empty": "", "n": "1"},
            "status": {"x": 1}
        });
        let n = normalize(&v);
        assert_eq!(
            n,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "annotations": {"team": "a"}},
                   "data": {"empty": "", "n": "1"}})
        );
    }

    #[test]
    fn numbers_by_value_and_nulls_dropped() {
        let v = json!({"spec": {"replicas": 2.0, "x": null, "env": [], "s": "", "f": 0.5}});
        assert_eq!(normalize(&v), json!({"spec": {"replicas": 2, "f": 0.5}}));
    }
}

//! The little Kubernetes schema knowledge the engine needs: which lists are keyed and by what,
//! which fields hold quantities or int-or-string values, which maps hold user data.
//!
//! Everything is decided on the structured path (map keys and list items), never on substrings.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::quantity::quantities_equal;

/// Container lists of a pod spec.
pub(crate) const CONTAINER_LISTS: [&str; 3] =
    ["containers", "initContainers", "ephemeralContainers"];

/// Maps whose values are user data (strings), where an empty string is a value, not "unset".
const USER_MAPS: [&str; 9] = [
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "matchLabels",
    "nodeSelector",
    "selector",
    "parameters",
];

/// Map-typed fields the API server drops when empty (`labels: {}` is stored as absent).
const DROP_WHEN_EMPTY: [&str; 11] = [
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "matchLabels",
    "nodeSelector",
    "selector",
    "limits",
    "requests",
    "parameters",
];

/// Parents whose entries are quantities (`resources.limits.cpu`, `spec.hard["requests.memory"]`,
/// LimitRange `max`/`min`/`default`…). Values are compared as quantities only when both parse.
const QUANTITY_PARENTS: [&str; 11] = [
    "limits",
    "requests",
    "overhead",
    "hard",
    "used",
    "capacity",
    "allocatable",
    "max",
    "min",
    "default",
    "defaultRequest",
];

/// Scalar fields that are quantities themselves (HPA targets of autoscaling/v2beta1, v2beta2
/// and v2 included: `averageValue: 2` is stored as `"2"`).
const QUANTITY_FIELDS: [&str; 6] = [
    "sizeLimit",
    "maxLimitRequestRatio",
    "averageValue",
    "targetAverageValue",
    "targetValue",
    "divisor",
];

/// Parents whose `value` is a quantity (`metrics[].object.target.value`).
const QUANTITY_VALUE_PARENTS: [&str; 2] = ["target", "current"];

/// int-or-string fields: `80` and `"80"` are the same value there (named ports stay strings).
const INT_OR_STRING: [&str; 5] = [
    "targetPort",
    "port",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
];

/// True for maps whose entries are user data.
pub(crate) fn is_user_map(key: &str) -> bool {
    USER_MAPS.contains(&key)
}

/// True for map fields the API server drops when empty.
pub(crate) fn drop_when_empty(key: &str) -> bool {
    DROP_WHEN_EMPTY.contains(&key)
}

/// The merge keys of the list under the map key `last` in an object of `kind`, in schema order,
/// with the value the API server defaults each key to when it is absent. `parent_is_container`:
/// the list sits directly in a container item; `depth`: the number of path steps (2 for
/// `spec.ports`).
pub(crate) fn merge_keys(
    kind: &str,
    last: &str,
    parent_is_container: bool,
    depth: usize,
) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    match last {
        "containers" | "initContainers" | "ephemeralContainers" => Some(&[("name", None)]),
        "env" if parent_is_container => Some(&[("name", None)]),
        "ports" if parent_is_container => {
            Some(&[("containerPort", None), ("protocol", Some("TCP"))])
        }
        "ports" if kind == "Service" && depth == 2 => {
            Some(&[("port", None), ("protocol", Some("TCP"))])
        }
        "volumeMounts" if parent_is_container => Some(&[("mountPath", None)]),
        "volumeDevices" if parent_is_container => Some(&[("devicePath", None)]),
        "volumes" | "imagePullSecrets" => Some(&[("name", None)]),
        "hostAliases" => Some(&[("ip", None)]),
        "topologySpreadConstraints" => Some(&[("topologyKey", None), ("whenUnsatisfiable", None)]),
        "readinessGates" => Some(&[("conditionType", None)]),
        _ => None,
    }
}

/// The text form of a merge-key value (`80`, `TCP`), or `None` when it cannot key an item.
pub(crate) fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// True for a value that can key a list item (a string, number or boolean).
pub(crate) fn is_key_value(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// Merge-key values equal by their text (`80` and `"80"` key the same port); allocates only
/// for the rare mixed spelling.
pub(crate) fn key_values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_), Value::Number(_)) | (Value::Bool(_), Value::Bool(_)) => {
            a == b || key_text(a) == key_text(b)
        }
        _ => key_text(a).is_some_and(|t| Some(t) == key_text(b)),
    }
}

/// The entry `name` of a map. Small maps are scanned (cheaper than hashing the key when
/// `serde_json` keeps insertion order and hashes with SipHash).
pub(crate) fn entry<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if map.len() <= 16 {
        map.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
    } else {
        map.get(name)
    }
}

/// The value a defaulted merge key takes when absent (`protocol` → `TCP`).
static DEFAULT_PROTOCOL: LazyLock<Value> = LazyLock::new(|| Value::String("TCP".to_owned()));

/// At most this many merge keys key a list (`containerPort` + `protocol`).
const MAX_MERGE_KEYS: usize = 2;

/// A placeholder for unused merge-key slots.
static NO_VALUE: Value = Value::Null;

/// The typed merge-key values of one keyed list item, borrowed from it; copied into each path
/// step without allocating. Dereferences to the `(key, value)` pairs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ItemKeys<'v> {
    pairs: [(&'static str, &'v Value); MAX_MERGE_KEYS],
    len: usize,
}

impl<'v> std::ops::Deref for ItemKeys<'v> {
    type Target = [(&'static str, &'v Value)];

    fn deref(&self) -> &Self::Target {
        self.pairs.get(..self.len).unwrap_or_default()
    }
}

/// The merge-key values of one list item, borrowed from the item (defaults filled in), or
/// `None` when the item is not an object or lacks a key without default.
pub(crate) fn item_keys<'v>(
    keys: &[(&'static str, Option<&'static str>)],
    item: &'v Value,
) -> Option<ItemKeys<'v>> {
    let map = item.as_object()?;
    let mut out = ItemKeys {
        pairs: [("", &NO_VALUE); MAX_MERGE_KEYS],
        len: 0,
    };
    for (name, default) in keys {
        let value: &'v Value = match (entry(map, name), default) {
            (Some(v), _) if is_key_value(v) => v,
            (None, Some("TCP")) => &DEFAULT_PROTOCOL,
            _ => return None,
        };
        *out.pairs.get_mut(out.len)? = (*name, value);
        out.len += 1;
    }
    Some(out)
}

/// Compares two scalars the way the API server would read them: numbers by value, quantities by
/// value where the schema has quantities, int-or-string fields by value.
pub(crate) fn scalars_equal(key: Option<&str>, parent: Option<&str>, a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    // `nodePort: 0` (Git) asks the server to allocate one: any allocated port matches.
    if key.is_some_and(|k| k == "nodePort" || k == "healthCheckNodePort")
        && (is_zero_number(a) || is_zero_number(b))
    {
        return true;
    }
    if let (Value::Number(x), Value::Number(y)) = (a, b)
        && let (Some(x), Some(y)) = (x.as_f64(), y.as_f64())
        && x == y
        && (x.fract() != 0.0 || x.abs() < 9.0e15)
    {
        return true;
    }
    let quantity_context = key.is_some_and(|k| QUANTITY_FIELDS.contains(&k))
        || parent.is_some_and(|p| QUANTITY_PARENTS.contains(&p))
        || (key == Some("value") && parent.is_some_and(|p| QUANTITY_VALUE_PARENTS.contains(&p)));
    if quantity_context && quantities_equal(a, b) {
        return true;
    }
    // A number in Git stored as a string can only be a quantity or an int-or-string field (the
    // server refuses a number for a plain string field): equal when the values are.
    if let (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) = (a, b)
        && quantities_equal(a, b)
    {
        return true;
    }
    if key.is_some_and(|k| INT_OR_STRING.contains(&k)) {
        return match (a, b) {
            (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
                s.parse::<i64>().ok().is_some_and(|s| n.as_i64() == Some(s))
            }
            _ => false,
        };
    }
    false
}

fn is_zero_number(value: &Value) -> bool {
    value.as_f64() == Some(0.0)
}

/// True for values the API server stores as "absent": null, `""`, `{}` and `[]`.
pub(crate) fn is_empty_like(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// True for a value Git may set that the API server does not store: an empty value, or a Go
/// zero value (`false`, `0`) of an `omitempty` field (`readOnly: false`, `hostNetwork: false`,
/// `nodePort: 0` are stored as absent). Only used for a Git value whose field is absent live.
pub(crate) fn is_unstored_zero(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => is_empty_like(value),
    }
}

/// Semantic equality of two values reported whole (unkeyed lists): same length, and every field
/// Git sets is equal live (fields only live — server defaults — are not compared).
pub(crate) fn subset_equal(
    key: Option<&str>,
    parent: Option<&str>,
    git: &Value,
    live: &Value,
    depth: usize,
) -> bool {
    if depth > 256 {
        return git == live;
    }
    match (git, live) {
        (Value::Object(g), Value::Object(l)) => g.iter().all(|(k, gv)| match l.get(k) {
            Some(lv) => subset_equal(Some(k), key, gv, lv, depth + 1),
            None => is_unstored_zero(gv),
        }),
        (Value::Array(g), Value::Array(l)) => {
            g.len() == l.len()
                && g.iter()
                    .zip(l)
                    .all(|(gv, lv)| subset_equal(key, parent, gv, lv, depth + 1))
        }
        _ => scalars_equal(key, parent, git, live),
    }
}

/// True for label and annotation keys written by Kubernetes itself (`kubernetes.io/…`,
/// `k8s.io/…`, `*.kubernetes.io/…` except `app.kubernetes.io/…`, which users write).
pub(crate) fn is_system_key(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    if prefix == "app.kubernetes.io" {
        return false;
    }
    prefix == "kubernetes.io"
        || prefix == "k8s.io"
        || prefix.ends_with(".kubernetes.io")
        || prefix.ends_with(".k8s.io")
}

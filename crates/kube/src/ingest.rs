//! The one door every live object passes through.
//!
//! Order matters: the object's `apiVersion`/`kind` are set first (list responses omit them on
//! their items, and [`SecretHasher::redact`] recognises Secrets by them), then Secret values —
//! `data`, `stringData` and the copy in the last-applied annotation — are replaced by digests,
//! and only then is the [`LiveObject`] built (status dropped, `managedFields` kept compactly).

use driftguard_core::{LiveObject, ResourceKey, SecretHasher};
use serde_json::Value;

use crate::types::ResolvedKind;

/// Turns one raw API object of type `kind` into a redacted [`LiveObject`]. `None` when the
/// value is not an object with a name (never seen from a conforming server).
pub fn ingest(kind: &ResolvedKind, raw: Value, hasher: &SecretHasher) -> Option<LiveObject> {
    let mut raw = raw;
    let api_version = kind.api_version();
    {
        let map = raw.as_object_mut()?;
        map.insert("apiVersion".to_owned(), Value::String(api_version.clone()));
        map.insert("kind".to_owned(), Value::String(kind.kind.clone()));
    }
    hasher.redact(&mut raw);
    let metadata = raw.get("metadata")?;
    let name = metadata.get("name").and_then(Value::as_str)?.to_owned();
    let namespace = if kind.namespaced {
        metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        String::new()
    };
    let key = ResourceKey::new(&kind.group, &kind.kind, namespace, name);
    Some(LiveObject::from_api(key, api_version, raw))
}

/// Serialises a typed kube object to JSON for [`ingest`]. Errors cannot carry content.
pub(crate) fn to_value<T: serde::Serialize>(object: &T) -> Option<Value> {
    serde_json::to_value(object).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_items_without_type_are_still_redacted() {
        let secret = ResolvedKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
            namespaced: true,
        };
        let hasher = SecretHasher::new(b"k".repeat(32));
        // As a list response item: no apiVersion/kind.
        let raw = json!({
            "metadata": {"name": "s", "namespace": "n", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"stringData\":{\"pw\":\"canary-xyz\"}}"
            }, "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:data": {}}}]},
            "data": {"pw": "Y2FuYXJ5LXh5eg=="},
            "type": "Opaque"
        });
        let live = ingest(&secret, raw, &hasher).unwrap();
        let text = serde_json::to_string(&live).unwrap();
        assert!(
            !text.contains("canary-xyz") && !text.contains("Y2FuYXJ5LXh5eg=="),
            "{text}"
        );
        assert_eq!(live.key.resource_id(), "Secret:n:s");
        assert_eq!(live.api_version, "v1");
        assert_eq!(live.managed_fields.len(), 1);
        assert_eq!(
            live.object["data"]["pw"],
            json!(hasher.digest(b"canary-xyz"))
        );
    }
}

//! Desired objects (from Git) and live objects (from the API server), as the engine sees them.
//!
//! Both arrive here already stripped of Secret values by their edge (see [`crate::secret`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::ResourceKey;

/// Where a desired object came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Full commit SHA (empty when read from a working tree without Git).
    pub commit: String,
    /// Repository-relative file (`dir/kustomization.yaml` for Kustomize output).
    pub path: String,
    /// 0-based document index in the file (or in the Kustomize output).
    pub doc_index: usize,
    /// 1-based line of the document's start, when known.
    pub line: Option<usize>,
}

impl Source {
    /// `path/in/repo.yaml#N` (contract §2).
    pub fn source_path(&self) -> String {
        format!("{}#{}", self.path, self.doc_index)
    }
}

/// One object rendered from Git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredObject {
    /// Identity.
    pub key: ResourceKey,
    /// The `apiVersion` the manifest uses (the live object is compared in this version).
    pub api_version: String,
    /// The manifest, namespace defaulted, Secret values digested.
    pub object: Value,
    /// Provenance.
    pub source: Source,
    /// `sha256:<hex>` of the canonical JSON of `object`.
    pub hash: String,
}

/// One `managedFields` entry, kept compactly for attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedFieldsEntry {
    /// Field manager name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// Last write time.
    pub time: Option<DateTime<Utc>>,
    /// Subresource (`scale`, `status`) when the write went through one.
    pub subresource: Option<String>,
    /// The `fieldsV1` set (`{"f:spec":{"f:replicas":{}}}`).
    pub fields: Value,
}

/// One object as the API server returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveObject {
    /// Identity.
    pub key: ResourceKey,
    /// The `apiVersion` it was read in.
    pub api_version: String,
    /// The object without `status` and `managedFields`, Secret values digested.
    pub object: Value,
    /// Who wrote which fields.
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

impl ManagedFieldsEntry {
    /// Parses the `metadata.managedFields` array of a live object; malformed entries are skipped.
    pub fn parse_list(value: &Value) -> Vec<ManagedFieldsEntry> {
        let Some(items) = value.as_array() else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let manager = item.get("manager")?.as_str()?.to_owned();
                Some(ManagedFieldsEntry {
                    manager,
                    operation: item
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .to_owned(),
                    time: item
                        .get("time")
                        .and_then(Value::as_str)
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    subresource: item
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    fields: item.get("fieldsV1").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }
}

impl LiveObject {
    /// Builds a live object from the raw API JSON (already Secret-redacted): drops `status` and
    /// `managedFields` from the body and keeps the latter compactly.
    pub fn from_api(key: ResourceKey, api_version: String, mut object: Value) -> Self {
        let mut managed_fields = Vec::new();
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut)
                && let Some(mf) = meta.remove("managedFields")
            {
                managed_fields = ManagedFieldsEntry::parse_list(&mf);
            }
        }
        Self {
            key,
            api_version,
            object,
            managed_fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_object_keeps_managed_fields_apart() {
        let raw = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "n", "managedFields": [
                {"manager": "kubectl-set", "operation": "Update", "time": "2026-11-26T03:55:13Z",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            ]},
            "spec": {"replicas": 2},
            "status": {"replicas": 2}
        });
        let key = ResourceKey::from_api_version("apps/v1", "Deployment", "n", "a");
        let live = LiveObject::from_api(key, "apps/v1".into(), raw);
        assert!(live.object.get("status").is_none());
        assert!(live.object["metadata"].get("managedFields").is_none());
        assert_eq!(live.managed_fields.len(), 1);
        assert_eq!(live.managed_fields[0].manager, "kubectl-set");
        assert!(live.managed_fields[0].time.is_some());
    }
}

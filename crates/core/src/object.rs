//! Desired objects (from Git) and live objects (from the API server), as the engine sees them.
//!
//! Both arrive here already stripped of Secret values by their edge (see [`crate::secret`]), and
//! both are prepared for comparison where they are built — normalised and hashed once — so the
//! engine's cost for an unchanged resource is the structural diff alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{canonical_json, content_hash, text_hash};
use crate::crd::CrdDefaults;
use crate::diff::{LastApplied, Managers, Walker};
use crate::identity::ResourceKey;
use crate::json_text::JsonText;
use crate::normalize::{normalize, normalize_owned};
use crate::path::FieldPath;
use crate::secret::LAST_APPLIED_ANNOTATION;
use crate::warning::{NON_DETERMINISTIC, Warning};

/// Where a desired object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// Full commit SHA (empty when read from a working tree without Git).
    pub commit: String,
    /// Repository-relative file (`dir/kustomization.yaml` for Kustomize output).
    pub path: String,
    /// 0-based document index in the file (or in the Kustomize output).
    pub doc_index: usize,
    /// 1-based line of the document's start, when known.
    pub line: Option<usize>,
    /// The Helm release that rendered the object (`path` is then the chart's template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_release: Option<String>,
}

impl Source {
    /// `path/in/repo.yaml#N` (contract §2).
    pub fn source_path(&self) -> String {
        format!("{}#{}", self.path, self.doc_index)
    }
}

/// One object rendered from Git, made ready for comparison once, when it is read: its
/// normalised form and both hashes are computed by [`DesiredObject::new`], so comparing it again
/// (every full analysis) costs only the structural diff.
///
/// Build it with [`DesiredObject::new`]; the fields are public for reading. Changing `object`
/// afterwards leaves `state` and the hashes stale — build a new one instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredObject {
    /// Identity.
    pub key: ResourceKey,
    /// The `apiVersion` the manifest uses (the live object is compared in this version).
    pub api_version: String,
    /// The manifest, namespace defaulted, Secret values digested, kept as its canonical text
    /// ([`JsonText::value`] gives the tree). When normalising changes no value (most
    /// manifests) this is the same allocation as `state`. The snapshot holds one desired
    /// object per resource: about 1 KB for a small ConfigMap, text, key, source and hashes
    /// included (`tests/memory.rs`); as trees it was 3.1 KB.
    pub object: JsonText,
    /// Provenance.
    pub source: Source,
    /// `sha256:<hex>` of the canonical JSON of `object` (as written; matched against kubectl's
    /// last-applied configuration).
    pub hash: String,
    /// `object` normalised (see [`crate::normalize`]), as canonical text; the same allocation
    /// as `object` when they are equal.
    pub state: JsonText,
    /// `sha256:<hex>` of the canonical JSON of `state`.
    pub state_hash: String,
    /// What reading the manifest found worth saying (a duplicate key whose last value was
    /// kept); copied onto the record.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Fields left out of the comparison because two renders of the same inputs gave them
    /// different values (a chart's `randAlphaNum`, `genCA`, `now`): whatever the live object
    /// holds there is not drift. Each has a `non-deterministic` warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstable: Vec<FieldPath>,
}

impl DesiredObject {
    /// Prepares a manifest for comparison: hashes it, normalises it and hashes the result.
    pub fn new(key: ResourceKey, api_version: String, object: Value, source: Source) -> Self {
        let object_text = canonical_json(&object);
        let hash = text_hash(&object_text);
        let state_text = canonical_json(&normalize(&object));
        let state_hash = text_hash(&state_text);
        // Canonical texts are equal exactly when the trees are: keep one.
        let state = JsonText::from_canonical(state_text);
        let object = if object_text == state.as_str() {
            state.clone()
        } else {
            JsonText::from_canonical(object_text)
        };
        Self {
            key,
            api_version,
            object,
            source,
            hash,
            state,
            state_hash,
            warnings: Vec::new(),
            unstable: Vec::new(),
        }
    }

    /// The same object with `fields` left out of the comparison, each with a
    /// `non-deterministic` warning (see [`DesiredObject::unstable`]).
    ///
    /// Their values are replaced by [`UNSTABLE_VALUE`] (and the object hashed again), so every
    /// render of the same inputs gives the same desired object: a re-render is not a change.
    #[must_use]
    pub fn with_unstable(self, fields: Vec<FieldPath>) -> Self {
        let Self {
            key,
            api_version,
            object,
            source,
            warnings,
            ..
        } = self;
        let mut object = object.value();
        for field in &fields {
            pin(&mut object, field.segments());
        }
        let mut this = Self::new(key, api_version, object, source);
        this.warnings = warnings;
        for field in &fields {
            this.warnings.push(Warning::new(
                field.clone(),
                NON_DETERMINISTIC,
                "differs between two renders of the same chart and values (a random or \
                 time-based value); not compared",
            ));
        }
        this.warnings.sort();
        this.warnings.dedup();
        this.unstable = fields;
        this
    }

    /// The fields whose values differ between `self` and `other`, two renders of the same
    /// object from the same inputs, in the paths a comparison reports (list items by their
    /// merge keys). Empty when the renders agree.
    pub fn differing_fields(&self, other: &DesiredObject) -> Vec<FieldPath> {
        if self.state_hash == other.state_hash {
            return Vec::new();
        }
        let crd = CrdDefaults::default();
        let walk = |a: &Value, b: &Value| {
            Walker::new(
                &self.key.kind,
                &self.api_version,
                &crd,
                &[],
                Managers {
                    appliers: &[],
                    controllers: &[],
                },
                LastApplied {
                    present: false,
                    is_git: false,
                },
            )
            .run(a, b, None)
            .0
        };
        let (mine, theirs) = (self.state.value(), other.state.value());
        let mut fields: Vec<FieldPath> = walk(&mine, &theirs)
            .into_iter()
            .chain(walk(&theirs, &mine))
            .map(|change| change.field)
            .collect();
        fields.sort();
        fields.dedup();
        // A field below another one listed is covered by it.
        let mut kept: Vec<FieldPath> = Vec::with_capacity(fields.len());
        for field in fields {
            if !kept.iter().any(|k| field.matched_by(k)) {
                kept.push(field);
            }
        }
        kept
    }

    /// The same object with warnings from reading its manifest.
    #[must_use]
    pub fn with_warnings(mut self, warnings: Vec<Warning>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// What a field left out of the comparison holds in the desired object (see
/// [`DesiredObject::with_unstable`]).
pub const UNSTABLE_VALUE: &str = "(non-deterministic)";

/// Replaces the value at `segments` (map keys, keyed list items, indexes) with
/// [`UNSTABLE_VALUE`]; a path that does not exist changes nothing.
fn pin(value: &mut Value, segments: &[crate::path::Segment]) {
    use crate::path::Segment;
    let Some((first, rest)) = segments.split_first() else {
        *value = Value::String(UNSTABLE_VALUE.to_owned());
        return;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(map)) => {
            if let Some(inner) = map.get_mut(key) {
                pin(inner, rest);
            }
        }
        (Segment::Item(keys), Value::Array(items)) => {
            for item in items.iter_mut().filter(|item| {
                keys.iter().all(|(k, v)| {
                    item.get(k).and_then(crate::schema::key_text).as_deref() == Some(v.as_str())
                })
            }) {
                pin(item, rest);
            }
        }
        (Segment::Index(index), Value::Array(items)) => {
            if let Some(inner) = items.get_mut(*index) {
                pin(inner, rest);
            }
        }
        _ => {}
    }
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

/// One object as the API server returned it, made ready for comparison when it is received:
/// [`LiveObject::from_api`] keeps `managedFields` compactly, sets kubectl's last-applied
/// configuration apart, normalises the rest and hashes it, so an object is prepared once per
/// `resourceVersion` however often it is compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveObject {
    /// Identity.
    pub key: ResourceKey,
    /// The `apiVersion` it was read in.
    pub api_version: String,
    /// The object normalised (see [`crate::normalize`]): no `status`, `managedFields`,
    /// server-written metadata or controller annotations; Secret values digested.
    pub object: Value,
    /// Who wrote which fields.
    pub managed_fields: Vec<ManagedFieldsEntry>,
    /// `metadata.resourceVersion`, read before normalisation drops it.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// The `kubectl.kubernetes.io/last-applied-configuration` annotation, read before
    /// normalisation drops it.
    #[serde(default)]
    pub last_applied: Option<LastAppliedText>,
    /// `sha256:<hex>` of the canonical JSON of `object`.
    #[serde(default)]
    pub hash: String,
}

/// kubectl's copy of what it last applied, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastAppliedText {
    /// The annotation's value.
    pub text: String,
    /// `sha256:<hex>` of its canonical JSON, without the empty `metadata.annotations` kubectl
    /// adds to a manifest that has none: equal to [`DesiredObject::hash`] when kubectl applied
    /// exactly the Git manifest.
    pub hash: String,
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
    /// Builds a live object from the raw API JSON (already Secret-redacted): keeps
    /// `managedFields`, the resourceVersion and the last-applied configuration apart, then
    /// normalises and hashes the rest (no copy of the object is made).
    pub fn from_api(key: ResourceKey, api_version: String, mut object: Value) -> Self {
        let mut managed_fields = Vec::new();
        let mut resource_version = None;
        let mut last_applied = None;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(mf) = meta.remove("managedFields") {
                managed_fields = ManagedFieldsEntry::parse_list(&mf);
            }
            if let Some(Value::String(rv)) = meta.get("resourceVersion") {
                resource_version = Some(rv.clone());
            }
            if let Some(Value::String(text)) = meta
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
                .and_then(|a| a.remove(LAST_APPLIED_ANNOTATION))
            {
                let hash = last_applied_hash(&text);
                last_applied = Some(LastAppliedText { text, hash });
            }
        }
        let object = normalize_owned(object);
        let hash = content_hash(&object);
        Self {
            key,
            api_version,
            object,
            managed_fields,
            resource_version,
            last_applied,
            hash,
        }
    }
}

/// The hash a last-applied configuration is matched with against [`DesiredObject::hash`].
/// kubectl writes the manifest it applied plus `"annotations":{}` when the manifest had none
/// (the annotation map it stored itself in, minus itself); that map is not part of what was
/// applied. Text that does not parse gets the hash of its bytes, which matches no manifest.
fn last_applied_hash(text: &str) -> String {
    let Ok(mut applied) = serde_json::from_str::<Value>(text) else {
        return text_hash(text.trim_end());
    };
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty)
    {
        meta.remove("annotations");
    }
    content_hash(&applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_object_keeps_managed_fields_apart() {
        let raw = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "42",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                         "{\"kind\":\"Deployment\"}\n", "team": "web"},
                         "managedFields": [
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
        assert_eq!(live.resource_version.as_deref(), Some("42"));
        assert!(live.object["metadata"].get("resourceVersion").is_none());
        let applied = live.last_applied.as_ref().unwrap();
        assert_eq!(applied.text, "{\"kind\":\"Deployment\"}\n");
        assert_eq!(
            applied.hash,
            crate::canonical::content_hash(&json!({"kind": "Deployment"}))
        );
        assert_eq!(
            live.object["metadata"]["annotations"],
            json!({"team": "web"})
        );
        assert_eq!(live.hash, crate::canonical::content_hash(&live.object));
    }

    #[test]
    fn last_applied_matches_the_manifest_kubectl_applied() {
        let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "a", "namespace": "n"},
                              "data": {"html": "<b>&</b>"}});
        // As kubectl writes it: keys sorted, `annotations: {}` added, HTML characters escaped,
        // a trailing newline.
        let kubectl = r#"{"apiVersion":"v1","data":{"html":"\u003cb\u003e\u0026\u003c/b\u003e"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"a","namespace":"n"}}"#;
        let key = ResourceKey::from_api_version("v1", "ConfigMap", "n", "a");
        let live = |applied: &str| {
            let mut raw = manifest.clone();
            raw["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")});
            LiveObject::from_api(key.clone(), "v1".into(), raw)
        };
        let hash = crate::canonical::content_hash(&manifest);
        assert_eq!(live(kubectl).last_applied.unwrap().hash, hash);
        // Another manifest does not match, nor does text that is not JSON.
        let edited = kubectl.replace(r#""name":"a""#, r#""name":"b""#);
        assert_ne!(live(&edited).last_applied.unwrap().hash, hash);
        assert_ne!(live("{not json").last_applied.unwrap().hash, hash);
    }

    #[test]
    fn desired_object_is_prepared_once() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "a", "namespace": "n", "labels": {}},
                            "data": {"n": "1"}});
        let key = ResourceKey::from_api_version("v1", "ConfigMap", "n", "a");
        let source = Source {
            commit: String::new(),
            path: "a.yaml".into(),
            doc_index: 0,
            line: None,
            helm_release: None,
        };
        let d = DesiredObject::new(key, "v1".into(), object.clone(), source);
        assert_eq!(d.hash, crate::canonical::content_hash(&object));
        assert_eq!(d.state.value(), normalize(&object));
        assert!(d.state.value()["metadata"].get("labels").is_none());
        assert_eq!(d.object.value(), object);
        // Normalising a manifest that needs nothing shares one tree.
        let plain = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "a", "namespace": "n"}, "data": {"n": "1"}});
        let key = ResourceKey::from_api_version("v1", "ConfigMap", "n", "a");
        let p = DesiredObject::new(key, "v1".into(), plain.clone(), d.source.clone());
        assert!(JsonText::ptr_eq(&p.object, &p.state));
        assert!(!JsonText::ptr_eq(&d.object, &d.state));
        assert_eq!(p.state.value(), normalize(&plain));
        // The shared tree is the normalised one: keys sorted, as the diff pairs them.
        assert_eq!(
            serde_json::to_string(&p.object.value()).unwrap(),
            serde_json::to_string(&normalize(&plain)).unwrap()
        );
        assert_eq!(p.hash, crate::canonical::content_hash(&plain));
        assert_eq!(
            d.state_hash,
            crate::canonical::content_hash(&d.state.value())
        );
    }
}

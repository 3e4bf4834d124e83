//! The defaults of custom resources, read from their CustomResourceDefinitions.
//!
//! A CRD's structural schema (`spec.versions[].schema.openAPIV3Schema`) may carry `default`s;
//! the API server fills them in when it stores an object (and when it reads one back), so a
//! custom resource created from Git shows them live. [`CrdDefaults`] keeps, per group, kind and
//! version, only the parts of each schema that lead to a default or to a keyed list — the
//! engine asks it about a live-only field the built-in table does not know, and about the merge
//! keys of a custom resource's list (`x-kubernetes-list-type: map` with
//! `x-kubernetes-list-map-keys`), so items are matched by key rather than compared whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use serde_json::Value;

use crate::defaults::StepRef as Step;

/// The part of a schema that leads to defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefaultsNode {
    /// The `default` at this node.
    pub default: Option<Value>,
    /// `properties`.
    pub properties: BTreeMap<String, DefaultsNode>,
    /// `items` (list items).
    pub items: Option<Box<DefaultsNode>>,
    /// `additionalProperties` (map values).
    pub additional: Option<Box<DefaultsNode>>,
    /// The merge keys of a list of type `map` (at most two, as the engine keys lists).
    pub list_keys: Option<MergeKeys>,
}

/// The merge keys of a list, in schema order, each with the value it defaults to when absent.
pub type MergeKeys = &'static [(&'static str, Option<&'static str>)];

/// Interned merge-key lists: the engine keys lists with `'static` names, and the distinct key
/// lists of a cluster's CRDs are few.
static INTERNED: LazyLock<Mutex<HashMap<Vec<String>, MergeKeys>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn intern(keys: Vec<String>) -> Option<MergeKeys> {
    let mut table = INTERNED.lock().ok()?;
    if let Some(found) = table.get(&keys) {
        return Some(found);
    }
    let leaked: Vec<(&'static str, Option<&'static str>)> = keys
        .iter()
        .map(|k| (&*Box::leak(k.clone().into_boxed_str()), None))
        .collect();
    let slice: MergeKeys = Box::leak(leaked.into_boxed_slice());
    table.insert(keys, slice);
    Some(slice)
}

/// Defaults of every custom resource version the cluster serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrdDefaults {
    /// `(group, kind, version)` → the schema's defaults.
    by_version: HashMap<(String, String, String), DefaultsNode>,
}

// === impl DefaultsNode ===

impl DefaultsNode {
    /// The defaults under one `openAPIV3Schema`, or `None` when it has none.
    pub fn from_schema(schema: &Value) -> Option<DefaultsNode> {
        Self::build(schema, 0)
    }

    fn build(schema: &Value, depth: usize) -> Option<DefaultsNode> {
        if depth > 64 {
            return None;
        }
        let map = schema.as_object()?;
        let mut node = DefaultsNode {
            default: map.get("default").cloned(),
            ..DefaultsNode::default()
        };
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, child) in props {
                if let Some(n) = Self::build(child, depth + 1) {
                    node.properties.insert(name.clone(), n);
                }
            }
        }
        node.items = map
            .get("items")
            .and_then(|i| Self::build(i, depth + 1))
            .map(Box::new);
        node.additional = map
            .get("additionalProperties")
            .and_then(|a| Self::build(a, depth + 1))
            .map(Box::new);
        if map.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            let keys: Vec<String> = map
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if (1..=2).contains(&keys.len()) {
                node.list_keys = intern(keys);
            }
        }
        let empty = node.default.is_none()
            && node.properties.is_empty()
            && node.items.is_none()
            && node.additional.is_none()
            && node.list_keys.is_none();
        (!empty).then_some(node)
    }

    fn child(&self, step: Step<'_>) -> Option<&DefaultsNode> {
        match step {
            Step::Field(name) => self.properties.get(name).or(self.additional.as_deref()),
            Step::Item => self.items.as_deref(),
        }
    }
}

// === impl CrdDefaults ===

impl CrdDefaults {
    /// Reads the defaults of every served version of one CustomResourceDefinition
    /// (`apiextensions.k8s.io/v1`, or `v1beta1` with its top-level `validation`).
    pub fn insert_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(kind)) = (spec["group"].as_str(), spec["names"]["kind"].as_str())
        else {
            return;
        };
        let shared = spec["validation"]["openAPIV3Schema"].clone();
        for version in spec["versions"].as_array().into_iter().flatten() {
            let Some(name) = version["name"].as_str() else {
                continue;
            };
            let schema = match &version["schema"]["openAPIV3Schema"] {
                Value::Null => &shared,
                schema => schema,
            };
            if let Some(node) = DefaultsNode::from_schema(schema) {
                self.by_version
                    .insert((group.to_owned(), kind.to_owned(), name.to_owned()), node);
            }
        }
    }

    /// Reads every CRD of a list (`items` of a CustomResourceDefinitionList, or a plain array).
    pub fn from_crds<'a>(crds: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut out = Self::default();
        for crd in crds {
            out.insert_crd(crd);
        }
        out
    }

    /// Number of versions with defaults.
    pub fn len(&self) -> usize {
        self.by_version.len()
    }

    /// True when no version has defaults.
    pub fn is_empty(&self) -> bool {
        self.by_version.is_empty()
    }

    /// The schema default at a path of an object of `api_version` (`group/version`) and kind.
    pub(crate) fn default_at(
        &self,
        api_version: &str,
        kind: &str,
        steps: &[Step<'_>],
    ) -> Option<&Value> {
        self.node_at(api_version, kind, steps)?.default.as_ref()
    }

    /// The merge keys of the list at a path, when the schema makes it a keyed list.
    pub(crate) fn list_keys_at(
        &self,
        api_version: &str,
        kind: &str,
        steps: &[Step<'_>],
    ) -> Option<MergeKeys> {
        self.node_at(api_version, kind, steps)?.list_keys
    }

    fn node_at(&self, api_version: &str, kind: &str, steps: &[Step<'_>]) -> Option<&DefaultsNode> {
        if self.by_version.is_empty() {
            return None;
        }
        let (group, version) = api_version.split_once('/')?;
        let mut node =
            self.by_version
                .get(&(group.to_owned(), kind.to_owned(), version.to_owned()))?;
        for step in steps {
            node = node.child(*step)?;
        }
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::{EngineConfig, compare};
    use crate::{DesiredObject, LiveObject, ResourceKey, Source};
    use serde_json::json;
    use std::sync::Arc;

    /// The key and desired object of a Widget manifest.
    fn widget(manifest: Value) -> (ResourceKey, DesiredObject) {
        let key = ResourceKey::from_api_version("example.com/v1", "Widget", "ns", "w");
        let source = Source {
            commit: String::new(),
            path: "w.yaml".into(),
            doc_index: 0,
            line: None,
            helm_release: None,
        };
        let desired = DesiredObject::new(key.clone(), "example.com/v1".into(), manifest, source);
        (key, desired)
    }

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget"},
                "versions": [{
                    "name": "v1",
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer", "default": 1},
                            "size": {"type": "string"},
                            "ports": {"type": "array", "items": {"type": "object", "properties": {
                                "protocol": {"type": "string", "default": "TCP"}
                            }}},
                            "routes": {"type": "array", "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["host"],
                                "items": {"type": "object", "properties": {
                                    "host": {"type": "string"}, "weight": {"type": "integer"}}}},
                            "limits": {"type": "object", "additionalProperties": {
                                "type": "object", "properties": {"burst": {"type": "integer", "default": 5}}
                            }}
                        }}
                    }}}
                }, {"name": "v2", "schema": {"openAPIV3Schema": {"type": "object"}}}]
            }
        })
    }

    #[test]
    fn defaults_by_path() {
        let d = CrdDefaults::from_crds([&crd()]);
        assert_eq!(d.len(), 1, "v2 has no defaults");
        let at = |steps: &[Step<'_>]| d.default_at("example.com/v1", "Widget", steps).cloned();
        assert_eq!(
            at(&[Step::Field("spec"), Step::Field("replicas")]),
            Some(json!(1))
        );
        assert_eq!(at(&[Step::Field("spec"), Step::Field("size")]), None);
        assert_eq!(
            at(&[
                Step::Field("spec"),
                Step::Field("ports"),
                Step::Item,
                Step::Field("protocol")
            ]),
            Some(json!("TCP"))
        );
        assert_eq!(
            at(&[
                Step::Field("spec"),
                Step::Field("limits"),
                Step::Field("any"),
                Step::Field("burst")
            ]),
            Some(json!(5))
        );
        assert_eq!(
            d.default_at("example.com/v2", "Widget", &[Step::Field("spec")]),
            None
        );
        assert_eq!(
            d.default_at(
                "other.com/v1",
                "Widget",
                &[Step::Field("spec"), Step::Field("replicas")]
            ),
            None
        );
    }

    #[test]
    fn the_engine_takes_schema_defaults_as_the_servers() {
        let manifest = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns"}, "spec": {"size": "s"}});
        let (key, desired) = widget(manifest.clone());
        // Created by an operator-like client: it owns every stored field, the default too.
        let live_with = |replicas: u64| {
            let mut live = manifest.clone();
            live["spec"]["replicas"] = json!(replicas);
            live["metadata"]["managedFields"] = json!([{"manager": "my-operator",
                "operation": "Update", "apiVersion": "example.com/v1",
                "fieldsV1": {"f:spec": {"f:size": {}, "f:replicas": {}}}}]);
            LiveObject::from_api(key.clone(), "example.com/v1".into(), live)
        };
        let cfg = EngineConfig {
            crd_defaults: Arc::new(CrdDefaults::from_crds([&crd()])),
            ..EngineConfig::default()
        };
        assert!(compare(&desired, &live_with(1), &cfg).changes.is_empty());
        let changed = compare(&desired, &live_with(3), &cfg);
        assert_eq!(changed.changes.len(), 1);
        assert_eq!(changed.changes[0].field.to_string(), "spec.replicas");
        // Without the CRD's schema the default is an addition like any other.
        let blind = compare(&desired, &live_with(1), &EngineConfig::default());
        assert_eq!(blind.changes.len(), 1);
    }

    #[test]
    fn custom_lists_are_keyed_by_their_schema() {
        let routes = |a: u64| json!([{"host": "a", "weight": a}, {"host": "b", "weight": 1}]);
        let object = |routes: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns"}, "spec": {"routes": routes, "replicas": 1}})
        };
        let (key, desired) = widget(object(routes(1)));
        // Live: the same items in another order, one weight changed.
        let live_routes = json!([{"host": "b", "weight": 1}, {"host": "a", "weight": 5}]);
        let live = LiveObject::from_api(key, "example.com/v1".into(), object(live_routes));
        let cfg = EngineConfig {
            crd_defaults: Arc::new(CrdDefaults::from_crds([&crd()])),
            ..EngineConfig::default()
        };
        let keyed = compare(&desired, &live, &cfg);
        assert_eq!(keyed.changes.len(), 1, "{:?}", keyed.changes);
        assert_eq!(
            keyed.changes[0].field.to_string(),
            "spec.routes[host=a].weight"
        );
        // Without the schema the list is compared whole.
        let whole = compare(&desired, &live, &EngineConfig::default());
        assert_eq!(whole.changes.len(), 1);
        assert_eq!(whole.changes[0].field.to_string(), "spec.routes");
    }
}

//! The manifest parser: a YAML stream → documents → Kubernetes objects.
//!
//! Documents are read by [`driftguard_yaml`], DriftGuard's one YAML reader (kubectl's scalar
//! rules, merge keys, tags, duplicate keys, and the depth and node budgets of [`Limits`]); its
//! items are re-exported here. This module adds what is Kubernetes: `List` expansion, and
//! duplicate keys located by [`FieldPath`].
//!
//! Document indexes count every document of the stream (empty ones included), from 0. A
//! `kind: List` (or any `…List` kind with an `items` array) is expanded: every item keeps the
//! **document index of the List** (so `file.yaml#N` names the List document) and its own start
//! line, which tells items apart. Documents that are not mappings or lack `apiVersion`/`kind`
//! are skipped with a debug log.

use std::collections::HashMap;

use driftguard_core::{FieldPath, Segment};
use serde_json::Value;

pub use driftguard_yaml::{
    Document, Limits, PathSegment, YamlError as ManifestError, parse_documents,
};

/// A mapping key written twice in one object; as kubectl does, the last value was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Where the key is, from the root of its object (§2.2 syntax; list items by index).
    pub path: FieldPath,
    /// 1-based line of the occurrence that was kept.
    pub line: usize,
}

/// One Kubernetes object found in a stream (after `List` expansion).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    /// Index of the document it came from (for List items: the List's document).
    pub doc_index: usize,
    /// 1-based line where the object starts.
    pub line: usize,
    /// The object.
    pub value: Value,
    /// Mapping keys written twice inside this object (the last value was kept).
    pub duplicates: Vec<DuplicateKey>,
}

// === impl DuplicateKey ===

impl From<driftguard_yaml::DuplicateKey> for DuplicateKey {
    fn from(duplicate: driftguard_yaml::DuplicateKey) -> Self {
        let segments = duplicate
            .path
            .into_iter()
            .map(|segment| match segment {
                PathSegment::Key(key) => Segment::Key(key),
                PathSegment::Index(index) => Segment::Index(index),
            })
            .collect();
        Self {
            path: FieldPath::from_segments(segments),
            line: duplicate.line,
        }
    }
}

// === parsing ===

/// Parses a stream and returns its Kubernetes objects (Lists expanded, non-objects skipped).
pub fn parse_objects(text: &str, limits: &Limits) -> Result<Vec<ManifestObject>, ManifestError> {
    let documents = parse_documents(text, limits)?;
    let mut objects = Vec::new();
    for document in documents {
        expand(document, &mut objects);
    }
    Ok(objects)
}

fn expand(document: Document, out: &mut Vec<ManifestObject>) {
    let Document {
        index,
        line,
        value,
        item_lines: lines,
        duplicates,
    } = document;
    let duplicates: Vec<DuplicateKey> = duplicates.into_iter().map(DuplicateKey::from).collect();
    if !has_type(&value) {
        tracing::debug!(
            doc_index = index,
            line,
            "skipping a document without apiVersion/kind"
        );
        return;
    }
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if !is_list {
        out.push(ManifestObject {
            doc_index: index,
            line,
            value,
            duplicates,
        });
        return;
    }
    // A duplicate inside `items[i]` belongs to item i (its path made relative to the item); one
    // elsewhere in the List is told to every item, at the item's root.
    let mut per_item: HashMap<usize, Vec<DuplicateKey>> = HashMap::new();
    let mut shared = Vec::new();
    for duplicate in duplicates {
        match duplicate.path.segments() {
            [Segment::Key(items), Segment::Index(i), rest @ ..] if items == "items" => {
                per_item.entry(*i).or_default().push(DuplicateKey {
                    path: FieldPath::from_segments(rest.to_vec()),
                    line: duplicate.line,
                });
            }
            _ => shared.push(DuplicateKey {
                path: FieldPath::root(),
                line: duplicate.line,
            }),
        }
    }
    let Value::Object(mut map) = value else {
        return;
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        return;
    };
    for (i, item) in items.into_iter().enumerate() {
        let item_line = lines.get(i).copied().unwrap_or(line);
        if has_type(&item) {
            let mut duplicates = shared.clone();
            duplicates.extend(per_item.remove(&i).unwrap_or_default());
            out.push(ManifestObject {
                doc_index: index,
                line: item_line,
                value: item,
                duplicates,
            });
        } else {
            tracing::debug!(
                doc_index = index,
                line = item_line,
                "skipping a List item without apiVersion/kind"
            );
        }
    }
}

fn has_type(value: &Value) -> bool {
    value.get("apiVersion").is_some_and(Value::is_string)
        && value.get("kind").is_some_and(Value::is_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicates_in_list_items_belong_to_their_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n  data: {k: 1, k: 2}\n";
        let objects = parse_objects(text, &Limits::default()).unwrap();
        assert!(objects[0].duplicates.is_empty());
        assert_eq!(objects[1].duplicates.len(), 1);
        assert_eq!(objects[1].duplicates[0].path.to_string(), "data.k");
        assert_eq!(objects[1].duplicates[0].line, 10);
    }

    #[test]
    fn lists_expand_with_the_list_index() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let objects = parse_objects(text, &Limits::default()).unwrap();
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[1].doc_index, 1);
        assert_eq!(objects[2].doc_index, 1);
        assert_eq!(objects[1].line, 8);
        assert_eq!(objects[2].line, 11);
        // Nothing but the item itself: the lines are not kept in the value.
        assert_eq!(objects[1].value.as_object().unwrap().len(), 3);
    }

    #[test]
    fn duplicate_paths_are_field_paths_from_the_object_root() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    name: b\n";
        let objects = parse_objects(text, &Limits::default()).unwrap();
        let found: Vec<String> = objects[0]
            .duplicates
            .iter()
            .map(|d| format!("{}@{}", d.path, d.line))
            .collect();
        assert_eq!(found, vec!["spec.containers[0].name@7"]);
        assert_eq!(
            objects[0].value["spec"]["containers"][0]["name"],
            json!("b")
        );
    }

    #[test]
    fn the_alias_bomb_of_the_issue_is_refused_by_the_node_budget() {
        // `s: {q: [1]}` with its bracket at column 0 (only the repair reads it), then 100,000
        // items aliased 200,000 times: once 2.3 GB through the lenient fallback.
        let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n");
        text.push_str("s:\n  q: [\n    1\n]\n");
        text.push_str("a: &a [");
        text.push_str(&vec!["x"; 100_000].join(", "));
        text.push_str("]\nb: [");
        text.push_str(&vec!["*a"; 200_000].join(", "));
        text.push_str("]\n");
        let before = peak_rss();
        let err = parse_objects(&text, &Limits::default()).unwrap_err();
        let grown = peak_rss().saturating_sub(before);
        assert_eq!(err.message, "more than 500000 nodes (alias expansion?)");
        assert_eq!(err.line, Some(9));
        assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
    }

    #[test]
    fn merge_keys_and_tags_build_the_same_object_as_without_them() {
        let with = "x: &labels {app: web, tier: 0755}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n  labels:\n    <<: *labels\n    tier: !!str 0755\ndata: {n: !!int \"12\"}\n";
        let without = "x: {app: web, tier: 493}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n  labels: {app: web, tier: '0755'}\ndata: {n: 12}\n";
        let with = parse_objects(with, &Limits::default()).unwrap();
        let without = parse_objects(without, &Limits::default()).unwrap();
        assert_eq!(with[0].value, without[0].value);
        assert_eq!(with[0].value["metadata"]["labels"]["tier"], json!("0755"));
    }

    /// Peak resident memory of this process, in bytes (`VmHWM`; each test is its own process
    /// under nextest).
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

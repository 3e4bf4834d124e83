//! A JSON tree kept as its canonical text and parsed when it is read.
//!
//! The Git snapshot holds one desired object per watched resource for the life of the
//! service. As a `serde_json::Value` tree (with `preserve_order`, which the MongoDB driver turns
//! on for the whole binary, every node is 80 bytes and every map an index table besides) a small
//! ConfigMap costs about 3 KB; as text it costs its ~300 bytes. A tree is needed only while the
//! object is compared, and a full analysis compares only what changed (see the analyzer's memo),
//! so the parse is paid per change, not per resource and analysis.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::canonical::canonical_json;

/// Canonical JSON text (keys sorted, no whitespace) of a tree: equal texts are equal trees.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Arc<str>);

// === impl JsonText ===

impl JsonText {
    /// The canonical text of `value`.
    pub fn of(value: &Value) -> Self {
        Self::from_canonical(canonical_json(value))
    }

    /// Wraps `text`, which must be the output of [`canonical_json`].
    pub(crate) fn from_canonical(text: String) -> Self {
        Self(Arc::from(text))
    }

    /// The tree again (maps in key order). The text was written from a tree, so it parses;
    /// the nesting limit is lifted because that tree existed already at this depth.
    pub fn value(&self) -> Value {
        let mut parser = serde_json::Deserializer::from_str(&self.0);
        parser.disable_recursion_limit();
        Value::deserialize(&mut parser).unwrap_or(Value::Null)
    }

    /// The text itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both are the same allocation.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Self::of(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_tree_comes_back_with_its_keys_sorted() {
        let v = json!({"b": [1, 2.5, "x", null, true], "a": {"d": {}, "c": "\u{1F600}\n"}});
        let text = JsonText::of(&v);
        assert_eq!(
            text.as_str(),
            r#"{"a":{"c":"😀\n","d":{}},"b":[1,2.5,"x",null,true]}"#
        );
        let back = text.value();
        assert_eq!(back, v);
        let keys: Vec<&String> = back
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn large_integers_and_floats_round_trip_exactly() {
        let v = json!({"u": u64::MAX, "i": i64::MIN, "f": 0.1, "e": 1e300});
        assert_eq!(JsonText::of(&v).value(), v);
    }

    #[test]
    fn nesting_deeper_than_the_parsers_default_limit_comes_back() {
        let mut v = json!("leaf");
        for _ in 0..300 {
            v = json!([v]);
        }
        let back = JsonText::of(&v).value();
        assert_eq!(back, v);
        // Dropping a tree this deep recurses too: it is the depth the process had already.
    }

    #[test]
    fn serialises_as_the_tree() {
        let v = json!({"k": [1, "two"]});
        let text = JsonText::of(&v);
        let json = serde_json::to_string(&text).unwrap_or_default();
        assert_eq!(json, r#"{"k":[1,"two"]}"#);
        let read: JsonText = serde_json::from_str(r#"{ "k" : [1, "two"] }"#)
            .unwrap_or_else(|_| JsonText::of(&Value::Null));
        assert_eq!(read, text);
    }
}

//! Canonical JSON (keys sorted, no whitespace) and its `sha256:<hex>` hash.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
    // Only whole UTF-8 strings and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Streams the canonical JSON of `value` into `out`, piece by piece (no intermediate string).
fn write_canonical(value: &Value, out: &mut impl FnMut(&[u8])) {
    match value {
        Value::Object(map) => {
            out(b"{");
            // serde_json's default map iterates in key order already; sort only when it does not
            // (the `preserve_order` feature).
            if map.keys().is_sorted() {
                write_entries(map.iter(), out);
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_entries(entries.into_iter(), out);
            }
            out(b"}");
        }
        Value::Array(items) => {
            out(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out(b",");
                }
                write_canonical(item, out);
            }
            out(b"]");
        }
        Value::String(text) => write_string(text, out),
        scalar => out(scalar.to_string().as_bytes()),
    }
}

fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut impl FnMut(&[u8]),
) {
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out(b",");
        }
        write_string(key, out);
        out(b":");
        write_canonical(item, out);
    }
}

/// A JSON string exactly as `serde_json` writes it; the common case needs no escaping.
fn write_string(text: &str, out: &mut impl FnMut(&[u8])) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out(b"\"");
        out(text.as_bytes());
        out(b"\"");
    } else {
        out(Value::String(text.to_owned()).to_string().as_bytes());
    }
}

/// `sha256:<64 hex>` of the canonical JSON of `value`.
pub fn content_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(value, &mut |bytes: &[u8]| hasher.update(bytes));
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `sha256:<64 hex>` of a text taken as it is (for JSON that is already canonical).
pub fn text_hash(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_without_whitespace() {
        let v = json!({"b": 1, "a": {"d": [1, 2], "c": "x"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    #[test]
    fn strings_escaped_like_serde_json() {
        let v = json!({"a\"b": "line\nbreak\u{1}\\ \u{e9}/", "n": [1.5, -2, null, true]});
        assert_eq!(canonical_json(&v), v.to_string());
    }

    #[test]
    fn hash_shape_and_key_order_independence() {
        let a = json!({"x": 1, "y": 2});
        let b: Value = serde_json::from_str(r#"{"y":2,"x":1}"#).unwrap();
        let h = content_hash(&a);
        assert_eq!(h, content_hash(&b));
        assert!(h.starts_with("sha256:"));
        assert_eq!(h.len(), "sha256:".len() + 64);
        assert_eq!(text_hash(&canonical_json(&b)), h);
        assert_ne!(text_hash(r#"{"x": 1,"y":2}"#), h);
    }
}

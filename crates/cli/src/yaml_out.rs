//! `check -o yaml`: the JSON document written as block-style YAML.
//!
//! Every string — keys included — is written double-quoted with JSON-style escapes, which is
//! valid YAML and can never be read as anything but that string (`"yes"`, `"0755"`, `"null"`,
//! `"1.0"` stay strings under YAML 1.1 and 1.2 rules alike). Beyond JSON's escapes, characters
//! YAML does not allow raw or may read as a line break (DEL, C1 controls, NEL, U+2028/U+2029,
//! a BOM, U+FFFE/U+FFFF) are written `\uXXXX`. Numbers, booleans and null are plain
//! (`12`, `0.5`, `true`, `null`); an empty mapping or sequence is `{}` or `[]`.

use std::fmt::Write as _;

use serde_json::Value;

/// Renders `value` as one YAML document (ending with a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_block(&mut out, value, 0),
        Value::Array(items) if !items.is_empty() => write_block(&mut out, value, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

/// Whether `value` is written as an indented block of its own (a non-empty collection).
fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// Writes a non-empty mapping or sequence, each line indented by `indent` spaces.
fn write_block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let _ = write!(out, "{pad}{}:", quote(key));
                write_child(out, item, indent + 2);
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    // `- ` then the child's first line; its other lines sit under that one.
                    let mut child = String::new();
                    write_block(&mut child, item, indent + 2);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&child[indent + 2..]);
                } else {
                    let _ = writeln!(out, "{pad}- {}", scalar_text(item));
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", scalar_text(scalar));
        }
    }
}

/// Writes the value after `key:`: inline when scalar or empty, else a block on the next lines.
fn write_child(out: &mut String, value: &Value, indent: usize) {
    if is_block(value) {
        out.push('\n');
        write_block(out, value, indent);
    } else {
        let _ = writeln!(out, " {}", scalar_text(value));
    }
}

/// A scalar (or an empty collection) as plain or double-quoted text.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

/// `text` double-quoted with JSON-compatible escapes (see the module documentation).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn read_back(text: &str) -> Value {
        let docs = driftguard_yaml::parse_documents(text, &driftguard_yaml::Limits::default())
            .unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        docs.into_iter().next().unwrap().value
    }

    #[test]
    fn block_style_with_every_string_quoted() {
        let doc = json!({
            "git_commit": null,
            "count": 2,
            "drift_records": [
                {"resource_id": "Deployment:shop:web", "drift_detected": true,
                 "drift_details": [{"field": "spec.replicas", "from": 2, "to": 3}],
                 "warnings": []},
                {"resource_id": "ConfigMap:shop:cfg", "labels": {}},
            ],
            "errors": [],
            "nested": [[1, 2], [], [{"a": "b"}]],
        });
        let text = to_yaml(&doc);
        assert_eq!(
            text,
            r#""git_commit": null
"count": 2
"drift_records":
  - "resource_id": "Deployment:shop:web"
    "drift_detected": true
    "drift_details":
      - "field": "spec.replicas"
        "from": 2
        "to": 3
    "warnings": []
  - "resource_id": "ConfigMap:shop:cfg"
    "labels": {}
"errors": []
"nested":
  - - 1
    - 2
  - []
  - - "a": "b"
"#
        );
        assert_eq!(read_back(&text), doc);
    }

    #[test]
    fn strings_that_look_like_other_things_stay_strings() {
        let tricky = [
            "",
            " ",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "true",
            "False",
            "null",
            "~",
            "0755",
            "0x1F",
            "1_000",
            "1.0",
            "1e3",
            ".inf",
            "-.nan",
            "12:30:00",
            "2024-01-01",
            "- a",
            "? x",
            ": y",
            "a: b",
            "a #b",
            "#c",
            "&anchor",
            "*alias",
            "!tag",
            "%dir",
            "@x",
            "`x",
            "|",
            ">",
            "{a}",
            "[a]",
            "'q'",
            "\"dq\"",
            "back\\slash",
            "line\nbreak",
            "tab\tx",
            "cr\rx",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "nel\u{85}",
            "c1\u{9f}",
            "ls\u{2028}ps\u{2029}",
            "bom\u{feff}",
            "nonchar\u{fffe}\u{ffff}",
            "bidi\u{202e}",
            "ünïcödé ✓ 🚀",
            "---",
            "...",
            "<<",
            "=",
            "  leading and trailing  ",
        ];
        let mut map = serde_json::Map::new();
        for (i, s) in tricky.iter().enumerate() {
            // Keys are the same strings: they need the same care.
            map.insert((*s).to_owned(), json!(i));
            map.insert(format!("v{i}"), json!(s));
        }
        let doc = Value::Object(map);
        let text = to_yaml(&doc);
        assert_eq!(read_back(&text), doc, "{text}");
        for c in [
            '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}', '\u{feff}', '\u{ffff}',
        ] {
            assert!(!text.contains(c), "{c:?} is escaped");
        }
    }

    #[test]
    fn scalars_numbers_and_empty_roots() {
        for value in [
            json!(null),
            json!(true),
            json!(0),
            json!(-17),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(0.5),
            json!(-2.25e-7),
            json!("x"),
            json!({}),
            json!([]),
            json!({"deep": {"er": {"est": [[[]]]}}}),
        ] {
            let text = to_yaml(&value);
            assert!(text.ends_with('\n'), "{text}");
            assert_eq!(read_back(&text), value, "{text}");
        }
    }
}

//! Property tests of the parser: generated manifests round-trip; arbitrary bytes never panic.

use driftguard_config::GitConfig;
use driftguard_git::manifest::{Limits, parse_documents};
use driftguard_git::{ReadOptions, parse_file};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use crate::support::hasher;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e15f64..1e15f64).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".*".prop_map(Value::String),
        prop_oneof![
            Just("---"),
            Just("--- x"),
            Just("..."),
            Just("true"),
            Just("1.0"),
            Just("0x1F"),
            Just("~"),
            Just("yes"),
            Just("-----BEGIN CERTIFICATE-----\n---\nabc\n")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_.:/ -]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `value` as kubectl reads it back from YAML (the reader's rules): integers above `i64::MAX`
/// are floats, and a float with an integral value Go prints without an exponent is an integer.
fn kubectl_form(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.as_i64().is_none() => {
            let f = n.as_f64().unwrap();
            match format!("{f}").parse::<i64>() {
                Ok(i) if f.fract() == 0.0 && f.abs() < 1e21 => Value::from(i),
                _ => Number::from_f64(f).map_or(Value::Null, Value::Number),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(kubectl_form).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), kubectl_form(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Emits `value` as block-style YAML (strings double-quoted, JSON-escaped).
fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                emit_child(item, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                emit_child(item, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

fn emit_child(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit(item, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(item, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_yaml_round_trips(values in prop::collection::vec(value(), 1..4)) {
        let mut text = String::new();
        for v in &values {
            text.push_str("---\n");
            emit(v, 0, &mut text);
        }
        let docs = parse_documents(&text, &Limits { max_depth: 64, max_nodes: 1_000_000 })
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        let parsed: Vec<Value> = docs.into_iter().map(|d| d.value).collect();
        let expected: Vec<Value> = values.iter().map(kubectl_form).collect();
        prop_assert_eq!(&parsed, &expected, "{}", text);
    }

    #[test]
    fn generated_json_round_trips(v in value()) {
        let text = serde_json::to_string_pretty(&v).unwrap();
        let docs = parse_documents(&text, &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        prop_assert_eq!(docs.len(), 1);
        prop_assert_eq!(&docs[0].value, &kubectl_form(&v), "{}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let options = ReadOptions::from_config(&GitConfig::default(), "default", hasher()).unwrap();
        let _ = parse_file(&bytes, "fuzz.yaml", "c", &options);
    }

    #[test]
    fn yamlish_text_never_panics(text in "[-\\[\\]{}:, \n'\"|>&*!#a-z0-9]{0,300}") {
        let options = ReadOptions::from_config(&GitConfig::default(), "default", hasher()).unwrap();
        let _ = parse_file(text.as_bytes(), "fuzz.yaml", "c", &options);
        let prefixed = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  {text}");
        let _ = parse_file(prefixed.as_bytes(), "fuzz.yaml", "c", &options);
    }
}

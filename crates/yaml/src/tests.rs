//! The reader's rules, each checked against what kubectl printed for the same text.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use crate::scalar::{decode_base64, go_float_key};
use crate::*;

fn docs(text: &str) -> Vec<Document> {
    parse_documents(text, &Limits::default()).unwrap()
}

/// The value of `v:` in a one-line document.
fn scalar(text: &str) -> Value {
    docs(&format!("v: {text}\n"))[0].value["v"].clone()
}

/// A path written as the reader's users write it (`b[0].x`).
fn dotted(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(k) if out.is_empty() => out.push_str(k),
            PathSegment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn scalar_error(text: &str) -> YamlError {
    parse_documents(&format!("v: {text}\n"), &Limits::default()).unwrap_err()
}

// Every expectation below is what `kubectl create --dry-run=client -o json` printed.

#[test]
fn nulls() {
    for text in ["~", "null", "Null", "NULL", ""] {
        assert_eq!(scalar(text), Value::Null, "{text:?}");
    }
    assert_eq!(scalar("nULL"), json!("nULL"));
    assert_eq!(scalar("'~'"), json!("~"));
}

#[test]
fn booleans_are_yaml_1_1() {
    for text in [
        "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y",
    ] {
        assert_eq!(scalar(text), json!(true), "{text:?}");
    }
    for text in [
        "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N",
    ] {
        assert_eq!(scalar(text), json!(false), "{text:?}");
    }
    for text in ["yEs", "tRUE", "oN", "'yes'", "\"on\""] {
        assert!(scalar(text).is_string(), "{text:?}");
    }
}

#[test]
fn integers_as_go_parse_int_reads_them() {
    let cases = [
        ("0755", json!(493)),
        ("-0755", json!(-493)),
        ("0_755", json!(493)),
        ("0o17", json!(15)),
        ("0O17", json!(15)),
        ("0x1F", json!(31)),
        ("0X1f", json!(31)),
        ("+0x1F", json!(31)),
        ("-0x1F", json!(-31)),
        ("0x_1F", json!(31)),
        ("0b101", json!(5)),
        ("-0b11", json!(-3)),
        ("1_000", json!(1000)),
        ("1__0", json!(10)),
        ("1_", json!(1)),
        ("+12", json!(12)),
        ("-0", json!(0)),
        ("00", json!(0)),
        ("9223372036854775807", json!(9223372036854775807i64)),
        ("-9223372036854775808", json!(i64::MIN)),
    ];
    for (text, expected) in cases {
        let got = scalar(text);
        assert_eq!(got, expected, "{text:?}");
        assert!(got.is_i64(), "{text:?}: {got:?}");
    }
    for text in ["0x", "0b2", "_1", "0x1G", "1-2", "'0755'", "\"12\""] {
        assert!(scalar(text).is_string(), "{text:?}");
    }
}

#[test]
fn wide_integers_become_floats_as_after_kubectl_json_round_trip() {
    // Go keeps a uint64 (or a float), JSON gives back a float64.
    assert_eq!(
        scalar("18446744073709551615"),
        json!(18446744073709551615.0f64)
    );
    assert_eq!(
        scalar("9223372036854775808"),
        json!(9223372036854775808.0f64)
    );
    assert_eq!(scalar("99999999999999999999"), json!(1e20));
    assert!(scalar("99999999999999999999").is_f64());
    // Too wide for any integer and not a float: a string.
    assert_eq!(scalar("0x10000000000000000"), json!("0x10000000000000000"));
}

#[test]
fn floats_and_their_json_round_trip() {
    let ints = [
        ("1e3", 1000i64),
        ("1.0", 1),
        ("1.", 1),
        ("-0.0", 0),
        ("08", 8),
        ("09.0", 9),
        ("1_0e1", 100),
        ("1152921504606846976.0", 1152921504606847000),
    ];
    for (text, expected) in ints {
        let got = scalar(text);
        assert_eq!(got, json!(expected), "{text:?}");
        assert!(got.is_i64(), "{text:?}: {got:?}");
    }
    let floats = [
        ("1.5", 1.5),
        ("1_0.5", 10.5),
        (".5", 0.5),
        ("+.5", 0.5),
        ("-.5e-3", -0.0005),
        ("0.1", 0.1),
        ("1e-7", 1e-7),
        ("1e21", 1e21),
        ("1E+21", 1e21),
    ];
    for (text, expected) in floats {
        let got = scalar(text);
        assert_eq!(got, json!(expected), "{text:?}");
        assert!(got.is_f64(), "{text:?}: {got:?}");
    }
    for text in [
        "1e400", "._5", ".e5", ".", "1e", "1.2.3", "e5", "inf", "nan", "Infinity",
    ] {
        assert_eq!(scalar(text), json!(text), "{text:?}");
    }
}

#[test]
fn infinities_and_nan_are_errors_as_in_kubectl() {
    for text in [".inf", "-.Inf", "+.INF", ".nan", ".NaN", "!!float .inf"] {
        let err = scalar_error(text);
        assert_eq!(err.line, Some(1), "{text:?}");
        assert!(err.message.contains("JSON"), "{text:?}: {err:?}");
    }
    assert_eq!(scalar(".iNf"), json!(".iNf"));
}

#[test]
fn timestamps_stay_their_text() {
    for text in [
        "2001-12-14",
        "2001-12-14T21:59:43.10-05:00",
        "2001-12-14 21:59:43.10",
    ] {
        assert_eq!(scalar(text), json!(text), "{text:?}");
    }
    assert_eq!(scalar("!!timestamp 2001-12-14"), json!("2001-12-14"));
    assert_eq!(
        scalar("!!timestamp 2001-2-3t1:2:3Z"),
        json!("2001-2-3t1:2:3Z")
    );
    for text in [
        "12",
        "2001-12-14T25:00:00Z",
        "2001-02-29",
        "2001-12-14 1:2:3Z",
        "2001-1",
    ] {
        let err = scalar_error(&format!("!!timestamp {text}"));
        assert!(err.message.contains("!!timestamp"), "{text:?}");
    }
}

#[test]
fn quoted_and_block_scalars_are_strings() {
    assert_eq!(scalar("'0755'"), json!("0755"));
    assert_eq!(scalar("\"1e3\""), json!("1e3"));
    assert_eq!(scalar("\"\""), json!(""));
    assert_eq!(docs("v: |\n  123\n")[0].value["v"], json!("123\n"));
    assert_eq!(docs("v: >-\n  yes\n")[0].value["v"], json!("yes"));
}

#[test]
fn tags() {
    assert_eq!(scalar("!!str 123"), json!("123"));
    assert_eq!(scalar("!!str yes"), json!("yes"));
    assert_eq!(scalar("!!str"), json!(""));
    assert_eq!(scalar("!!int \"12\""), json!(12));
    assert_eq!(scalar("!!int 0755"), json!(493));
    assert_eq!(scalar("!!float 1"), json!(1));
    assert_eq!(scalar("!!float 1.5"), json!(1.5));
    assert_eq!(scalar("!!bool yes"), json!(true));
    assert_eq!(scalar("!!null ~"), Value::Null);
    assert_eq!(scalar("!!null ''"), Value::Null);
    assert_eq!(scalar("!!binary aGVsbG8="), json!("hello"));
    assert_eq!(scalar("!foo 123"), json!("123"));
    assert_eq!(scalar("! 123"), json!("123"));
    for text in [
        "!!int 1.5",
        "!!int x",
        "!!bool 1",
        "!!null x",
        "!!float x",
        "!!binary @@",
    ] {
        let err = scalar_error(text);
        assert_eq!(err.line, Some(1), "{text:?}");
    }
}

#[test]
fn keys_are_resolved_and_written_as_kubectl_writes_them() {
    let d = docs(
        "0755: a\n1.5: b\n1e6: c\n123456.0: d\n0.1: e\nyes: f\n1e-5: g\n-3: h\n0x10: i\n\"yes\": j\nn: k\n.inf: l\n",
    );
    assert_eq!(
        d[0].value,
        json!({"493": "a", "1.5": "b", "1e+06": "c", "123456": "d", "0.1": "e", "true": "f",
               "1e-05": "g", "-3": "h", "16": "i", "yes": "j", "false": "k", ".inf": "l"})
    );
    for text in ["~: 1\n", "18446744073709551615: 1\n"] {
        let err = parse_documents(text, &Limits::default()).unwrap_err();
        assert_eq!(err.line, Some(1), "{text:?}");
    }
}

#[test]
fn go_float_keys() {
    let cases = [
        (1.0, "1"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (f64::NAN, ".nan"),
        (f64::NEG_INFINITY, "-.inf"),
    ];
    for (f, expected) in cases {
        assert_eq!(go_float_key(f), expected, "{f}");
    }
}

#[test]
fn base64_as_go_decodes_it() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGVs\nbG8h").unwrap(), b"hello!");
    assert_eq!(decode_base64("aA==").unwrap(), b"h");
    assert_eq!(decode_base64("").unwrap(), b"");
    assert!(decode_base64("aGVsbG8").is_none());
    assert!(decode_base64("aA==aA==").is_none());
}

#[test]
fn separators_inside_block_scalars_are_content() {
    let text = "a: |\n  ---\n  x\n---\nb: 2\n";
    let d = docs(text);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].value["a"], json!("---\nx\n"));
    assert_eq!(d[1].line, 5);
}

#[test]
fn flow_sequences_closed_at_the_key_indentation_parse_as_kubectl_does() {
    let text = "a: 1\nspec:\n  command: [\n    \"/bin/sh\", \"-c\"\n  ]\n---\nb: 2\n";
    let docs = parse_documents(text, &Limits::default()).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].value["spec"]["command"][1], "-c");
    assert_eq!(docs[0].value["a"], 1);
    assert_eq!(docs[1].line, 7);
    // The closing bracket was re-indented: the strict parser read it, with its scalar rules
    // and its duplicate keys.
    let text = "spec:\n  a: [\n    yes, 0755\n  ]\n  b: {\n    x: 1\n  }\n  b: 2\n";
    let docs = parse_documents(text, &Limits::default()).unwrap();
    assert_eq!(docs[0].value, json!({"spec": {"a": [true, 493], "b": 2}}));
    assert_eq!(docs[0].duplicates.len(), 1);
}

#[test]
fn duplicate_keys_keep_the_last_value_and_are_recorded() {
    let d =
        docs("a: 1\nb:\n  - x: 1\n    x: {q: 1}\n  - z: 2\na: 3\nb2:\n  x: {q: 1}\n  x: {r: 2}\n");
    assert_eq!(
        d[0].value,
        json!({"a": 3, "b": [{"x": {"q": 1}}, {"z": 2}], "b2": {"x": {"r": 2}}})
    );
    let found: Vec<(String, usize)> = d[0]
        .duplicates
        .iter()
        .map(|d| (dotted(&d.path), d.line))
        .collect();
    assert_eq!(
        found,
        vec![
            ("b[0].x".to_owned(), 4),
            ("a".to_owned(), 6),
            ("b2.x".to_owned(), 9)
        ]
    );
    // Keys equal once resolved are duplicates too; a merge is not a duplicate.
    let d = docs("1: a\n\"1\": b\nm: &m {k: 1}\np:\n  <<: *m\n  k: 2\n");
    assert_eq!(d[0].value["1"], json!("b"));
    assert_eq!(d[0].value["p"], json!({"k": 2}));
    assert_eq!(d[0].duplicates.len(), 1);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = "[".repeat(100_000);
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    assert!(err.message.contains("max_depth") || err.message.contains("YAML"));
    let text = format!("{}1{}", "[".repeat(65), "]".repeat(65));
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    assert!(err.message.contains("max_depth"), "{err:?}");
}

#[test]
fn json_with_tabs_and_crlf_yaml() {
    let d = docs("{\n\t\"a\": [1,\n\t\t2.5],\n\t\"b\": \"x\"\n}\n");
    assert_eq!(d[0].value, json!({"a": [1, 2.5], "b": "x"}));
    let d = docs("a: 1\r\nb: |\r\n  x\r\n---\r\nc: 2\r\n");
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].value, json!({"a": 1, "b": "x\n"}));
    assert_eq!(d[1].line, 5);
}

#[test]
fn merge_keys_apply_where_they_appear_as_in_go_yaml_v2() {
    let d = docs("base: &b {x: 1, w: 2}\nm:\n  <<: *b\n  w: 3\n");
    assert_eq!(d[0].value["m"], json!({"x":1,"w":3}));
    // A key before `<<` is overwritten by the merge (kubectl: {"a": 1, "c": 9}).
    let d = docs("base: &b {a: 1, c: 5}\nm:\n  a: 0\n  <<: *b\n  c: 9\n");
    assert_eq!(d[0].value["m"], json!({"a": 1, "c": 9}));
    assert!(d[0].duplicates.is_empty());
    // Among merged mappings the first wins.
    let d = docs("m:\n  <<: [{a: 1}, {a: 2, d: 4}]\n");
    assert_eq!(d[0].value["m"], json!({"a": 1, "d": 4}));
    // A quoted `<<` is an ordinary key.
    let d = docs("m:\n  '<<': {a: 1}\n");
    assert_eq!(d[0].value["m"], json!({"<<": {"a": 1}}));
    // Aliases keep the resolved value, also when the anchor is on a key.
    let d = docs("a: &x 0755\nb: *x\n&k yes: 1\nc: *k\n");
    assert_eq!(
        d[0].value,
        json!({"a": 493, "b": 493, "true": 1, "c": true})
    );
}

#[test]
fn alias_bombs_stop() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for name in 'b'..='k' {
        text.push_str(&format!(
            "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = name;
    }
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    assert!(err.message.contains("nodes"), "{err:?}");
}

#[test]
fn layouts_libyaml_accepts_are_repaired_and_read_strictly() {
    // Each expectation is what libyaml (whose scanner go-yaml v2 ports) read from the same text:
    // indentation inside a flow collection or a quoted scalar's continuation is not content.
    let cases = [
        ("s:\n  q: [\n    1\n]\n", json!({"s": {"q": [1]}})),
        ("s:\n  q: [\n1, 2\n  ]\n", json!({"s": {"q": [1, 2]}})),
        ("s:\n  q: {\na: 1\n  }\n", json!({"s": {"q": {"a": 1}}})),
        ("a: [\n1\n]\n", json!({"a": [1]})),
        ("s:\n  a: \"x\ny\"\n", json!({"s": {"a": "x y"}})),
        ("s:\n  a: 'x\ny'\n", json!({"s": {"a": "x y"}})),
        ("s:\n  a: 'it''s\ny'\n", json!({"s": {"a": "it's y"}})),
        ("s:\n  a: \"\\\"x\ny\"\n", json!({"s": {"a": "\"x y"}})),
        ("s:\n  a: [x\ny]\n", json!({"s": {"a": ["x y"]}})),
        ("s:\n  - [\n1\n]\n", json!({"s": [[1]]})),
        (
            "s:\n  q: {a: 1,\nb: 2}\n",
            json!({"s": {"q": {"a": 1, "b": 2}}}),
        ),
        // Repaired, then read with every rule of the strict path.
        (
            "s:\n  q: [\nyes, 0755, '0755'\n]\n",
            json!({"s": {"q": [true, 493, "0755"]}}),
        ),
    ];
    for (text, expected) in cases {
        assert!(parse_strict(text, &Limits::default()).is_err(), "{text:?}");
        let docs = parse_documents(text, &Limits::default()).unwrap();
        assert_eq!(docs[0].value, expected, "{text:?}");
    }
    // What no repair explains stays an error, at its line.
    let err = parse_documents("s:\n  q: [\n    1\n]\n  r: [\n", &Limits::default()).unwrap_err();
    assert!(err.message.starts_with("invalid YAML"), "{err:?}");
    assert!(err.line.is_some_and(|l| l >= 4), "{err:?}");
    let err = parse_documents("a:\n\tb: 1\n", &Limits::default()).unwrap_err();
    assert_eq!(err.line, Some(2), "{err:?}");
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

/// The file of the issue: a layout only the repair reads, then an alias bomb (100,000 items,
/// 200,000 aliases to them).
pub(crate) fn issue_bomb() -> String {
    let mut text = String::from("s:\n  q: [\n    1\n]\n");
    text.push_str("a: &a [");
    text.push_str(&vec!["x"; 100_000].join(", "));
    text.push_str("]\nb: [");
    text.push_str(&vec!["*a"; 200_000].join(", "));
    text.push_str("]\n");
    text
}

#[test]
fn the_alias_bomb_behind_a_repaired_layout_is_refused_by_the_budget() {
    let text = issue_bomb();
    let before = peak_rss();
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    // The budget, not the bracket the repair moved, and where it was exceeded.
    assert_eq!(
        err.message, "more than 500000 nodes (alias expansion?)",
        "{err:?}"
    );
    assert_eq!(err.line, Some(6), "{err:?}");
    assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
}

#[test]
fn aliases_to_long_strings_and_nested_anchors_are_charged() {
    // A 1 MB string copied 10,000 times would be 10 GB.
    let mut text = format!("a: &a {}\nb: [", "x".repeat(1 << 20));
    text.push_str(&vec!["*a"; 10_000].join(", "));
    text.push_str("]\n");
    let before = peak_rss();
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    assert!(err.message.contains("more than 500000 nodes"), "{err:?}");
    assert_eq!(err.line, Some(2), "{err:?}");
    // Anchors nested 60 deep around 100,000 items: each anchor keeps its own copy.
    let nested = |anchored: bool| {
        let mut text = String::new();
        for depth in 0..60 {
            text.push_str(&" ".repeat(depth * 2));
            text.push('-');
            if anchored {
                text.push_str(&format!(" &n{depth}"));
            }
            text.push('\n');
        }
        text.push_str(&" ".repeat(120));
        text.push_str("- [");
        text.push_str(&vec!["x"; 100_000].join(", "));
        text.push_str("]\n");
        text
    };
    let err = parse_documents(&nested(true), &Limits::default()).unwrap_err();
    assert!(err.message.contains("more than 500000 nodes"), "{err:?}");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
    // Without the anchors the same text is well within the budget.
    assert_eq!(
        parse_documents(&nested(false), &Limits::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_huge_flow_collection_is_refused_before_the_parser_buffers_it() {
    // Inside a flow mapping (a JSON document) the event parser holds every token before the
    // first node is counted: 2.6 million numbers took 600 MB. The text is bounded first.
    let mut text = String::from(r#"{"kind":"ConfigMap","x":["#);
    text.push_str(&vec!["1"; 600_000].join(","));
    text.push_str("]}");
    let err = parse_documents(&text, &Limits::default()).unwrap_err();
    assert_eq!(err.line, Some(1));
    assert!(
        err.message
            .contains("more than 500000 nodes (flow collection separators)"),
        "{err:?}"
    );
    // Separators inside quoted scalars and comments are text, not tokens.
    let commas = ",".repeat(600_000);
    let text = format!("a: \"{commas}\"\nb: '{commas}'\n# {commas}\nc: [1, 2]\n");
    let docs = parse_documents(&text, &Limits::default()).unwrap();
    assert_eq!(docs[0].value["c"], serde_json::json!([1, 2]));
    assert_eq!(docs[0].value["a"].as_str().map(str::len), Some(600_000));
}

// === positions ===

/// The line of the node at `path` (keys, or `#i` for a sequence item) in document `index`.
fn line_at(text: &str, index: usize, path: &[&str]) -> Option<usize> {
    let (_, root) = document_positions(text, &Limits::default(), index)
        .unwrap()
        .unwrap();
    let mut node = &root;
    for step in path {
        node = match step.strip_prefix('#') {
            Some(i) => node.item(i.parse().unwrap())?,
            None => node.entry(step)?,
        };
    }
    Some(node.line)
}

#[test]
fn positions_of_nested_maps_are_the_lines_of_their_keys() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx\n      -\n        name: side\n        command: |\n          run\n        args: [a,\n          b]\n";
    assert_eq!(line_at(text, 0, &[]), Some(1));
    assert_eq!(line_at(text, 0, &["spec"]), Some(5));
    assert_eq!(line_at(text, 0, &["spec", "replicas"]), Some(6));
    assert_eq!(line_at(text, 0, &["spec", "template"]), Some(7));
    let containers = ["spec", "template", "spec", "containers"];
    assert_eq!(line_at(text, 0, &containers), Some(9));
    let web = [&containers[..], &["#0"]].concat();
    assert_eq!(line_at(text, 0, &web), Some(10));
    assert_eq!(line_at(text, 0, &[&web[..], &["image"]].concat()), Some(11));
    // An item whose first token is on the line after its dash starts there.
    let side = [&containers[..], &["#1"]].concat();
    assert_eq!(line_at(text, 0, &side), Some(13));
    assert_eq!(
        line_at(text, 0, &[&side[..], &["command"]].concat()),
        Some(14)
    );
    assert_eq!(
        line_at(text, 0, &[&side[..], &["args", "#1"]].concat()),
        Some(17)
    );
    assert_eq!(line_at(text, 0, &["spec", "missing"]), None);
}

#[test]
fn positions_use_the_keys_of_the_value_quoted_dotted_and_resolved() {
    let text = "metadata:\n  labels:\n    \"app.kubernetes.io/name\": web\n    'tier.x': db\n    yes: 1\n    0755: octal\n";
    assert_eq!(
        line_at(text, 0, &["metadata", "labels", "app.kubernetes.io/name"]),
        Some(3)
    );
    assert_eq!(line_at(text, 0, &["metadata", "labels", "tier.x"]), Some(4));
    // Keys as kubectl writes them in JSON: `yes` is "true", `0755` is "493".
    assert_eq!(line_at(text, 0, &["metadata", "labels", "true"]), Some(5));
    assert_eq!(line_at(text, 0, &["metadata", "labels", "493"]), Some(6));
}

#[test]
fn positions_in_flow_style_follow_each_key() {
    let text = "metadata: {name: a,\n  labels: {app: x,\n    tier: y}}\nspec: {ports: [{port: 80},\n  {port: 443}]}\n";
    assert_eq!(line_at(text, 0, &["metadata", "name"]), Some(1));
    assert_eq!(line_at(text, 0, &["metadata", "labels"]), Some(2));
    assert_eq!(line_at(text, 0, &["metadata", "labels", "tier"]), Some(3));
    assert_eq!(line_at(text, 0, &["spec", "ports", "#1", "port"]), Some(5));
}

#[test]
fn positions_are_lines_of_the_stream_not_of_the_document() {
    let text = "# a comment\na: 1\n---\n---\n# second\nb:\n  c: 2\n...\n---\nd: 3\n";
    assert_eq!(line_at(text, 0, &["a"]), Some(2));
    // The empty document counts, and has only its line.
    let (empty, _) = document_positions(text, &Limits::default(), 1)
        .unwrap()
        .unwrap();
    assert_eq!(empty.value, Value::Null);
    assert_eq!(line_at(text, 2, &["b", "c"]), Some(7));
    assert_eq!(line_at(text, 3, &["d"]), Some(10));
    assert!(
        document_positions(text, &Limits::default(), 4)
            .unwrap()
            .is_none()
    );
}

#[test]
fn positions_stop_at_their_document_and_survive_repairs() {
    // The document after the one asked for is broken: it is never read.
    let text = "a:\n  b: 1\n---\nx: [\n";
    assert_eq!(line_at(text, 0, &["a", "b"]), Some(2));
    assert!(parse_documents(text, &Limits::default()).is_err());
    // A flow collection whose bracket sits at its key's indentation (repaired): same lines.
    let text = "spec:\n  args: [\n    one,\n  two]\n  after: 1\n";
    assert_eq!(line_at(text, 0, &["spec", "args", "#1"]), Some(4));
    assert_eq!(line_at(text, 0, &["spec", "after"]), Some(5));
}

#[test]
fn positions_of_merged_and_aliased_values_are_where_they_are_written() {
    let text = "base: &base\n  app: web\n  tier: db\nlabels: &labels {team: a}\nmetadata:\n  labels:\n    tier: early\n    <<: *base\n    extra: 1\n    app: late\n  annotations: *labels\n";
    let labels = ["metadata", "labels"];
    // Written after `<<`: its own line; written before it: overwritten by the merge.
    assert_eq!(
        line_at(text, 0, &[&labels[..], &["app"]].concat()),
        Some(10)
    );
    assert_eq!(
        line_at(text, 0, &[&labels[..], &["tier"]].concat()),
        Some(3)
    );
    assert_eq!(
        line_at(text, 0, &[&labels[..], &["extra"]].concat()),
        Some(9)
    );
    // An alias is placed at its key; what it copies is where the anchor wrote it.
    assert_eq!(line_at(text, 0, &["metadata", "annotations"]), Some(11));
    assert_eq!(
        line_at(text, 0, &["metadata", "annotations", "team"]),
        Some(4)
    );
}

#[test]
fn positions_of_merged_lists_take_the_first_listed_and_duplicates_the_last() {
    let text = "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nm:\n  <<: [*a, *b]\nd:\n  x: 1\n  x: 2\n";
    assert_eq!(line_at(text, 0, &["m", "k"]), Some(1));
    assert_eq!(line_at(text, 0, &["m", "j"]), Some(2));
    assert_eq!(line_at(text, 0, &["d", "x"]), Some(7));
}

#[test]
fn positions_do_not_change_the_value() {
    let text = "x: &x {a: [1, 2]}\ny:\n  <<: *x\n  b: *x\n---\nz: 1\n";
    let all = docs(text);
    let (first, _) = document_positions(text, &Limits::default(), 0)
        .unwrap()
        .unwrap();
    assert_eq!(first, all[0]);
    let (second, _) = document_positions(text, &Limits::default(), 1)
        .unwrap()
        .unwrap();
    assert_eq!(second, all[1]);
}

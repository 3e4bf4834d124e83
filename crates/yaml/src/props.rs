//! Properties: generated values written as YAML (block and flow, quoted and plain, well
//! indented or in the layouts only kubectl accepts) read back as the rendering predicts, and the
//! repaired path never builds another object than the strict one.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{Limits, parse_documents, parse_strict};

/// Plain scalars whose kubectl reading is known (and differs from the text for most).
fn tokens() -> Vec<(&'static str, Value)> {
    vec![
        ("yes", json!(true)),
        ("No", json!(false)),
        ("on", json!(true)),
        ("Y", json!(true)),
        ("0755", json!(493)),
        ("0x1F", json!(31)),
        ("1_000", json!(1000)),
        ("+12", json!(12)),
        ("08", json!(8)),
        ("1e3", json!(1000)),
        ("1.5", json!(1.5)),
        (".5", json!(0.5)),
        ("1e400", json!("1e400")),
        ("~", Value::Null),
        ("null", Value::Null),
        ("2001-12-14", json!("2001-12-14")),
        ("nULL", json!("nULL")),
    ]
}

/// Plain mapping keys whose kubectl spelling is known.
fn key_tokens() -> Vec<(&'static str, &'static str)> {
    vec![
        ("yes", "true"),
        ("no", "false"),
        ("0755", "493"),
        ("1e3", "1000"),
        ("1.5", "1.5"),
        ("0x10", "16"),
    ]
}

/// Strings that must be quoted to stay strings (or to be YAML at all).
const WEIRD: &[&str] = &[
    "",
    " lead",
    "trail ",
    "a: b",
    "# c",
    "- d",
    "it's",
    "say \"hi\"",
    "[x]",
    "{y}",
    "a,b",
    "back\\slash",
    "ü∂",
    "@at",
    "*star",
    "&amp",
    "!bang",
    "|pipe",
    ">gt",
    "?q",
    "<<",
];

#[derive(Debug, Clone)]
enum Leaf {
    /// `tokens()[i]`, plain or quoted.
    Token(usize, Quote),
    /// A string no rule reads as anything else (`s…`), plain or quoted.
    Safe(String, Quote),
    /// `WEIRD[i]`, always quoted.
    Weird(usize, Quote),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quote {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone)]
enum Key {
    /// `key_tokens()[i]`, plain.
    Token(usize),
    Leaf(Leaf),
}

/// Where the lines of a multi-line flow collection start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shift {
    /// Right of the enclosing block's indentation (the strict parser reads it).
    Good,
    /// At the enclosing key's column (kubectl reads it; the strict parser does not).
    AtKey,
    /// At column 0.
    Left,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(Leaf),
    Seq(Vec<Node>, Style),
    Map(Vec<(Key, Node)>, Style),
}

#[derive(Debug, Clone, Copy)]
enum Style {
    Block,
    /// Flow, on one line or (`Some`) one item per line.
    Flow(Option<Shift>),
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

fn quoted() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Single), Just(Quote::Double)]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    let n = tokens().len();
    prop_oneof![
        (0..n, quote()).prop_map(|(i, q)| Leaf::Token(i, q)),
        ("s[a-z0-9]{0,6}", quote()).prop_map(|(s, q)| Leaf::Safe(s, q)),
        (0..WEIRD.len(), quoted()).prop_map(|(i, q)| Leaf::Weird(i, q)),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    let n = key_tokens().len();
    prop_oneof![(0..n).prop_map(Key::Token), leaf().prop_map(Key::Leaf)]
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Block),
        Just(Style::Flow(None)),
        Just(Style::Flow(Some(Shift::Good))),
        Just(Style::Flow(Some(Shift::AtKey))),
        Just(Style::Flow(Some(Shift::Left))),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    leaf()
        .prop_map(Node::Leaf)
        .prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), style())
                    .prop_map(|(items, s)| Node::Seq(items, s)),
                (prop::collection::vec((key(), inner), 0..5), style())
                    .prop_map(|(entries, s)| Node::Map(entries, s)),
            ]
        })
}

// === what the rendering predicts ===

fn leaf_text(leaf: &Leaf) -> (String, Quote) {
    match leaf {
        Leaf::Token(i, q) => (tokens()[*i].0.to_owned(), *q),
        Leaf::Safe(s, q) => (s.clone(), *q),
        Leaf::Weird(i, q) => (WEIRD[*i].to_owned(), *q),
    }
}

fn leaf_value(leaf: &Leaf) -> Value {
    match leaf {
        Leaf::Token(i, Quote::Plain) => tokens()[*i].1.clone(),
        other => Value::String(leaf_text(other).0),
    }
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Token(i) => key_tokens()[*i].1.to_owned(),
        // Only `tokens()` that are strings or numbers make valid keys; the generator keeps
        // plain token keys to `key_tokens()`, so a plain `Leaf::Token` is rendered quoted.
        Key::Leaf(leaf) => leaf_text(leaf).0,
    }
}

fn expected(node: &Node) -> Value {
    match node {
        Node::Leaf(leaf) => leaf_value(leaf),
        Node::Seq(items, _) => Value::Array(items.iter().map(expected).collect()),
        Node::Map(entries, _) => {
            let mut map = Map::new();
            for (key, value) in entries {
                // As kubectl: the last value of a key written twice wins.
                map.insert(key_text(key), expected(value));
            }
            Value::Object(map)
        }
    }
}

// === rendering ===

fn render_leaf(text: &str, quote: Quote) -> String {
    match quote {
        Quote::Plain => text.to_owned(),
        Quote::Single => format!("'{}'", text.replace('\'', "''")),
        Quote::Double => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

fn render_key(key: &Key) -> String {
    match key {
        Key::Token(i) => key_tokens()[*i].0.to_owned(),
        Key::Leaf(leaf) => {
            let (text, quote) = leaf_text(leaf);
            // A plain token key would be resolved (`~` is not even a valid key): quote it.
            let quote = match (leaf, quote) {
                (Leaf::Token(..), Quote::Plain) => Quote::Single,
                (_, q) => q,
            };
            render_leaf(&text, quote)
        }
    }
}

/// Writes `node` as the value after a block key or `-` at column `indent` (`out` ends right
/// after the `:` or `-`). `well` forces every flow line right of the enclosing indentation.
fn render_value(node: &Node, indent: usize, well: bool, out: &mut String) {
    match node {
        Node::Leaf(leaf) => {
            let (text, quote) = leaf_text(leaf);
            out.push(' ');
            out.push_str(&render_leaf(&text, quote));
            out.push('\n');
        }
        Node::Seq(items, Style::Block) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                render_value(item, indent + 2, well, out);
            }
        }
        Node::Map(entries, Style::Block) if !entries.is_empty() => {
            out.push('\n');
            render_entries(entries, indent + 2, well, out);
        }
        flow => {
            out.push(' ');
            render_flow(flow, indent, well, out);
            out.push('\n');
        }
    }
}

fn render_entries(entries: &[(Key, Node)], indent: usize, well: bool, out: &mut String) {
    for (key, value) in entries {
        out.push_str(&" ".repeat(indent));
        out.push_str(&render_key(key));
        out.push(':');
        render_value(value, indent, well, out);
    }
}

/// Writes `node` in flow style; `indent` is the column of the enclosing block key or `-`.
fn render_flow(node: &Node, indent: usize, well: bool, out: &mut String) {
    let (open, close, parts, style) = match node {
        Node::Leaf(leaf) => {
            let (text, quote) = leaf_text(leaf);
            out.push_str(&render_leaf(&text, quote));
            return;
        }
        Node::Seq(items, style) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| {
                    let mut s = String::new();
                    render_flow(item, indent, well, &mut s);
                    s
                })
                .collect();
            ('[', ']', parts, *style)
        }
        Node::Map(entries, style) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(key, value)| {
                    let mut s = render_key(key);
                    s.push_str(": ");
                    render_flow(value, indent, well, &mut s);
                    s
                })
                .collect();
            ('{', '}', parts, *style)
        }
    };
    out.push(open);
    match style {
        Style::Flow(Some(shift)) => {
            let column = match (well, shift) {
                (true, _) | (false, Shift::Good) => indent + 2,
                (false, Shift::AtKey) => indent,
                (false, Shift::Left) => 0,
            };
            let pad = " ".repeat(column);
            out.push('\n');
            for part in &parts {
                out.push_str(&pad);
                out.push_str(part);
                out.push_str(",\n");
            }
            out.push_str(&pad);
        }
        _ => out.push_str(&parts.join(", ")),
    }
    out.push(close);
}

fn render(entries: &[(Key, Node)], well: bool) -> String {
    let mut out = String::new();
    render_entries(entries, 0, well, &mut out);
    out
}

/// The root: a block mapping, as manifests and configuration files are.
fn root() -> impl Strategy<Value = Vec<(Key, Node)>> {
    prop::collection::vec((key(), node()), 1..5)
}

const LIMITS: Limits = Limits {
    max_depth: 64,
    max_nodes: 100_000,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Block and flow, quoted and plain: the value read is the one the rendering predicts.
    #[test]
    fn rendered_values_read_back_as_quoting_predicts(entries in root()) {
        let expected = expected(&Node::Map(entries.clone(), Style::Block));
        let text = render(&entries, true);
        let strict = parse_strict(&text, &LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        prop_assert_eq!(strict.len(), 1);
        prop_assert_eq!(&strict[0].value, &expected, "{}", text);
        let full = parse_documents(&text, &LIMITS).unwrap();
        prop_assert_eq!(&full[0].value, &expected, "{}", text);
    }

    /// The same content in the layouts only kubectl accepts is read (through the repair) as the
    /// well-indented text is; and whenever the strict path accepts a text too, both paths build
    /// the same object.
    #[test]
    fn the_repaired_path_builds_what_the_strict_path_builds(entries in root()) {
        let expected = expected(&Node::Map(entries.clone(), Style::Block));
        let text = render(&entries, false);
        // Each shifted line costs a repair or two; more than `MAX_REPAIRS` is an error.
        let shifted = text.lines().zip(render(&entries, true).lines()).filter(|(a, b)| a != b).count();
        prop_assume!(shifted * 2 <= crate::MAX_REPAIRS);
        let repaired = parse_documents(&text, &LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        prop_assert_eq!(&repaired[0].value, &expected, "{}", text);
        if let Ok(strict) = parse_strict(&text, &LIMITS) {
            prop_assert_eq!(&strict, &repaired, "{}", text);
        }
    }
}

/// Fails unless `position` mirrors `value`: the same keys, the same number of items, every line
/// within the text.
fn mirrors(value: &Value, position: &crate::Position, lines: usize) -> Result<(), TestCaseError> {
    use crate::Children;
    prop_assert!(
        (1..=lines).contains(&position.line),
        "line {}",
        position.line
    );
    match (value, &position.children) {
        (Value::Object(map), Children::Map(entries)) => {
            // The value's map keeps the document's order when serde_json's `preserve_order` is
            // on (the workspace build) and sorts otherwise; the positions are sorted: compare sets.
            prop_assert_eq!(
                map.keys().collect::<std::collections::BTreeSet<_>>(),
                entries.keys().collect::<std::collections::BTreeSet<_>>()
            );
            for (key, inner) in map {
                mirrors(inner, &entries[key], lines)?;
            }
        }
        (Value::Array(items), Children::Seq(positions)) => {
            prop_assert_eq!(items.len(), positions.len());
            for (item, inner) in items.iter().zip(positions) {
                mirrors(item, inner, lines)?;
            }
        }
        (Value::Object(_) | Value::Array(_), other) => {
            return Err(TestCaseError::fail(format!(
                "{value} has positions {other:?}"
            )));
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every node of every value read, in every layout, has a position on a line of the text.
    #[test]
    fn every_node_read_has_a_position(entries in root(), well in any::<bool>()) {
        let text = render(&entries, well);
        let shifted = text.lines().zip(render(&entries, true).lines()).filter(|(a, b)| a != b).count();
        prop_assume!(shifted * 2 <= crate::MAX_REPAIRS);
        let (document, position) = crate::document_positions(&text, &LIMITS, 0)
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?
            .ok_or_else(|| TestCaseError::fail("no document"))?;
        mirrors(&document.value, &position, text.lines().count())?;
    }
}

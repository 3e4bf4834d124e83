//! The manifest parser: a YAML stream → documents → Kubernetes objects.
//!
//! Built on yaml-rust2's event parser, never on splitting text: a `---` inside a block scalar or a
//! PEM certificate is content, not a separator. The tree is built from events with an explicit
//! stack, and the nesting depth is checked on each start event *before* anything is built, so
//! `[[[[…` a hundred thousand levels deep is an error, not a stack overflow.
//!
//! Scalars follow the YAML 1.2 core schema: `null`/`~`/empty → null; `true`/`false` (three
//! spellings each) → bool; decimal, `0o` octal and `0x` hex integers → exact integers (`i64`, or
//! `u64` above `i64::MAX`; wider integers become floats, as the API server would read them);
//! decimal and exponent forms → floats; `.inf`/`.nan` are rejected (JSON cannot hold them);
//! everything else, and everything quoted or in a block scalar, is a string. YAML 1.1 words such
//! as `yes`/`on` are strings. Explicit `!!str`, `!!int`, `!!float`, `!!bool`, `!!null` tags are
//! honoured; other tags are ignored.
//!
//! Mapping keys must be scalars (their text is the key); duplicate keys are an error; `<<` merge
//! keys are supported (explicit keys win); anchors and aliases are expanded, with a cap on the
//! total number of nodes so an alias bomb is an error.
//!
//! Document indexes count every document of the stream (empty ones included), from 0. A
//! `kind: List` (or any `…List` kind with an `items` array) is expanded: every item keeps the
//! **document index of the List** (so `file.yaml#N` names the List document) and its own start
//! line, which tells items apart. Documents that are not mappings or lack `apiVersion`/`kind`
//! are skipped with a debug log.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Limits applied while parsing one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of mappings and sequences allowed (the document's root is depth 1).
    pub max_depth: usize,
    /// Most nodes one stream may produce, aliases expanded.
    pub max_nodes: usize,
}

/// One YAML document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 0-based index in the stream.
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The content.
    pub value: Value,
    /// When the root is a mapping with an `items` sequence: the start line of each item that is
    /// a mapping or sequence (used to give `List` items their own line).
    pub item_lines: Vec<usize>,
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
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ManifestError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong (never quotes a value from the input).
    pub message: String,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<PendingKey>,
        merges: Vec<(Value, usize)>,
        anchor: usize,
    },
}

struct PendingKey {
    text: String,
    merge: bool,
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    root: Option<Value>,
    root_line: Option<usize>,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_nodes: 2_000_000,
        }
    }
}

// === impl ManifestError ===

impl ManifestError {
    fn at(mark: Marker, message: impl Into<String>) -> Self {
        Self {
            line: Some(mark.line()),
            message: message.into(),
        }
    }
}

// === parsing ===

/// Parses every document of a YAML (or JSON) stream.
///
/// The event parser is strict YAML 1.2. A few layouts that `kubectl` (go-yaml) accepts are
/// rejected by it — a flow sequence whose closing bracket sits at its key's indentation, for
/// example. When it reports a syntax error, the stream is parsed again with libyaml's rules
/// (serde_yaml), which accept what kubectl accepts; duplicate keys and the depth limit still
/// apply there, and if that parse fails too the strict parser's error (with its line) stands.
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Document>, ManifestError> {
    match parse_documents_strict(text, limits) {
        Err(strict) if strict.message.starts_with("invalid YAML") => {
            lenient_documents(text, limits).map_err(|_| strict)
        }
        other => other,
    }
}

fn lenient_documents(text: &str, limits: &Limits) -> Result<Vec<Document>, ManifestError> {
    use serde::Deserialize as _;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Start lines of documents: the line after each `---` separator at column 0.
    let mut starts = vec![1usize];
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && i > 0 {
            starts.push(i + 2);
        }
    }
    let mut documents = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(de).map_err(|e| ManifestError {
            line: e.location().map(|l| l.line()),
            message: "invalid YAML".to_owned(),
        })?;
        if yaml_depth(&value) > limits.max_depth {
            return Err(ManifestError {
                line: starts.get(index).copied(),
                message: format!("document nested deeper than {} levels", limits.max_depth),
            });
        }
        let value: Value = serde_json::to_value(&value).map_err(|_| ManifestError {
            line: starts.get(index).copied(),
            message: "a value cannot be represented as JSON (a non-string key or a YAML tag)"
                .to_owned(),
        })?;
        documents.push(Document {
            index,
            line: starts.get(index).copied().unwrap_or(1),
            value,
            item_lines: Vec::new(),
        });
    }
    Ok(documents)
}

fn yaml_depth(value: &serde_yaml::Value) -> usize {
    match value {
        serde_yaml::Value::Sequence(items) => 1 + items.iter().map(yaml_depth).max().unwrap_or(0),
        serde_yaml::Value::Mapping(map) => 1 + map.values().map(yaml_depth).max().unwrap_or(0),
        serde_yaml::Value::Tagged(tagged) => yaml_depth(&tagged.value),
        _ => 0,
    }
}

fn parse_documents_strict(text: &str, limits: &Limits) -> Result<Vec<Document>, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut builder: Option<Builder> = None;
    let mut nodes_before = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| ManifestError {
            line: Some(e.marker().line()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing => {}
            Event::DocumentStart => {
                let mut fresh = Builder::new(*limits);
                fresh.nodes = nodes_before;
                builder = Some(fresh);
            }
            Event::DocumentEnd => {
                if let Some(done) = builder.take() {
                    nodes_before = done.nodes;
                    let line = done.root_line.unwrap_or(mark.line());
                    let mut value = done.root.unwrap_or(Value::Null);
                    let item_lines = match value.as_object_mut().and_then(|m| m.remove(ITEM_LINES))
                    {
                        Some(v) => serde_json::from_value::<Vec<usize>>(v).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    documents.push(Document {
                        index: documents.len(),
                        line,
                        value,
                        item_lines,
                    });
                }
            }
            other => match builder.as_mut() {
                Some(b) => b.event(other, mark)?,
                None => return Err(ManifestError::at(mark, "content outside a document")),
            },
        }
    }
    Ok(documents)
}

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
    } = document;
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
        });
        return;
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
            out.push(ManifestObject {
                doc_index: index,
                line: item_line,
                value: item,
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

/// Hidden key under which the builder records the start line of each `items[]` entry of a root
/// mapping; removed again by [`expand`] (it cannot collide: it is not a valid YAML key we emit
/// for any other mapping, and user keys of that name are rejected).
const ITEM_LINES: &str = "\u{0}driftguard-item-lines";

fn has_type(value: &Value) -> bool {
    value.get("apiVersion").is_some_and(Value::is_string)
        && value.get("kind").is_some_and(Value::is_string)
}

// === impl Builder ===

impl Builder {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            root: None,
            root_line: None,
        }
    }

    fn event(&mut self, event: Event, mark: Marker) -> Result<(), ManifestError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.in_key_position() {
                    return self.set_key(text, style, mark);
                }
                let value = resolve_scalar(text, style, tag.as_ref(), mark)?;
                self.count(1, mark)?;
                self.push(value, 1, anchor, mark)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    merges: Vec::new(),
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor }) => {
                    let size = 1 + items.iter().map(node_count).sum::<usize>();
                    self.count(1, mark)?;
                    self.push(Value::Array(items), size, anchor, mark)
                }
                _ => Err(ManifestError::at(mark, "unbalanced sequence end")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    mut map,
                    merges,
                    anchor,
                    ..
                }) => {
                    for (merged, line) in merges {
                        merge_into(&mut map, merged, line)?;
                    }
                    let size = 1 + map.values().map(node_count).sum::<usize>();
                    self.count(1, mark)?;
                    self.push(Value::Object(map), size, anchor, mark)
                }
                _ => Err(ManifestError::at(mark, "unbalanced mapping end")),
            },
            Event::Alias(id) => {
                let Some((value, size)) = self.anchors.get(&id) else {
                    return Err(ManifestError::at(mark, "alias to an unknown anchor"));
                };
                let size = *size;
                if self.in_key_position() {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Null | Value::Bool(_) | Value::Number(_) => value.to_string(),
                        _ => {
                            return Err(ManifestError::at(
                                mark,
                                "mappings and sequences cannot be mapping keys",
                            ));
                        }
                    };
                    return self.set_key(text, TScalarStyle::SingleQuoted, mark);
                }
                // Count before cloning, so an alias bomb stops before it allocates.
                self.count(size, mark)?;
                let value = match self.anchors.get(&id) {
                    Some((value, _)) => value.clone(),
                    None => Value::Null,
                };
                self.push(value, size, 0, mark)
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn open(&mut self, mark: Marker) -> Result<(), ManifestError> {
        if self.in_key_position() {
            return Err(ManifestError::at(
                mark,
                "mappings and sequences cannot be mapping keys",
            ));
        }
        let depth = self.stack.len() + 1;
        if depth > self.limits.max_depth {
            return Err(ManifestError::at(
                mark,
                format!(
                    "nesting deeper than git.max_depth ({})",
                    self.limits.max_depth
                ),
            ));
        }
        if self.stack.is_empty() && self.root_line.is_none() {
            self.root_line = Some(mark.line());
        }
        // Remember where each item of a root `items:` sequence starts (for List expansion).
        if let [
            Frame::Map {
                map,
                key: Some(key),
                ..
            },
            Frame::Seq { items, .. },
        ] = self.stack.as_mut_slice()
            && key.text == "items"
        {
            let lines = map
                .entry(ITEM_LINES.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(lines) = lines
                && lines.len() == items.len()
            {
                lines.push(Value::from(mark.line()));
            }
        }
        Ok(())
    }

    fn set_key(
        &mut self,
        text: String,
        style: TScalarStyle,
        mark: Marker,
    ) -> Result<(), ManifestError> {
        if text == ITEM_LINES {
            return Err(ManifestError::at(mark, "invalid mapping key"));
        }
        let Some(Frame::Map { map, key, .. }) = self.stack.last_mut() else {
            return Err(ManifestError::at(mark, "key outside a mapping"));
        };
        let merge = text == "<<" && style == TScalarStyle::Plain;
        if !merge && map.contains_key(&text) {
            return Err(ManifestError::at(mark, format!("duplicate key {text:?}")));
        }
        *key = Some(PendingKey { text, merge });
        Ok(())
    }

    fn count(&mut self, nodes: usize, mark: Marker) -> Result<(), ManifestError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > self.limits.max_nodes {
            return Err(ManifestError::at(
                mark,
                format!(
                    "more than {} nodes (alias expansion?)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn push(
        &mut self,
        value: Value,
        size: usize,
        anchor: usize,
        mark: Marker,
    ) -> Result<(), ManifestError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root_line.is_none() {
                    self.root_line = Some(mark.line());
                }
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                map, key, merges, ..
            }) => match key.take() {
                Some(PendingKey { merge: true, .. }) => {
                    merges.push((value, mark.line()));
                    Ok(())
                }
                Some(PendingKey { text, .. }) => {
                    map.insert(text, value);
                    Ok(())
                }
                None => Err(ManifestError::at(mark, "value without a key")),
            },
        }
    }
}

fn merge_into(
    map: &mut Map<String, Value>,
    merged: Value,
    line: usize,
) -> Result<(), ManifestError> {
    let sources = match merged {
        Value::Object(source) => vec![source],
        Value::Array(items) => {
            let mut sources = Vec::new();
            for item in items {
                match item {
                    Value::Object(source) => sources.push(source),
                    _ => return Err(merge_error(line)),
                }
            }
            sources
        }
        _ => return Err(merge_error(line)),
    };
    // Explicit keys win; among merged mappings the first one listed wins.
    for source in sources {
        for (key, value) in source {
            if key != ITEM_LINES {
                map.entry(key).or_insert(value);
            }
        }
    }
    Ok(())
}

fn merge_error(line: usize) -> ManifestError {
    ManifestError {
        line: Some(line),
        message: "a `<<` merge key needs a mapping or a list of mappings".to_owned(),
    }
}

fn node_count(value: &Value) -> usize {
    // Iterative so that a wide value never recurses deeply (depth is bounded anyway).
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        count += 1;
        match v {
            Value::Array(items) => pending.extend(items.iter()),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    count
}

// === scalars ===

fn resolve_scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Value, ManifestError> {
    if let Some(tag) = tag
        && tag.handle == "tag:yaml.org,2002:"
    {
        let bad =
            || ManifestError::at(mark, format!("value does not fit its !!{} tag", tag.suffix));
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Ok(Value::String(text)),
            "null" => Ok(Value::Null),
            "bool" => resolve_bool(&text).map(Value::Bool).ok_or_else(bad),
            "int" => resolve_int(&text).ok_or_else(bad),
            "float" => match resolve_int(&text) {
                Some(Value::Number(n)) => n
                    .as_f64()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(bad),
                _ => resolve_float(&text, mark)?.ok_or_else(bad),
            },
            _ => Ok(Value::String(text)),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(&text) {
        return Ok(Value::Bool(b));
    }
    if let Some(number) = resolve_int(&text) {
        return Ok(number);
    }
    if let Some(number) = resolve_float(&text, mark)? {
        return Ok(number);
    }
    Ok(Value::String(text))
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = body.strip_prefix("0x") {
        if negative || text.starts_with('+') {
            return None;
        }
        (16, hex)
    } else if let Some(octal) = body.strip_prefix("0o") {
        if negative || text.starts_with('+') {
            return None;
        }
        (8, octal)
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok();
    let value = match magnitude {
        Some(m) if negative => {
            if m <= i64::MAX as u128 + 1 {
                // m fits: -(m) as i64 without overflow.
                Value::from((-(m as i128)) as i64)
            } else {
                float_of(text)?
            }
        }
        Some(m) if m <= i64::MAX as u128 => Value::from(m as i64),
        Some(m) if m <= u64::MAX as u128 => Value::from(m as u64),
        _ if radix == 10 => float_of(text)?,
        _ => return None,
    };
    Some(value)
}

fn float_of(text: &str) -> Option<Value> {
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

fn resolve_float(text: &str, mark: Marker) -> Result<Option<Value>, ManifestError> {
    let unsigned = text.trim_start_matches(['-', '+']);
    if matches!(
        unsigned,
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
    ) && text.len() - unsigned.len() <= 1
    {
        return Err(ManifestError::at(
            mark,
            "infinite or NaN numbers cannot be represented in JSON",
        ));
    }
    if !is_core_float(text) {
        return Ok(None);
    }
    match float_of(text) {
        Some(v) => Ok(Some(v)),
        None => Err(ManifestError::at(mark, "number out of range")),
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - frac_start;
        if int_digits == 0 && frac_digits == 0 {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    let _ = frac_digits;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(text: &str) -> Vec<Document> {
        parse_documents(text, &Limits::default()).unwrap()
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let d = docs(
            "a: 1\nb: -2\nc: 1.5\nd: 0x1F\ne: 0o17\nf: yes\ng: ~\nh: 'true'\ni: 1e3\nj: 18446744073709551615\nk: 007\nl: 1.0\n",
        );
        assert_eq!(
            d[0].value,
            json!({"a":1,"b":-2,"c":1.5,"d":31,"e":15,"f":"yes","g":null,"h":"true","i":1000.0,
                   "j":18446744073709551615u64,"k":7,"l":1.0})
        );
        assert!(d[0].value["a"].is_i64());
        assert!(d[0].value["l"].is_f64());
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
        // Duplicate keys stay an error on that path too.
        let dup = "x: [\n  1\n]\nx: 2\n";
        assert!(parse_documents(dup, &Limits::default()).is_err());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n", &Limits::default()).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("duplicate"), "{err:?}");
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
    fn merge_keys_and_aliases() {
        let d = docs("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        assert_eq!(d[0].value["m"], json!({"x":1,"y":3}));
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
    fn lists_expand_with_the_list_index() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let objects = parse_objects(text, &Limits::default()).unwrap();
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[1].doc_index, 1);
        assert_eq!(objects[2].doc_index, 1);
        assert_eq!(objects[1].line, 8);
        assert_eq!(objects[2].line, 11);
        assert!(objects[1].value.get(ITEM_LINES).is_none());
    }
}

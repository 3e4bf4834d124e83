//! The manifest parser: a YAML stream → documents → Kubernetes objects.
//!
//! Built on yaml-rust2's event parser, never on splitting text: a `---` inside a block scalar or a
//! PEM certificate is content, not a separator. The tree is built from events with an explicit
//! stack, and the nesting depth is checked on each start event *before* anything is built, so
//! `[[[[…` a hundred thousand levels deep is an error, not a stack overflow.
//!
//! Scalars are read exactly as `kubectl` reads them (sigs.k8s.io/yaml: go-yaml v2's YAML 1.1
//! flavoured rules, then a round trip through JSON), so DriftGuard and kubectl build the same
//! object from the same bytes:
//!
//! - `~`, `null`/`Null`/`NULL` and empty → null; `true`/`false`, `yes`/`no`, `on`/`off`, `y`/`n`
//!   (lower, capitalised or upper case) → booleans.
//! - Integers as Go's `strconv.ParseInt(text without underscores, 0, 64)` reads them: `0755` is
//!   octal (493), `0o17`, `0x1F`, `0b101` (any prefix case, optional sign), `1_000` is 1000.
//!   Above `i64::MAX` an integer is a float (the JSON round trip keeps no wider integer).
//! - Floats: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (underscores dropped), and a
//!   digit string Go cannot read as an integer (`08`). A float with an integral value below 1e21
//!   is an integer after the JSON round trip (`1.0` → 1, `1e3` → 1000), exactly as kubectl
//!   prints it. `.inf`/`.nan` are errors (JSON cannot hold them; kubectl refuses them too), and
//!   `1e400` stays a string.
//! - Timestamps stay strings (their text); quoted and block scalars are strings.
//! - Tags: `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!timestamp` are honoured (a value
//!   that does not fit its tag is an error), `!!binary` is base64-decoded, any other tag makes
//!   the scalar a string.
//! - Mapping keys are resolved the same way and then written as JSON keys the way kubectl does:
//!   `yes:` is the key `"true"`, `0755:` is `"493"`, `1e6:` is `"1e+06"`; a null key is an error.
//!
//! A duplicate mapping key is not an error: as with kubectl, the last value wins, and the
//! document records a [`DuplicateKey`] (its path and line) so the reader can warn. `<<` merge
//! keys are applied where they appear, as go-yaml v2 does: a key written after `<<` wins over the
//! merged one, a key written before it is overwritten, and among merged mappings the first one
//! listed wins. Anchors and aliases are expanded, with a cap on the total number of nodes so an
//! alias bomb is an error.
//!
//! Document indexes count every document of the stream (empty ones included), from 0. A
//! `kind: List` (or any `…List` kind with an `items` array) is expanded: every item keeps the
//! **document index of the List** (so `file.yaml#N` names the List document) and its own start
//! line, which tells items apart. Documents that are not mappings or lack `apiVersion`/`kind`
//! are skipped with a debug log.

use std::collections::{HashMap, HashSet};

use driftguard_core::{FieldPath, Segment};

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
    /// Mapping keys written twice (the last value was kept), in the order found.
    pub duplicates: Vec<DuplicateKey>,
}

/// A mapping key written twice in one mapping; as kubectl does, the last value was kept.
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
        /// Keys written explicitly so far (not through `<<`), to find duplicates.
        explicit: HashSet<String>,
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
    duplicates: Vec<DuplicateKey>,
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
/// example. When it reports a syntax error:
///
/// 1. a closing `]`/`}` that starts a line it calls badly indented is indented like the line
///    before it (leading spaces inside a flow collection are not content), and the stream is
///    parsed strictly again — with every scalar rule above;
/// 2. failing that, the stream is parsed with libyaml's rules (serde_yaml), which accept what
///    kubectl accepts but do not tell a quoted scalar from a plain one. That path keeps only
///    what it can read exactly as kubectl does: a string that kubectl would read as something
///    else when unquoted (`yes`, `0755`, `"true"`), a tag, a `<<` merge key or a duplicate key
///    makes it give up. The depth limit applies there too.
///
/// When both fail, the strict parser's error (with its line) stands.
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Document>, ManifestError> {
    match parse_documents_strict(text, limits) {
        Err(strict) if strict.message.starts_with("invalid YAML") => {
            if let Some(documents) = reindented_documents(text, limits, &strict) {
                return Ok(documents);
            }
            lenient_documents(text, limits).map_err(|_| strict)
        }
        other => other,
    }
}

/// Most closing brackets moved before giving up.
const MAX_REINDENTS: usize = 64;

/// Re-parses strictly after indenting the closing brackets yaml-rust2 finds badly indented.
fn reindented_documents(
    text: &str,
    limits: &Limits,
    first: &ManifestError,
) -> Option<Vec<Document>> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let mut error = first.clone();
    for _ in 0..MAX_REINDENTS {
        if !error.message.ends_with("invalid indentation") {
            return None;
        }
        let index = error.line?.checked_sub(1)?;
        let indent = lines[..index]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())?;
        let line = lines.get_mut(index)?;
        let current = line.len() - line.trim_start_matches(' ').len();
        if !line.trim_start_matches(' ').starts_with([']', '}']) || current >= indent {
            return None;
        }
        line.insert_str(0, &" ".repeat(indent - current));
        match parse_documents_strict(&lines.concat(), limits) {
            Ok(documents) => return Some(documents),
            Err(next) => error = next,
        }
    }
    None
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
        let value = lenient_to_json(value).map_err(|message| ManifestError {
            line: starts.get(index).copied(),
            message: message.to_owned(),
        })?;
        documents.push(Document {
            index,
            line: starts.get(index).copied().unwrap_or(1),
            value,
            item_lines: Vec::new(),
            duplicates: Vec::new(),
        });
    }
    Ok(documents)
}

/// serde_yaml's value as kubectl would have built it, or why that cannot be known.
fn lenient_to_json(value: serde_yaml::Value) -> Result<Value, &'static str> {
    use serde_yaml::Value as Y;
    const AMBIGUOUS: &str = "a string kubectl would read differently unless it was quoted (the lenient parser cannot tell)";
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            let scalar = if let Some(i) = n.as_i64() {
                Scalar::Int(i)
            } else if let Some(u) = n.as_u64() {
                Scalar::Uint(u)
            } else {
                Scalar::Float(n.as_f64().unwrap_or(f64::NAN))
            };
            scalar_json(scalar).ok_or("a number JSON cannot hold")?
        }
        Y::String(s) => {
            if resolve_plain(s.clone()) != Scalar::Str(s.clone()) {
                return Err(AMBIGUOUS);
            }
            Value::String(s)
        }
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(lenient_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) if s == "<<" => return Err("a `<<` merge key"),
                    Y::String(s) if resolve_plain(s.clone()) == Scalar::Str(s.clone()) => s,
                    Y::String(_) => return Err(AMBIGUOUS),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => i.to_string(),
                        (None, Some(f)) if n.as_u64().is_none() => go_float_key(f),
                        _ => return Err("a mapping key JSON cannot hold"),
                    },
                    _ => return Err("a mapping key JSON cannot hold"),
                };
                map.insert(key, lenient_to_json(value)?);
            }
            Value::Object(map)
        }
        Y::Tagged(_) => return Err("a YAML tag"),
    })
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
                        duplicates: done.duplicates,
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
        duplicates,
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
            duplicates: Vec::new(),
        }
    }

    fn event(&mut self, event: Event, mark: Marker) -> Result<(), ManifestError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.in_key_position() {
                    let merge = text == "<<" && style == TScalarStyle::Plain && tag.is_none();
                    if merge {
                        return self.set_key(text, true, mark);
                    }
                    if anchor != 0
                        && let Ok(value) = resolve_scalar(text.clone(), style, tag.as_ref(), mark)
                    {
                        self.anchors.insert(anchor, (value, 1));
                    }
                    let key = resolve_key(text, style, tag.as_ref(), mark)?;
                    return self.set_key(key, false, mark);
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
                    explicit: HashSet::new(),
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
                Some(Frame::Map { map, anchor, .. }) => {
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
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => i.to_string(),
                            None => go_float_key(n.as_f64().unwrap_or_default()),
                        },
                        Value::Null => return Err(ManifestError::at(mark, NULL_KEY)),
                        _ => {
                            return Err(ManifestError::at(
                                mark,
                                "mappings and sequences cannot be mapping keys",
                            ));
                        }
                    };
                    return self.set_key(text, false, mark);
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

    fn set_key(&mut self, text: String, merge: bool, mark: Marker) -> Result<(), ManifestError> {
        if text == ITEM_LINES {
            return Err(ManifestError::at(mark, "invalid mapping key"));
        }
        let duplicate = !merge
            && matches!(self.stack.last(), Some(Frame::Map { explicit, .. }) if explicit.contains(&text));
        if duplicate {
            // kubectl keeps the last value; say so instead of refusing the file.
            let path = self.path_to(&text);
            self.duplicates.push(DuplicateKey {
                path,
                line: mark.line(),
            });
        }
        let Some(Frame::Map { key, explicit, .. }) = self.stack.last_mut() else {
            return Err(ManifestError::at(mark, "key outside a mapping"));
        };
        if !merge {
            explicit.insert(text.clone());
        }
        *key = Some(PendingKey { text, merge });
        Ok(())
    }

    /// The path of `key` in the innermost mapping, from the document's root.
    fn path_to(&self, key: &str) -> FieldPath {
        let parents = self.stack.len().saturating_sub(1);
        let mut segments = Vec::with_capacity(parents + 1);
        for frame in &self.stack[..parents] {
            match frame {
                Frame::Seq { items, .. } => segments.push(Segment::Index(items.len())),
                Frame::Map { key: Some(k), .. } => segments.push(Segment::Key(k.text.clone())),
                Frame::Map { key: None, .. } => {}
            }
        }
        segments.push(Segment::Key(key.to_owned()));
        FieldPath::from_segments(segments)
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
            Some(Frame::Map { map, key, .. }) => match key.take() {
                // Merged where it appears, as go-yaml v2 does (see the module documentation).
                Some(PendingKey { merge: true, .. }) => merge_into(map, value, mark.line()),
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
    // Merged over what is there; among merged mappings the first one listed wins, so they are
    // applied last to first.
    for source in sources.into_iter().rev() {
        for (key, value) in source {
            if key != ITEM_LINES {
                map.insert(key, value);
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

/// The message for a `~`/`null` mapping key (kubectl refuses it too).
const NULL_KEY: &str = "a null mapping key cannot be represented in JSON";

/// go-yaml v2's tag prefix for `!!x`.
const YAML_TAG: &str = "tag:yaml.org,2002:";

/// A scalar as go-yaml v2 resolves it, before the JSON round trip.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`: Go keeps a `uint64`, JSON turns it into a float.
    Uint(u64),
    Float(f64),
    /// Looks like a YAML timestamp (stays its text).
    Timestamp(String),
    Str(String),
}

/// The `!!x` name of a tag, when it is one of the YAML types (`None` for local tags such as
/// `!foo` or `!`).
fn yaml_tag(tag: &Tag) -> Option<&str> {
    if tag.handle == YAML_TAG {
        return Some(tag.suffix.as_str());
    }
    if tag.handle.is_empty() || tag.handle == "!" {
        return tag.suffix.strip_prefix(YAML_TAG);
    }
    None
}

/// Resolves a scalar as go-yaml v2 does (tag first, then style, then the plain rules).
fn resolve_raw(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Scalar, ManifestError> {
    let Some(tag) = tag else {
        if style != TScalarStyle::Plain {
            return Ok(Scalar::Str(text));
        }
        return Ok(resolve_plain(text));
    };
    let Some(name) = yaml_tag(tag) else {
        // A local tag: go-yaml cannot resolve it and keeps the text.
        return Ok(Scalar::Str(text));
    };
    let bad = || ManifestError::at(mark, format!("value does not fit its !!{name} tag"));
    match name {
        "str" => Ok(Scalar::Str(text)),
        "binary" => decode_base64(&text)
            .map(|bytes| Scalar::Str(String::from_utf8_lossy(&bytes).into_owned()))
            .ok_or_else(|| ManifestError::at(mark, "!!binary value is not valid base64")),
        "null" | "bool" | "int" | "float" | "timestamp" => {
            let resolved = resolve_plain(text);
            match (name, resolved) {
                ("null", Scalar::Null) => Ok(Scalar::Null),
                ("bool", b @ Scalar::Bool(_)) => Ok(b),
                ("int", i @ (Scalar::Int(_) | Scalar::Uint(_))) => Ok(i),
                ("float", f @ Scalar::Float(_)) => Ok(f),
                // An integer tagged `!!float` becomes a float.
                ("float", Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
                ("timestamp", Scalar::Timestamp(t)) if is_go_timestamp(&t) => Ok(Scalar::Str(t)),
                _ => Err(bad()),
            }
        }
        // Other YAML tags (`!!map` on a scalar, …) are not resolvable: the text is kept.
        _ => Ok(Scalar::Str(text)),
    }
}

/// go-yaml v2's `resolve` for an untagged plain scalar.
fn resolve_plain(text: String) -> Scalar {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match text.as_bytes().first() {
        // Go's ParseFloat on the text itself (underscores are not dropped here).
        Some(b'.') => match parse_float(&text) {
            Some(f) => Scalar::Float(f),
            None => Scalar::Str(text),
        },
        Some(b'+' | b'-' | b'0'..=b'9') => {
            if looks_like_timestamp(&text) {
                return Scalar::Timestamp(text);
            }
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            if let Some(i) = go_parse_int(&plain) {
                return Scalar::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Scalar::Uint(u);
            }
            match parse_float(&plain) {
                Some(f) => Scalar::Float(f),
                None => Scalar::Str(text),
            }
        }
        _ => Scalar::Str(text),
    }
}

/// go-yaml v2's quick timestamp check: four digits and a dash, then one of its layouts. The
/// layouts are not checked further: a timestamp and a string are the same text to kubectl.
fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Whether Go's `time.Parse` reads `text` with one of go-yaml v2's timestamp layouts:
/// `2006-1-2`, `2006-1-2 15:4:5.999999999` or `2006-1-2T15:4:5.999999999Z07:00` (`T` or `t`).
fn is_go_timestamp(text: &str) -> bool {
    fn number(text: &str, min: usize, max: usize) -> Option<(u32, &str)> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits < min || digits > max {
            return None;
        }
        Some((text[..digits].parse().ok()?, &text[digits..]))
    }
    fn field(text: &str, sep: char, min: usize, high: u32) -> Option<(u32, &str)> {
        let (value, rest) = number(text.strip_prefix(sep)?, min, 2)?;
        (value <= high).then_some((value, rest))
    }
    let date = || -> Option<&str> {
        let (year, rest) = number(text, 4, 4)?;
        let (month, rest) = field(rest, '-', 1, 12)?;
        let (day, rest) = field(rest, '-', 1, 31)?;
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (month >= 1 && day >= 1 && day <= days).then_some(rest)
    };
    let Some(rest) = date() else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let zoned = rest.starts_with(['T', 't']);
    if !zoned && !rest.starts_with(' ') {
        return false;
    }
    let time = || -> Option<&str> {
        let (_, rest) = number(&rest[1..], 1, 2).filter(|(h, _)| *h < 24)?;
        let (_, rest) = field(rest, ':', 1, 59)?;
        let (_, mut rest) = field(rest, ':', 1, 59)?;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            rest = &fraction[digits..];
        }
        Some(rest)
    };
    let Some(rest) = time() else {
        return false;
    };
    if !zoned {
        return rest.is_empty();
    }
    if rest == "Z" {
        return true;
    }
    let Some(offset) = rest.strip_prefix(['+', '-']) else {
        return false;
    };
    let b = offset.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && [b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit)
        && offset[..2].parse::<u32>().is_ok_and(|h| h < 24)
        && offset[3..].parse::<u32>().is_ok_and(|m| m < 60)
}

/// A float in go-yaml's float syntax that Go reads as a finite number (`1e400` is a string).
fn parse_float(text: &str) -> Option<f64> {
    if !is_yaml_float(text) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go's `strconv.ParseInt(text, 0, 64)`: optional sign, then `0x`/`0o`/`0b` (any case), a
/// leading `0` (octal) or decimal digits.
fn go_parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = go_parse_magnitude(body)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)` (no sign).
fn go_parse_uint(text: &str) -> Option<u64> {
    go_parse_magnitude(text)
}

fn go_parse_magnitude(body: &str) -> Option<u64> {
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_yaml_float(text: &str) -> bool {
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
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if int_digits == 0 && i == frac_start {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
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

/// Go's `base64.StdEncoding.DecodeString` (padding required; `\r` and `\n` ignored).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    if !symbols.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3);
    for (n, chunk) in symbols.chunks(4).enumerate() {
        let last = n + 1 == symbols.len() / 4;
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            word = (word << 6) | u32::from(v);
        }
        word <<= 6 * pad as u32;
        let bytes = word.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// A resolved scalar as JSON, after kubectl's round trip through Go's `encoding/json` and back
/// into an unstructured object (integers that fit `i64` stay integers, everything else is a
/// float; a float Go prints without a fraction or exponent is read back as an integer).
/// `None` for infinities and NaN, which JSON cannot hold (kubectl refuses them too).
fn scalar_json(scalar: Scalar) -> Option<Value> {
    Some(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => json_float(u as f64)?,
        Scalar::Float(f) => json_float(f)?,
        Scalar::Timestamp(s) | Scalar::Str(s) => Value::String(s),
    })
}

fn json_float(f: f64) -> Option<Value> {
    // Go prints |f| < 1e21 in plain notation with the shortest digits that read back as f (as
    // Rust's `Display` does); such a text without a fraction is an integer to kubectl.
    if f.is_finite()
        && f.fract() == 0.0
        && f.abs() < 1e21
        && let Ok(i) = format!("{f}").parse::<i64>()
    {
        return Some(Value::from(i));
    }
    Number::from_f64(f).map(Value::Number)
}

fn resolve_scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Value, ManifestError> {
    scalar_json(resolve_raw(text, style, tag, mark)?).ok_or_else(|| {
        ManifestError::at(
            mark,
            "infinite or NaN numbers cannot be represented in JSON",
        )
    })
}

/// A mapping key as kubectl writes it in JSON: resolved like a value, then turned into text
/// (sigs.k8s.io/yaml's `convertToJSONableObject`).
fn resolve_key(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<String, ManifestError> {
    Ok(match resolve_raw(text, style, tag, mark)? {
        Scalar::Str(s) | Scalar::Timestamp(s) => s,
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => go_float_key(f),
        Scalar::Null => return Err(ManifestError::at(mark, NULL_KEY)),
        Scalar::Uint(_) => {
            return Err(ManifestError::at(
                mark,
                "an integer mapping key above 9223372036854775807 cannot be represented in JSON",
            ));
        }
    })
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for infinities and NaN:
/// how sigs.k8s.io/yaml writes a float mapping key (`1.5`, `1e+06`, `1e-05`).
fn go_float_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let narrow = f as f32;
    if narrow.is_infinite() {
        // Too wide for 32 bits: Go writes "+Inf", which sigs.k8s.io/yaml renames.
        return if narrow > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    // Shortest digits of the 32-bit value: "d.ddde±x" from Rust's LowerExp.
    let exp_form = format!("{:e}", narrow.abs());
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((&exp_form, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if narrow.is_sign_negative() { "-" } else { "" };
    if narrow == 0.0 {
        return format!("{sign}0");
    }
    // %e when the exponent is below -4 or at least 6 (Go's rule for the shortest precision).
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{dot}{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let point = exponent + 1; // digits before the decimal point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{text}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(text: &str) -> Vec<Document> {
        parse_documents(text, &Limits::default()).unwrap()
    }

    /// The value of `v:` in a one-line document.
    fn scalar(text: &str) -> Value {
        docs(&format!("v: {text}\n"))[0].value["v"].clone()
    }

    fn scalar_error(text: &str) -> ManifestError {
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
        // (the lenient one would give up on `yes`) and its duplicate keys.
        let text = "spec:\n  a: [\n    yes, 0755\n  ]\n  b: {\n    x: 1\n  }\n  b: 2\n";
        let docs = parse_documents(text, &Limits::default()).unwrap();
        assert_eq!(docs[0].value, json!({"spec": {"a": [true, 493], "b": 2}}));
        assert_eq!(docs[0].duplicates.len(), 1);
    }

    #[test]
    fn the_lenient_parser_keeps_only_what_it_reads_as_kubectl_does() {
        let ok = "a: 1.0\nb: 18446744073709551615\nc: \"x\"\n1.5: d\n";
        let value = lenient_documents(ok, &Limits::default()).unwrap()[0]
            .value
            .clone();
        assert_eq!(
            value,
            json!({"a": 1, "b": 18446744073709551615.0f64, "c": "x", "1.5": "d"})
        );
        for text in [
            "a: yes\n",
            "a: '0755'\n",
            "yes: 1\n",
            "a: !foo x\n",
            "<<: {a: 1}\n",
        ] {
            assert!(
                lenient_documents(text, &Limits::default()).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_are_recorded() {
        let d = docs(
            "a: 1\nb:\n  - x: 1\n    x: {q: 1}\n  - z: 2\na: 3\nb2:\n  x: {q: 1}\n  x: {r: 2}\n",
        );
        assert_eq!(
            d[0].value,
            json!({"a": 3, "b": [{"x": {"q": 1}}, {"z": 2}], "b2": {"x": {"r": 2}}})
        );
        let found: Vec<(String, usize)> = d[0]
            .duplicates
            .iter()
            .map(|d| (d.path.to_string(), d.line))
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
    fn duplicates_in_list_items_belong_to_their_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n  data: {k: 1, k: 2}\n";
        let objects = parse_objects(text, &Limits::default()).unwrap();
        assert!(objects[0].duplicates.is_empty());
        assert_eq!(objects[1].duplicates.len(), 1);
        assert_eq!(objects[1].duplicates[0].path.to_string(), "data.k");
        assert_eq!(objects[1].duplicates[0].line, 10);
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

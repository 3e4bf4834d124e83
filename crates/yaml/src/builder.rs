//! Builds one document's JSON value from parser events, within the [`Limits`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};
use yaml_rust2::parser::Event;
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::scalar::{NULL_KEY, go_float_key, resolve_key, resolve_scalar};
use crate::{Children, DuplicateKey, Limits, PathSegment, Position, YamlError};

/// Bytes of scalar or key text that weigh as much as one node, so that an alias to a long string
/// is charged for what it copies.
pub(crate) const TEXT_PER_NODE: usize = 64;

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        /// Line of the sequence's first token.
        line: usize,
        /// Where each item is written (only when positions are kept).
        lines: Vec<Position>,
    },
    Map {
        map: Map<String, Value>,
        key: Option<PendingKey>,
        /// Keys written explicitly so far (not through `<<`), to find duplicates.
        explicit: HashSet<String>,
        anchor: usize,
        /// Line of the mapping's first token.
        line: usize,
        /// Where each entry is written (only when positions are kept), kept in step with `map`.
        entries: BTreeMap<String, Position>,
    },
}

struct PendingKey {
    text: String,
    merge: bool,
    /// Line of the key.
    line: usize,
}

/// An anchored node: its value, what a copy costs, and where it is written (when positions are
/// kept).
type Anchored = (Value, usize, Option<Position>);

/// One document under construction.
pub(crate) struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    /// Anchored values and their weight (what an alias to them costs).
    anchors: HashMap<usize, Anchored>,
    /// Whether to record where every node is written (see [`Position`]).
    positions: bool,
    root_position: Option<Position>,
    /// Weight used so far in the stream (documents before this one included).
    pub(crate) nodes: usize,
    root: Option<Value>,
    root_line: Option<usize>,
    /// Start line of each item of the root mapping's `items` sequence.
    item_lines: Vec<usize>,
    duplicates: Vec<DuplicateKey>,
}

/// A finished document's parts.
pub(crate) struct Built {
    pub(crate) value: Value,
    pub(crate) line: Option<usize>,
    pub(crate) item_lines: Vec<usize>,
    pub(crate) duplicates: Vec<DuplicateKey>,
    /// Where every node is written, when asked for.
    pub(crate) position: Option<Position>,
}

// === impl Builder ===

impl Builder {
    /// A builder that has already used `nodes` of the stream's budget.
    pub(crate) fn new(limits: Limits, nodes: usize) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            positions: false,
            root_position: None,
            nodes,
            root: None,
            root_line: None,
            item_lines: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// The same builder recording where every node is written ([`Built::position`]).
    pub(crate) fn with_positions(mut self) -> Self {
        self.positions = true;
        self
    }

    pub(crate) fn finish(self) -> Built {
        let value = self.root.unwrap_or(Value::Null);
        let items = value.get("items").and_then(Value::as_array).map(Vec::len);
        // Lines that do not match the kept `items` (one replaced through `<<`) are dropped.
        let item_lines = if items == Some(self.item_lines.len()) {
            self.item_lines
        } else {
            Vec::new()
        };
        Built {
            value,
            line: self.root_line,
            item_lines,
            duplicates: self.duplicates,
            position: self.root_position,
        }
    }

    pub(crate) fn event(&mut self, event: Event, mark: Marker) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.in_key_position() {
                    let merge = text == "<<" && style == TScalarStyle::Plain && tag.is_none();
                    if merge {
                        return self.set_key(text, true, mark);
                    }
                    self.count(text.len() / TEXT_PER_NODE, mark)?;
                    if anchor != 0
                        && let Ok(value) = resolve_scalar(text.clone(), style, tag.as_ref(), mark)
                    {
                        let weight = weight(&value);
                        let position = self.positions.then(|| Position::leaf(mark.line()));
                        self.anchors.insert(anchor, (value, weight, position));
                    }
                    let key = resolve_key(text, style, tag.as_ref(), mark)?;
                    return self.set_key(key, false, mark);
                }
                self.note_start(mark);
                let weight = 1 + text.len() / TEXT_PER_NODE;
                self.count(weight, mark)?;
                let value = resolve_scalar(text, style, tag.as_ref(), mark)?;
                let position = self.positions.then(|| Position::leaf(mark.line()));
                self.push(value, anchor, position, mark)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    line: mark.line(),
                    lines: Vec::new(),
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
                    line: mark.line(),
                    entries: BTreeMap::new(),
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    anchor,
                    line,
                    lines,
                }) => {
                    self.count(1, mark)?;
                    let position = self.positions.then_some(Position {
                        line,
                        children: Children::Seq(lines),
                    });
                    self.push(Value::Array(items), anchor, position, mark)
                }
                _ => Err(YamlError::at(mark, "unbalanced sequence end")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    map,
                    anchor,
                    line,
                    entries,
                    ..
                }) => {
                    self.count(1, mark)?;
                    let position = self.positions.then_some(Position {
                        line,
                        children: Children::Map(entries),
                    });
                    self.push(Value::Object(map), anchor, position, mark)
                }
                _ => Err(YamlError::at(mark, "unbalanced mapping end")),
            },
            Event::Alias(id) => self.alias(id, mark),
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), YamlError> {
        let Some((value, weight, _)) = self.anchors.get(&id) else {
            return Err(YamlError::at(mark, "alias to an unknown anchor"));
        };
        let weight = *weight;
        if self.in_key_position() {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => i.to_string(),
                    None => go_float_key(n.as_f64().unwrap_or_default()),
                },
                Value::Null => return Err(YamlError::at(mark, NULL_KEY)),
                _ => {
                    return Err(YamlError::at(
                        mark,
                        "mappings and sequences cannot be mapping keys",
                    ));
                }
            };
            self.count(text.len() / TEXT_PER_NODE, mark)?;
            return self.set_key(text, false, mark);
        }
        self.note_start(mark);
        // Counted before cloning, so an alias bomb stops before it allocates.
        self.count(weight, mark)?;
        let (value, position) = match self.anchors.get(&id) {
            // The copy is written where the anchor is: its nodes keep those lines; the alias
            // itself is where this node is placed.
            Some((value, _, position)) => (
                value.clone(),
                position.clone().map(|p| Position {
                    line: mark.line(),
                    children: p.children,
                }),
            ),
            None => (Value::Null, None),
        };
        let position = position.or_else(|| self.positions.then(|| Position::leaf(mark.line())));
        self.push(value, 0, position, mark)
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Remembers where an item of the root mapping's `items` sequence starts.
    fn note_start(&mut self, mark: Marker) {
        if let [
            Frame::Map {
                key: Some(PendingKey {
                    text, merge: false, ..
                }),
                ..
            },
            Frame::Seq { .. },
        ] = self.stack.as_slice()
            && text == "items"
        {
            self.item_lines.push(mark.line());
        }
    }

    fn open(&mut self, mark: Marker) -> Result<(), YamlError> {
        if self.in_key_position() {
            return Err(YamlError::at(
                mark,
                "mappings and sequences cannot be mapping keys",
            ));
        }
        let depth = self.stack.len() + 1;
        if depth > self.limits.max_depth {
            return Err(YamlError::at(
                mark,
                format!(
                    "nesting deeper than {} levels (max_depth)",
                    self.limits.max_depth
                ),
            ));
        }
        if self.stack.is_empty() && self.root_line.is_none() {
            self.root_line = Some(mark.line());
        }
        self.note_start(mark);
        Ok(())
    }

    fn set_key(&mut self, text: String, merge: bool, mark: Marker) -> Result<(), YamlError> {
        let duplicate = !merge
            && matches!(self.stack.last(), Some(Frame::Map { explicit, .. }) if explicit.contains(&text));
        if duplicate {
            // kubectl keeps the last value; say so instead of refusing the text.
            let path = self.path_to(&text);
            self.duplicates.push(DuplicateKey {
                path,
                line: mark.line(),
            });
        }
        if self.stack.len() == 1 && !merge && text == "items" {
            // A later `items` replaces an earlier one, and so do its lines.
            self.item_lines.clear();
        }
        let Some(Frame::Map { key, explicit, .. }) = self.stack.last_mut() else {
            return Err(YamlError::at(mark, "key outside a mapping"));
        };
        if !merge {
            explicit.insert(text.clone());
        }
        *key = Some(PendingKey {
            text,
            merge,
            line: mark.line(),
        });
        Ok(())
    }

    /// The path of `key` in the innermost mapping, from the document's root.
    fn path_to(&self, key: &str) -> Vec<PathSegment> {
        let parents = self.stack.len().saturating_sub(1);
        let mut segments = Vec::with_capacity(parents + 1);
        for frame in &self.stack[..parents] {
            match frame {
                Frame::Seq { items, .. } => segments.push(PathSegment::Index(items.len())),
                Frame::Map { key: Some(k), .. } => segments.push(PathSegment::Key(k.text.clone())),
                Frame::Map { key: None, .. } => {}
            }
        }
        segments.push(PathSegment::Key(key.to_owned()));
        segments
    }

    fn count(&mut self, nodes: usize, mark: Marker) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > self.limits.max_nodes {
            return Err(YamlError::at(
                mark,
                format!(
                    "more than {} nodes (alias expansion?)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    /// Places a finished node; `position` is where it is written (when positions are kept).
    fn push(
        &mut self,
        value: Value,
        anchor: usize,
        position: Option<Position>,
        mark: Marker,
    ) -> Result<(), YamlError> {
        if anchor != 0 {
            // The anchor keeps a copy: it is charged like the alias that will copy it again.
            let weight = weight(&value);
            self.count(weight, mark)?;
            self.anchors
                .insert(anchor, (value.clone(), weight, position.clone()));
        }
        match self.stack.last_mut() {
            None => {
                if self.root_line.is_none() {
                    self.root_line = Some(mark.line());
                }
                self.root = Some(value);
                self.root_position = position;
                Ok(())
            }
            Some(Frame::Seq { items, lines, .. }) => {
                items.push(value);
                if let Some(position) = position {
                    lines.push(position);
                }
                Ok(())
            }
            Some(Frame::Map {
                map, key, entries, ..
            }) => match key.take() {
                // Merged where it appears, as go-yaml v2 does (see the crate documentation).
                Some(PendingKey { merge: true, .. }) => {
                    merge_into(map, value, mark.line())?;
                    if let Some(position) = position {
                        merge_positions(entries, position);
                    }
                    Ok(())
                }
                Some(PendingKey { text, line, .. }) => {
                    if let Some(position) = position {
                        // An entry is where its key is written.
                        entries.insert(
                            text.clone(),
                            Position {
                                line,
                                children: position.children,
                            },
                        );
                    }
                    map.insert(text, value);
                    Ok(())
                }
                None => Err(YamlError::at(mark, "value without a key")),
            },
        }
    }
}

/// The positions of a `<<` merge, applied exactly as [`merge_into`] applies the values (which
/// has already checked their shape): over what is there, the first mapping listed winning.
fn merge_positions(entries: &mut BTreeMap<String, Position>, merged: Position) {
    let sources = match merged.children {
        Children::Map(source) => vec![source],
        Children::Seq(items) => items
            .into_iter()
            .filter_map(|item| match item.children {
                Children::Map(source) => Some(source),
                _ => None,
            })
            .collect(),
        Children::Scalar => Vec::new(),
    };
    for source in sources.into_iter().rev() {
        entries.extend(source);
    }
}

fn merge_into(map: &mut Map<String, Value>, merged: Value, line: usize) -> Result<(), YamlError> {
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
        map.extend(source);
    }
    Ok(())
}

fn merge_error(line: usize) -> YamlError {
    YamlError::at_line(
        line,
        "a `<<` merge key needs a mapping or a list of mappings",
    )
}

/// What a copy of `value` costs: one per node, and one per [`TEXT_PER_NODE`] bytes of its
/// strings and keys.
pub(crate) fn weight(value: &Value) -> usize {
    // Iterative so that a wide value never recurses deeply (depth is bounded anyway).
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        total = total.saturating_add(1);
        match v {
            Value::Array(items) => pending.extend(items.iter()),
            Value::Object(map) => {
                for (key, value) in map {
                    total = total.saturating_add(key.len() / TEXT_PER_NODE);
                    pending.push(value);
                }
            }
            Value::String(s) => total = total.saturating_add(s.len() / TEXT_PER_NODE),
            _ => {}
        }
    }
    total
}

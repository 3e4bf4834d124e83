//! DriftGuard's one YAML reader: a YAML (or JSON) stream → JSON documents, read exactly as
//! `kubectl` reads them, within budgets. Manifests, kustomizations and the configuration file all
//! go through [`parse_documents`].
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
//! document records a [`DuplicateKey`] (its path and line) so the reader can warn (or refuse).
//! `<<` merge keys are applied where they appear, as go-yaml v2 does: a key written after `<<`
//! wins over the merged one, a key written before it is overwritten, and among merged mappings
//! the first one listed wins. Anchors and aliases are expanded.
//!
//! # Budgets
//!
//! [`Limits`] bound one stream: the nesting depth, and a node budget charged *before* anything
//! is copied — every scalar and collection is a node, every alias costs the nodes it copies, an
//! anchor's own copy is charged too, and every 64 bytes of copied text weigh one more node. So
//! an alias bomb (of nodes or of long strings) is an error naming the budget and a line, and
//! the memory it can take is bounded by the budget, whatever the input.
//!
//! The default budget is 500,000 nodes: a hundred times the largest manifest of the charts we
//! test with, and what keeps the worst case small. The event parser buffers its tokens inside a
//! flow mapping (a JSON file is one), about 230 bytes per node — measured 600 MB for a 5 MiB
//! single-line JSON document of 2.6 million numbers; at 500,000 nodes that case stays near
//! 120 MB before it is refused.
//!
//! # Where things are written
//!
//! [`document_positions`] reads one document of a stream again and says on which line of the
//! stream each of its nodes is written ([`Position`]), built from the same events and rules as
//! the value — duplicate keys, `<<` merges and aliases included — so every path of the value has
//! a line. It is meant to be called rarely (for the few objects whose fields someone looks at),
//! not kept: see `driftguard-git`'s `Snapshot::field_lines`.
//!
//! # One path
//!
//! There is no second, lenient parser. A few layouts kubectl (go-yaml) accepts are rejected by
//! the strict event parser — a flow collection whose closing bracket sits left of its content,
//! at its key's indentation for example. Those are repaired in the text (the bracket is
//! indented like the line before it; leading spaces inside a flow collection are not content)
//! and the repaired text goes through the same strict parser, rules and budgets. What cannot be
//! repaired that way is an error with a line, never a differently built object.

mod builder;
mod scalar;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use serde_json::Value;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use crate::builder::Builder;

/// Limits applied while parsing one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of mappings and sequences allowed (the document's root is depth 1).
    pub max_depth: usize,
    /// Most nodes one stream may produce, aliases expanded (see the crate's "Budgets").
    pub max_nodes: usize,
}

/// One YAML document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 0-based index in the stream (empty documents count).
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The content.
    pub value: Value,
    /// When the root is a mapping with an `items` sequence: the start line of each item (used
    /// to give the items of a Kubernetes `List` their own line). Empty otherwise.
    pub item_lines: Vec<usize>,
    /// Mapping keys written twice (the last value was kept), in the order found.
    pub duplicates: Vec<DuplicateKey>,
}

/// Where one node of a document is written, and where its children are.
///
/// `line` is 1-based, a line of the whole stream (not of the document): for a mapping entry the
/// line of its key (`replicas:` in `replicas: 3`, `template:` above a block mapping), for a
/// sequence item (and the root) the line of its first token. A node copied by an alias (or
/// brought in by a `<<` merge) has the children of its anchor, at the lines where the anchored
/// value is written; the node itself is where the alias (or its key) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line in the stream.
    pub line: usize,
    /// The positions of a mapping's entries or a sequence's items.
    pub children: Children,
}

/// The children of a [`Position`], in step with the document's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Children {
    /// A scalar (or an alias to one): no children.
    Scalar,
    /// A mapping: each key (as written in JSON, exactly the value's keys) and where it is.
    Map(std::collections::BTreeMap<String, Position>),
    /// A sequence: each item, in order.
    Seq(Vec<Position>),
}

// === impl Position ===

impl Position {
    pub(crate) fn leaf(line: usize) -> Self {
        Self {
            line,
            children: Children::Scalar,
        }
    }

    /// The position of the mapping entry `key`, if this is a mapping that has it.
    pub fn entry(&self, key: &str) -> Option<&Position> {
        match &self.children {
            Children::Map(entries) => entries.get(key),
            _ => None,
        }
    }

    /// The position of the sequence item `index`, if this is a sequence that has it.
    pub fn item(&self, index: usize) -> Option<&Position> {
        match &self.children {
            Children::Seq(items) => items.get(index),
            _ => None,
        }
    }
}

/// One step of a [`DuplicateKey`]'s path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A mapping key (as written in JSON).
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A mapping key written twice in one mapping; as kubectl does, the last value was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Where the key is, from the root of the document; the last segment is the key.
    pub path: Vec<PathSegment>,
    /// 1-based line of the occurrence that was kept.
    pub line: usize,
}

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong (never quotes a value from the input).
    pub message: String,
    /// 0-based column (in characters) of a syntax error, for the repairs.
    col: Option<usize>,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_nodes: 500_000,
        }
    }
}

// === impl YamlError ===

impl YamlError {
    pub(crate) fn at(mark: Marker, message: impl Into<String>) -> Self {
        Self {
            line: Some(mark.line()),
            message: message.into(),
            col: None,
        }
    }

    pub(crate) fn at_line(line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
            col: None,
        }
    }

    /// Whether the event parser refused the text (rather than the reader refusing a value or
    /// a budget being exceeded).
    fn is_syntax(&self) -> bool {
        self.message.starts_with(SYNTAX)
    }
}

// === parsing ===

/// Prefix of the event parser's messages.
const SYNTAX: &str = "invalid YAML";

/// Parses every document of a YAML (or JSON) stream, within `limits`.
///
/// When the strict parser refuses a layout kubectl accepts (see the crate's "One path"), the
/// text is repaired and parsed strictly again. When that fails too, the error that stands is
/// the one found furthest into the stream: a budget exceeded after a repaired bracket is
/// reported as the budget, not as the bracket.
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Document>, YamlError> {
    parse(text, limits, None).map(|parsed| parsed.documents)
}

/// Reads the stream up to its document `index` (0-based, empty documents count, as
/// [`Document::index`]) and returns that document with the [`Position`] of every node of it;
/// `None` when the stream has fewer documents.
///
/// The same reader, rules, repairs and budgets as [`parse_documents`] for that document. The
/// documents before it are only scanned (their syntax checked, nothing built, so they spend no
/// budget), and the text after it is not read: a stream whose later documents are broken still
/// answers here.
pub fn document_positions(
    text: &str,
    limits: &Limits,
    index: usize,
) -> Result<Option<(Document, Position)>, YamlError> {
    let mut parsed = parse(text, limits, Some(index))?;
    let Some(position) = parsed.position.take() else {
        return Ok(None);
    };
    Ok(parsed
        .documents
        .pop()
        .filter(|d| d.index == index)
        .map(|d| (d, position)))
}

/// What one read of a stream produced.
struct Parsed {
    documents: Vec<Document>,
    /// With positions asked for: those of the last document (the one asked for).
    position: Option<Position>,
}

/// Reads `text`; with `positions_of`, only up to that document, keeping its positions.
fn parse(text: &str, limits: &Limits, positions_of: Option<usize>) -> Result<Parsed, YamlError> {
    // The event parser buffers a flow collection's tokens before the first node is counted:
    // bound them from the text first, without allocating.
    if let Some(line) = flow_tokens_over(text, limits.max_nodes) {
        return Err(YamlError {
            line: Some(line),
            message: format!(
                "more than {} nodes (flow collection separators)",
                limits.max_nodes
            ),
            col: None,
        });
    }
    match parse_strict_with(text, limits, positions_of) {
        Err(error) if error.is_syntax() => parse_repaired(text, limits, positions_of, error),
        other => other,
    }
}

/// The line where the count of flow-collection separators (`,` `[` `{` outside quoted
/// scalars and comments) passes `max`, if it does. An upper bound of the nodes a flow
/// collection can hold; commas inside block scalars are counted too, which only errs towards
/// refusing a text that is huge anyway.
fn flow_tokens_over(text: &str, max: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut count, mut line, mut i) = (0usize, 1usize, 0usize);
    // A quote opens a quoted scalar only where a token may start.
    let at_boundary = |i: usize| {
        i == 0
            || matches!(
                bytes[i - 1],
                b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':'
            )
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'#' if at_boundary(i) => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') if at_boundary(i) => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if quote == b'"' => i += 1,
                        b'\n' => line += 1,
                        b if b == quote => {
                            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b',' | b'[' | b'{' => {
                count += 1;
                if count > max {
                    return Some(line);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Most repairs tried on one stream before giving up.
const MAX_REPAIRS: usize = 64;

/// Re-parses strictly after repairing, in the text, each layout the strict parser refuses and
/// kubectl accepts (one at a time, where the parser reports it).
fn parse_repaired(
    text: &str,
    limits: &Limits,
    positions_of: Option<usize>,
    first: YamlError,
) -> Result<Parsed, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.replace("\r\n", "").contains('\r') {
        // A lone carriage return breaks lines for the parser but not here: the line numbers
        // would not match, so nothing is repaired.
        return Err(first);
    }
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let mut error = first.clone();
    let mut last_padded = None;
    for _ in 0..MAX_REPAIRS {
        if !repair(&mut lines, &error, &mut last_padded) {
            break;
        }
        // Repairs only add leading spaces: every line keeps its number.
        match parse_strict_with(&lines.concat(), limits, positions_of) {
            Ok(parsed) => return Ok(parsed),
            Err(next) => error = next,
        }
    }
    // A repair only ever changes text at or after the line the parser stopped at, so an error
    // further in is the one that stands (a budget exceeded, a later mistake).
    if error.line >= first.line {
        Err(error)
    } else {
        Err(first)
    }
}

/// Repairs the layout `error` reports, if it is one kubectl (go-yaml, like libyaml) accepts:
/// inside a flow collection, or inside a quoted scalar's continuation lines, indentation is not
/// content for go-yaml, while the strict parser wants such lines right of the enclosing block's
/// indentation. Only leading spaces of such lines are added, which changes no value. `false`
/// when `error` is not one of those.
fn repair(lines: &mut [String], error: &YamlError, last_padded: &mut Option<usize>) -> bool {
    let Some(index) = error.line.and_then(|l| l.checked_sub(1)) else {
        return false;
    };
    let Some(detail) = error.message.strip_prefix(SYNTAX) else {
        return false;
    };
    if detail.ends_with("invalid indentation")
        || detail.ends_with("invalid indentation in flow construct")
    {
        // The first token of line `index` is left of where the strict parser wants it (this is
        // only reported inside a flow collection). Indent it like the line before it, then one
        // column more each time it is reported again.
        let Some(current) = lines.get(index).map(|l| indentation(l)) else {
            return false;
        };
        let wanted = if *last_padded == Some(index) {
            current + 1
        } else {
            let before = lines[..index]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or(0, |l| indentation(l));
            before.max(current + 1)
        };
        *last_padded = Some(index);
        pad(&mut lines[index], wanted);
        return true;
    }
    if detail.ends_with("invalid indentation in quoted scalar") {
        // Reported at the scalar's opening quote: indent its continuation lines one column right
        // of the line it starts on (leading white space of those lines is folded away).
        *last_padded = None;
        let Some(col) = error.col else {
            return false;
        };
        let Some(end) = quoted_scalar_end(lines, index, col) else {
            return false;
        };
        let wanted = indentation(&lines[index]) + 1;
        let mut changed = false;
        for line in &mut lines[index + 1..=end] {
            if !line.trim().is_empty() && indentation(line) < wanted {
                pad(line, wanted);
                changed = true;
            }
        }
        return changed;
    }
    false
}

/// Adds leading spaces to `line` until its indentation is `wanted`.
fn pad(line: &mut String, wanted: usize) {
    let current = indentation(line);
    if wanted > current {
        line.insert_str(0, &" ".repeat(wanted - current));
    }
}

/// The index of the line on which the quoted scalar opening at character `col` of line `start`
/// closes.
fn quoted_scalar_end(lines: &[String], start: usize, col: usize) -> Option<usize> {
    let mut chars = lines.get(start)?.chars().skip(col);
    let quote = chars.next().filter(|c| *c == '"' || *c == '\'')?;
    let mut line = start;
    let mut rest: Vec<char> = chars.collect();
    loop {
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                '\\' if quote == '"' => i += 2,
                '\'' if quote == '\'' && rest.get(i + 1) == Some(&'\'') => i += 2,
                c if c == quote => return Some(line),
                _ => i += 1,
            }
        }
        line += 1;
        rest = lines.get(line)?.chars().collect();
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The strict path alone: the event parser, the scalar rules and the budgets, no repair.
#[cfg(test)]
fn parse_strict(text: &str, limits: &Limits) -> Result<Vec<Document>, YamlError> {
    parse_strict_with(text, limits, None).map(|parsed| parsed.documents)
}

/// The strict path; with `positions_of`, it stops after that document, keeping its positions.
fn parse_strict_with(
    text: &str,
    limits: &Limits,
    positions_of: Option<usize>,
) -> Result<Parsed, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut position = None;
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut builder: Option<Builder> = None;
    let mut nodes_before = 0usize;
    // Documents read so far (those skipped included), and whether the current one is skipped:
    // before the document whose positions are asked for, nothing is built.
    let mut index = 0usize;
    let mut skipping = false;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: Some(e.marker().line()),
            col: Some(e.marker().col()),
            message: format!("{SYNTAX}: {}", e.info()),
        })?;
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing => {}
            Event::DocumentStart => match positions_of {
                Some(wanted) if index < wanted => skipping = true,
                Some(_) => builder = Some(Builder::new(*limits, nodes_before).with_positions()),
                None => builder = Some(Builder::new(*limits, nodes_before)),
            },
            Event::DocumentEnd if skipping => {
                skipping = false;
                index += 1;
            }
            Event::DocumentEnd => {
                if let Some(done) = builder.take() {
                    nodes_before = done.nodes;
                    let built = done.finish();
                    documents.push(Document {
                        index,
                        line: built.line.unwrap_or(mark.line()),
                        value: built.value,
                        item_lines: built.item_lines,
                        duplicates: built.duplicates,
                    });
                    if positions_of == Some(index) {
                        // An empty document has no node: its only position is its line.
                        position = Some(
                            built
                                .position
                                .unwrap_or_else(|| Position::leaf(mark.line())),
                        );
                        break;
                    }
                    index += 1;
                }
            }
            _ if skipping => {}
            other => match builder.as_mut() {
                Some(b) => b.event(other, mark)?,
                None => return Err(YamlError::at(mark, "content outside a document")),
            },
        }
    }
    Ok(Parsed {
        documents,
        position,
    })
}

//! Field paths (contract §2.2): how a change names the place it happened, and how ignore rules
//! name places to skip.
//!
//! ```text
//! spec.template.spec.containers[name=web].env[name=LOG_LEVEL].value
//! metadata.labels["app.kubernetes.io/part-of"]
//! spec.ports[port=80,protocol=TCP].targetPort
//! ```

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// A keyed list item, its merge keys in schema order: `[name=web]`,
    /// `[containerPort=8080,protocol=TCP]`.
    Item(Vec<(String, String)>),
    /// A list index; only inside values that are reported whole, never as a change path.
    Index(usize),
}

/// A path to a field of a Kubernetes object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

/// A path that does not follow the grammar of contract §2.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path {path:?} at byte {at}: {reason}")]
pub struct ParsePathError {
    /// The text that was parsed.
    pub path: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// What was expected.
    pub reason: &'static str,
}

// === impl FieldPath ===

impl FieldPath {
    /// The empty path (whole-resource verdicts).
    pub fn root() -> Self {
        Self::default()
    }

    /// Builds a path from segments.
    pub fn from_segments(segments: Vec<Segment>) -> Self {
        Self { segments }
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// True for the empty path.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// A new path with `key` appended.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.segments.push(Segment::Key(key.into()));
        next
    }

    /// A new path with a keyed list item appended.
    pub fn item(&self, keys: Vec<(String, String)>) -> Self {
        let mut next = self.clone();
        next.segments.push(Segment::Item(keys));
        next
    }

    /// A new path with a list index appended.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.segments.push(Segment::Index(index));
        next
    }

    /// Appends a segment in place.
    pub fn push(&mut self, segment: Segment) {
        self.segments.push(segment);
    }

    /// Removes the last segment in place.
    pub fn pop(&mut self) -> Option<Segment> {
        self.segments.pop()
    }

    /// The map keys of the path, with list items skipped: `spec.template.spec.containers[name=x].image`
    /// → `["spec","template","spec","containers","image"]`. Used by classification.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Parses the text form. `*` is accepted as a whole name or value (for ignore rules).
    pub fn parse(text: &str) -> Result<Self, ParsePathError> {
        Parser { text, pos: 0 }.parse()
    }

    /// True when `pattern` (which may use `*` in a key or an item value, or `[*]`) matches
    /// this path or one of its ancestors. A pattern naming `a.b` matches `a.b.c`.
    pub fn matched_by(&self, pattern: &FieldPath) -> bool {
        if pattern.segments.len() > self.segments.len() {
            return false;
        }
        pattern
            .segments
            .iter()
            .zip(&self.segments)
            .all(|(p, s)| segment_matches(p, s))
    }
}

/// True when `text` matches `pattern`, where each `*` in the pattern stands for any run of
/// characters (possibly empty) and everything else matches itself, case-sensitively: `*` matches
/// anything, `*PASSWORD*` matches `DB_PASSWORD`, `web` matches only `web`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        return true;
    };
    for part in middle {
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn segment_matches(pattern: &Segment, actual: &Segment) -> bool {
    match (pattern, actual) {
        (Segment::Key(p), Segment::Key(a)) => wildcard_match(p, a),
        (Segment::Item(p), Segment::Item(a)) => {
            // `[*]` matches any item; otherwise every named key must match.
            if p.len() == 1 && p[0].0 == "*" {
                return true;
            }
            p.iter()
                .all(|(pk, pv)| a.iter().any(|(ak, av)| ak == pk && wildcard_match(pv, av)))
        }
        (Segment::Item(p), Segment::Index(_)) => p.len() == 1 && p[0].0 == "*",
        (Segment::Index(p), Segment::Index(a)) => p == a,
        _ => false,
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_raw_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b':' | b'-'))
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_plain_key(key) || key == "*" => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{}]", json_string(key))?,
                Segment::Item(keys) if keys.len() == 1 && keys[0].0 == "*" => f.write_str("[*]")?,
                Segment::Item(keys) => {
                    f.write_char('[')?;
                    for (j, (k, v)) in keys.iter().enumerate() {
                        if j > 0 {
                            f.write_char(',')?;
                        }
                        f.write_str(k)?;
                        f.write_char('=')?;
                        if is_raw_value(&v.replace('*', "x")) {
                            f.write_str(v)?;
                        } else {
                            f.write_str(&json_string(v))?;
                        }
                    }
                    f.write_char(']')?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for FieldPath {
    type Err = ParsePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for FieldPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Compares two scalar texts numerically when both are numbers, else as strings.
fn compare_values(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x
            .partial_cmp(&y)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

fn rank(segment: &Segment) -> u8 {
    match segment {
        Segment::Key(_) => 0,
        Segment::Item(_) => 1,
        Segment::Index(_) => 2,
    }
}

impl Ord for Segment {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Segment::Key(a), Segment::Key(b)) => compare_values(a, b),
            (Segment::Index(a), Segment::Index(b)) => a.cmp(b),
            (Segment::Item(a), Segment::Item(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let ord = ka.cmp(kb).then_with(|| compare_values(va, vb));
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for Segment {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldPath {
    /// Segment by segment, numbers numerically (contract §2.2).
    fn cmp(&self, other: &Self) -> Ordering {
        self.segments.cmp(&other.segments)
    }
}

impl PartialOrd for FieldPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// === Parser ===

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> ParsePathError {
        ParsePathError {
            path: self.text.to_owned(),
            at: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn parse(mut self) -> Result<FieldPath, ParsePathError> {
        let mut segments = Vec::new();
        if self.text.is_empty() {
            return Ok(FieldPath::root());
        }
        let mut first = true;
        while let Some(b) = self.peek() {
            match b {
                b'.' if !first => {
                    self.pos += 1;
                    segments.push(Segment::Key(self.name()?));
                }
                b'[' => {
                    self.pos += 1;
                    segments.push(self.bracket()?);
                }
                _ if first => segments.push(Segment::Key(self.name()?)),
                _ => return Err(self.err("expected '.' or '['")),
            }
            first = false;
        }
        Ok(FieldPath { segments })
    }

    fn name(&mut self) -> Result<String, ParsePathError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.err("expected a field name"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn json_string(&mut self) -> Result<String, ParsePathError> {
        // Find the closing quote, honouring backslash escapes, then let serde_json decode it.
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut i = self.pos + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let literal = &self.text[start..=i];
                    self.pos = i + 1;
                    return serde_json::from_str(literal)
                        .map_err(|_| self.err("invalid JSON string"));
                }
                _ => i += 1,
            }
        }
        Err(self.err("unterminated string"))
    }

    fn raw_value(&mut self) -> Result<String, ParsePathError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b':' | b'-' | b'*') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.err("expected a value"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), ParsePathError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn bracket(&mut self) -> Result<Segment, ParsePathError> {
        match self.peek() {
            Some(b'"') => {
                let key = self.json_string()?;
                self.expect(b']', "expected ']'")?;
                Ok(Segment::Key(key))
            }
            Some(b) if b.is_ascii_digit() => {
                let start = self.pos;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
                let index = self.text[start..self.pos]
                    .parse()
                    .map_err(|_| self.err("index too large"))?;
                self.expect(b']', "expected ']'")?;
                Ok(Segment::Index(index))
            }
            Some(b'*') if self.text.as_bytes().get(self.pos + 1) == Some(&b']') => {
                self.pos += 2;
                Ok(Segment::Item(vec![("*".to_owned(), "*".to_owned())]))
            }
            _ => {
                let mut keys = Vec::new();
                loop {
                    let key = self.name()?;
                    self.expect(b'=', "expected '='")?;
                    let value = if self.peek() == Some(b'"') {
                        self.json_string()?
                    } else {
                        self.raw_value()?
                    };
                    keys.push((key, value));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Segment::Item(keys));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let path = FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.to_string(), text);
    }

    #[test]
    fn contract_examples_round_trip() {
        for text in [
            "spec.replicas",
            "spec.template.spec.containers[name=web].image",
            "spec.template.spec.containers[name=web].env[name=LOG_LEVEL].value",
            "spec.template.spec.containers[name=web].ports[containerPort=8080,protocol=TCP]",
            "spec.ports[port=80,protocol=TCP].targetPort",
            "spec.template.spec.volumes[name=scratch]",
            "spec.template.spec.containers[name=web].volumeMounts[mountPath=/etc/web]",
            "metadata.labels.hotfix",
            "metadata.labels[\"app.kubernetes.io/part-of\"]",
            "data.retries",
            "data[\"app.properties\"]",
            "rules",
            "containers[name=*].image",
            "spec.args[0]",
            "x[name=\"a b\"]",
        ] {
            round_trip(text);
        }
    }

    #[test]
    fn built_paths_render_per_grammar() {
        let p = FieldPath::root()
            .key("metadata")
            .key("annotations")
            .key("example.com/owner");
        assert_eq!(p.to_string(), "metadata.annotations[\"example.com/owner\"]");
        let p = FieldPath::root()
            .key("spec")
            .key("containers")
            .item(vec![("name".into(), "has space".into())]);
        assert_eq!(p.to_string(), "spec.containers[name=\"has space\"]");
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "spec..replicas",
            ".spec",
            "spec[",
            "spec[name]",
            "spec[\"x]",
            "a b",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn sorts_numbers_numerically() {
        let a = FieldPath::parse("spec.ports[port=9090,protocol=TCP]").unwrap();
        let b = FieldPath::parse("spec.ports[port=10000,protocol=TCP]").unwrap();
        assert!(a < b);
        let c = FieldPath::parse("spec.replicas").unwrap();
        let d = FieldPath::parse("spec.template").unwrap();
        assert!(c < d);
    }

    #[test]
    fn wildcards_inside_names_and_values() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("*PASSWORD*", "DB_PASSWORD", true),
            ("*PASSWORD*", "PASSWORD", true),
            ("*PASSWORD*", "DB_PASSWORD_FILE", true),
            ("*PASSWORD*", "db_password", false),
            ("*_KEY", "API_KEY", true),
            ("*_KEY", "API_KEYS", false),
            ("API_*", "API_KEY", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("web", "web", true),
            ("web", "web-1", false),
        ] {
            assert_eq!(
                wildcard_match(pattern, text),
                expected,
                "{pattern} ~ {text}"
            );
        }
        let pattern =
            FieldPath::parse("spec.template.spec.containers[*].env[name=*PASSWORD*].value")
                .unwrap();
        assert_eq!(
            pattern.to_string(),
            "spec.template.spec.containers[*].env[name=*PASSWORD*].value"
        );
        let path =
            FieldPath::parse("spec.template.spec.containers[name=web].env[name=DB_PASSWORD].value")
                .unwrap();
        assert!(path.matched_by(&pattern));
        let other =
            FieldPath::parse("spec.template.spec.containers[name=web].env[name=LOG_LEVEL].value")
                .unwrap();
        assert!(!other.matched_by(&pattern));
    }

    #[test]
    fn wildcard_patterns_match() {
        let pattern = FieldPath::parse("spec.template.spec.containers[name=*].image").unwrap();
        let path = FieldPath::parse("spec.template.spec.containers[name=web].image").unwrap();
        assert!(path.matched_by(&pattern));
        let other = FieldPath::parse("spec.template.spec.containers[name=web].env").unwrap();
        assert!(!other.matched_by(&pattern));
        let prefix = FieldPath::parse("metadata.labels").unwrap();
        assert!(
            FieldPath::parse("metadata.labels.hotfix")
                .unwrap()
                .matched_by(&prefix)
        );
    }
}

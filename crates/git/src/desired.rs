//! One file's bytes → its [`DesiredObject`]s: UTF-8 and size checks, parsing, Secret redaction,
//! namespace defaulting, identity and hash.

use std::sync::Arc;

use driftguard_core::identity::group_of;
use driftguard_core::warning::{DUPLICATE_KEY, Warning};
use driftguard_core::{DesiredObject, ResourceKey, Source};
use serde_json::Value;

use crate::error::ParseError;
use crate::manifest::{self, DuplicateKey, ManifestObject};
use crate::namespacing;
use crate::options::ReadOptions;

/// Parses one manifest file. Any problem fails the whole file (its previous objects are then
/// kept by the snapshot builder); the error names the file and, when known, the line.
pub fn parse_file(
    bytes: &[u8],
    path: &str,
    commit: &str,
    options: &ReadOptions,
) -> Result<Vec<Arc<DesiredObject>>, ParseError> {
    if bytes.len() as u64 > options.max_file_size {
        return Err(ParseError::new(
            path,
            None,
            format!(
                "file is {} bytes, more than git.max_file_size ({})",
                bytes.len(),
                options.max_file_size
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        ParseError::new(path, Some(line), "file is not valid UTF-8")
    })?;
    parse_text(text, path, commit, Lines::FromFile, options)
}

/// Whether the lines of a stream are lines of a repository file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// The stream is the file itself: lines are kept.
    FromFile,
    /// The stream was generated (Kustomize output): its lines mean nothing to a reader.
    Generated,
}

/// Parses a YAML stream (a file, or Kustomize output) into objects whose source is `path`.
pub fn parse_text(
    text: &str,
    path: &str,
    commit: &str,
    lines: Lines,
    options: &ReadOptions,
) -> Result<Vec<Arc<DesiredObject>>, ParseError> {
    let known = |line: Option<usize>| line.filter(|_| lines == Lines::FromFile);
    let objects = manifest::parse_objects(text, &options.limits)
        .map_err(|e| ParseError::new(path, known(e.line), e.message))?;
    let mut out = Vec::with_capacity(objects.len());
    for object in objects {
        let line = object.line;
        let desired = to_desired(object, path, commit, lines, options)
            .map_err(|message| ParseError::new(path, known(Some(line)), message))?;
        let mut desired = desired;
        if lines == Lines::Generated {
            desired.source.line = None;
        }
        out.push(Arc::new(desired));
    }
    Ok(out)
}

fn to_desired(
    object: ManifestObject,
    path: &str,
    commit: &str,
    lines: Lines,
    options: &ReadOptions,
) -> Result<DesiredObject, String> {
    let ManifestObject {
        doc_index,
        line,
        mut value,
        duplicates,
    } = object;
    // Secret values are digested before anything else looks at the object.
    options.hasher.redact(&mut value);

    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if api_version.is_empty() || kind.is_empty() {
        return Err("apiVersion and kind must not be empty".to_owned());
    }
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(format!("{kind} has no metadata"));
    };
    let name = match metadata.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(format!("{kind} has no metadata.name")),
    };
    let group = group_of(&api_version).to_owned();
    let namespaced = namespacing::is_namespaced(options.scope.as_deref(), &group, &kind);
    let namespace = if namespaced {
        match metadata.get("namespace") {
            Some(Value::String(ns)) if !ns.is_empty() => ns.clone(),
            Some(Value::String(_)) | Some(Value::Null) | None => {
                metadata.insert(
                    "namespace".to_owned(),
                    Value::String(options.default_namespace.clone()),
                );
                options.default_namespace.clone()
            }
            Some(_) => return Err(format!("{kind} {name}: metadata.namespace is not a string")),
        }
    } else {
        // The API server ignores a namespace on a cluster-scoped object; so do we.
        metadata.remove("namespace");
        String::new()
    };
    let key = ResourceKey::new(group, kind, namespace, name);
    let source = Source {
        commit: commit.to_owned(),
        path: path.to_owned(),
        doc_index,
        line: Some(line),
        helm_release: None,
    };
    let warnings = duplicates
        .into_iter()
        .map(|duplicate| duplicate_warning(duplicate, path, lines))
        .collect();
    // Normalised and hashed here, once per changed file, so analyses only diff.
    Ok(DesiredObject::new(key, api_version, value, source).with_warnings(warnings))
}

/// The warning for a mapping key written twice: kubectl applies such a file with the last value,
/// and so does DriftGuard.
fn duplicate_warning(duplicate: DuplicateKey, path: &str, lines: Lines) -> Warning {
    let DuplicateKey { path: field, line } = duplicate;
    let what = if field.is_root() {
        "a mapping key of its List".to_owned()
    } else {
        format!("the mapping key {field}")
    };
    let place = match lines {
        Lines::FromFile => format!("{path} line {line}"),
        Lines::Generated => format!("the rendered output of {path}"),
    };
    Warning::new(
        field,
        DUPLICATE_KEY,
        format!("{place} repeats {what}; the last value is kept, as kubectl does"),
    )
}

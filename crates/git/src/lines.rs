//! Where in its file Git writes each field of a desired object: the line a dashboard links to.
//!
//! Nothing is kept per object for this. A snapshot only knows where its files can be read
//! again ([`SourceFiles`]: the bare clone, or the directory of PATH mode); when a record with
//! changes is built, [`Snapshot::field_lines`] reads that one file again (the blob at the
//! object's own commit, so an object kept from a file that now fails is read as it was), reads
//! the object's document with [`driftguard_yaml::document_positions`] (the same reader, rules
//! and budgets that built the object, stopping after that document) and walks each changed path
//! through the object and the positions together. A small cache keeps the answers, so a drifted
//! resource evaluated again and again (every status update of a scaled Deployment) reads its
//! file once.
//!
//! A path is walked the way the engine names it (contract §2.2): map keys, keyed list items
//! matched by their merge-key values on the desired object (a defaulted `protocol` is `TCP`),
//! indexes. The line is the deepest node of the path Git writes: a field's own key line, or for
//! a field Git does not set (an `added` change) the line of its nearest ancestor Git sets. A
//! Secret's `data.<key>` written under `stringData` is found there (the reader folds
//! `stringData` into `data`, and it wins, as on the API server).
//!
//! Lines are only known for files read as they are: Kustomize and Helm output is generated text
//! whose lines are no file's lines, so their objects have none. Secret values are never kept:
//! the text read again is dropped with the call, the cache holds lines only.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use driftguard_core::secret::is_core_secret;
use driftguard_core::{DesiredObject, FieldPath, Segment};
use driftguard_yaml::{Document, Limits, Position, document_positions};
use serde_json::Value;

use crate::options::ReadOptions;
use crate::snapshot::{FileKind, Snapshot, content_id};

/// Answers kept per generation of the cache (two generations: at most twice this many).
const CACHE_ENTRIES: usize = 4096;

/// Where a snapshot's files can be read again, to find the line of a field. Cheap to clone
/// (shared); the default knows no files.
#[derive(Clone, Default)]
pub struct SourceFiles {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    origin: Origin,
    limits: Limits,
    max_file_size: u64,
    cache: Mutex<Cache>,
    /// A directory that must outlive the snapshot (`check`'s one-shot clone).
    _keep: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A bare clone: a file is read at the commit its object was read at.
    Repository(PathBuf),
    /// PATH mode: the file on disk, if its bytes are still those the snapshot read.
    Directory(PathBuf),
}

/// Lines found, by a 128-bit hash of the object (its file's content and its place in it) and
/// the path: about 40 bytes an answer, whatever the path. Two generations: when the current one
/// is full it becomes the previous one, so what is asked again stays.
#[derive(Default)]
struct Cache {
    current: HashMap<u128, Option<usize>>,
    previous: HashMap<u128, Option<usize>>,
}

// === impl SourceFiles ===

impl SourceFiles {
    /// The files of the bare repository at `dir`, read at each object's commit.
    pub(crate) fn repository(dir: &Path, options: &ReadOptions) -> Self {
        Self::new(Origin::Repository(dir.to_path_buf()), options, None)
    }

    /// The files below `root`, read as they are on disk.
    pub(crate) fn directory(root: &Path, options: &ReadOptions) -> Self {
        Self::new(Origin::Directory(root.to_path_buf()), options, None)
    }

    /// The same files, with `dir` kept (not removed) for as long as they may be read.
    pub(crate) fn keeping(self, dir: tempfile::TempDir) -> Self {
        match self.inner {
            Some(inner) => Self {
                inner: Some(Arc::new(Inner {
                    origin: inner.origin.clone(),
                    limits: inner.limits,
                    max_file_size: inner.max_file_size,
                    cache: Mutex::new(Cache::default()),
                    _keep: Some(dir),
                })),
            },
            None => self,
        }
    }

    fn new(origin: Origin, options: &ReadOptions, keep: Option<tempfile::TempDir>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                origin,
                limits: options.limits,
                max_file_size: options.max_file_size,
                cache: Mutex::new(Cache::default()),
                _keep: keep,
            })),
        }
    }
}

impl PartialEq for SourceFiles {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref().map(|i| &i.origin) == other.inner.as_ref().map(|i| &i.origin)
    }
}

impl fmt::Debug for SourceFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("SourceFiles(none)"),
            Some(inner) => write!(f, "SourceFiles({:?})", inner.origin),
        }
    }
}

// === impl Cache ===

impl Cache {
    /// The key of `field` of `object`: two SipHash values of both (fixed keys: the same in
    /// every process; a collision among a few thousand answers is about 1 in 10^31).
    fn key(object: &str, field: &FieldPath) -> u128 {
        let half = |seed: u8| {
            let mut hasher = DefaultHasher::new();
            (seed, object, field).hash(&mut hasher);
            hasher.finish()
        };
        (u128::from(half(0)) << 64) | u128::from(half(1))
    }

    fn get(&self, key: u128) -> Option<Option<usize>> {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
    }

    fn insert(&mut self, key: u128, line: Option<usize>) {
        if self.current.len() >= CACHE_ENTRIES {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, line);
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// For each of `fields` (paths of `desired`, as the engine reports them), the 1-based line
    /// of its file where Git writes the value — or, for a field Git does not set, the line of
    /// its nearest ancestor Git sets. `None` for every field when the object's lines are not
    /// known (Kustomize or Helm output, a file that cannot be read again or changed on disk).
    ///
    /// Reads the object's file again on a cache miss (see the module documentation).
    pub fn field_lines(
        &self,
        desired: &DesiredObject,
        fields: &[&FieldPath],
    ) -> Vec<Option<usize>> {
        let unknown = vec![None; fields.len()];
        let Some(inner) = &self.sources.inner else {
            return unknown;
        };
        let source = &desired.source;
        let (Some(line), None) = (source.line, &source.helm_release) else {
            return unknown;
        };
        let Some(entry) = self.files.get(&source.path) else {
            return unknown;
        };
        if entry.kind != FileKind::Manifest {
            return unknown;
        }
        let content = match &inner.origin {
            Origin::Repository(_) => source.commit.as_str(),
            // The file on disk has no history: only a file whose objects are its current bytes.
            Origin::Directory(_) if entry.error.is_none() => entry.blob_id.as_str(),
            Origin::Directory(_) => return unknown,
        };
        let object = format!("{content}\0{}\0{}\0{line}", source.path, source.doc_index);
        let keys: Vec<u128> = fields
            .iter()
            .map(|field| Cache::key(&object, field))
            .collect();

        let mut found: Vec<Option<Option<usize>>> = match inner.cache.lock() {
            Ok(cache) => keys.iter().map(|key| cache.get(*key)).collect(),
            Err(_) => vec![None; fields.len()],
        };
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
        // What is not cached is read again; what cannot be read stays unknown.
        let cached =
            |found: Vec<Option<Option<usize>>>| found.into_iter().map(Option::flatten).collect();
        let Some(text) = inner.read(&source.commit, &source.path, &entry.blob_id) else {
            return cached(found);
        };
        let located = document_positions(&text, &inner.limits, source.doc_index)
            .ok()
            .flatten();
        drop(text);
        let Some((document, position)) = located else {
            return cached(found);
        };
        let Some(root) = object_in(&document, &position, desired, line) else {
            return cached(found);
        };
        let object = desired.object.value();
        let secret = is_core_secret(&object);
        for (slot, field) in found.iter_mut().zip(fields) {
            if slot.is_none() {
                *slot = Some(Some(line_of(&object, root, field, secret)));
            }
        }
        if let Ok(mut cache) = inner.cache.lock() {
            for (line, key) in found.iter().zip(&keys) {
                if let Some(line) = line {
                    cache.insert(*key, *line);
                }
            }
        }
        found.into_iter().flatten().collect()
    }
}

// === impl Inner ===

impl Inner {
    /// The text of `path`: at `commit` in the repository, or on disk when its bytes are still
    /// `content_id`.
    fn read(&self, commit: &str, path: &str, blob_id: &str) -> Option<String> {
        let bytes = match &self.origin {
            Origin::Repository(dir) => {
                let repo = git2::Repository::open_bare(dir).ok()?;
                let oid = git2::Oid::from_str(commit).ok()?;
                let tree = repo.find_commit(oid).ok()?.tree().ok()?;
                let id = tree.get_path(Path::new(path)).ok()?.id();
                let (size, _) = repo.odb().ok()?.read_header(id).ok()?;
                if size as u64 > self.max_file_size {
                    return None;
                }
                repo.find_blob(id).ok()?.content().to_vec()
            }
            Origin::Directory(root) => {
                let file = crate::sandbox::under(root, path);
                let size = std::fs::symlink_metadata(&file).ok()?.len();
                if size > self.max_file_size {
                    return None;
                }
                let bytes = std::fs::read(&file).ok()?;
                if content_id(&bytes) != blob_id {
                    return None;
                }
                bytes
            }
        };
        String::from_utf8(bytes).ok()
    }
}

/// The position of `desired` in its document: the document's root, or the item of a `List`
/// whose identity is the object's (its start line telling items of the same name apart).
fn object_in<'p>(
    document: &Document,
    position: &'p Position,
    desired: &DesiredObject,
    line: usize,
) -> Option<&'p Position> {
    let same = |value: &Value| {
        value.get("kind").and_then(Value::as_str) == Some(desired.key.kind.as_str())
            && value.pointer("/metadata/name").and_then(Value::as_str)
                == Some(desired.key.name.as_str())
    };
    let value = &document.value;
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if !is_list {
        return (same(value) && position.line == line).then_some(position);
    }
    let items = value.get("items").and_then(Value::as_array)?;
    let listed = position.entry("items")?;
    items.iter().enumerate().find_map(|(i, item)| {
        let at = listed.item(i)?;
        (same(item) && at.line == line).then_some(at)
    })
}

/// The line of the deepest node of `field` that Git writes, walking the desired object (for
/// list items' merge keys, as the engine matched them) and the positions together.
fn line_of(object: &Value, root: &Position, field: &FieldPath, secret: bool) -> usize {
    let segments = field.segments();
    let (mut value, mut at) = (object, root);
    let mut i = 0;
    while let Some(segment) = segments.get(i) {
        let next = match segment {
            Segment::Key(key) if secret && i == 0 && key == "data" => {
                // The reader folds `stringData` into `data`; where both write a key,
                // `stringData` wins (as on the API server), so that is where it is written.
                let map = at.entry("data").or_else(|| at.entry("stringData"));
                match (value.get("data"), segments.get(1)) {
                    (Some(data), Some(Segment::Key(name))) => {
                        let written = at
                            .entry("stringData")
                            .and_then(|s| s.entry(name))
                            .or_else(|| at.entry("data").and_then(|d| d.entry(name)));
                        match (data.get(name), written) {
                            (Some(inner), Some(position)) => {
                                i += 1;
                                Some((inner, position))
                            }
                            _ => map.map(|position| (data, position)),
                        }
                    }
                    (Some(data), _) => map.map(|position| (data, position)),
                    (None, _) => None,
                }
            }
            Segment::Key(key) => value.get(key).zip(at.entry(key)),
            Segment::Item(keys) => value.as_array().and_then(|items| {
                let index = items.iter().position(|item| item_matches(item, keys))?;
                items.get(index).zip(at.item(index))
            }),
            Segment::Index(index) => value.get(index).zip(at.item(*index)),
        };
        let Some((inner, position)) = next else {
            break;
        };
        value = inner;
        at = position;
        i += 1;
    }
    at.line
}

/// True when `item` has every merge-key value of a path's `[k=v,…]` (by text: `80` and `"80"`
/// key the same port; an absent `protocol` is `TCP`, as the engine keys it).
fn item_matches(item: &Value, keys: &[(String, String)]) -> bool {
    let Some(map) = item.as_object() else {
        return false;
    };
    keys.iter().all(|(key, text)| match map.get(key) {
        Some(Value::String(s)) => s == text,
        Some(Value::Number(n)) => text.parse::<serde_json::Number>().is_ok_and(|t| t == *n),
        Some(Value::Bool(b)) => text == if *b { "true" } else { "false" },
        None => key == "protocol" && text == "TCP",
        Some(_) => false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use driftguard_core::{ResourceKey, SecretHasher};

    use super::*;
    use crate::load_local;

    /// A directory holding `files`, read in PATH mode.
    fn snapshot(files: &[(&str, &str)]) -> (tempfile::TempDir, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        let options = ReadOptions::from_config(
            &driftguard_config::GitConfig::default(),
            "default",
            SecretHasher::new(vec![7; 32]),
        )
        .unwrap();
        let snapshot = load_local(dir.path(), &options, None).unwrap();
        (dir, snapshot)
    }

    /// The line of each `path` of the object `kind/name` (namespace `default`).
    fn lines(
        snapshot: &Snapshot,
        group: &str,
        kind: &str,
        name: &str,
        paths: &[&str],
    ) -> Vec<Option<usize>> {
        let key = ResourceKey::new(group, kind, "default", name);
        let desired = snapshot.get(&key).unwrap();
        let fields: Vec<FieldPath> = paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let refs: Vec<&FieldPath> = fields.iter().collect();
        snapshot.field_lines(desired, &refs)
    }

    const DEPLOYMENT: &str = "\
# the web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    \"app.kubernetes.io/name\": web
    tier.x: front
spec:
  replicas: 3
  selector: {matchLabels: {app: web},
    other: x}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: side
        image: busybox
      - name: web
        image: nginx:1.27
        env:
        - name: LOG_LEVEL
          value: info
        ports:
        - containerPort: 8080
        - containerPort: 8443
          protocol: UDP
";

    #[test]
    fn fields_have_the_line_of_their_key_through_maps_keyed_lists_and_quoted_keys() {
        let (_dir, snap) = snapshot(&[("apps/web.yaml", DEPLOYMENT)]);
        let found = lines(
            &snap,
            "apps",
            "Deployment",
            "web",
            &[
                "",
                "spec.replicas",
                "metadata.labels[\"app.kubernetes.io/name\"]",
                "metadata.labels[\"tier.x\"]",
                "spec.template.spec.containers[name=web].image",
                "spec.template.spec.containers[name=side].image",
                "spec.template.spec.containers[name=web].env[name=LOG_LEVEL].value",
                "spec.template.spec.containers[name=web].ports[containerPort=8080,protocol=TCP]",
                "spec.template.spec.containers[name=web].ports[containerPort=8443,protocol=UDP]",
                "spec.selector.other",
                "spec.template.metadata.labels.app",
            ],
        );
        assert_eq!(
            found,
            [2, 10, 7, 8, 21, 19, 24, 26, 27, 12, 15].map(Some).to_vec()
        );
    }

    #[test]
    fn a_field_git_does_not_set_has_the_line_of_its_nearest_ancestor() {
        let (_dir, snap) = snapshot(&[("apps/web.yaml", DEPLOYMENT)]);
        let found = lines(
            &snap,
            "apps",
            "Deployment",
            "web",
            &[
                "metadata.labels.hotfix",
                "metadata.annotations[\"a.b/c\"]",
                "spec.template.spec.containers[name=web].env[name=NEWVAR]",
                "spec.template.spec.containers[name=gone].image",
                "spec.template.spec.containers[name=web].resources.limits.cpu",
                "spec.strategy",
                // Namespace defaulting is not in the file either.
                "metadata.namespace",
            ],
        );
        assert_eq!(found, [6, 4, 22, 17, 20, 9, 4].map(Some).to_vec());
    }

    #[test]
    fn lines_are_lines_of_the_file_in_multi_document_files_and_lists() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {k: '1'}
---
# second
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
data:
  k: '2'
  app.properties: |
    x=1
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
  data:
    k: '3'
- {apiVersion: v1, kind: ConfigMap, metadata: {name: d}, data: {k: '4'}}
";
        let (_dir, snap) = snapshot(&[("cm.yaml", text)]);
        assert_eq!(lines(&snap, "", "ConfigMap", "a", &["data.k"]), [Some(4)]);
        assert_eq!(
            lines(
                &snap,
                "",
                "ConfigMap",
                "b",
                &["data.k", "data[\"app.properties\"]", ""]
            ),
            [Some(12), Some(13), Some(7)]
        );
        assert_eq!(
            lines(&snap, "", "ConfigMap", "c", &["data.k", ""]),
            [Some(23), Some(19)]
        );
        assert_eq!(lines(&snap, "", "ConfigMap", "d", &["data.k"]), [Some(24)]);
    }

    #[test]
    fn merged_and_aliased_values_have_the_line_where_they_are_written() {
        let text = "\
x-labels: &labels
  app: web
  tier: db
apiVersion: v1
kind: ConfigMap
metadata:
  name: m
  labels:
    <<: *labels
    tier: cache
  annotations: *labels
data: {k: v}
";
        let (_dir, snap) = snapshot(&[("m.yaml", text)]);
        assert_eq!(
            lines(
                &snap,
                "",
                "ConfigMap",
                "m",
                &[
                    "metadata.labels.app",
                    "metadata.labels.tier",
                    "metadata.annotations.app",
                    "metadata.annotations"
                ]
            ),
            [Some(2), Some(10), Some(2), Some(11)]
        );
    }

    #[test]
    fn secret_data_is_found_where_string_data_writes_it_and_no_value_is_kept() {
        let text = "\
apiVersion: v1
kind: Secret
metadata:
  name: s
data:
  a: YQ==
  b: Yg==
stringData:
  b: plain-b
  c: plain-c
";
        let (_dir, snap) = snapshot(&[("s.yaml", text)]);
        assert_eq!(
            lines(
                &snap,
                "",
                "Secret",
                "s",
                &["data.a", "data.b", "data.c", "data.d", "data"]
            ),
            [Some(6), Some(9), Some(10), Some(5), Some(5)]
        );
        let cache = snap.sources.inner.as_ref().unwrap().cache.lock().unwrap();
        let kept = format!("{:?}", cache.current);
        assert!(!kept.contains("plain") && !kept.contains("YQ=="), "{kept}");
    }

    #[test]
    fn a_file_changed_on_disk_or_rendered_output_has_no_lines() {
        let (dir, snap) = snapshot(&[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: '1'}\n",
        )]);
        std::fs::write(
            dir.path().join("cm.yaml"),
            "\n\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: '1'}\n",
        )
        .unwrap();
        assert_eq!(lines(&snap, "", "ConfigMap", "a", &["data.k"]), [None]);
        // Objects without a line (Kustomize, Helm output) have none for their fields either.
        let key = ResourceKey::new("", "ConfigMap", "default", "a");
        let mut desired = snap.get(&key).unwrap().clone();
        desired.source.line = None;
        let field = FieldPath::parse("data.k").unwrap();
        assert_eq!(snap.field_lines(&desired, &[&field]), [None]);
        // A snapshot that knows no files.
        assert_eq!(Snapshot::default().field_lines(&desired, &[&field]), [None]);
    }

    #[test]
    fn answers_are_cached_per_object_and_path() {
        let (dir, snap) = snapshot(&[("apps/web.yaml", DEPLOYMENT)]);
        assert_eq!(
            lines(&snap, "apps", "Deployment", "web", &["spec.replicas"]),
            [Some(10)]
        );
        // Gone from disk: the cached answer stands, a new path cannot be read.
        std::fs::remove_file(dir.path().join("apps/web.yaml")).unwrap();
        assert_eq!(
            lines(
                &snap,
                "apps",
                "Deployment",
                "web",
                &["spec.replicas", "spec.selector"]
            ),
            [Some(10), None]
        );
        assert_eq!(
            lines(&snap, "apps", "Deployment", "web", &["spec.replicas"]),
            [Some(10)]
        );
    }
}

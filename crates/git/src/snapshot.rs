//! Snapshots of the desired state, built incrementally from a tree of files.
//!
//! A snapshot remembers, per file, the content id it was built from (the Git blob id, or a
//! SHA-256 of the bytes in PATH mode) and the objects it produced. Building the snapshot of a
//! new commit re-parses only the files whose id changed and reuses the rest. A file that no
//! longer parses keeps the objects of its last good version (contract §4); its error is
//! reported in [`Snapshot::errors`] for as long as it stays broken.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use driftguard_core::{DesiredObject, ResourceKey};
use sha2::{Digest, Sha256};

use crate::desired::{self, Lines};
use crate::error::{Error, ParseError, Result};
use crate::helm;
use crate::lines::SourceFiles;
use crate::options::{Budgets, ReadOptions};
use crate::sandbox;
use crate::select::{KustomizeDir, Listed};

/// The desired state at one commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Full commit SHA; `"working-tree"` in PATH mode; `""` before the first sync.
    pub commit: String,
    /// Every object, by identity (the first definition when one is defined twice).
    pub objects: BTreeMap<ResourceKey, Arc<DesiredObject>>,
    /// Files that failed (with their last good objects still in `objects`) and duplicates.
    pub errors: Vec<ParseError>,
    /// What each file (or Kustomize directory, keyed by its kustomization file) contributed.
    pub files: BTreeMap<String, FileEntry>,
    /// What building this snapshot cost.
    pub stats: BuildStats,
    /// Where its files can be read again, for the line of a field
    /// ([`Snapshot::field_lines`]); nothing is kept per object for that.
    pub sources: SourceFiles,
}

/// What one file contributed to a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    /// Git blob id (manifest file), a tree-derived fingerprint (Kustomize directory in Git), or
    /// `sha256:<hex>` of the bytes (PATH mode). Empty when unknown: always re-read.
    pub blob_id: String,
    /// Whether the entry is a plain file or a rendered Kustomize directory.
    pub kind: FileKind,
    /// The objects of the file's last good version, in document order (duplicates included).
    pub objects: Vec<Arc<DesiredObject>>,
    /// Why the current version failed, if it did.
    pub error: Option<ParseError>,
}

/// The two kinds of [`FileEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A `.yaml`/`.yml`/`.json` file read on its own.
    Manifest,
    /// A Kustomize directory rendered as a whole.
    Kustomization,
    /// A Helm release: its chart rendered with its values.
    HelmRelease,
}

/// Counters of one snapshot build (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Manifest files and Kustomize directories selected.
    pub files_listed: usize,
    /// Files whose bytes were read.
    pub files_read: usize,
    /// Files parsed (read and changed since the previous snapshot).
    pub files_parsed: usize,
    /// Files whose previous entry was reused without parsing.
    pub files_reused: usize,
    /// Kustomize directories rendered.
    pub kustomizations_rendered: usize,
    /// Helm releases rendered (each rendered twice, counted once).
    pub releases_rendered: usize,
    /// Objects in the snapshot.
    pub objects: usize,
}

/// What a snapshot build has spent of its [`Budgets`].
#[derive(Debug, Clone)]
pub(crate) struct Spent {
    budgets: Budgets,
    commit: String,
    started: Instant,
    /// Bytes read or written out.
    pub bytes: u64,
    /// `git.max_file_size`, for files written out for rendering.
    pub max_file_size: u64,
}

impl Spent {
    pub(crate) fn new(budgets: Budgets, max_file_size: u64, commit: &str) -> Self {
        Self {
            budgets,
            commit: commit.to_owned(),
            started: Instant::now(),
            bytes: 0,
            max_file_size,
        }
    }

    fn over(&self, budget: &'static str, limit: u64, path: &str) -> Error {
        Error::Budget {
            budget,
            limit,
            path: path.to_owned(),
            commit: self.commit.clone(),
        }
    }

    /// Counts `bytes` more, read or written for `path`.
    pub(crate) fn add_bytes(&mut self, bytes: u64, path: &str) -> Result<()> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.budgets.max_total_bytes {
            return Err(self.over("git.max_total_bytes", self.budgets.max_total_bytes, path));
        }
        Ok(())
    }

    /// Fails once the deadline has passed (`path`: where the build was).
    pub(crate) fn check_deadline(&self, path: &str) -> Result<()> {
        if self.started.elapsed() > self.budgets.snapshot_timeout {
            return Err(self.over(
                "git.snapshot_timeout",
                self.budgets.snapshot_timeout.as_secs(),
                path,
            ));
        }
        Ok(())
    }

    /// Fails when `entries` tree entries visited are over budget.
    pub(crate) fn check_entries(&self, entries: u64, path: &str) -> Result<()> {
        if entries > self.budgets.max_tree_entries {
            return Err(self.over("git.max_tree_entries", self.budgets.max_tree_entries, path));
        }
        Ok(())
    }

    /// Fails when `files` files listed are over budget.
    pub(crate) fn check_files(&self, files: u64, path: &str) -> Result<()> {
        if files > self.budgets.max_files {
            return Err(self.over("git.max_files", self.budgets.max_files, path));
        }
        Ok(())
    }
}

/// What changed between two snapshots, for re-evaluating only those resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// Resources only in the newer snapshot.
    pub added: Vec<ResourceKey>,
    /// Resources in both whose content, API version or source location differs.
    pub changed: Vec<ResourceKey>,
    /// Resources only in the older snapshot.
    pub removed: Vec<ResourceKey>,
}

/// A source of files: a Git tree or a directory on disk.
pub(crate) trait Tree {
    /// Every regular file (symlinks and submodules are not followed), within the entry, file
    /// and time budgets of `spent`.
    fn files(&mut self, spent: &mut Spent) -> Result<Vec<Listed>>;
    /// The bytes of `file`, refusing files larger than `max_size`.
    fn read(&mut self, file: &Listed, max_size: u64) -> Result<Vec<u8>, ParseError>;
    /// A fingerprint that changes whenever the rendering of `dir` may change; `None` = always
    /// render.
    fn kustomize_fingerprint(&mut self, dir: &KustomizeDir) -> Option<String>;
    /// The kustomization file of the repository directory `dir` (`""` = root) and its text, if
    /// `dir` is a Kustomize directory.
    /// `Err` when it exists but cannot be checked (too large, a link leaving the repository).
    fn kustomization(&mut self, dir: &str) -> crate::sandbox::KustomizationText;
    /// Writes the files below each of `dirs` into `into` (same relative paths), counting
    /// their bytes in `spent`. A whole-snapshot failure (budget) is the outer error; a refusal
    /// of this rendering only (a symlink leaving the repository) the inner one.
    fn materialise(
        &mut self,
        dirs: &[String],
        into: &Path,
        spent: &mut Spent,
    ) -> Result<Result<(), ParseError>>;
    /// A fingerprint of everything below `dir` (`""` = root); `None` = unknown, always render.
    fn dir_fingerprint(&mut self, dir: &str) -> Option<String>;
    /// The regular file at `path`, if there is one (a Helm release's values file, which may lie
    /// outside `git.path`).
    fn lookup(&mut self, path: &str) -> Option<Listed>;
    /// Commit to record in the objects' sources.
    fn commit(&self) -> &str;
}

// === impl Snapshot ===

impl Snapshot {
    /// Looks up one object.
    pub fn get(&self, key: &ResourceKey) -> Option<&DesiredObject> {
        self.objects.get(key).map(Arc::as_ref)
    }

    /// True once a snapshot has been built (a commit is known).
    pub fn is_built(&self) -> bool {
        !self.commit.is_empty()
    }

    /// What changed from `self` to `newer`.
    pub fn diff(&self, newer: &Snapshot) -> SnapshotDiff {
        let mut diff = SnapshotDiff::default();
        for (key, object) in &newer.objects {
            match self.objects.get(key) {
                None => diff.added.push(key.clone()),
                Some(old) if !Arc::ptr_eq(old, object) && differs(old, object) => {
                    diff.changed.push(key.clone());
                }
                Some(_) => {}
            }
        }
        diff.removed = self
            .objects
            .keys()
            .filter(|key| !newer.objects.contains_key(*key))
            .cloned()
            .collect();
        diff
    }
}

fn differs(a: &DesiredObject, b: &DesiredObject) -> bool {
    a.hash != b.hash
        || a.api_version != b.api_version
        || a.source.path != b.source.path
        || a.source.doc_index != b.source.doc_index
}

// === impl FileEntry ===

impl FileEntry {
    /// The identities of this file's objects.
    pub fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.objects.iter().map(|o| &o.key)
    }
}

// === impl SnapshotDiff ===

impl SnapshotDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// Every key touched, in order: added, changed, removed.
    pub fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.added
            .iter()
            .chain(self.changed.iter())
            .chain(self.removed.iter())
    }
}

// === building ===

/// Builds the snapshot of `tree`, reusing what `previous` already parsed.
pub(crate) fn build(
    tree: &mut dyn Tree,
    options: &ReadOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot> {
    let commit = tree.commit().to_owned();
    let mut spent = Spent::new(options.budgets, options.max_file_size, &commit);
    let plan = options.selection.plan(tree.files(&mut spent)?);
    let mut stats = BuildStats {
        files_listed: plan.files.len() + plan.kustomizations.len() + plan.charts.len(),
        ..BuildStats::default()
    };
    let prev = |path: &str| previous.and_then(|p| p.files.get(path));
    let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();

    // Read every changed file here (the tree is not shared between threads), then parse them
    // on every core: a check's snapshot is mostly YAML parsing.
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(plan.files.len());
    for file in &plan.files {
        let old = prev(&file.path);
        if let (Some(id), Some(old)) = (&file.id, old)
            && old.blob_id == *id
            && old.kind == FileKind::Manifest
        {
            stats.files_reused += 1;
            steps.push(Step::Done(old.clone()));
            continue;
        }
        spent.check_deadline(&file.path)?;
        let bytes = tree.read(file, options.max_file_size);
        if let Ok(bytes) = &bytes {
            stats.files_read += 1;
            spent.add_bytes(bytes.len() as u64, &file.path)?;
        }
        match bytes {
            Ok(bytes) => {
                let id = file.id.clone().unwrap_or_else(|| content_id(&bytes));
                if let Some(old) = old
                    && old.blob_id == id
                    && old.kind == FileKind::Manifest
                {
                    stats.files_reused += 1;
                    steps.push(Step::Done(old.clone()));
                    continue;
                }
                stats.files_parsed += 1;
                steps.push(Step::Parse(ToParse {
                    path: &file.path,
                    id,
                    bytes,
                    old,
                }));
            }
            Err(error) => steps.push(Step::Done(entry(
                file.id.clone().unwrap_or_default(),
                FileKind::Manifest,
                Err(error),
                old,
            ))),
        }
    }
    let parsed = parse_all(steps, &commit, options, &spent)?;
    for (file, parsed) in plan.files.iter().zip(parsed) {
        files.insert(file.path.clone(), parsed);
    }

    for dir in &plan.kustomizations {
        let old = prev(&dir.file);
        let fingerprint = tree.kustomize_fingerprint(dir);
        if let (Some(fp), Some(old)) = (&fingerprint, old)
            && old.blob_id == *fp
            && old.kind == FileKind::Kustomization
        {
            stats.files_reused += 1;
            files.insert(dir.file.clone(), old.clone());
            continue;
        }
        spent.check_deadline(&dir.file)?;
        stats.kustomizations_rendered += 1;
        let result = render(tree, dir, options, &mut spent)?.and_then(|text| {
            desired::parse_text(&text, &dir.file, &commit, Lines::Generated, options)
        });
        files.insert(
            dir.file.clone(),
            entry(
                fingerprint.unwrap_or_default(),
                FileKind::Kustomization,
                result,
                old,
            ),
        );
    }

    let releases = options.helm.plan(&plan.charts);
    // Asked only when there is a release to render: it is all of discovery.
    let capabilities = if releases.is_empty() {
        None
    } else {
        options.scope.as_ref().and_then(|s| s.capabilities())
    };
    for planned in releases {
        let old = prev(&planned.entry);
        let release = &planned.release;
        let values: Vec<Option<Listed>> = release
            .values_files
            .iter()
            .map(|path| tree.lookup(path))
            .collect();
        // The chart's tree, its values files' blobs and everything else that decides the output.
        let fingerprint = match (
            tree.dir_fingerprint(&release.chart),
            values
                .iter()
                .map(|v| v.as_ref().and_then(|l| l.id.clone()))
                .collect::<Option<Vec<String>>>(),
        ) {
            (Some(chart), Some(ids)) => Some(format!(
                "helm:{chart}:{}:{}",
                ids.join(","),
                release.fingerprint(&options.helm, capabilities.as_ref())
            )),
            _ => None,
        };
        if let (Some(fp), Some(old)) = (&fingerprint, old)
            && old.blob_id == *fp
            && old.kind == FileKind::HelmRelease
        {
            stats.files_reused += 1;
            files.insert(planned.entry.clone(), old.clone());
            continue;
        }
        spent.check_deadline(&planned.entry)?;
        stats.releases_rendered += 1;
        let result = match release
            .values_files
            .iter()
            .zip(&values)
            .find(|(_, v)| v.is_none())
        {
            Some((path, _)) => Err(ParseError::new(
                &planned.entry,
                None,
                format!(
                    "release {}: values file {path} does not exist at this commit",
                    release.name
                ),
            )),
            None => {
                let listed: Vec<Listed> = values.into_iter().flatten().collect();
                render_release(tree, &planned, &listed, options, &mut spent)?
            }
        };
        files.insert(
            planned.entry.clone(),
            entry(
                fingerprint.unwrap_or_default(),
                FileKind::HelmRelease,
                result,
                old,
            ),
        );
    }

    let mut objects: BTreeMap<ResourceKey, Arc<DesiredObject>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (path, entry) in &files {
        if let Some(error) = &entry.error {
            errors.push(error.clone());
        }
        for object in &entry.objects {
            match objects.get(&object.key) {
                None => {
                    objects.insert(object.key.clone(), Arc::clone(object));
                }
                Some(first) => errors.push(ParseError::new(
                    path,
                    object.source.line,
                    format!(
                        "{} (document #{}) is also defined at {}{}; the first definition is kept",
                        object.key.qualified_resource_id(),
                        object.source.doc_index,
                        first.source.source_path(),
                        first
                            .source
                            .line
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default()
                    ),
                )),
            }
        }
    }
    stats.objects = objects.len();
    for error in &errors {
        tracing::warn!(path = %error.path, line = ?error.line, "{}", error.message);
    }
    Ok(Snapshot {
        commit,
        objects,
        errors,
        files,
        stats,
        sources: SourceFiles::default(),
    })
}

/// One manifest file of a build: settled already (reused, unreadable), or read and to parse.
enum Step<'a> {
    Done(FileEntry),
    Parse(ToParse<'a>),
}

/// A file read and to parse.
struct ToParse<'a> {
    path: &'a str,
    id: String,
    bytes: Vec<u8>,
    old: Option<&'a FileEntry>,
}

/// Files parsed by one thread before it is worth starting another.
const FILES_PER_THREAD: usize = 16;

/// Settles every step, in order. The files to parse are parsed on up to one thread per core
/// (each thread takes the next file; results keep their places); the deadline is checked before
/// each file, as while reading, and past it the first file in order found over it is named.
fn parse_all(
    steps: Vec<Step<'_>>,
    commit: &str,
    options: &ReadOptions,
    spent: &Spent,
) -> Result<Vec<FileEntry>> {
    let parse = |file: &ToParse<'_>| -> Result<FileEntry> {
        spent.check_deadline(file.path)?;
        let result = desired::parse_file(&file.bytes, file.path, commit, options);
        Ok(entry(file.id.clone(), FileKind::Manifest, result, file.old))
    };
    let to_parse = steps.iter().filter(|s| matches!(s, Step::Parse(_))).count();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(to_parse.div_ceil(FILES_PER_THREAD));
    // Filled by the threads; a file left unparsed (one thread) is parsed below, in order.
    let mut parsed: Vec<Option<Result<FileEntry>>> = steps.iter().map(|_| None).collect();
    if threads > 1 {
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                match steps.get(i) {
                    Some(Step::Parse(file)) => done.push((i, parse(file))),
                    Some(Step::Done(_)) => {}
                    None => return done,
                }
            }
        };
        std::thread::scope(|scope| {
            // A thread that cannot be started leaves its share to the others.
            let helpers: Vec<_> = (1..threads)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("driftguard-parse".to_owned())
                        .spawn_scoped(scope, work)
                        .ok()
                })
                .collect();
            let mut all = work();
            for helper in helpers {
                match helper.join() {
                    Ok(done) => all.extend(done),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            for (i, result) in all {
                if let Some(slot) = parsed.get_mut(i) {
                    *slot = Some(result);
                }
            }
        });
    }
    let mut out = Vec::with_capacity(steps.len());
    for (step, slot) in steps.into_iter().zip(parsed) {
        out.push(match step {
            Step::Done(entry) => entry,
            Step::Parse(file) => match slot {
                Some(result) => result?,
                None => parse(&file)?,
            },
        });
    }
    Ok(out)
}

/// Renders one Kustomize directory: its inputs checked (no remote reference, no path leaving
/// the repository), only the directories it reaches written out, Kustomize run in the sandbox.
fn render(
    tree: &mut dyn Tree,
    dir: &KustomizeDir,
    options: &ReadOptions,
    spent: &mut Spent,
) -> Result<Result<String, ParseError>> {
    let reached = match sandbox::check_kustomization(&dir.dir, &mut |d| tree.kustomization(d)) {
        Ok(reached) => reached,
        Err(refusal) => {
            let message = if refusal.file == dir.file {
                refusal.message
            } else {
                format!("{}: {}", refusal.location(), refusal.message)
            };
            let line = (refusal.file == dir.file).then_some(refusal.line).flatten();
            return Ok(Err(ParseError::new(&dir.file, line, message)));
        }
    };
    // A directory below another one reached is written out with it.
    let mut reached = reached;
    reached.sort();
    reached.dedup();
    let outer: Vec<String> = reached
        .iter()
        .filter(|d| {
            !reached
                .iter()
                .any(|o| *o != **d && (o.is_empty() || d.starts_with(&format!("{o}/"))))
        })
        .cloned()
        .collect();
    let workspace = sandbox::workspace().map_err(|source| Error::Materialise {
        commit: tree.commit().to_owned(),
        source,
    })?;
    if let Err(refused) = tree.materialise(&outer, workspace.path(), spent)? {
        return Ok(Err(ParseError::new(
            &dir.file,
            None,
            format!("{}: {}", refused.location(), refused.message),
        )));
    }
    let target = sandbox::under(workspace.path(), &dir.dir);
    // Kustomize's helmCharts inflator runs the configured Helm, when there is one.
    let helm = options.helm.program().ok();
    Ok(options
        .kustomize
        .render(&target, &options.sandbox, helm.as_deref())
        .map_err(|message| ParseError::new(&dir.file, None, message)))
}

/// Renders one Helm release: its chart directory and values files written out, `helm template`
/// run in the sandbox (see [`crate::helm`]).
fn render_release(
    tree: &mut dyn Tree,
    planned: &helm::Planned,
    values: &[Listed],
    options: &ReadOptions,
    spent: &mut Spent,
) -> Result<Result<Vec<Arc<DesiredObject>>, ParseError>> {
    let workspace = sandbox::workspace().map_err(|source| Error::Materialise {
        commit: tree.commit().to_owned(),
        source,
    })?;
    let chart = planned.release.chart.clone();
    let into = workspace.path().join("tree");
    if let Err(refused) = tree.materialise(std::slice::from_ref(&chart), &into, spent)? {
        return Ok(Err(ParseError::new(
            &planned.entry,
            None,
            format!("{}: {}", refused.location(), refused.message),
        )));
    }
    let mut files = Vec::with_capacity(values.len());
    for listed in values {
        match tree.read(listed, options.max_file_size) {
            Ok(bytes) => {
                spent.add_bytes(bytes.len() as u64, &listed.path)?;
                files.push(helm::ValuesFile {
                    path: listed.path.clone(),
                    bytes,
                });
            }
            Err(error) => {
                return Ok(Err(ParseError::new(
                    &planned.entry,
                    None,
                    format!(
                        "release {}: values file {}: {}",
                        planned.release.name, error.path, error.message
                    ),
                )));
            }
        }
    }
    let commit = tree.commit().to_owned();
    Ok(helm::render(
        planned,
        workspace.path(),
        &files,
        &commit,
        options,
    ))
}

fn entry(
    blob_id: String,
    kind: FileKind,
    result: Result<Vec<Arc<DesiredObject>>, ParseError>,
    old: Option<&FileEntry>,
) -> FileEntry {
    match result {
        Ok(objects) => FileEntry {
            blob_id,
            kind,
            objects,
            error: None,
        },
        Err(error) => FileEntry {
            blob_id,
            kind,
            // The last good objects stay the desired state while the file is broken.
            objects: old.map(|o| o.objects.clone()).unwrap_or_default(),
            error: Some(error),
        },
    }
}

/// `sha256:<hex>` of bytes read from disk (PATH mode has no blob ids).
pub(crate) fn content_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

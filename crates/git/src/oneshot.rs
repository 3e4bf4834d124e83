//! One load of the desired state, for `driftguard check`: a directory read as it is on disk, or a
//! remote repository fetched once into a temporary directory that cleans itself up.
//!
//! - **Shallow**: a branch or tag is fetched with depth 1 — only its tip commit and that commit's
//!   tree, never the history; a transport or server that refuses shallow fetches (it says so
//!   while negotiating, before sending anything) gets a full fetch instead. A full commit SHA
//!   may lie anywhere in the history: it is fetched in full.
//! - **In place**: a `file://` URL names a repository on this disk; its branch or tag is read
//!   where it is, without a clone (nothing is fetched, packed or written; see
//!   `repo::read_in_place`). A commit SHA, or a URL that is not a plain local path, is fetched.
//! - **Self-cleaning**: the clone lives in a [`tempfile::TempDir`] named
//!   `driftguard-check-<pid>-<random>` under `git.workdir` (default: the system temp dir), removed
//!   when the load fails, or else when the snapshot it returns is dropped (the snapshot reads a
//!   drifted object's file again for the lines of its fields, [`Snapshot::field_lines`]) — on a
//!   panic too (unwinding drops it).
//! - **Stale directories**: a run killed by a signal never unwinds and leaves its directory
//!   behind. Each load first removes such leftovers (see [`remove_stale`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use driftguard_config::GitConfig;

use crate::error::{Error, GitError, Result};
use crate::local::load_local;
use crate::options::ReadOptions;
use crate::repo::GitSource;
use crate::snapshot::Snapshot;

/// The name prefix of one-shot clone directories.
pub const ONESHOT_PREFIX: &str = "driftguard-check-";

/// A one-shot directory older than this whose process is gone is removed by the next load.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// True when `repository` names a remote (or `file://`) URL rather than a local directory: it
/// has a scheme (`https://`, `ssh://`, `git://`, `file://`), or it is scp-like (`git@host:path`)
/// and no such local path exists.
pub fn is_url(repository: &str) -> bool {
    repository.contains("://")
        || (repository.contains('@') && repository.contains(':') && !Path::new(repository).exists())
}

/// Loads `git.repository_url` once: a URL is fetched at `git.default_branch` (shallow, see the
/// module documentation) into a temporary directory removed when the snapshot (every clone of
/// it) is dropped, or before this returns an error — except a `file://` repository, read in
/// place; a local path is read as it is on disk ([`load_local`]; `git.path` applies relative
/// to it).
pub fn load_once(git: &GitConfig, options: ReadOptions) -> Result<Snapshot> {
    let repository = git.repository_url.trim();
    if repository.is_empty() {
        return Err(Error::NoRepository);
    }
    if !is_url(repository) {
        return load_local(Path::new(repository), &options, None);
    }
    let parent = if git.workdir.trim().is_empty() {
        std::env::temp_dir()
    } else {
        PathBuf::from(git.workdir.trim())
    };
    if let Some(loaded) = crate::repo::read_in_place(git, &options) {
        // Nothing of ours to clean up, but a killed run's leftovers still go.
        remove_stale(&parent, STALE_AFTER);
        return loaded;
    }
    let workdir_error = |dir: &Path, e: std::io::Error| Error::Workdir {
        url: crate::url::redact(repository),
        dir: dir.display().to_string(),
        source: GitError::other(e.to_string()),
    };
    std::fs::create_dir_all(&parent).map_err(|e| workdir_error(&parent, e))?;
    remove_stale(&parent, STALE_AFTER);
    // The pid in the name tells a later run whether the owner is still alive.
    let dir = tempfile::Builder::new()
        .prefix(&format!("{ONESHOT_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| workdir_error(&parent, e))?;
    let mut snapshot = fetch_into(git, options, dir.path())?;
    // The clone goes with the snapshot (or here, on an error).
    snapshot.sources = snapshot.sources.keeping(dir);
    Ok(snapshot)
}

/// Fetches `git.repository_url` once into `workdir` (the clone stays there: the caller owns the
/// directory) and builds its snapshot. A branch or tag is fetched with depth 1, or in full
/// where the transport refuses shallow fetches (libgit2's local transport, for `file://`).
pub fn fetch_into(git: &GitConfig, options: ReadOptions, workdir: &Path) -> Result<Snapshot> {
    let cfg = GitConfig {
        workdir: workdir.display().to_string(),
        ..git.clone()
    };
    let mut source = GitSource::open_with(&cfg, options)?.with_depth(1);
    source.sync()?;
    Ok(source.snapshot().clone())
}

/// Removes the one-shot directories under `parent` that a killed run left behind; returns how
/// many were removed.
///
/// The heuristic: a directory named `driftguard-check-<pid>-…` is stale when it was last
/// modified more than `older_than` ago (its top level changes only when the clone directory is
/// created, so age alone could catch a slow run still at work) **and** no process `<pid>` exists
/// (`/proc/<pid>`). A pid reused by an unrelated process only keeps a directory longer, never
/// removes a live one. Without `/proc` (not Linux), or for a name without a pid (older
/// versions), age alone decides. Symbolic links are never followed or removed, and a directory
/// that cannot be removed (another user's) is left alone.
pub fn remove_stale(parent: &Path, older_than: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(ONESHOT_PREFIX)) else {
            continue;
        };
        // `DirEntry::metadata` does not follow a symbolic link.
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_dir() {
            continue;
        }
        let old = metadata
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= older_than);
        if !old || owner_alive(rest) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                tracing::info!(dir = %path.display(), "removed a stale one-shot clone");
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), error = %e, "cannot remove a stale one-shot clone");
            }
        }
    }
    removed
}

/// Whether the process named by `<pid>-<random>` may still be running.
fn owner_alive(rest: &str) -> bool {
    let Some(pid) = rest
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    proc.join("self").exists() && proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(is_url("https://example.com/a.git"));
        assert!(is_url("file:///srv/repo.git"));
        assert!(is_url("git@example.com:org/repo.git"));
        assert!(!is_url("./manifests"));
        assert!(!is_url("/srv/manifests"));
    }

    #[test]
    fn the_owner_is_read_from_the_name() {
        assert!(owner_alive(&format!("{}-abc", std::process::id())));
        assert!(!owner_alive("999999999-abc"), "beyond any pid_max");
        assert!(!owner_alive("not-a-pid"));
        assert!(!owner_alive("123"), "no random part: not one of ours");
    }
}

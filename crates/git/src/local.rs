//! PATH mode: a directory read as it is on disk, no Git needed (`driftguard check --repo ./dir`).

use std::path::{Path, PathBuf};

use crate::error::{Error, ParseError, Result};
use crate::options::ReadOptions;
use crate::select::{KustomizeDir, Listed};
use crate::snapshot::{self, Snapshot, Tree};

/// The commit recorded for objects read from a working tree.
pub const WORKING_TREE: &str = "working-tree";

/// Reads the directory `root` into a snapshot (commit [`WORKING_TREE`]).
///
/// With `previous`, files whose bytes are unchanged are not parsed again and files that no
/// longer parse keep their previous objects. Kustomize directories are always rendered. The
/// `.git` directory is skipped; symbolic links are not followed.
pub fn load_local(
    root: &Path,
    options: &ReadOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot> {
    let metadata = std::fs::metadata(root).map_err(|source| Error::LocalDir {
        path: root.display().to_string(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(Error::LocalDir {
            path: root.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mut tree = LocalTree {
        root: root.to_path_buf(),
    };
    snapshot::build(&mut tree, options, previous)
}

struct LocalTree {
    root: PathBuf,
}

// === impl LocalTree ===

impl Tree for LocalTree {
    fn files(&mut self) -> Result<Vec<Listed>> {
        let mut files = Vec::new();
        let walker = walkdir::WalkDir::new(&self.root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable directory entry");
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Some(path) = relative_path(relative) else {
                tracing::warn!(path = %relative.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.push(Listed {
                path,
                id: None,
                size,
            });
        }
        Ok(files)
    }

    fn read(&mut self, file: &Listed, max_size: u64) -> Result<Vec<u8>, ParseError> {
        if file.size > max_size {
            return Err(too_big(&file.path, file.size, max_size));
        }
        let bytes = std::fs::read(self.root.join(&file.path))
            .map_err(|e| ParseError::new(&file.path, None, format!("cannot read: {e}")))?;
        if bytes.len() as u64 > max_size {
            return Err(too_big(&file.path, bytes.len() as u64, max_size));
        }
        Ok(bytes)
    }

    fn kustomize_fingerprint(&mut self, _dir: &KustomizeDir) -> Option<String> {
        None
    }

    fn kustomize_root(&mut self) -> Result<PathBuf> {
        Ok(self.root.clone())
    }

    fn commit(&self) -> &str {
        WORKING_TREE
    }
}

pub(crate) fn too_big(path: &str, size: u64, max: u64) -> ParseError {
    ParseError::new(
        path,
        None,
        format!("file is {size} bytes, more than git.max_file_size ({max})"),
    )
}

fn relative_path(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        parts.push(component.as_os_str().to_str()?);
    }
    Some(parts.join("/"))
}

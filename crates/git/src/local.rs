//! PATH mode: a directory read as it is on disk, no Git needed (`driftguard check --repo ./dir`).

use std::path::{Path, PathBuf};

use crate::error::{Error, ParseError, Result};
use crate::lines::SourceFiles;
use crate::options::ReadOptions;
use crate::select::{KUSTOMIZATION_FILES, KustomizeDir, Listed};
use crate::snapshot::{self, Snapshot, Spent, Tree};

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
    let mut snapshot = snapshot::build(&mut tree, options, previous)?;
    snapshot.sources = match previous {
        // The same directory: what was found in it stays valid (keyed by content).
        Some(p) if p.sources == SourceFiles::directory(root, options) => p.sources.clone(),
        _ => SourceFiles::directory(root, options),
    };
    Ok(snapshot)
}

struct LocalTree {
    root: PathBuf,
}

// === impl LocalTree ===

impl Tree for LocalTree {
    fn files(&mut self, spent: &mut Spent) -> Result<Vec<Listed>> {
        let mut files = Vec::new();
        let mut entries = 0u64;
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
            entries += 1;
            let Ok(relative) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let shown = relative.display().to_string();
            spent.check_entries(entries, &shown)?;
            if entries.is_multiple_of(1024) {
                spent.check_deadline(&shown)?;
            }
            if !entry.file_type().is_file() {
                continue;
            }
            spent.check_files(files.len() as u64 + 1, &shown)?;
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

    fn kustomization(&mut self, dir: &str) -> crate::sandbox::KustomizationText {
        let base = crate::sandbox::under(&self.root, dir);
        let root = self.root.canonicalize().ok()?;
        KUSTOMIZATION_FILES.iter().find_map(|name| {
            let path = base.join(name);
            std::fs::symlink_metadata(&path).ok()?;
            let file = if dir.is_empty() {
                (*name).to_owned()
            } else {
                format!("{dir}/{name}")
            };
            // A link is read only when it stays inside the repository.
            let text = match path.canonicalize() {
                Ok(real) if !real.starts_with(&root) => {
                    Err("symbolic link pointing outside the repository".to_owned())
                }
                Ok(real) => match std::fs::metadata(&real) {
                    Ok(meta) if meta.len() > 1 << 20 => {
                        Err(format!("{} bytes, more than 1 MiB", meta.len()))
                    }
                    _ => std::fs::read_to_string(&real).map_err(|e| e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            Some((file, text))
        })
    }

    fn materialise(
        &mut self,
        dirs: &[String],
        into: &Path,
        spent: &mut Spent,
    ) -> Result<Result<(), ParseError>> {
        let io_error = |source: std::io::Error| Error::LocalDir {
            path: self.root.display().to_string(),
            source,
        };
        let root = self.root.canonicalize().map_err(io_error)?;
        for dir in dirs {
            let walker = walkdir::WalkDir::new(crate::sandbox::under(&self.root, dir))
                .follow_links(false)
                .into_iter()
                .filter_entry(|e| e.file_name() != ".git");
            for entry in walker {
                let Ok(entry) = entry else { continue };
                let Ok(relative) = entry.path().strip_prefix(&self.root) else {
                    continue;
                };
                let Some(path) = relative_path(relative) else {
                    continue;
                };
                let target = into.join(relative);
                let source = if entry.path_is_symlink() {
                    // A link is followed only when it stays inside the repository.
                    match entry.path().canonicalize() {
                        Ok(resolved) if resolved.starts_with(&root) => resolved,
                        Ok(_) => {
                            return Ok(Err(ParseError::new(
                                &path,
                                None,
                                "symbolic link pointing outside the repository refused",
                            )));
                        }
                        Err(_) => continue,
                    }
                } else {
                    entry.path().to_path_buf()
                };
                let meta = std::fs::metadata(&source).map_err(io_error)?;
                if meta.is_dir() {
                    if !entry.path_is_symlink() {
                        std::fs::create_dir_all(&target).map_err(io_error)?;
                    }
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                if meta.len() > spent.max_file_size {
                    return Ok(Err(too_big(&path, meta.len(), spent.max_file_size)));
                }
                spent.add_bytes(meta.len(), &path)?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                std::fs::copy(&source, &target).map_err(io_error)?;
            }
        }
        Ok(Ok(()))
    }

    fn dir_fingerprint(&mut self, _dir: &str) -> Option<String> {
        None
    }

    fn lookup(&mut self, path: &str) -> Option<Listed> {
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            return None;
        }
        let full = crate::sandbox::under(&self.root, path);
        // A link is read only when it stays inside the repository.
        let root = self.root.canonicalize().ok()?;
        let real = full.canonicalize().ok()?;
        if !real.starts_with(&root) {
            return None;
        }
        let meta = std::fs::metadata(&real).ok()?;
        meta.is_file().then(|| Listed {
            path: path.to_owned(),
            id: None,
            size: meta.len(),
        })
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

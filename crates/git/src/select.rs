//! Which files of a tree are read, and which directories are rendered with Kustomize.
//!
//! Rules, in order:
//! 1. Only files under one of `git.path` (all of them when empty) are considered; a sub-path may
//!    name a directory or a single file.
//! 2. A directory holding `kustomization.yaml`, `kustomization.yml` or `Kustomization` is a
//!    Kustomize directory: it is rendered as a whole, and no file below it (sub-directories
//!    included — they are its patches, bases and components) is read on its own. A Kustomize
//!    directory below another one is not rendered separately.
//! 3. A directory holding `Chart.yaml` (outside Kustomize directories) is a Helm chart: no
//!    file below it is read on its own; it is rendered as the `helm` configuration says.
//! 4. Every other `.yaml`, `.yml` or `.json` file (extension case-insensitive) is read.
//! 5. `git.include` / `git.exclude` globs are matched against the repository-relative path of the
//!    file (for a Kustomize directory: of its kustomization file) and against each of its parent
//!    directories, so `exclude: [vendor]` drops everything below `vendor/`. `*` does not cross
//!    `/`; use `**` for that. With `include` empty everything is included; `exclude` wins.

use std::collections::BTreeSet;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// File names that make a directory a Kustomize directory, in order of preference.
pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The file that makes a directory a Helm chart.
pub const CHART_FILE: &str = "Chart.yaml";

/// The compiled `git.path` / `git.include` / `git.exclude` settings.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    paths: Vec<String>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// A file found in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Repository-relative path with `/` separators.
    pub path: String,
    /// Content id when known without reading (the Git blob id).
    pub id: Option<String>,
    /// Size in bytes when known from the listing (PATH mode); 0 for Git blobs, whose size is
    /// checked from the object header just before reading.
    pub size: u64,
}

/// A directory rendered with Kustomize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KustomizeDir {
    /// The directory (`""` for the repository root).
    pub dir: String,
    /// Its kustomization file (`dir/kustomization.yaml`): the source path of its objects.
    pub file: String,
}

/// What to read from a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Manifest files read one by one, sorted by path.
    pub files: Vec<Listed>,
    /// Kustomize directories, sorted.
    pub kustomizations: Vec<KustomizeDir>,
    /// Helm chart directories (holding `Chart.yaml`; outermost, outside Kustomize
    /// directories), sorted.
    pub charts: Vec<String>,
}

// === impl Selection ===

impl Selection {
    /// Compiles the settings; a bad glob is an error naming it.
    pub fn new(paths: &[String], include: &[String], exclude: &[String]) -> Result<Self> {
        let paths = paths
            .iter()
            .map(|p| normalise(p))
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self {
            paths,
            include: compile("include", include)?,
            exclude: compile("exclude", exclude)?,
        })
    }

    /// The normalised sub-paths (empty = the whole repository).
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// True when `path` lies under one of the sub-paths.
    pub fn in_paths(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| is_within(path, p))
    }

    /// True when the globs let `path` through.
    pub fn globs_allow(&self, path: &str) -> bool {
        let matches =
            |set: &GlobSet| set.is_match(path) || ancestors(path).any(|dir| set.is_match(dir));
        if let Some(exclude) = &self.exclude
            && matches(exclude)
        {
            return false;
        }
        match &self.include {
            Some(include) => matches(include),
            None => true,
        }
    }

    /// Decides what to read among `files` (every regular file of the tree).
    pub fn plan(&self, files: Vec<Listed>) -> Plan {
        let files: Vec<Listed> = files
            .into_iter()
            .filter(|f| self.in_paths(&f.path))
            .collect();
        let mut kustomize_dirs: BTreeSet<String> = BTreeSet::new();
        for file in &files {
            let (dir, name) = split(&file.path);
            if KUSTOMIZATION_FILES.contains(&name) {
                kustomize_dirs.insert(dir.to_owned());
            }
        }
        // Outermost Kustomize directories own everything below them.
        let outermost: Vec<String> = kustomize_dirs
            .iter()
            .filter(|dir| !ancestors_of_dir(dir).any(|a| kustomize_dirs.contains(a)))
            .cloned()
            .collect();
        let in_kustomize = |path: &str| {
            outermost
                .iter()
                .any(|dir| dir.is_empty() || is_within(path, dir))
        };
        // A directory holding Chart.yaml is a chart: its templates are Go templates, never
        // manifests. Its sub-charts (charts/) belong to it; a chart inside a Kustomize
        // directory belongs to the kustomization (`helmCharts`).
        let mut chart_dirs: BTreeSet<String> = BTreeSet::new();
        for file in &files {
            let (dir, name) = split(&file.path);
            if name == CHART_FILE && !in_kustomize(&file.path) {
                chart_dirs.insert(dir.to_owned());
            }
        }
        let charts: Vec<String> = chart_dirs
            .iter()
            .filter(|dir| !ancestors_of_dir(dir).any(|a| chart_dirs.contains(a)))
            .cloned()
            .collect();
        let owned = |path: &str| {
            in_kustomize(path)
                || charts
                    .iter()
                    .any(|dir| dir.is_empty() || is_within(path, dir))
        };
        let mut kustomizations = Vec::new();
        for dir in &outermost {
            let file = KUSTOMIZATION_FILES
                .iter()
                .map(|name| join(dir, name))
                .find(|candidate| files.iter().any(|f| &f.path == candidate));
            if let Some(file) = file
                && self.globs_allow(&file)
            {
                kustomizations.push(KustomizeDir {
                    dir: dir.clone(),
                    file,
                });
            }
        }
        let mut manifests: Vec<Listed> = files
            .into_iter()
            .filter(|f| is_manifest_name(&f.path) && !owned(&f.path) && self.globs_allow(&f.path))
            .collect();
        manifests.sort_by(|a, b| a.path.cmp(&b.path));
        let charts = charts
            .into_iter()
            .filter(|dir| self.globs_allow(&join(dir, CHART_FILE)))
            .collect();
        Plan {
            files: manifests,
            kustomizations,
            charts,
        }
    }
}

/// True for `.yaml`, `.yml` and `.json` files (case-insensitive).
pub fn is_manifest_name(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")
}

fn compile(key: &'static str, globs: &[String]) -> Result<Option<GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let pattern = normalise(glob);
        let compiled = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|source| Error::Glob {
                key,
                glob: glob.clone(),
                source,
            })?;
        builder.add(compiled);
    }
    builder.build().map(Some).map_err(|source| Error::Glob {
        key,
        glob: globs.join(", "),
        source,
    })
}

/// `./a/b/` → `a/b`; `.` → ``.
fn normalise(path: &str) -> String {
    let mut p = path.trim().replace('\\', "/");
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.to_owned();
    }
    let p = p.trim_start_matches('/').trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_owned()
    }
}

fn is_within(path: &str, dir: &str) -> bool {
    path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Parent directories of a file path, innermost first (`a/b/c.yaml` → `a/b`, `a`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut current = path;
    std::iter::from_fn(move || {
        let i = current.rfind('/')?;
        current = &current[..i];
        Some(current)
    })
}

/// Ancestors of a directory, the root (`""`) included, the directory itself excluded.
fn ancestors_of_dir(dir: &str) -> impl Iterator<Item = &str> {
    let root = if dir.is_empty() { None } else { Some("") };
    ancestors(dir).chain(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn listed(paths: &[&str]) -> Vec<Listed> {
        paths
            .iter()
            .map(|p| Listed {
                path: (*p).to_owned(),
                id: None,
                size: 1,
            })
            .collect()
    }

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|i| (*i).to_owned()).collect()
    }

    #[test]
    fn paths_globs_and_kustomize() {
        let sel = Selection::new(
            &s(&["./apps/"]),
            &[],
            &s(&["**/skip-*.yaml", "apps/vendor"]),
        )
        .unwrap();
        let plan = sel.plan(listed(&[
            "apps/a.yaml",
            "apps/b.YML",
            "apps/c.json",
            "apps/readme.md",
            "apps/skip-me.yaml",
            "apps/vendor/x.yaml",
            "apps/k/kustomization.yaml",
            "apps/k/deploy.yaml",
            "apps/k/sub/kustomization.yaml",
            "other/z.yaml",
        ]));
        let files: Vec<_> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["apps/a.yaml", "apps/b.YML", "apps/c.json"]);
        assert_eq!(
            plan.kustomizations,
            [KustomizeDir {
                dir: "apps/k".into(),
                file: "apps/k/kustomization.yaml".into()
            }]
        );
    }

    #[test]
    fn include_limits_and_star_stays_in_dir() {
        let sel = Selection::new(&[], &s(&["base/*.yaml"]), &[]).unwrap();
        let plan = sel.plan(listed(&["base/a.yaml", "base/deep/b.yaml", "c.yaml"]));
        let files: Vec<_> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["base/a.yaml"]);
    }

    #[test]
    fn bad_glob_names_key() {
        let err = Selection::new(&[], &[], &s(&["a[", "b"])).unwrap_err();
        assert!(err.to_string().contains("git.exclude"), "{err}");
    }
}

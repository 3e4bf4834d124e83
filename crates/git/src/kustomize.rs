//! Rendering Kustomize directories with `kustomize build` or `kubectl kustomize`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::manifest::{Limits, ManifestError, parse_documents};
use crate::sandbox::Sandbox;

/// How Kustomize directories are rendered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kustomize {
    /// `kustomize build <dir>` when `kustomize` is on `PATH`, else `kubectl kustomize <dir>`.
    #[default]
    Auto,
    /// A given program and leading arguments; the directory is appended.
    Command {
        /// The program.
        program: PathBuf,
        /// Arguments before the directory (`["build"]`).
        args: Vec<String>,
    },
    /// Kustomize directories are reported as errors.
    Disabled,
}

/// Most stderr kept in an error message (it may quote input; keep it short).
const STDERR_KEPT: usize = 400;

// === impl Kustomize ===

impl Kustomize {
    /// The command that would be run, or why there is none.
    pub fn resolve(&self) -> Result<(PathBuf, Vec<String>), String> {
        match self {
            Kustomize::Command { program, args } => Ok((program.clone(), args.clone())),
            Kustomize::Disabled => Err("Kustomize rendering is disabled".to_owned()),
            Kustomize::Auto => {
                if let Some(program) = find_on_path("kustomize") {
                    Ok((program, vec!["build".to_owned()]))
                } else if let Some(program) = find_on_path("kubectl") {
                    Ok((program, vec!["kustomize".to_owned()]))
                } else {
                    Err(
                        "cannot render: neither `kustomize` nor `kubectl` is installed (on PATH)"
                            .to_owned(),
                    )
                }
            }
        }
    }

    /// Renders `dir` in `sandbox` (cleared environment, capped output, deadline), returning
    /// the YAML stream. Loads are restricted to the kustomization's root
    /// (`--load-restrictor LoadRestrictionsRootOnly`); plugins and exec/KRM functions are never
    /// enabled. The caller checks the inputs first ([`crate::sandbox::check_kustomization`]).
    ///
    /// With `helm` (a Helm binary), Kustomize's chart inflator is enabled for `helmCharts`
    /// already in the repository (the inputs check refuses chart repositories); it needs Helm 3.
    pub fn render(
        &self,
        dir: &Path,
        sandbox: &Sandbox,
        helm: Option<&Path>,
    ) -> Result<String, String> {
        let (program, mut args) = self.resolve()?;
        if args
            .iter()
            .any(|a| a.starts_with("--enable-alpha-plugins") || a.starts_with("--enable-exec"))
        {
            return Err("Kustomize plugins and exec functions are never enabled".to_owned());
        }
        args.push("--load-restrictor".to_owned());
        args.push("LoadRestrictionsRootOnly".to_owned());
        if let Some(helm) = helm {
            args.push("--enable-helm".to_owned());
            args.push("--helm-command".to_owned());
            args.push(helm.display().to_string());
        }
        args.push(dir.display().to_string());
        let output = sandbox.run_with_env(&program, &args, dir, crate::sandbox::offline_env)?;
        if !output.status.success() {
            // Kustomize quotes bad input back (`invalid literal source hunter2, expected
            // key=value`): the values its secret generators would have read are masked first.
            let text = redact(
                &String::from_utf8_lossy(&output.stderr),
                &generator_values(dir),
            );
            let mut first: String = text.trim().chars().take(STDERR_KEPT).collect();
            if first.is_empty() {
                first = format!("exit status {}", output.status);
            }
            // Kustomize's inflator asks `helm version -c`, which Helm 4 no longer has, and
            // then insists on Helm 3.
            if text.contains("requires helm V3") || text.contains("version -c") {
                return Err(format!(
                    "kustomize failed: its helmCharts inflator needs Helm 3 — set helm.binary to a Helm 3 binary ({first})"
                ));
            }
            return Err(format!("kustomize failed: {first}"));
        }
        String::from_utf8(output.stdout)
            .map_err(|_| "kustomize output is not valid UTF-8".to_owned())
    }
}

/// Shortest value masked in Kustomize's messages (shorter ones would mangle ordinary words).
const SHORTEST_MASKED: usize = 3;

/// Largest generator input file read for masking.
const GENERATOR_FILE_MAX: u64 = 1 << 20;

/// Every value the `secretGenerator`s of the Kustomization in `dir`, and of the local
/// Kustomizations it includes, would put in a Secret: whole literals and their values, env-file
/// lines and their values, file contents and their lines. Unreadable parts are skipped.
fn generator_values(dir: &Path) -> Vec<String> {
    let mut values = Vec::new();
    let mut seen = Vec::new();
    collect_generator_values(dir, 0, &mut seen, &mut values);
    values.retain(|v| v.chars().count() >= SHORTEST_MASKED);
    // Longest first, so that a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

fn collect_generator_values(
    dir: &Path,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    out: &mut Vec<String>,
) {
    let Ok(dir) = dir.canonicalize() else { return };
    if depth > 8 || seen.contains(&dir) {
        return;
    }
    seen.push(dir.clone());
    let Some(text) = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .find_map(|name| std::fs::read_to_string(dir.join(name)).ok())
    else {
        return;
    };
    let Ok(doc) = parse_kustomization(&text) else {
        return;
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let generators = doc.get("secretGenerator").and_then(Value::as_array);
    for generator in generators.into_iter().flatten() {
        for literal in strings(generator.get("literals")) {
            push_pair(&literal, out);
        }
        let mut env_files = strings(generator.get("envs"));
        env_files.extend(
            generator
                .get("env")
                .and_then(|e| e.as_str())
                .map(str::to_owned),
        );
        for file in env_files {
            for line in read_small(&dir.join(file)).lines() {
                push_pair(line.trim(), out);
            }
        }
        for entry in strings(generator.get("files")) {
            let path = entry.split_once('=').map_or(entry.as_str(), |(_, p)| p);
            let content = read_small(&dir.join(path));
            out.push(content.trim().to_owned());
            out.extend(content.lines().map(|l| l.trim().to_owned()));
        }
    }
    for key in ["resources", "bases", "components"] {
        for entry in strings(doc.get(key)) {
            let path = dir.join(&entry);
            if path.is_dir() {
                collect_generator_values(&path, depth + 1, seen, out);
            }
        }
    }
}

/// A kustomization file's content (its first document), read by the one YAML reader with
/// kubectl's rules and within the default [`Limits`]: an alias bomb is an error naming the node
/// budget and its line, never an allocation.
pub(crate) fn parse_kustomization(text: &str) -> Result<Value, ManifestError> {
    let documents = parse_documents(text, &Limits::default())?;
    Ok(documents
        .into_iter()
        .next()
        .map_or(Value::Null, |document| document.value))
}

/// A `key=value` entry: the whole entry and its value.
fn push_pair(entry: &str, out: &mut Vec<String>) {
    out.push(entry.to_owned());
    if let Some((_, value)) = entry.split_once('=') {
        out.push(value.to_owned());
    }
}

fn read_small(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() <= GENERATOR_FILE_MAX => {
            std::fs::read_to_string(path).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// `text` with every occurrence of `values` replaced by `***`.
pub(crate) fn redact(text: &str, values: &[String]) -> String {
    let mut out = text.to_owned();
    for value in values {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Peak resident memory of this process, in bytes (`VmHWM`; each test is its own process
    /// under nextest).
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    #[test]
    fn an_alias_bomb_in_a_kustomization_is_refused_by_the_node_budget() {
        let mut text = String::from("resources: [\n  a.yaml\n]\nsecretGenerator:\n- name: s\n");
        text.push_str("  literals: &a [");
        text.push_str(&vec!["k=v"; 100_000].join(", "));
        text.push_str("]\nx: [");
        text.push_str(&vec!["*a"; 200_000].join(", "));
        text.push_str("]\n");
        let before = peak_rss();
        let err = parse_kustomization(&text).unwrap_err();
        let grown = peak_rss().saturating_sub(before);
        assert_eq!(err.message, "more than 500000 nodes (alias expansion?)");
        assert_eq!(err.line, Some(7));
        assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
        // Masking reads nothing from it (and does not allocate it either).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kustomization.yaml"), &text).unwrap();
        assert!(generator_values(dir.path()).is_empty());
        assert!(peak_rss().saturating_sub(before) < 200 << 20);
    }

    #[test]
    fn generator_values_are_read_with_merge_keys_and_kubectl_scalars() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "common: &common\n  literals: [password=hunter22, 'pin=0755']\nsecretGenerator:\n- <<: *common\n  name: s\n  envs: [\n    app.env\n]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("app.env"), "TOKEN=s3cr3t\n").unwrap();
        let values = generator_values(dir.path());
        for expected in [
            "password=hunter22",
            "hunter22",
            "pin=0755",
            "0755",
            "TOKEN=s3cr3t",
            "s3cr3t",
        ] {
            assert!(
                values.iter().any(|v| v == expected),
                "{expected}: {values:?}"
            );
        }
    }
}

//! Helm charts as desired state: releases, rendered with `helm template` in the sandbox.
//!
//! - **Which releases.** Every entry of `helm.releases`; then, with `helm.detect`, every chart
//!   directory (one holding `Chart.yaml`, outermost) no release names, as release
//!   `<directory name>` in the default namespace with the chart's own `values.yaml`.
//! - **How.** The chart directory and the release's values files are written out of the tree,
//!   and `helm template` runs in the [`Sandbox`]: a cleared environment, private
//!   `HELM_CACHE_HOME`/`HELM_CONFIG_HOME`/`HELM_DATA_HOME`, no plugins, every proxy pointed at a
//!   closed local port (so nothing reaches the network), capped output, a deadline and a memory
//!   ceiling. Dependencies must be vendored; `lookup` renders as empty.
//! - **`.Capabilities`** are the watched cluster's: its version (`--kube-version`) and every
//!   served `group/version` and `group/version/Kind` (`--api-versions`), from discovery.
//! - **Twice.** Every release is rendered twice with the same inputs. A field whose value differs
//!   between the two (`randAlphaNum`, `genCA`, `uuidv4`, `now`) is left out of the comparison
//!   with a `non-deterministic` warning; an object whose *name* differs cannot be matched and is
//!   left out (logged).
//! - **Hooks** (`helm.sh/hook`: tests, pre/post-install jobs) are left out unless
//!   `helm.include_hooks`; `crds/` is rendered unless the release says `include_crds: false`.
//! - **Sources.** An object's source is `<chart dir>/templates/<file>` (from Helm's `# Source:`
//!   comment; sub-charts keep their `charts/<sub>/` part) with `#N` its index among that
//!   template's documents, and the release name.
//! - **Errors** name the release and chart; Helm's message is masked of every value the
//!   release's values hold (values files can hold passwords).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use driftguard_config::{HelmConfig, HelmReleaseConfig};
use driftguard_core::{Capabilities, DesiredObject, ResourceKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::desired::{self, Lines};
use crate::error::ParseError;
use crate::options::ReadOptions;
use crate::sandbox::Sandbox;

/// The annotation that makes an object a Helm hook.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";

/// Most of Helm's error output kept in a message (it may quote input; keep it short).
const STDERR_KEPT: usize = 600;

/// How charts are rendered (`helm.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmOptions {
    /// The `helm` program: a path, or a name looked up on `PATH`.
    pub binary: String,
    /// Render chart directories no release names.
    pub detect: bool,
    /// Keep hook objects.
    pub include_hooks: bool,
    /// Explicit releases.
    pub releases: Vec<Release>,
}

/// One release to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Chart directory in the repository (`""` = the root).
    pub chart: String,
    /// Release namespace; `None` = the default namespace.
    pub namespace: Option<String>,
    /// Values files (repository paths), in order.
    pub values_files: Vec<String>,
    /// Inline values (YAML text of a mapping; `""` = none), applied last.
    pub values: String,
    /// Render `crds/`.
    pub include_crds: bool,
}

/// A release made ready to render: its key in the snapshot and its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    /// The snapshot entry (`<chart>/Chart.yaml`, or with ` (release <name>)` when a chart has
    /// several releases): the path its errors are reported under.
    pub entry: String,
    /// The release.
    pub release: Release,
}

/// A values file read out of the tree.
pub(crate) struct ValuesFile {
    /// Repository path.
    pub path: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Default for HelmOptions {
    fn default() -> Self {
        Self::from_config(&HelmConfig::default())
    }
}

// === impl HelmOptions ===

impl HelmOptions {
    /// Options from the `helm.*` configuration.
    pub fn from_config(cfg: &HelmConfig) -> Self {
        Self {
            binary: cfg.binary.clone(),
            detect: cfg.detect,
            include_hooks: cfg.include_hooks,
            releases: cfg.releases.iter().map(Release::from_config).collect(),
        }
    }

    /// The releases to render, given the chart directories found in the tree (outermost,
    /// selected): the configured ones, then with `detect` one per chart no release names.
    pub(crate) fn plan(&self, charts: &[String]) -> Vec<Planned> {
        let mut releases: Vec<Release> = self.releases.clone();
        if self.detect {
            let named: BTreeSet<&str> = self.releases.iter().map(|r| r.chart.as_str()).collect();
            for chart in charts {
                if !named.contains(chart.as_str()) {
                    releases.push(Release::detected(chart));
                }
            }
        }
        let mut per_chart: BTreeMap<&str, usize> = BTreeMap::new();
        for release in &releases {
            *per_chart.entry(release.chart.as_str()).or_default() += 1;
        }
        let counts: BTreeMap<String, usize> = per_chart
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        releases
            .into_iter()
            .map(|release| {
                let file = join(&release.chart, "Chart.yaml");
                let entry = if counts.get(&release.chart).copied().unwrap_or(0) > 1 {
                    format!("{file} (release {})", release.name)
                } else {
                    file
                };
                Planned { entry, release }
            })
            .collect()
    }

    pub(crate) fn program(&self) -> Result<PathBuf, String> {
        if self.binary.contains('/') {
            let path = PathBuf::from(&self.binary);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "cannot render Helm charts: helm.binary {} does not exist",
                    self.binary
                ))
            };
        }
        crate::kustomize::find_on_path(&self.binary).ok_or_else(|| {
            format!(
                "cannot render Helm charts: `{}` is not installed (on PATH); install Helm 3 or 4 or set helm.binary",
                self.binary
            )
        })
    }
}

// === impl Release ===

impl Release {
    fn from_config(cfg: &HelmReleaseConfig) -> Self {
        let values = match &cfg.values {
            Value::Object(map) if map.is_empty() => String::new(),
            // JSON is YAML: Helm reads it as a values file.
            other => other.to_string(),
        };
        Self {
            name: cfg.name.clone(),
            chart: normalise(&cfg.chart),
            namespace: (!cfg.namespace.is_empty()).then(|| cfg.namespace.clone()),
            values_files: cfg.values_files.iter().map(|p| normalise(p)).collect(),
            values,
            include_crds: cfg.include_crds,
        }
    }

    /// The release `helm.detect` makes of a chart directory.
    fn detected(chart: &str) -> Self {
        let name = chart.rsplit('/').next().unwrap_or(chart);
        Self {
            name: release_name(if name.is_empty() { "release" } else { name }),
            chart: chart.to_owned(),
            namespace: None,
            values_files: Vec::new(),
            values: String::new(),
            include_crds: true,
        }
    }

    /// A fingerprint of everything but the files that decides the rendering.
    pub(crate) fn fingerprint(&self, helm: &HelmOptions, caps: Option<&Capabilities>) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.name.as_str(),
            self.chart.as_str(),
            self.namespace.as_deref().unwrap_or("\u{0}"),
            self.values.as_str(),
            helm.binary.as_str(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.update([u8::from(self.include_crds), u8::from(helm.include_hooks)]);
        if let Some(caps) = caps {
            hasher.update(caps.kube_version.as_bytes());
            for v in &caps.api_versions {
                hasher.update(v.as_bytes());
                hasher.update([0]);
            }
        }
        hex::encode(&hasher.finalize()[..12])
    }
}

/// Helm's release-name rule applied to a directory name: lower case, `[a-z0-9-]`, at most 53.
fn release_name(dir: &str) -> String {
    let name: String = dir
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(53)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "release".to_owned()
    } else {
        name.to_owned()
    }
}

fn normalise(path: &str) -> String {
    path.trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

// === rendering ===

/// Renders `planned` from the chart written out at `workspace/tree/<chart>` and its values files
/// (written to `workspace/values`, outside the chart, which may be the repository root),
/// twice, and returns its objects (hooks dropped unless asked, unstable fields marked).
pub(crate) fn render(
    planned: &Planned,
    workspace: &Path,
    values: &[ValuesFile],
    commit: &str,
    options: &ReadOptions,
) -> Result<Vec<Arc<DesiredObject>>, ParseError> {
    let release = &planned.release;
    let fail = |message: String| ParseError::new(&planned.entry, None, message);
    let program = options.helm.program().map_err(&fail)?;
    let tree = workspace.join("tree");
    let chart_dir = crate::sandbox::under(&tree, &release.chart);
    if !chart_dir.join("Chart.yaml").is_file() {
        return Err(fail(format!(
            "release {}: {} holds no Chart.yaml at this commit",
            release.name,
            if release.chart.is_empty() {
                "the repository root".to_owned()
            } else {
                release.chart.clone()
            }
        )));
    }
    let namespace = release
        .namespace
        .clone()
        .unwrap_or_else(|| options.default_namespace.clone());
    let caps = options.scope.as_ref().and_then(|s| s.capabilities());
    let mut args: Vec<String> = vec![
        "template".into(),
        release.name.clone(),
        chart_dir.display().to_string(),
        "--namespace".into(),
        namespace.clone(),
    ];
    if let Some(caps) = &caps {
        args.push("--kube-version".into());
        args.push(caps.kube_version.clone());
        if !caps.api_versions.is_empty() {
            args.push("--api-versions".into());
            args.push(caps.api_versions.join(","));
        }
    }
    if release.include_crds {
        args.push("--include-crds".into());
    }
    let values_dir = workspace.join("values");
    std::fs::create_dir_all(&values_dir)
        .map_err(|e| fail(format!("cannot write the values files out: {e}")))?;
    let mut secrets: Vec<String> = Vec::new();
    for (i, file) in values.iter().enumerate() {
        let target = values_dir.join(format!("{i}.yaml"));
        std::fs::write(&target, &file.bytes)
            .map_err(|e| fail(format!("cannot write {} out: {e}", file.path)))?;
        collect_strings(&String::from_utf8_lossy(&file.bytes), &mut secrets);
        args.push("--values".into());
        args.push(target.display().to_string());
    }
    if !release.values.is_empty() {
        let target = values_dir.join("inline.yaml");
        std::fs::write(&target, &release.values)
            .map_err(|e| fail(format!("cannot write the inline values out: {e}")))?;
        collect_strings(&release.values, &mut secrets);
        args.push("--values".into());
        args.push(target.display().to_string());
    }
    if let Ok(text) = std::fs::read_to_string(chart_dir.join("values.yaml")) {
        collect_strings(&text, &mut secrets);
    }
    let paths: Vec<(String, String)> = values
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                values_dir.join(format!("{i}.yaml")).display().to_string(),
                f.path.clone(),
            )
        })
        .collect();
    let run = || {
        run_helm(&program, &args, workspace, &options.sandbox).map_err(|message| {
            let mut message = redact_values(&message, &secrets);
            // Our temporary paths mean nothing to a user: name the repository paths.
            for (tmp, repo) in &paths {
                message = message.replace(tmp.as_str(), repo);
            }
            message = message.replace(&format!("{}/", tree.display()), "");
            message = message.replace(&format!("{}/", workspace.display()), "");
            fail(format!(
                "release {} (chart {}): {message}",
                release.name,
                if release.chart.is_empty() {
                    "."
                } else {
                    &release.chart
                }
            ))
        })
    };
    let first = run()?;
    let second = run()?;
    let mut release_options = options.clone();
    release_options.default_namespace = namespace;
    let parse = |text: &str| parse_stream(text, planned, commit, &release_options);
    let (first, second) = (parse(&first)?, parse(&second)?);
    let include_hooks = options.helm.include_hooks;
    let second: BTreeMap<&ResourceKey, &DesiredObject> =
        second.iter().map(|o| (&o.key, o.as_ref())).collect();
    let mut out = Vec::with_capacity(first.len());
    for object in first {
        if !include_hooks && is_hook(&object.object.value()) {
            continue;
        }
        let Some(other) = second.get(&object.key) else {
            tracing::warn!(
                release = %release.name,
                object = %object.key.qualified_resource_id(),
                source = %object.source.source_path(),
                "the object's identity differs between two renders of the same inputs (a random name); left out"
            );
            continue;
        };
        let unstable = object.differing_fields(other);
        if unstable.is_empty() {
            out.push(object);
        } else {
            let object = Arc::unwrap_or_clone(object).with_unstable(unstable);
            out.push(Arc::new(object));
        }
    }
    Ok(out)
}

/// Runs `helm` in the sandbox; `Err` is Helm's message (unmasked) or the sandbox's.
fn run_helm(
    program: &Path,
    args: &[String],
    cwd: &Path,
    sandbox: &Sandbox,
) -> Result<String, String> {
    let output = sandbox.run_with_env(program, args, cwd, crate::sandbox::offline_env)?;
    if output.status.success() {
        return String::from_utf8(output.stdout)
            .map_err(|_| "helm template wrote output that is not UTF-8".to_owned());
    }
    let text = String::from_utf8_lossy(&output.stderr);
    let mut first: String = text
        .trim()
        .trim_start_matches("Error: ")
        .chars()
        .take(STDERR_KEPT)
        .collect();
    if first.is_empty() {
        first = format!("exit status {}", output.status);
    }
    if first.contains("missing in charts/") || first.contains("found in Chart.yaml, but missing") {
        first.push_str(
            " — dependencies are never downloaded: vendor them into the chart's charts/ directory \
             with `helm dependency build <chart>` and commit them",
        );
    }
    Err(format!("helm template failed: {first}"))
}

/// Splits Helm's output on its documents, each headed by `# Source: <chart>/<path>`, and parses
/// each with its repository path and its index among its template's documents.
fn parse_stream(
    text: &str,
    planned: &Planned,
    commit: &str,
    options: &ReadOptions,
) -> Result<Vec<Arc<DesiredObject>>, ParseError> {
    // Helm heads each template document with `# Source: <chart>/<path>`, but pastes `crds/`
    // files in as they are: a CRD file that starts with `---` leaves the comment in a document
    // of its own, and a file of several CRDs names its source once. A document without a
    // `# Source:` line therefore belongs to the last one named, and documents holding only
    // comments are not documents.
    let mut documents: Vec<(Option<String>, String)> = Vec::new();
    let mut source: Option<String> = None;
    let mut body = String::new();
    let mut flush = |source: &Option<String>, body: &mut String| {
        let has_content = body.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if has_content {
            documents.push((source.clone(), std::mem::take(body)));
        } else {
            body.clear();
        }
    };
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            flush(&source, &mut body);
            continue;
        }
        if let Some(named) = line.trim_end().strip_prefix("# Source: ") {
            source = Some(named.to_owned());
        }
        body.push_str(line);
    }
    flush(&source, &mut body);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (source, body) in documents {
        let path = match &source {
            Some(source) => repository_path(&planned.release.chart, source),
            None => planned.entry.clone(),
        };
        let index = seen.entry(path.clone()).or_default();
        let doc_index = *index;
        *index += 1;
        let objects = desired::parse_text(&body, &path, commit, Lines::Generated, options)
            .map_err(|e| {
                ParseError::new(
                    &planned.entry,
                    None,
                    format!(
                        "release {}: the rendered {}#{doc_index} does not parse: {}",
                        planned.release.name, path, e.message
                    ),
                )
            })?;
        for object in objects {
            let mut object = Arc::unwrap_or_clone(object);
            object.source.doc_index = doc_index;
            object.source.helm_release = Some(planned.release.name.clone());
            out.push(Arc::new(object));
        }
    }
    Ok(out)
}

/// `<chart name>/templates/x.yaml` → `<chart dir>/templates/x.yaml`.
fn repository_path(chart: &str, source: &str) -> String {
    let inside = source.split_once('/').map_or(source, |(_, rest)| rest);
    join(chart, inside)
}

fn is_hook(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(HOOK_ANNOTATION))
}

/// Every string scalar of at least 6 characters in a values text (values can hold passwords;
/// shorter ones are words like `true` and `http` that would blank out the whole message).
fn collect_strings(text: &str, out: &mut Vec<String>) {
    let Ok(documents) = driftguard_yaml::parse_documents(text, &driftguard_yaml::Limits::default())
    else {
        return;
    };
    for document in &documents {
        walk(&document.value, out);
    }
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) if s.chars().count() >= 6 => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
}

fn redact_values(text: &str, values: &[String]) -> String {
    let mut values: Vec<String> = values.to_vec();
    // Longest first, so a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    crate::kustomize::redact(text, &values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_map_to_repository_paths() {
        assert_eq!(
            repository_path("charts/web", "web/templates/deployment.yaml"),
            "charts/web/templates/deployment.yaml"
        );
        assert_eq!(
            repository_path("", "web/charts/redis/templates/svc.yaml"),
            "charts/redis/templates/svc.yaml"
        );
    }

    #[test]
    fn documents_without_their_own_source_line_belong_to_the_last_one_named() {
        let planned = Planned {
            entry: "charts/t/Chart.yaml".into(),
            release: Release::detected("charts/t"),
        };
        let cm = |name: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: web\n"
            )
        };
        let text = format!(
            "---\n# Source: t/crds/a.yaml\n\n---\n{}---\n{}---\n# Source: t/templates/x.yaml\n{}",
            cm("a0"),
            cm("a1"),
            cm("x0")
        );
        let options = ReadOptions::from_config(
            &driftguard_config::GitConfig::default(),
            "default",
            driftguard_core::SecretHasher::new(vec![1; 32]),
        )
        .unwrap();
        let sources: Vec<String> = parse_stream(&text, &planned, "c", &options)
            .unwrap()
            .iter()
            .map(|o| format!("{} {}", o.key.name, o.source.source_path()))
            .collect();
        assert_eq!(
            sources,
            [
                "a0 charts/t/crds/a.yaml#0",
                "a1 charts/t/crds/a.yaml#1",
                "x0 charts/t/templates/x.yaml#0"
            ]
        );
    }

    #[test]
    fn detection_names_releases_after_directories() {
        let helm = HelmOptions {
            releases: vec![Release {
                name: "prod-web".into(),
                chart: "charts/web".into(),
                namespace: Some("prod".into()),
                values_files: vec![],
                values: String::new(),
                include_crds: true,
            }],
            ..HelmOptions::default()
        };
        let planned = helm.plan(&["charts/web".into(), "charts/My_Api".into()]);
        let names: Vec<(&str, &str)> = planned
            .iter()
            .map(|p| (p.release.name.as_str(), p.entry.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("prod-web", "charts/web/Chart.yaml"),
                ("my-api", "charts/My_Api/Chart.yaml")
            ]
        );
        let off = HelmOptions {
            detect: false,
            ..helm
        };
        assert_eq!(off.plan(&["charts/api".into()]).len(), 1);
    }

    #[test]
    fn values_are_masked_in_messages() {
        let mut secrets = Vec::new();
        collect_strings(
            "db:\n  password: hunter2-long\n  port: 5432\nmode: on\n",
            &mut secrets,
        );
        assert_eq!(
            redact_values("bad value hunter2-long at db.password (on)", &secrets),
            "bad value *** at db.password (on)"
        );
    }
}

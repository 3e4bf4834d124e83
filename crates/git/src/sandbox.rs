//! The sandbox every renderer (Kustomize, Helm) runs in.
//!
//! A renderer is a child process fed with files from a semi-trusted repository. It runs:
//!
//! - with a **cleared environment**: only `PATH`, a temporary `HOME` and `TMPDIR` (both inside a
//!   private temporary directory removed afterwards), so no credential reaches it;
//! - with **stdout and stderr capped** in bytes: past the cap the child is killed;
//! - under a **deadline**: past it the child is killed (by its own handle);
//! - under a **memory ceiling**: its resident memory is read every 10 ms and past
//!   [`Sandbox::max_memory`] it is killed — a renderer shares the pod's memory limit with the
//!   service, and a kilobyte of YAML aliases can make Kustomize allocate gigabytes;
//! - on a **materialised subtree only** (the caller writes just the directories the rendering
//!   reaches into a temporary directory, see [`Kustomize`](crate::Kustomize)).
//!
//! Network access is prevented by the renderer's inputs being checked before it runs (remote
//! references are refused, see [`check_kustomization`]), not by the kernel.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Limits of one sandboxed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// How long one run may take before the child is killed.
    pub timeout: Duration,
    /// Most bytes read from stdout; past it the child is killed.
    pub max_stdout: usize,
    /// Most bytes read from stderr; past it the child is killed.
    pub max_stderr: usize,
    /// Most resident memory (bytes) the child may use; past it the child is killed.
    pub max_memory: u64,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Output {
    /// The child's exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_stdout: 64 << 20,
            max_stderr: 64 << 10,
            // Beside the service's own ~130 MiB at 10,000 resources, within a 512 MiB pod.
            max_memory: 320 << 20,
        }
    }
}

// === impl Sandbox ===

impl Sandbox {
    /// Runs `program args…` in `cwd` with a cleared environment and the limits of `self`.
    pub fn run(&self, program: &Path, args: &[String], cwd: &Path) -> Result<Output, String> {
        self.run_with_env(program, args, cwd, |_| Vec::new())
    }

    /// [`Sandbox::run`] with more environment variables, made from the sandbox's private home
    /// directory (so a renderer's own caches and configuration live and die with the run).
    pub fn run_with_env(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
        env: impl FnOnce(&Path) -> Vec<(&'static str, std::ffi::OsString)>,
    ) -> Result<Output, String> {
        let home = tempfile::Builder::new()
            .prefix("driftguard-sandbox-")
            .tempdir()
            .map_err(|e| format!("cannot create the sandbox's home: {e}"))?;
        let tmp = home.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create the sandbox: {e}"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", home.path())
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for (name, value) in env(home.path()) {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let overflow = Arc::new(AtomicBool::new(false));
        let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
        let (out_flag, err_flag) = (Arc::clone(&overflow), Arc::clone(&overflow));
        let (max_out, max_err) = (self.max_stdout, self.max_stderr);
        let out_reader = std::thread::spawn(move || read_capped(out_pipe, max_out, &out_flag));
        let err_reader = std::thread::spawn(move || read_capped(err_pipe, max_err, &err_flag));
        let started = Instant::now();
        let kill = |child: &mut std::process::Child| {
            // Our own child, stopped by its handle.
            let _ = child.kill();
            let _ = child.wait();
        };
        let status = loop {
            if overflow.load(Ordering::Relaxed) {
                kill(&mut child);
                return Err(format!(
                    "{} wrote more than {} bytes of output (or {} of errors); stopped",
                    program.display(),
                    self.max_stdout,
                    self.max_stderr
                ));
            }
            if resident_bytes(child.id()).is_some_and(|rss| rss > self.max_memory) {
                kill(&mut child);
                return Err(format!(
                    "{} used more than {} MiB of memory; stopped",
                    program.display(),
                    self.max_memory >> 20
                ));
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > self.timeout => {
                    kill(&mut child);
                    return Err(format!(
                        "{} took longer than {} s; stopped",
                        program.display(),
                        self.timeout.as_secs_f64()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
            }
        };
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if overflow.load(Ordering::Relaxed) {
            return Err(format!(
                "{} wrote more than {} bytes of output (or {} of errors)",
                program.display(),
                self.max_stdout,
                self.max_stderr
            ));
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// The resident memory of process `pid` (`VmRSS`), when it can be read.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Reads at most `cap` bytes; one more sets `overflow` and stops reading (the pipe is closed).
fn read_capped(pipe: Option<impl Read>, cap: usize, overflow: &AtomicBool) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(cap as u64 + 1).read_to_end(&mut buf);
        if buf.len() > cap {
            overflow.store(true, Ordering::Relaxed);
            buf.truncate(cap);
        }
    }
    buf
}

/// A directory's kustomization file (repository-relative) and its text, `Err` when it exists
/// but cannot be checked; `None` when the directory has none.
pub type KustomizationText = Option<(String, Result<String, String>)>;

/// Keys of a kustomization whose entries may name other kustomizations (directories or URLs).
const REFERENCE_KEYS: &[&str] = &["resources", "bases", "components", "crds"];

/// True when a kustomization entry names something remote (fetched over the network).
pub fn is_remote(entry: &str) -> bool {
    let e = entry.trim().to_ascii_lowercase();
    e.contains("://")
        || e.starts_with("git@")
        || e.starts_with("git::")
        || e.contains("?ref=")
        || e.contains("?version=")
        || [
            "github.com/",
            "gitlab.com/",
            "bitbucket.org/",
            "ssh:",
            "git:",
        ]
        .iter()
        .any(|p| e.starts_with(p))
}

/// 1-based line of the first line of `text` at or after `from` that contains `needle`.
fn line_of(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// A kustomization's refusal: the repository-relative file, its line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kustomization file (repository-relative).
    pub file: String,
    /// 1-based line of the offending entry.
    pub line: Option<usize>,
    /// Why.
    pub message: String,
}

impl Refusal {
    /// `file:line` (or just `file`).
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }
}

/// Lexically joins the repository-relative `dir` and a relative `entry`; `None` when the result
/// leaves the repository (or `entry` is absolute).
pub fn join_inside(dir: &str, entry: &str) -> Option<String> {
    let mut parts: Vec<String> = dir
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for component in Path::new(entry).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Checks the kustomization in the repository directory `dir` and every local kustomization it
/// reaches, reading each kustomization's text with `read` (`dir` → text of its kustomization
/// file and that file's repository-relative path). Refuses remote references and any string
/// value that is a path leaving the repository, and any kustomization it cannot check (`Err`
/// from `read`: too large, a link leaving the repository; or not valid YAML). Returns every directory reached (`dir` first),
/// which is what must be materialised for the rendering.
pub fn check_kustomization(
    dir: &str,
    read: &mut dyn FnMut(&str) -> KustomizationText,
) -> Result<Vec<String>, Refusal> {
    let mut reached = vec![dir.to_owned()];
    let mut next = 0;
    while next < reached.len() {
        let current = reached[next].clone();
        next += 1;
        let Some((file, text)) = read(&current) else {
            continue;
        };
        let text = match text {
            Ok(text) => text,
            Err(reason) => {
                return Err(Refusal {
                    file,
                    line: None,
                    message: format!("cannot be checked before rendering: {reason}"),
                });
            }
        };
        // What cannot be checked is not rendered: a text Kustomize's YAML reader accepts and
        // ours refuses could otherwise hide a remote reference.
        // Read by the one YAML reader, with its budgets: an alias bomb is refused here too.
        let doc = match crate::kustomize::parse_kustomization(&text) {
            Ok(doc) => doc,
            Err(e) => {
                return Err(Refusal {
                    file,
                    line: e.line,
                    message: format!("cannot be checked before rendering: {}", e.message),
                });
            }
        };
        if doc.is_null() {
            continue;
        }
        let refuse = |value: &str, message: String| Refusal {
            file: file.clone(),
            line: line_of(&text, value, 0),
            message,
        };
        // Every string anywhere: paths leaving the repository.
        let mut strings = Vec::new();
        collect_strings(&doc, &mut strings);
        for value in &strings {
            let v = value.trim();
            if Path::new(v)
                .components()
                .any(|c| matches!(c, Component::ParentDir))
                && !v.contains('\n')
                && join_inside(&current, v).is_none()
            {
                return Err(refuse(
                    v,
                    format!("{v:?} leaves the repository; only paths inside it may be used"),
                ));
            }
        }
        for key in REFERENCE_KEYS {
            let Some(items) = doc.get(*key).and_then(serde_json::Value::as_array) else {
                continue;
            };
            for item in items {
                let Some(entry) = item.as_str() else { continue };
                if entry.trim_start().starts_with('/') {
                    return Err(refuse(
                        entry,
                        format!(
                            "{key} entry {entry:?} is an absolute path; only paths inside the repository may be used"
                        ),
                    ));
                }
                if is_remote(entry) {
                    return Err(refuse(
                        entry,
                        format!(
                            "remote {key} entry {entry:?} refused: DriftGuard renders without network access; vendor it into the repository"
                        ),
                    ));
                }
                if let Some(target) = join_inside(&current, entry)
                    && !reached.contains(&target)
                    && read(&target).is_some()
                {
                    reached.push(target);
                }
            }
        }
        check_helm_charts(&doc).map_err(|(value, message)| refuse(&value, message))?;
        if reached.len() > 256 {
            return Err(Refusal {
                file,
                line: None,
                message: "more than 256 kustomizations reached".to_owned(),
            });
        }
    }
    Ok(reached)
}

/// Kustomize's `helmCharts`: only charts already in the repository. A chart repository (`repo`)
/// would be downloaded, and a values file may be a URL; an absolute chart home or values file
/// would read outside the repository. `Err` is (the offending text, why).
fn check_helm_charts(doc: &serde_json::Value) -> Result<(), (String, String)> {
    let local = |key: &str, value: &str| -> Result<(), (String, String)> {
        if is_remote(value) {
            return Err((
                value.to_owned(),
                format!(
                    "helmCharts {key} {value:?} is remote: DriftGuard renders without network access; vendor it into the repository"
                ),
            ));
        }
        if value.trim_start().starts_with('/') {
            return Err((
                value.to_owned(),
                format!(
                    "helmCharts {key} {value:?} is an absolute path; only paths inside the repository may be used"
                ),
            ));
        }
        Ok(())
    };
    if let Some(home) = doc
        .pointer("/helmGlobals/chartHome")
        .and_then(|v| v.as_str())
    {
        local("chartHome", home)?;
    }
    for chart in doc
        .get("helmCharts")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = chart.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        if let Some(repo) = chart.get("repo").and_then(|v| v.as_str())
            && !repo.trim().is_empty()
        {
            return Err((
                repo.to_owned(),
                format!(
                    "helmCharts entry {name:?} names a chart repository ({repo}): DriftGuard never downloads charts; vendor the chart into the chart home (charts/{name}) and remove `repo`"
                ),
            ));
        }
        if let Some(file) = chart.get("valuesFile").and_then(|v| v.as_str()) {
            local("valuesFile", file)?;
        }
        for file in chart
            .get("additionalValuesFiles")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            local("additionalValuesFiles", file)?;
        }
    }
    Ok(())
}

fn collect_strings(node: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match node {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out);
        }),
        _ => {}
    }
}

/// The environment every renderer gets on top of the sandbox's: Helm's homes inside the
/// sandbox's private `home` (no plugins, no repositories, no registry logins), no kubeconfig,
/// and every proxy pointed at a closed port on loopback, so an attempt to reach a chart
/// repository, an OCI registry or a URL fails at once instead of leaving the machine.
pub fn offline_env(home: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    let dir = |name: &str| home.join(name).into_os_string();
    let nowhere = std::ffi::OsString::from("http://127.0.0.1:9");
    vec![
        ("HELM_CACHE_HOME", dir("helm-cache")),
        ("HELM_CONFIG_HOME", dir("helm-config")),
        ("HELM_DATA_HOME", dir("helm-data")),
        ("HELM_PLUGINS", dir("helm-no-plugins")),
        ("HELM_REGISTRY_CONFIG", dir("helm-config/registry.json")),
        (
            "HELM_REPOSITORY_CONFIG",
            dir("helm-config/repositories.yaml"),
        ),
        ("HELM_REPOSITORY_CACHE", dir("helm-cache/repository")),
        ("KUBECONFIG", dir("no-kubeconfig")),
        ("HTTP_PROXY", nowhere.clone()),
        ("HTTPS_PROXY", nowhere.clone()),
        ("http_proxy", nowhere.clone()),
        ("https_proxy", nowhere.clone()),
        ("ALL_PROXY", nowhere),
        ("NO_PROXY", std::ffi::OsString::new()),
        ("no_proxy", std::ffi::OsString::new()),
    ]
}

/// A temporary directory holding only what one rendering needs.
pub(crate) fn workspace() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("driftguard-render-")
        .tempdir()
}

/// `root/dir` (`root` itself for the repository root).
pub(crate) fn under(root: &Path, dir: &str) -> PathBuf {
    if dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(dir)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn remote_entries_are_recognised() {
        for remote in [
            "http://127.0.0.1:1/base.yaml",
            "https://example.com/x",
            "github.com/org/repo//dir?ref=v1",
            "git@github.com:org/repo.git",
            "ssh://git@host/repo",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in ["../base", "cm.yaml", "sub/dir"] {
            assert!(!is_remote(local), "{local}");
        }
    }

    #[test]
    fn join_inside_stays_in_the_repository() {
        assert_eq!(join_inside("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(join_inside("a", "../..").as_deref(), None);
        assert_eq!(join_inside("", "/etc/passwd"), None);
    }

    #[test]
    fn remote_resource_is_refused_with_its_line() {
        let mut read = |dir: &str| {
            (dir == "app").then(|| {
                (
                    "app/kustomization.yaml".to_owned(),
                    Ok("resources:\n- cm.yaml\n- http://127.0.0.1:9/base.yaml\n".to_owned()),
                )
            })
        };
        let refusal = check_kustomization("app", &mut read).unwrap_err();
        assert_eq!(refusal.file, "app/kustomization.yaml");
        assert_eq!(refusal.line, Some(3));
    }

    #[test]
    fn an_absolute_path_is_refused_with_its_line() {
        let mut read = |dir: &str| {
            (dir == "app").then(|| {
                (
                    "app/kustomization.yaml".to_owned(),
                    Ok("resources:\n- cm.yaml\n- /etc/kubernetes/admin.yaml\n".to_owned()),
                )
            })
        };
        let refusal = check_kustomization("app", &mut read).unwrap_err();
        assert_eq!(refusal.line, Some(3));
        assert!(
            refusal.message.contains("absolute path"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn capped_output_kills_the_child() {
        let sandbox = Sandbox {
            max_stdout: 1000,
            ..Sandbox::default()
        };
        let err = sandbox
            .run(
                Path::new("/bin/sh"),
                &["-c".into(), "yes".into()],
                Path::new("/"),
            )
            .unwrap_err();
        assert!(err.contains("more than 1000 bytes"), "{err}");
    }

    #[test]
    fn a_child_over_its_memory_ceiling_is_killed() {
        let sandbox = Sandbox {
            max_memory: 64 << 20,
            timeout: Duration::from_secs(30),
            ..Sandbox::default()
        };
        // python3 holds 1 GiB, a step at a time: the watchdog stops it near 64 MiB.
        let started = Instant::now();
        let err = sandbox
            .run(
                Path::new("/usr/bin/python3"),
                &[
                    "-c".into(),
                    "import time\nx=[]\nfor _ in range(1024):\n    x.append(bytearray(1<<20)); time.sleep(0.001)".into(),
                ],
                Path::new("/"),
            )
            .unwrap_err();
        assert!(err.contains("more than 64 MiB of memory"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn timeout_kills_the_child_and_env_is_cleared() {
        let sandbox = Sandbox {
            timeout: Duration::from_millis(200),
            ..Sandbox::default()
        };
        let err = sandbox
            .run(
                Path::new("/bin/sh"),
                &["-c".into(), "sleep 5".into()],
                Path::new("/"),
            )
            .unwrap_err();
        assert!(err.contains("took longer"), "{err}");
        let out = Sandbox::default()
            .run(
                Path::new("/bin/sh"),
                &["-c".into(), "env".into()],
                Path::new("/"),
            )
            .unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| !["PATH", "HOME", "TMPDIR", "PWD", "SHLVL", "_"].contains(k))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

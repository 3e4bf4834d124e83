//! Rendering Kustomize directories with `kustomize build` or `kubectl kustomize`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// How long one rendering may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

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

    /// Renders `dir`, returning the YAML stream.
    pub fn render(&self, dir: &Path) -> Result<String, String> {
        let (program, args) = self.resolve()?;
        let mut child = Command::new(&program)
            .args(&args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out_reader = std::thread::spawn(move || read_all(stdout));
        let err_reader = std::thread::spawn(move || read_all(stderr));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > RENDER_TIMEOUT => {
                    // Our own child, stopped by its handle.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} took longer than {} s",
                        program.display(),
                        RENDER_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
            }
        };
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(&stderr);
            let mut first: String = text.trim().chars().take(STDERR_KEPT).collect();
            if first.is_empty() {
                first = format!("exit status {status}");
            }
            return Err(format!("kustomize failed: {first}"));
        }
        String::from_utf8(stdout).map_err(|_| "kustomize output is not valid UTF-8".to_owned())
    }
}

fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

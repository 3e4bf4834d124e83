//! Running the helper scripts and CLIs, with their stderr in every error.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `command`, feeding `stdin` when given, and returns its stdout. A failure names the command
/// line and carries its stderr.
pub(crate) fn run(command: &mut Command, stdin: Option<&str>) -> Result<String> {
    let line = describe(command);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // A command that exits early closes the pipe; its exit status tells the real story.
        let _ = pipe.write_all(input.as_bytes());
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("could not wait for `{line}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{line}` failed ({}):\n{}{}",
            output.status,
            stderr.trim_end(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\nstdout:\n{}", stdout.trim_end())
            }
        );
    }
    Ok(stdout)
}

/// Runs one of the repository's bash scripts (`scripts/NAME`) with `args`.
pub(crate) fn run_script(name: &str, args: &[&str]) -> Result<String> {
    let script = crate::repo_root().join("scripts").join(name);
    if !script.is_file() {
        bail!("{} is missing", script.display());
    }
    run(Command::new("bash").arg(&script).args(args), None)
}

/// The path as a `&str`, for command lines.
pub(crate) fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

//! Running the helper scripts and CLIs, with their stderr in every error.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Starts a server on a free loopback port (`command` builds its command line for a port) and
/// waits until it accepts connections; retried when the port was taken meanwhile.
pub(crate) fn spawn_listening(
    what: &str,
    log: &Path,
    command: impl Fn(u16) -> Command,
) -> Result<(Child, u16)> {
    let mut last = None;
    for _ in 0..5 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .context("could not find a free loopback port")?
            .port();
        let out = std::fs::File::create(log).context("could not create a log file")?;
        let mut child = command(port)
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("could not share the log file")?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("could not start {what}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                last = Some(anyhow::anyhow!(
                    "{what} on port {port} exited at start ({status}): {}",
                    text.trim()
                ));
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok((child, port));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{what} did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{what} did not start")))
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

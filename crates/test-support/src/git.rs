//! Real Git repositories for tests, made with the `git` CLI.
//!
//! A [`TestRepo`] is a bare repository (the "remote" DriftGuard fetches from, see
//! [`TestRepo::url`]) plus a working clone where the test writes files. [`TestRepo::commit`]
//! commits and pushes, so the remote always shows what the test committed last. History can be
//! rewritten ([`TestRepo::force_push_reset`], [`TestRepo::amend`]) and branches created or
//! deleted, as a real upstream would. [`TestRepo::serve_git_daemon`] also serves the remote over
//! `git://` on a loopback port.
//!
//! Git runs without the user's or system's configuration, with a fixed identity, so results do
//! not depend on the machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::process::{path_str, run, spawn_listening};

/// A bare "remote" repository and a working clone, in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestRepo {
    // Declared first so the daemon stops before its directory is removed.
    daemon: Mutex<Option<GitDaemon>>,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct GitDaemon {
    child: Child,
    url: String,
}

const BARE: &str = "remote.git";
const WORK: &str = "work";

// === impl TestRepo ===

impl TestRepo {
    /// An empty repository whose default branch is `main` (nothing committed yet).
    pub fn new() -> Result<TestRepo> {
        let dir = tempfile::Builder::new()
            .prefix("driftguard-repo-")
            .tempdir()
            .context("could not create a temporary directory for a Git repository")?;
        let repo = TestRepo {
            daemon: Mutex::new(None),
            dir,
        };
        let root = repo.dir.path();
        git(
            root,
            &["init", "--quiet", "--bare", "--initial-branch=main", BARE],
        )?;
        git(root, &["init", "--quiet", "--initial-branch=main", WORK])?;
        let bare = path_str(&repo.bare_path())?.to_owned();
        repo.git(&["remote", "add", "origin", &bare])?;
        Ok(repo)
    }

    /// A repository with one commit on `main` holding `files` (`(path, contents)` pairs).
    pub fn with_files(files: &[(&str, &str)]) -> Result<TestRepo> {
        let repo = TestRepo::new()?;
        for (path, contents) in files {
            repo.write(path, contents)?;
        }
        repo.commit("initial manifests")?;
        Ok(repo)
    }

    /// The remote's URL, `file:///…/remote.git`: what DriftGuard's `git.repository_url` takes.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare_path().display())
    }

    /// The bare remote repository's directory.
    pub fn bare_path(&self) -> PathBuf {
        self.dir.path().join(BARE)
    }

    /// The working clone's directory (where [`TestRepo::write`] puts files).
    pub fn work_path(&self) -> PathBuf {
        self.dir.path().join(WORK)
    }

    /// Writes `contents` to `path` (relative to the repository root) in the working clone,
    /// creating parent directories. Committed by the next [`TestRepo::commit`].
    pub fn write(&self, path: &str, contents: &str) -> Result<()> {
        let file = self.file(path)?;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        std::fs::write(&file, contents).with_context(|| format!("could not write {path}"))
    }

    /// Removes a file or a directory from the working clone. Committed by the next
    /// [`TestRepo::commit`].
    pub fn remove(&self, path: &str) -> Result<()> {
        let file = self.file(path)?;
        if file.is_dir() {
            std::fs::remove_dir_all(&file)
        } else {
            std::fs::remove_file(&file)
        }
        .with_context(|| format!("could not remove {path}"))
    }

    /// Commits every change in the working clone (even none), pushes the current branch to the
    /// remote and returns the new commit's SHA.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "--all"])?;
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message])?;
        self.push(false)?;
        self.head()
    }

    /// Rewrites the last commit with the working clone's changes and `message`, force-pushes,
    /// and returns the new SHA (the old one is no longer on the branch).
    pub fn amend(&self, message: &str) -> Result<String> {
        self.git(&["add", "--all"])?;
        self.git(&[
            "commit",
            "--quiet",
            "--amend",
            "--allow-empty",
            "--message",
            message,
        ])?;
        self.push(true)?;
        self.head()
    }

    /// Resets the current branch to `sha` (discarding later commits) and force-pushes it:
    /// history rewritten upstream.
    pub fn force_push_reset(&self, sha: &str) -> Result<()> {
        self.git(&["reset", "--quiet", "--hard", sha])?;
        self.push(true)
    }

    /// The SHA of the working clone's `HEAD`.
    pub fn head(&self) -> Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_owned())
    }

    /// The branch the working clone is on.
    pub fn current_branch(&self) -> Result<String> {
        Ok(self
            .git(&["symbolic-ref", "--short", "HEAD"])?
            .trim()
            .to_owned())
    }

    /// Creates `branch` at the current commit, pushes it and switches the working clone to it.
    pub fn create_branch(&self, branch: &str) -> Result<()> {
        self.git(&["checkout", "--quiet", "-b", branch])?;
        self.push(false)
    }

    /// Switches the working clone to an existing local `branch`.
    pub fn checkout(&self, branch: &str) -> Result<()> {
        self.git(&["checkout", "--quiet", branch])?;
        Ok(())
    }

    /// Deletes `branch` from the remote (and locally, unless it is checked out).
    pub fn delete_branch(&self, branch: &str) -> Result<()> {
        self.git(&["push", "--quiet", "origin", "--delete", branch])?;
        if self.current_branch().ok().as_deref() != Some(branch) {
            self.git(&["branch", "--quiet", "-D", branch])?;
        }
        Ok(())
    }

    /// Runs `git <args>` in the working clone and returns its stdout.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        git(&self.work_path(), args)
    }

    /// Serves the remote with `git daemon` on a free loopback port and returns its
    /// `git://127.0.0.1:PORT/remote.git` URL. The daemon lives until
    /// [`TestRepo::stop_git_daemon`] or the repository is dropped; a second call returns the same
    /// URL.
    pub fn serve_git_daemon(&self) -> Result<String> {
        let mut slot = self
            .daemon
            .lock()
            .map_err(|_| anyhow::anyhow!("git daemon state poisoned"))?;
        if let Some(daemon) = slot.as_mut()
            && daemon.child.try_wait().ok().flatten().is_none()
        {
            return Ok(daemon.url.clone());
        }
        let daemon = GitDaemon::spawn(self.dir.path())?;
        let url = daemon.url.clone();
        *slot = Some(daemon);
        Ok(url)
    }

    /// Stops the `git daemon` started by [`TestRepo::serve_git_daemon`] (an upstream outage).
    pub fn stop_git_daemon(&self) {
        if let Ok(mut slot) = self.daemon.lock()
            && let Some(daemon) = slot.take()
        {
            drop(daemon);
        }
    }

    fn push(&self, force: bool) -> Result<()> {
        let branch = self.current_branch()?;
        let refspec = format!("HEAD:refs/heads/{branch}");
        let mut args = vec!["push", "--quiet"];
        if force {
            args.push("--force");
        }
        args.extend(["origin", refspec.as_str()]);
        self.git(&args)?;
        Ok(())
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!("{path} is not a path inside the repository");
        }
        Ok(self.work_path().join(relative))
    }
}

// === impl GitDaemon ===

impl GitDaemon {
    fn spawn(base: &Path) -> Result<GitDaemon> {
        // `git daemon` would run `git-daemon` as a child that outlives a kill of `git`: start
        // the real program so the PID we hold is the server's.
        let exec_path = git(base, &["--exec-path"])?;
        let program = Path::new(exec_path.trim()).join("git-daemon");
        let base_path = format!("--base-path={}", path_str(base)?);
        let (child, port) =
            spawn_listening("`git daemon`", &base.join("git-daemon.log"), |port| {
                let mut command = Command::new(&program);
                isolate(&mut command)
                    .current_dir(base)
                    .args([
                        "--reuseaddr",
                        "--export-all",
                        "--informative-errors",
                        "--listen=127.0.0.1",
                    ])
                    .arg(format!("--port={port}"))
                    .arg(&base_path);
                command
            })?;
        Ok(GitDaemon {
            child,
            url: format!("git://127.0.0.1:{port}/{BARE}"),
        })
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    isolate(&mut command).current_dir(dir);
    command
}

/// No user or system configuration, a fixed identity, never a prompt.
fn isolate(command: &mut Command) -> &mut Command {
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "DriftGuard Test")
        .env("GIT_AUTHOR_EMAIL", "test@driftguard.invalid")
        .env("GIT_COMMITTER_NAME", "DriftGuard Test")
        .env("GIT_COMMITTER_EMAIL", "test@driftguard.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    run(git_command(dir).args(args), None)
}

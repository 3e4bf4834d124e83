//! What the Git benches share.

use std::path::Path;
use std::process::Command;

/// Runs `git args…` in `dir` as a fixed author; panics when git fails.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.invalid")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.invalid")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

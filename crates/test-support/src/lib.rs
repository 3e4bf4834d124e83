//! Shared helpers for DriftGuard's integration tests: real peers, never mocks.
//!
//! - [`cluster`]: the local Kubernetes control plane started by `scripts/control-plane.sh`
//!   ([`cluster::TestCluster::shared`], one fresh namespace per test) and private planes for tests
//!   that stop the API server ([`cluster::PrivateCluster`]).
//! - [`git`]: real Git repositories made with the `git` CLI, served over `file://` or `git://`
//!   ([`git::TestRepo`]); [`git_peers`] serves them over https (token) and ssh (key).
//! - [`mongo`]: the MongoDB-wire peer started by `scripts/mongo-peer.sh`
//!   ([`mongo::TestMongo::shared`]) and private instances for outage tests
//!   ([`mongo::PrivateMongo`]).
//! - [`corpus_dir`]: the real-world manifest corpus beside the project; [`corpus`]: its files
//!   packed into batches whose object names do not collide, rewritten into namespaces of their own.
//! - [`records`]: `driftguard check -o json` run as a subprocess, and drift records made
//!   comparable between `check` and `serve`.
//! - [`receiver`]: a local HTTP receiver recording webhook requests ([`receiver::Receiver`]:
//!   status to answer, stop/restart on the same port, signature checks), and private Debian
//!   Alertmanagers on loopback ([`alertmanager::PrivateAlertmanager`]).
//! - [`browser`]: headless Chromium through chromedriver (WebDriver), for the dashboard.
//! - [`helm_binary`] and [`charts_dir`]: the pinned Helm installed by `scripts/helm.sh`
//!   (`DRIFTGUARD_TEST_HELM`) and the real public charts beside the project.
//!
//! The shared peers are handed over through `DRIFTGUARD_TEST_KUBECONFIG` and
//! `DRIFTGUARD_TEST_MONGODB_URI` (never `KUBECONFIG`/`MONGODB_URI`). When one is missing the
//! helpers panic with the command that starts it: a test that needs a peer never passes silently
//! without one. `scripts/test.sh` starts both and runs the whole suite.

pub mod alertmanager;
pub mod browser;
pub mod cluster;
pub mod corpus;
pub mod git;
pub mod git_peers;
pub mod mongo;
pub mod receiver;
pub mod records;
pub mod serve;
pub mod tcp_proxy;

mod process;

pub use corpus::corpus_dir;

use std::path::{Path, PathBuf};

/// The root of the DriftGuard workspace (where `scripts/` lives).
///
/// Located from this crate's manifest directory at compile time, so it follows the checkout that
/// was built.
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|crates| crates.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// The pinned Helm binary (`DRIFTGUARD_TEST_HELM`, set by `scripts/test.sh`).
///
/// # Panics
///
/// When the variable is unset or names no file, with the command that installs it: tests that
/// need Helm never pass silently without it.
pub fn helm_binary() -> PathBuf {
    match std::env::var_os("DRIFTGUARD_TEST_HELM") {
        Some(path) if PathBuf::from(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "Helm is not installed for the tests: run `bash scripts/helm.sh install` and export \
             DRIFTGUARD_TEST_HELM=<the path it prints> (or run scripts/test.sh)"
        ),
    }
}

/// The real public Helm charts used as test data (`testdata/charts` in the project, or
/// `DRIFTGUARD_TEST_CHARTS`).
pub fn charts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DRIFTGUARD_TEST_CHARTS") {
        return PathBuf::from(dir);
    }
    repo_root().join("testdata/charts")
}

/// Copies the directory `from` (recursively) to `to`, creating `to` and its subdirectories.
///
/// # Panics
///
/// On any I/O error (a test fixture that cannot be copied is a broken test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
            .path();
        let Some(name) = path.file_name() else {
            continue;
        };
        let target = to.join(name);
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
}

/// A name unique to this call: `prefix` reduced to lower-case letters, digits and `-`, plus a
/// random suffix. Valid as a Kubernetes namespace (DNS label) and as a MongoDB database name.
pub fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &suffix[..12];
    if clean.is_empty() {
        format!("t-{suffix}")
    } else {
        format!("{clean}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_name_is_a_dns_label() {
        let name = unique_name("Drift_Detection::Replicas Test with a very long prefix indeed");
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        assert_ne!(unique_name("x"), unique_name("x"));
        assert!(unique_name("--").starts_with("t-"));
    }

    #[test]
    fn repo_root_holds_the_scripts() {
        assert!(repo_root().join("Cargo.toml").is_file());
    }
}

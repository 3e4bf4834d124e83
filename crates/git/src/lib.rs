//! The Git edge of DriftGuard: the desired state, read from a Git repository (or a directory).
//!
//! # Entry points
//!
//! - [`GitSource`]: follows `git.repository_url` at `git.default_branch` (a branch, a tag or a
//!   full commit SHA). [`GitSource::sync`] fetches and, when the commit moved, builds a new
//!   [`Snapshot`] incrementally; [`GitSource::snapshot`] is the current one.
//! - [`load_local`]: PATH mode — a directory read as it is on disk (`check --repo ./dir`).
//! - [`load_once`]: `check`'s one load — PATH mode, or a shallow fetch into a self-cleaning
//!   temporary directory.
//! - [`manifest`]: the YAML-aware multi-document parser on its own.
//!
//! A synchronous API: the service calls it from `spawn_blocking`.
//!
//! # Decisions
//!
//! - **libgit2 (git2)** for repository access: mature, in-process (no `git` binary needed at
//!   run time), credential callbacks, and `file://`, `git://`, `https://` and `ssh://` transports.
//!   Credentials come only from the environment: `DRIFTGUARD_GIT_TOKEN` (HTTPS token; user name
//!   `DRIFTGUARD_GIT_USERNAME` or `x-access-token`), or `DRIFTGUARD_GIT_USERNAME` +
//!   `DRIFTGUARD_GIT_PASSWORD`; for SSH `DRIFTGUARD_GIT_SSH_KEY` (+ `…_SSH_PASSPHRASE`), then the
//!   ssh-agent, then `~/.ssh/id_ed25519|id_ecdsa|id_rsa`. Every URL in a message has its
//!   `user:password@` removed, and libgit2's own messages are scrubbed of the raw URL and of
//!   the token/password.
//! - **No checkout**: the clone is bare; a commit's tree is read blob by blob. A force-push is
//!   just a new commit. For Kustomize, only the directories a kustomization reaches (itself,
//!   its local bases and components) are written to a temporary directory, within
//!   `git.max_total_bytes`, and rendered in the [`sandbox`].
//! - **Budgets**: `git.max_files`, `git.max_total_bytes`, `git.max_tree_entries` and
//!   `git.snapshot_timeout` bound one snapshot build; blob sizes are read from the object header
//!   before inflating. Over budget the build fails with [`Error::Budget`] and the previous
//!   snapshot stays in force.
//! - **Incremental**: each [`FileEntry`] remembers its blob id; a new commit re-parses only
//!   changed blobs. A Kustomize directory is re-rendered when its directory tree id changes —
//!   or, if its kustomization mentions `..`, a URL or `?ref=`, whenever the commit changes.
//! - **A file that stops parsing keeps its last good objects** (contract §4): the error is in
//!   [`Snapshot::errors`] and the objects stay in [`Snapshot::objects`].
//! - **Secrets**: every object goes through [`driftguard_core::SecretHasher::redact`] right
//!   after parsing, before identity, hash or anything else; parse errors never quote values.
//! - **Source paths**: `path#N`, N the 0-based index of the document in the file's YAML stream
//!   (empty documents count). Items of a `kind: List` share the List's N and keep their own
//!   line. Kustomize output: `dir/kustomization.yaml#N`, N the index in the rendered stream,
//!   no line. [`driftguard_core::Source::commit`] is the commit at which the file was read;
//!   it equals [`Snapshot::commit`] except for objects carried over from a file that now fails.
//! - **Field lines**: [`Snapshot::field_lines`] says on which line of its file each changed
//!   field of an object is written, by reading that one file again when asked (at the object's
//!   commit in the bare clone, or from disk in PATH mode); nothing per object is kept for it.
//!   Kustomize and Helm output have no lines.
//! - **Duplicates**: the first definition (files in path order, documents in order) is kept;
//!   each later one is an error naming both places.
//!
//! # Example
//!
//! ```no_run
//! use driftguard_config::GitConfig;
//! use driftguard_core::SecretHasher;
//! use driftguard_git::{GitSource, SyncOutcome};
//!
//! # fn main() -> Result<(), driftguard_git::Error> {
//! let cfg = GitConfig {
//!     repository_url: "https://example.com/org/deploy.git".into(),
//!     ..GitConfig::default()
//! };
//! let mut source = GitSource::open(&cfg, "default", SecretHasher::new(vec![7; 32]))?;
//! if let SyncOutcome::Updated { diff, .. } = source.sync()? {
//!     for key in diff.keys() {
//!         println!("re-evaluate {key}");
//!     }
//! }
//! println!("{} objects", source.snapshot().objects.len());
//! # Ok(())
//! # }
//! ```

mod desired;
mod error;
pub mod helm;
mod kustomize;
mod lines;
mod local;
pub mod manifest;
mod namespacing;
mod oneshot;
mod options;
mod repo;
pub mod sandbox;
mod select;
mod snapshot;
mod url;

pub use desired::{Lines, parse_file, parse_text};
pub use error::{Error, GitError, ParseError, Result};
pub use helm::{HelmOptions, Release};
pub use kustomize::Kustomize;
pub use lines::SourceFiles;
pub use local::{WORKING_TREE, load_local};
pub use namespacing::{CLUSTER_SCOPED, ScopeLookup, is_namespaced};
pub use oneshot::{ONESHOT_PREFIX, STALE_AFTER, fetch_into, is_url, load_once, remove_stale};
pub use options::{Budgets, ReadOptions};
pub use repo::{
    Counters, ENV_PASSWORD, ENV_SSH_KEY, ENV_SSH_PASSPHRASE, ENV_TOKEN, ENV_USERNAME, GitSource,
    SyncOutcome,
};
pub use select::{
    CHART_FILE, KUSTOMIZATION_FILES, KustomizeDir, Listed, Plan, Selection, is_manifest_name,
};
pub use snapshot::{BuildStats, FileEntry, FileKind, Snapshot, SnapshotDiff};
pub use url::{clone_dir_name, redact as redact_url};

//! The remote repository: a bare clone in `git.workdir`, fetched with libgit2, read commit by
//! commit without a checkout.
//!
//! The clone lives in `<workdir>/repo-<hash of the URL without credentials>` and is reused on
//! restart. Each sync fetches exactly the followed reference with a forced refspec
//! (`+refs/heads/B:refs/remotes/origin/B`, and the same for a tag of that name), then reads the
//! tree of the commit the remote *advertised* for it. A force-push or a rewritten history is
//! therefore just another commit; a branch the remote no longer advertises is
//! [`Error::ReferenceNotFound`] (the caller keeps the last snapshot), and it works again once
//! the branch is recreated. A full 40-hex commit SHA is fetched once and never moves.
//!
//! The fetch runs on a worker thread: the transfer-progress callback aborts it past the
//! deadline, and the caller stops waiting at the deadline regardless (a connection that never
//! answers does not call any callback). A timed-out fetch that is still running makes the next
//! sync fail fast with [`Error::FetchInProgress`] instead of piling up threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use driftguard_config::GitConfig;
use driftguard_core::SecretHasher;
use git2::{
    AutotagOption, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository,
    TreeWalkMode, TreeWalkResult,
};

use crate::error::{Error, GitError, ParseError, Result};
use crate::lines::SourceFiles;
use crate::local::too_big;
use crate::options::ReadOptions;
use crate::select::{KUSTOMIZATION_FILES, KustomizeDir, Listed};
use crate::snapshot::{self, Snapshot, SnapshotDiff, Spent, Tree};

/// Environment variable holding an HTTPS token (used as the password).
pub const ENV_TOKEN: &str = "DRIFTGUARD_GIT_TOKEN";
/// Environment variable holding the HTTPS user name (with a token, or with a password).
pub const ENV_USERNAME: &str = "DRIFTGUARD_GIT_USERNAME";
/// Environment variable holding the HTTPS password.
pub const ENV_PASSWORD: &str = "DRIFTGUARD_GIT_PASSWORD";
/// Environment variable naming an SSH private key file.
pub const ENV_SSH_KEY: &str = "DRIFTGUARD_GIT_SSH_KEY";
/// Environment variable holding the passphrase of that key.
pub const ENV_SSH_PASSPHRASE: &str = "DRIFTGUARD_GIT_SSH_PASSPHRASE";

/// The desired-state repository, followed commit by commit.
pub struct GitSource {
    url: String,
    display_url: String,
    reference: Reference,
    clone_dir: PathBuf,
    clone_timeout: Duration,
    pull_timeout: Duration,
    credentials: Credentials,
    options: ReadOptions,
    /// Shared with whoever took it ([`GitSource::shared_snapshot`]): one copy in memory.
    snapshot: Arc<Snapshot>,
    /// Where snapshots read their files again (shared by every snapshot built here).
    sources: SourceFiles,
    counters: Counters,
    in_flight: Option<mpsc::Receiver<FetchResult>>,
    /// Commits of history fetched per reference; 0 = all (see [`GitSource::with_depth`]).
    depth: i32,
}

/// What one [`GitSource::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The remote still points at the commit of the current snapshot (only the fetch was paid).
    Unchanged {
        /// That commit.
        commit: String,
    },
    /// A new snapshot was built.
    Updated {
        /// Commit of the previous snapshot (`""` on the first sync).
        previous_commit: String,
        /// Commit of the new snapshot.
        commit: String,
        /// Resources to re-evaluate.
        diff: SnapshotDiff,
    },
}

/// Cumulative counters of a [`GitSource`] (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Fetches attempted.
    pub fetches: u64,
    /// Fetches that failed or timed out.
    pub fetch_failures: u64,
    /// Snapshots built.
    pub snapshots_built: u64,
    /// File contents read, over all builds.
    pub files_read: u64,
    /// Files parsed, over all builds.
    pub files_parsed: u64,
    /// Kustomize directories rendered, over all builds.
    pub kustomizations_rendered: u64,
    /// Objects in the current snapshot.
    pub objects: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    /// A branch or tag name (a branch wins when both exist).
    Name(String),
    /// A full commit SHA.
    Commit(Oid),
}

/// Credentials from the environment, never from the configuration file.
#[derive(Clone, Default)]
struct Credentials {
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ssh_key: Option<PathBuf>,
    ssh_passphrase: Option<String>,
}

struct FetchJob {
    repo_path: PathBuf,
    url: String,
    refspecs: Vec<String>,
    credentials: Credentials,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    depth: i32,
}

enum FetchFailure {
    TimedOut,
    Git(GitError),
}

type FetchResult = std::result::Result<Vec<(String, Oid)>, FetchFailure>;

// === impl GitSource ===

impl GitSource {
    /// Prepares the clone directory for `cfg.repository_url` (no network yet: the first
    /// [`GitSource::sync`] clones). Credentials are read from the environment now.
    pub fn open(cfg: &GitConfig, default_namespace: &str, hasher: SecretHasher) -> Result<Self> {
        let options = ReadOptions::from_config(cfg, default_namespace, hasher)?;
        Self::open_with(cfg, options)
    }

    /// Like [`GitSource::open`] with explicit read options (scope lookup, Kustomize command).
    pub fn open_with(cfg: &GitConfig, options: ReadOptions) -> Result<Self> {
        let url = cfg.repository_url.trim().to_owned();
        if url.is_empty() {
            return Err(Error::NoRepository);
        }
        let display_url = crate::url::redact(&url);
        let workdir = if cfg.workdir.is_empty() {
            std::env::temp_dir().join("driftguard-git")
        } else {
            PathBuf::from(&cfg.workdir)
        };
        let clone_dir = workdir.join(crate::url::clone_dir_name(&url));
        let workdir_error = |source: GitError| Error::Workdir {
            url: display_url.clone(),
            dir: clone_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&clone_dir)
            .map_err(|e| workdir_error(GitError::other(e.to_string())))?;
        if Repository::open_bare(&clone_dir).is_err() {
            Repository::init_bare(&clone_dir)
                .map_err(|e| workdir_error(GitError::clean(&e, &url, &[])))?;
        }
        let branch = cfg.default_branch.trim();
        let reference = if branch.len() == 40 && branch.chars().all(|c| c.is_ascii_hexdigit()) {
            match Oid::from_str(branch) {
                Ok(oid) => Reference::Commit(oid),
                Err(_) => Reference::Name(branch.to_owned()),
            }
        } else if branch.is_empty() {
            Reference::Name("main".to_owned())
        } else {
            Reference::Name(branch.to_owned())
        };
        Ok(Self {
            url,
            display_url,
            reference,
            sources: SourceFiles::repository(&clone_dir, &options),
            clone_dir,
            clone_timeout: cfg.clone_timeout,
            pull_timeout: cfg.pull_timeout,
            credentials: Credentials::from_env(),
            options,
            snapshot: Arc::new(Snapshot::default()),
            counters: Counters::default(),
            in_flight: None,
            depth: 0,
        })
    }

    /// Fetches only the last `depth` commits of a branch or tag (a shallow clone; 0 = all), for
    /// the one-shot load. A full commit SHA may lie anywhere in the history: it is always
    /// fetched in full. A transport or server that refuses shallow fetches (libgit2's local
    /// transport, for `file://`) gets a full fetch instead.
    pub(crate) fn with_depth(mut self, depth: i32) -> Self {
        self.depth = depth.max(0);
        self
    }

    /// The current snapshot (empty, commit `""`, before the first successful sync).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The current snapshot, shared rather than copied: at 100,000 objects a copy of the
    /// snapshot's maps and keys is tens of megabytes.
    pub fn shared_snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot)
    }

    /// Cumulative counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The repository URL without credentials.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Where the clone lives.
    pub fn clone_dir(&self) -> &Path {
        &self.clone_dir
    }

    /// The read options in force.
    pub fn options(&self) -> &ReadOptions {
        &self.options
    }

    /// Fetches the followed reference and, when it moved, builds the new snapshot.
    ///
    /// On error the previous snapshot stays in place. Files that fail to parse are not errors
    /// here: they are in [`Snapshot::errors`].
    pub fn sync(&mut self) -> Result<SyncOutcome> {
        let target = self.fetch_target()?;
        let commit = target.to_string();
        if commit == self.snapshot.commit {
            return Ok(SyncOutcome::Unchanged { commit });
        }
        let repo =
            Repository::open_bare(&self.clone_dir).map_err(|e| self.read_error(&commit, &e))?;
        let mut tree = GitTree::new(&repo, &self.display_url, target, &self.options)
            .map_err(|e| self.read_error(&commit, &e))?;
        let previous = self.snapshot.is_built().then_some(&*self.snapshot);
        let mut next = snapshot::build(&mut tree, &self.options, previous)?;
        next.sources = self.sources.clone();
        let diff = self.snapshot.diff(&next);
        let previous_commit = std::mem::replace(&mut self.snapshot, Arc::new(next))
            .commit
            .clone();
        let stats = self.snapshot.stats;
        self.counters.snapshots_built += 1;
        self.counters.files_read += stats.files_read as u64;
        self.counters.files_parsed += stats.files_parsed as u64;
        self.counters.kustomizations_rendered += stats.kustomizations_rendered as u64;
        self.counters.objects = stats.objects;
        tracing::info!(
            url = %self.display_url,
            commit = %self.snapshot.commit,
            objects = stats.objects,
            parsed = stats.files_parsed,
            errors = self.snapshot.errors.len(),
            "desired state updated"
        );
        Ok(SyncOutcome::Updated {
            previous_commit,
            commit,
            diff,
        })
    }

    fn read_error(&self, commit: &str, error: &git2::Error) -> Error {
        Error::ReadCommit {
            url: self.display_url.clone(),
            commit: commit.to_owned(),
            source: GitError::clean(error, &self.url, &self.credentials.secrets()),
        }
    }

    fn fetch_error(&self, source: GitError) -> Error {
        Error::Fetch {
            url: self.display_url.clone(),
            reference: self.reference.to_string(),
            source,
        }
    }

    /// Fetches and returns the commit to read.
    fn fetch_target(&mut self) -> Result<Oid> {
        if let Some(pending) = &self.in_flight {
            match pending.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    return Err(Error::FetchInProgress {
                        url: self.display_url.clone(),
                    });
                }
                Ok(_) | Err(mpsc::TryRecvError::Disconnected) => self.in_flight = None,
            }
        }
        let secrets = self.credentials.secrets();
        let repo = Repository::open_bare(&self.clone_dir).map_err(|e| Error::Workdir {
            url: self.display_url.clone(),
            dir: self.clone_dir.display().to_string(),
            source: GitError::clean(&e, &self.url, &secrets),
        })?;
        let mut depth = self.depth;
        let refspecs = match &self.reference {
            Reference::Commit(oid) => {
                depth = 0;
                if repo.find_commit(*oid).is_ok() {
                    return Ok(*oid);
                }
                vec![
                    "+refs/heads/*:refs/remotes/origin/*".to_owned(),
                    "+refs/tags/*:refs/tags/*".to_owned(),
                ]
            }
            Reference::Name(name) => {
                let branch = format!("refs/heads/{name}");
                if !git2::Reference::is_valid_name(&branch) {
                    return Err(self.fetch_error(GitError::other(format!(
                        "{name:?} is not a valid branch or tag name"
                    ))));
                }
                vec![
                    format!("+refs/heads/{name}:refs/remotes/origin/{name}"),
                    format!("+refs/tags/{name}:refs/tags/{name}"),
                ]
            }
        };
        let fresh = match repo.references() {
            Ok(mut refs) => refs.next().is_none(),
            Err(_) => true,
        };
        let timeout = if fresh {
            self.clone_timeout
        } else {
            self.pull_timeout
        };
        drop(repo);

        let cancel = Arc::new(AtomicBool::new(false));
        let job = FetchJob {
            repo_path: self.clone_dir.clone(),
            url: self.url.clone(),
            refspecs,
            credentials: self.credentials.clone(),
            deadline: Instant::now() + timeout,
            cancel: Arc::clone(&cancel),
            depth,
        };
        let (sender, receiver) = mpsc::channel();
        self.counters.fetches += 1;
        let spawned = std::thread::Builder::new()
            .name("driftguard-git-fetch".to_owned())
            .spawn(move || {
                let _ = sender.send(run_fetch(job));
            });
        if let Err(e) = spawned {
            self.counters.fetch_failures += 1;
            return Err(self.fetch_error(GitError::other(format!(
                "cannot start the fetch thread: {e}"
            ))));
        }
        let timed_out = || Error::Timeout {
            url: self.display_url.clone(),
            reference: self.reference.to_string(),
            seconds: timeout.as_secs(),
        };
        let heads = match receiver.recv_timeout(timeout) {
            Ok(Ok(heads)) => heads,
            Ok(Err(FetchFailure::TimedOut)) => {
                self.counters.fetch_failures += 1;
                return Err(timed_out());
            }
            Ok(Err(FetchFailure::Git(e))) => {
                self.counters.fetch_failures += 1;
                return Err(self.fetch_error(e));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                cancel.store(true, Ordering::Relaxed);
                self.in_flight = Some(receiver);
                self.counters.fetch_failures += 1;
                return Err(timed_out());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.counters.fetch_failures += 1;
                return Err(self.fetch_error(GitError::other("the fetch thread stopped")));
            }
        };
        self.resolve(&heads)
    }

    /// Picks the commit the remote advertised for the followed reference.
    fn resolve(&self, heads: &[(String, Oid)]) -> Result<Oid> {
        let not_found = || Error::ReferenceNotFound {
            url: self.display_url.clone(),
            reference: self.reference.to_string(),
        };
        let repo = Repository::open_bare(&self.clone_dir).map_err(|e| Error::Workdir {
            url: self.display_url.clone(),
            dir: self.clone_dir.display().to_string(),
            source: GitError::clean(&e, &self.url, &[]),
        })?;
        let oid = match &self.reference {
            Reference::Commit(oid) => *oid,
            Reference::Name(name) => {
                let find = |refname: String| {
                    heads
                        .iter()
                        .find(|(n, _)| *n == refname)
                        .map(|(_, oid)| *oid)
                };
                match find(format!("refs/heads/{name}"))
                    .or_else(|| find(format!("refs/tags/{name}^{{}}")))
                    .or_else(|| find(format!("refs/tags/{name}")))
                {
                    Some(oid) => oid,
                    None => {
                        // The branch is gone: drop the stale tracking ref so nothing reads it.
                        if let Ok(mut stale) =
                            repo.find_reference(&format!("refs/remotes/origin/{name}"))
                        {
                            let _ = stale.delete();
                        }
                        return Err(not_found());
                    }
                }
            }
        };
        match repo.find_object(oid, None).and_then(|o| o.peel_to_commit()) {
            Ok(commit) => Ok(commit.id()),
            Err(_) => Err(not_found()),
        }
    }
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &self.display_url)
            .field("reference", &self.reference)
            .field("clone_dir", &self.clone_dir)
            .field("commit", &self.snapshot.commit)
            .finish_non_exhaustive()
    }
}

// === impl Reference ===

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Name(name) => f.write_str(name),
            Reference::Commit(oid) => write!(f, "{oid}"),
        }
    }
}

// === impl Credentials ===

impl Credentials {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            token: var(ENV_TOKEN),
            username: var(ENV_USERNAME),
            password: var(ENV_PASSWORD),
            ssh_key: var(ENV_SSH_KEY).map(PathBuf::from),
            ssh_passphrase: var(ENV_SSH_PASSPHRASE),
        }
    }

    /// Strings that must never appear in a message.
    fn secrets(&self) -> Vec<String> {
        [&self.token, &self.password, &self.ssh_passphrase]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// SSH keys to offer, in order: the explicit key, the agent (as `None`), `~/.ssh` keys.
    fn ssh_candidates(&self) -> Vec<Option<PathBuf>> {
        let mut candidates = Vec::new();
        if let Some(key) = &self.ssh_key {
            candidates.push(Some(key.clone()));
        }
        candidates.push(None);
        if let Some(home) = std::env::var_os("HOME") {
            let dir = PathBuf::from(home).join(".ssh");
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = dir.join(name);
                if path.is_file() {
                    candidates.push(Some(path));
                }
            }
        }
        candidates
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.is_some())
            .field("username", &self.username)
            .field("password", &self.password.is_some())
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

// === reading a local repository where it is ===

/// `check`'s load of a `file://` URL: the repository is on this disk, so the commit its branch
/// or tag names is read where it is — nothing is fetched or written. (libgit2's local transport
/// refuses shallow fetches, and a full one packs and delta-compresses every object of the
/// history only to write them next to the originals.)
///
/// `None` when this does not apply: not a plain `file:///path` URL (a host, `%` escapes), a
/// commit SHA (reachability from a branch or tag is what a fetch would check), a name that is
/// no valid branch name, or no repository that opens there. The caller then fetches as usual,
/// and that fetch reports its own error.
pub(crate) fn read_in_place(cfg: &GitConfig, options: &ReadOptions) -> Option<Result<Snapshot>> {
    let url = cfg.repository_url.trim();
    let path = file_url_path(url)?;
    let name = match cfg.default_branch.trim() {
        "" => "main",
        name => name,
    };
    if name.len() == 40 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return None;
    }
    let repo = Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .ok()?;
    let display_url = crate::url::redact(url);
    // As a fetch resolves the advertised references: the branch, else the tag (peeled).
    let commit = repo
        .find_reference(&format!("refs/heads/{name}"))
        .or_else(|_| repo.find_reference(&format!("refs/tags/{name}")))
        .and_then(|reference| reference.peel_to_commit());
    let commit = match commit {
        Ok(commit) => commit.id(),
        Err(_) => {
            return Some(Err(Error::ReferenceNotFound {
                url: display_url,
                reference: name.to_owned(),
            }));
        }
    };
    let read_error = |e: &git2::Error| Error::ReadCommit {
        url: display_url.clone(),
        commit: commit.to_string(),
        source: GitError::clean(e, url, &[]),
    };
    Some((|| {
        let mut tree =
            GitTree::new(&repo, &display_url, commit, options).map_err(|e| read_error(&e))?;
        let mut snapshot = snapshot::build(&mut tree, options, None)?;
        // Lines are read again from the same object database, at the same commit.
        snapshot.sources = SourceFiles::repository(repo.path(), options);
        tracing::debug!(
            url = %display_url,
            commit = %snapshot.commit,
            objects = snapshot.stats.objects,
            parsed = snapshot.stats.files_parsed,
            errors = snapshot.errors.len(),
            "desired state read in place"
        );
        Ok(snapshot)
    })())
}

/// The directory of a `file:///path` (or `file://localhost/path`) URL; `None` for anything
/// else, and for a path with `%` escapes (left to libgit2's own decoding, through a fetch).
fn file_url_path(url: &str) -> Option<&Path> {
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("file://"))
        .and_then(|_| url.get(7..))?;
    let rest = match rest.strip_prefix("localhost") {
        Some(after) if after.starts_with('/') => after,
        _ => rest,
    };
    (rest.starts_with('/') && !rest.contains('%')).then(|| Path::new(rest))
}

// === fetching ===

fn run_fetch(job: FetchJob) -> FetchResult {
    let secrets = job.credentials.secrets();
    let clean = |e: &git2::Error| GitError::clean(e, &job.url, &secrets);
    let repo = Repository::open_bare(&job.repo_path).map_err(|e| FetchFailure::Git(clean(&e)))?;
    let mut remote = repo
        .remote_anonymous(&job.url)
        .map_err(|e| FetchFailure::Git(clean(&e)))?;
    let mut result = remote.fetch(
        &job.refspecs,
        Some(&mut fetch_options(&job, job.depth)),
        None,
    );
    // A transport or server that cannot fetch shallow says so while negotiating, before any
    // object is sent: fetch the whole history instead.
    if job.depth > 0
        && let Err(e) = &result
        && refuses_shallow(e)
    {
        tracing::debug!(url = %crate::url::redact(&job.url), error = %e.message(), "shallow fetch refused; fetching the whole history");
        remote = repo
            .remote_anonymous(&job.url)
            .map_err(|e| FetchFailure::Git(clean(&e)))?;
        result = remote.fetch(&job.refspecs, Some(&mut fetch_options(&job, 0)), None);
    }
    if Instant::now() >= job.deadline || job.cancel.load(Ordering::Relaxed) {
        return Err(FetchFailure::TimedOut);
    }
    result.map_err(|e| FetchFailure::Git(clean(&e)))?;
    let heads = remote
        .list()
        .map_err(|e| FetchFailure::Git(clean(&e)))?
        .iter()
        .map(|head| (head.name().to_owned(), head.oid()))
        .collect();
    Ok(heads)
}

/// True when a fetch failed because the transport or the server does not do shallow fetches:
/// libgit2's local transport ("shallow fetch is not supported by the local transport") and a
/// smart server without the `shallow` capability ("server doesn't support shallow").
fn refuses_shallow(error: &git2::Error) -> bool {
    error.class() == git2::ErrorClass::Net && error.message().contains("shallow")
}

/// The options of one fetch attempt: progress callbacks that abort past the deadline,
/// credentials from the environment, no tags, and `depth` commits of history (0 = all).
fn fetch_options(job: &FetchJob, depth: i32) -> FetchOptions<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let deadline = job.deadline;
    let cancel = Arc::clone(&job.cancel);
    let keep_going = move || Instant::now() < deadline && !cancel.load(Ordering::Relaxed);
    let progress_check = keep_going.clone();
    callbacks.transfer_progress(move |_| progress_check());
    let sideband_check = keep_going.clone();
    callbacks.sideband_progress(move |_| sideband_check());
    let credentials = job.credentials.clone();
    let ssh_candidates = credentials.ssh_candidates();
    let mut ssh_next = 0usize;
    let mut userpass_tried = false;
    let mut attempts = 0u32;
    callbacks.credentials(move |_url, username_from_url, allowed| {
        attempts += 1;
        if attempts > 10 {
            return Err(git2::Error::from_str(
                "authentication failed: no more credentials to try",
            ));
        }
        let user = username_from_url
            .map(str::to_owned)
            .or_else(|| credentials.username.clone())
            .unwrap_or_else(|| "git".to_owned());
        if allowed.contains(CredentialType::USERNAME) {
            return git2::Cred::username(&user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            while ssh_next < ssh_candidates.len() {
                let candidate = ssh_candidates[ssh_next].clone();
                ssh_next += 1;
                let result = match &candidate {
                    None => git2::Cred::ssh_key_from_agent(&user),
                    Some(key) => git2::Cred::ssh_key(
                        &user,
                        None,
                        key,
                        credentials.ssh_passphrase.as_deref(),
                    ),
                };
                if let Ok(cred) = result {
                    return Ok(cred);
                }
            }
            return Err(git2::Error::from_str(
                "SSH authentication failed: tried DRIFTGUARD_GIT_SSH_KEY, the ssh-agent and ~/.ssh keys",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if userpass_tried {
                return Err(git2::Error::from_str(
                    "HTTP authentication failed with the credentials from the environment",
                ));
            }
            userpass_tried = true;
            if let Some(token) = &credentials.token {
                let user = credentials
                    .username
                    .clone()
                    .or_else(|| username_from_url.map(str::to_owned))
                    .unwrap_or_else(|| "x-access-token".to_owned());
                return git2::Cred::userpass_plaintext(&user, token);
            }
            if let (Some(user), Some(password)) = (&credentials.username, &credentials.password) {
                return git2::Cred::userpass_plaintext(user, password);
            }
            return Err(git2::Error::from_str(
                "authentication required: set DRIFTGUARD_GIT_TOKEN or DRIFTGUARD_GIT_USERNAME and DRIFTGUARD_GIT_PASSWORD",
            ));
        }
        Err(git2::Error::from_str(
            "the server asks for an unsupported authentication method",
        ))
    });

    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false)
        .depth(depth);
    options
}

// === the tree of one commit ===

struct GitTree<'r> {
    repo: &'r Repository,
    url: String,
    commit: String,
    root: git2::Tree<'r>,
    paths: Vec<String>,
    dirs: HashMap<String, Oid>,
}

impl<'r> GitTree<'r> {
    fn new(
        repo: &'r Repository,
        url: &str,
        commit: Oid,
        options: &ReadOptions,
    ) -> Result<Self, git2::Error> {
        let root = repo.find_commit(commit)?.tree()?;
        Ok(Self {
            repo,
            url: url.to_owned(),
            commit: commit.to_string(),
            root,
            paths: options.selection.paths().to_vec(),
            dirs: HashMap::new(),
        })
    }

    fn walk(
        &mut self,
        tree: &git2::Tree<'_>,
        prefix: &str,
        files: &mut Vec<Listed>,
        spent: &mut Spent,
        entries: &mut u64,
    ) -> Result<()> {
        let dirs = &mut self.dirs;
        let mut over: Option<Error> = None;
        let walked = tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
            let Some(name) = entry.name() else {
                return TreeWalkResult::Skip;
            };
            let path = format!("{prefix}{parent}{name}");
            *entries += 1;
            let checked = spent.check_entries(*entries, &path).and_then(|()| {
                if entries.is_multiple_of(1024) {
                    spent.check_deadline(&path)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = checked {
                over = Some(e);
                return TreeWalkResult::Abort;
            }
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    dirs.insert(path, entry.id());
                }
                // Regular files only: symlinks (0o120000) and submodules are not followed.
                Some(ObjectType::Blob) if matches!(entry.filemode(), 0o100644 | 0o100755) => {
                    if let Err(e) = spent.check_files(files.len() as u64 + 1, &path) {
                        over = Some(e);
                        return TreeWalkResult::Abort;
                    }
                    files.push(Listed {
                        path,
                        id: Some(entry.id().to_string()),
                        size: 0,
                    });
                }
                _ => {}
            }
            TreeWalkResult::Ok
        });
        if let Some(e) = over {
            return Err(e);
        }
        walked.map_err(|e| Error::ReadCommit {
            url: self.url.clone(),
            commit: self.commit.clone(),
            source: GitError::clean(&e, "", &[]),
        })
    }

    fn blob_at(&self, path: &str) -> Option<git2::Blob<'r>> {
        let entry = self.root.get_path(Path::new(path)).ok()?;
        self.repo.find_blob(entry.id()).ok()
    }
}

impl Tree for GitTree<'_> {
    fn files(&mut self, spent: &mut Spent) -> Result<Vec<Listed>> {
        let mut files = Vec::new();
        let mut entries = 0u64;
        let roots = if self.paths.is_empty() {
            vec![String::new()]
        } else {
            self.paths.clone()
        };
        let (url, commit) = (self.url.clone(), self.commit.clone());
        let read_error = |e: git2::Error| Error::ReadCommit {
            url: url.clone(),
            commit: commit.clone(),
            source: GitError::clean(&e, "", &[]),
        };
        for root in roots {
            if root.is_empty() {
                let tree = self.root.clone();
                self.dirs.insert(String::new(), tree.id());
                self.walk(&tree, "", &mut files, spent, &mut entries)?;
                continue;
            }
            let Ok(entry) = self.root.get_path(Path::new(&root)) else {
                tracing::warn!(path = %root, commit = %self.commit, "git.path does not exist in this commit");
                continue;
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let tree = self.repo.find_tree(entry.id()).map_err(read_error)?;
                    self.dirs.insert(root.clone(), tree.id());
                    self.walk(&tree, &format!("{root}/"), &mut files, spent, &mut entries)?;
                }
                Some(ObjectType::Blob) => files.push(Listed {
                    path: root.clone(),
                    id: Some(entry.id().to_string()),
                    size: 0,
                }),
                _ => {}
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Ok(files)
    }

    fn read(&mut self, file: &Listed, max_size: u64) -> Result<Vec<u8>, ParseError> {
        let unreadable = |e: git2::Error| {
            ParseError::new(
                &file.path,
                None,
                format!("cannot read blob: {}", e.message()),
            )
        };
        let oid = file
            .id
            .as_deref()
            .and_then(|id| Oid::from_str(id).ok())
            .ok_or_else(|| ParseError::new(&file.path, None, "no blob id"))?;
        let odb = self.repo.odb().map_err(unreadable)?;
        // A loose object (a repository read in place, or objects fetched since the last pack)
        // streams: one open and one inflate give its size, then its bytes. Reading its header
        // first and the object after cost twice that, and was most of the read. Packed objects
        // do not stream: their header gives the size, then the object is read.
        let stream = odb.reader(oid).ok();
        let size = match &stream {
            Some((_, size, _)) => *size,
            None => odb.read_header(oid).map_err(unreadable)?.0,
        };
        if size as u64 > max_size {
            return Err(too_big(&file.path, size as u64, max_size));
        }
        if let Some((reader, _, kind)) = stream {
            if kind != git2::ObjectType::Blob {
                return Err(ParseError::new(
                    &file.path,
                    None,
                    format!("cannot read blob: the object is a {kind}"),
                ));
            }
            let mut bytes = Vec::with_capacity(size);
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, size as u64), &mut bytes)
                .map_err(|e| ParseError::new(&file.path, None, format!("cannot read blob: {e}")))?;
            return Ok(bytes);
        }
        let blob = self.repo.find_blob(oid).map_err(unreadable)?;
        Ok(blob.content().to_vec())
    }

    fn kustomize_fingerprint(&mut self, dir: &KustomizeDir) -> Option<String> {
        let text = self.blob_at(&dir.file)?.content().to_vec();
        let text = String::from_utf8_lossy(&text);
        // A kustomization that reaches outside its directory (bases, components, remote
        // resources) is re-rendered whenever anything in the commit changes.
        if text.contains("..") || text.contains("://") || text.contains("?ref=") {
            return Some(format!("root:{}", self.root.id()));
        }
        self.dir_fingerprint(&dir.dir)
    }

    fn kustomization(&mut self, dir: &str) -> crate::sandbox::KustomizationText {
        KUSTOMIZATION_FILES.iter().find_map(|name| {
            let file = if dir.is_empty() {
                (*name).to_owned()
            } else {
                format!("{dir}/{name}")
            };
            let entry = self.root.get_path(Path::new(&file)).ok()?;
            // Links are never written out for rendering: Kustomize will not see this one.
            if !matches!(entry.filemode(), 0o100644 | 0o100755) {
                return None;
            }
            let text = (|| {
                let odb = self.repo.odb().map_err(|e| e.message().to_owned())?;
                let (size, _) = odb
                    .read_header(entry.id())
                    .map_err(|e| e.message().to_owned())?;
                if size > 1 << 20 {
                    return Err(format!("{size} bytes, more than 1 MiB"));
                }
                let blob = self
                    .repo
                    .find_blob(entry.id())
                    .map_err(|e| e.message().to_owned())?;
                Ok(String::from_utf8_lossy(blob.content()).into_owned())
            })();
            Some((file, text))
        })
    }

    fn materialise(
        &mut self,
        dirs: &[String],
        into: &Path,
        spent: &mut Spent,
    ) -> Result<Result<(), ParseError>> {
        let materialise_error = |source: std::io::Error| Error::Materialise {
            commit: self.commit.clone(),
            source,
        };
        let git_error =
            |e: git2::Error| materialise_error(std::io::Error::other(e.message().to_owned()));
        let odb = self.repo.odb().map_err(git_error)?;
        let mut entries = 0u64;
        for dir in dirs {
            let tree = if dir.is_empty() {
                self.root.clone()
            } else {
                match self.root.get_path(Path::new(dir)) {
                    Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                        self.repo.find_tree(entry.id()).map_err(git_error)?
                    }
                    _ => continue,
                }
            };
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            let mut blobs: Vec<(String, Oid)> = Vec::new();
            let mut over: Option<Error> = None;
            let walked = tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
                let Some(name) = entry.name() else {
                    return TreeWalkResult::Skip;
                };
                let path = format!("{prefix}{parent}{name}");
                entries += 1;
                if let Err(e) = spent.check_entries(entries, &path) {
                    over = Some(e);
                    return TreeWalkResult::Abort;
                }
                if entry.kind() == Some(ObjectType::Blob)
                    && matches!(entry.filemode(), 0o100644 | 0o100755)
                {
                    blobs.push((path, entry.id()));
                }
                TreeWalkResult::Ok
            });
            if let Some(e) = over {
                return Err(e);
            }
            walked.map_err(git_error)?;
            for (path, oid) in blobs {
                // Git trees cannot hold `..` or absolute paths, but never trust a path blindly.
                if path.split('/').any(|part| part == ".." || part.is_empty()) {
                    continue;
                }
                spent.check_deadline(&path)?;
                // The size from the object header, before inflating anything.
                let (size, _) = odb.read_header(oid).map_err(git_error)?;
                if size as u64 > spent.max_file_size {
                    return Ok(Err(too_big(&path, size as u64, spent.max_file_size)));
                }
                spent.add_bytes(size as u64, &path)?;
                let target = into.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(materialise_error)?;
                }
                let blob = self.repo.find_blob(oid).map_err(git_error)?;
                std::fs::write(&target, blob.content()).map_err(materialise_error)?;
            }
        }
        Ok(Ok(()))
    }

    fn dir_fingerprint(&mut self, dir: &str) -> Option<String> {
        let id = if dir.is_empty() {
            self.root.id()
        } else {
            match self.dirs.get(dir) {
                Some(id) => *id,
                None => {
                    let entry = self.root.get_path(Path::new(dir)).ok()?;
                    (entry.kind() == Some(ObjectType::Tree)).then(|| entry.id())?
                }
            }
        };
        Some(format!("tree:{id}"))
    }

    fn lookup(&mut self, path: &str) -> Option<Listed> {
        let entry = self.root.get_path(Path::new(path)).ok()?;
        // Links are never followed out of a Git tree.
        if entry.kind() != Some(ObjectType::Blob)
            || !matches!(entry.filemode(), 0o100644 | 0o100755)
        {
            return None;
        }
        Some(Listed {
            path: path.to_owned(),
            id: Some(entry.id().to_string()),
            size: 0,
        })
    }

    fn commit(&self) -> &str {
        &self.commit
    }
}

//! Errors of the Git edge.
//!
//! Two families: [`Error`] is a failure of the repository as a whole (cannot fetch, branch gone,
//! bad configuration) — the caller keeps its last snapshot; [`ParseError`] is one file that could
//! not be turned into objects — it is reported inside the snapshot and the rest of the repository
//! is still used.

use std::fmt;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of the repository as a whole. Every URL in a message has its credentials stripped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `git.repository_url` is empty.
    #[error("git.repository_url is not set")]
    NoRepository,
    /// An include/exclude glob does not compile.
    #[error("invalid glob {glob:?} in git.{key}")]
    Glob {
        /// `include` or `exclude`.
        key: &'static str,
        /// The glob as written.
        glob: String,
        /// What globset said.
        #[source]
        source: globset::Error,
    },
    /// The clone directory could not be created or opened.
    #[error("cannot prepare the clone of {url} in {dir}")]
    Workdir {
        /// Repository URL (credentials stripped).
        url: String,
        /// The clone directory.
        dir: String,
        /// The underlying failure.
        #[source]
        source: GitError,
    },
    /// Fetching from the remote failed.
    #[error("cannot fetch {reference} from {url}")]
    Fetch {
        /// Repository URL (credentials stripped).
        url: String,
        /// Branch, tag or commit asked for.
        reference: String,
        /// The underlying failure.
        #[source]
        source: GitError,
    },
    /// The fetch did not finish within `git.clone_timeout` / `git.pull_timeout`.
    #[error("fetching {reference} from {url} took longer than {seconds} s")]
    Timeout {
        /// Repository URL (credentials stripped).
        url: String,
        /// Branch, tag or commit asked for.
        reference: String,
        /// The limit that was exceeded.
        seconds: u64,
    },
    /// A fetch that timed out earlier is still running in the background.
    #[error("a previous fetch of {url} is still running")]
    FetchInProgress {
        /// Repository URL (credentials stripped).
        url: String,
    },
    /// The remote has no branch or tag of that name (deleted?), or the commit does not exist.
    #[error("{url} has no branch, tag or commit named {reference:?}")]
    ReferenceNotFound {
        /// Repository URL (credentials stripped).
        url: String,
        /// Branch, tag or commit asked for.
        reference: String,
    },
    /// The fetched commit could not be read from the local clone.
    #[error("cannot read commit {commit} of {url}")]
    ReadCommit {
        /// Repository URL (credentials stripped).
        url: String,
        /// The commit.
        commit: String,
        /// The underlying failure.
        #[source]
        source: GitError,
    },
    /// A local directory (PATH mode) could not be read.
    #[error("cannot read directory {path}")]
    LocalDir {
        /// The directory.
        path: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A budget of the snapshot build was exceeded; the previous snapshot stays in force.
    #[error("{budget} ({limit}) exceeded at {path:?} in commit {commit}")]
    Budget {
        /// The configuration key of the budget (`git.max_tree_entries`, …).
        budget: &'static str,
        /// Its value (seconds for `git.snapshot_timeout`).
        limit: u64,
        /// Where it was exceeded (repository-relative).
        path: String,
        /// The commit being read.
        commit: String,
    },
    /// The tree could not be written out for Kustomize.
    #[error("cannot materialise commit {commit} for kustomize")]
    Materialise {
        /// The commit.
        commit: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// A libgit2 error whose message has been cleaned of credentials.
///
/// libgit2 sometimes repeats the URL it was given (user and password included) in its messages,
/// so its errors are never passed on as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitError {
    /// The cleaned message.
    pub message: String,
    /// libgit2's error class (`Net`, `Ssh`, `Http`, …) as text.
    pub class: String,
}

/// One file (or one Kustomize directory) that could not be turned into objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Repository-relative path (`dir/kustomization.yaml` for a Kustomize directory).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong. Never contains a value from the file (Secret values must not leak).
    pub message: String,
}

// === impl Error ===

impl Error {
    /// A short, stable label for metrics (`git_errors_total{reason=…}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoRepository | Error::Glob { .. } => "config",
            Error::Workdir { .. } => "workdir",
            Error::Fetch { .. } => "fetch",
            Error::Timeout { .. } | Error::FetchInProgress { .. } => "timeout",
            Error::ReferenceNotFound { .. } => "reference_not_found",
            Error::ReadCommit { .. } | Error::Materialise { .. } => "read",
            Error::LocalDir { .. } => "local_dir",
            Error::Budget { .. } => "budget",
        }
    }
}

// === impl GitError ===

impl GitError {
    /// Cleans `error`: every occurrence of `secrets` (raw URL, token, password) is replaced.
    pub(crate) fn clean(error: &git2::Error, url: &str, secrets: &[String]) -> Self {
        let mut message = error.message().to_owned();
        let redacted = crate::url::redact(url);
        if !url.is_empty() && url != redacted {
            message = message.replace(url, &redacted);
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            message = message.replace(secret.as_str(), "***");
        }
        if let Some(hint) = hint(error) {
            message.push_str(" — ");
            message.push_str(hint);
        }
        Self {
            message,
            class: format!("{:?}", error.class()),
        }
    }

    /// An error made here rather than by libgit2.
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: "DriftGuard".to_owned(),
        }
    }
}

/// What to do about the errors users meet first on ssh and https URLs.
fn hint(error: &git2::Error) -> Option<&'static str> {
    if error.code() != git2::ErrorCode::Certificate {
        return None;
    }
    Some(match error.class() {
        git2::ErrorClass::Ssh => {
            "the server's host key must be in ~/.ssh/known_hosts of the user DriftGuard runs as \
             (for example from `ssh-keyscan -p PORT HOST`)"
        }
        _ => {
            "the server's certificate is not signed by a trusted CA; for a private CA, set \
             SSL_CERT_FILE to a bundle that holds it"
        }
    })
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GitError {}

// === impl ParseError ===

impl ParseError {
    /// A parse error at `path` (and `line`, when known).
    pub fn new(path: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// `path:line` (or just `path`), as used in messages.
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.path),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

impl std::error::Error for ParseError {}

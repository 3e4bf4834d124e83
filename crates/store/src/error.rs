//! Store errors.
//!
//! Messages name the operation that failed and never carry record contents (which could hold
//! Secret digests) nor connection strings (which could hold passwords); the driver's error is
//! kept as the `source` for the log line at the boundary.

/// Boxed driver error.
type Source = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store cannot be reached right now (connection, IO, lock timeout): retry later. The
    /// API answers 503.
    #[error("store unavailable while {operation}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: Source,
    },
    /// The store answered but the operation failed.
    #[error("store failed while {operation}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: Source,
    },
    /// Stored data could not be decoded.
    #[error("stored data for {what} is unreadable")]
    Corrupt {
        /// Which item.
        what: String,
        /// The decoding error.
        #[source]
        source: Source,
    },
    /// The configuration or the stored schema does not fit this version.
    #[error("{0}")]
    Config(String),
    /// Another replica claimed a higher writer's term ([`crate::Store::claim_term`]): this
    /// handle's writes are refused (issue 19). Not "unavailable": retrying cannot succeed until
    /// this replica claims the term again.
    #[error(
        "another replica leads now (term {current}); this replica's writes at term {term} are refused"
    )]
    Fenced {
        /// The term this handle claimed.
        term: u64,
        /// The store's current term, claimed by another handle.
        current: u64,
    },
}

/// Results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === impl Error ===

impl Error {
    /// True when retrying later may succeed (the API maps it to 503, the buffer keeps the write).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// True when the write was refused because another replica claimed a higher term.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced { .. })
    }

    /// A short label for metrics and logs: `unavailable`, `backend`, `corrupt`, `config` or
    /// `fenced`.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "unavailable",
            Error::Backend { .. } => "backend",
            Error::Corrupt { .. } => "corrupt",
            Error::Config(_) => "config",
            Error::Fenced { .. } => "fenced",
        }
    }

    /// The message followed by its causes (`: `-separated), for the log line at the boundary.
    /// Like the message, the causes never carry record contents.
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    /// A store failure whose cause is a message of ours (no driver error to keep).
    pub(crate) fn backend(operation: &'static str, message: impl Into<String>) -> Self {
        Error::Backend {
            operation,
            source: message.into().into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Corrupt {
            what: what.into(),
            source: source.into(),
        }
    }
}

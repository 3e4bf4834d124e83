//! Errors of the Kubernetes edge.
//!
//! Messages describe this failure and never repeat their source (print the chain once, at the
//! boundary). No message ever contains an object body: API errors are reduced to the server's
//! status message, which names the resource but carries no values.

use std::fmt;

use crate::types::GroupKind;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong at the Kubernetes edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig named in the configuration (or the context inside it) could not be used.
    #[error("cannot load kubeconfig {path}{}", context_suffix(.context))]
    Kubeconfig {
        /// The file (`KUBECONFIG`/default when empty in the configuration).
        path: String,
        /// The context asked for, if any.
        context: Option<String>,
        /// What went wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("cannot find a Kubernetes configuration (kubeconfig or in-cluster)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The HTTP client could not be built from the configuration.
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
    /// The kubeconfig's `tls-server-name` is not a valid DNS name or IP address.
    #[error(
        "cannot build the Kubernetes client: tls-server-name `{name}` is not a DNS name or IP address"
    )]
    TlsServerName {
        /// The name as written.
        name: String,
    },
    /// A discovery request failed.
    #[error("API discovery failed ({what})")]
    Discovery {
        /// The request, e.g. `/apis`.
        what: String,
        /// What went wrong.
        #[source]
        source: kube::Error,
    },
    /// A name in `kubernetes.resources` matches no type the server serves.
    #[error("unknown resource type `{name}`{}", suggestion_suffix(.suggestions))]
    UnknownResource {
        /// The name as written.
        name: String,
        /// Close matches (edit distance), best first.
        suggestions: Vec<String>,
    },
    /// The type exists but cannot be listed and watched (e.g. `tokenreviews`).
    #[error("resource type `{name}` ({resource}) does not support list and watch")]
    NotWatchable {
        /// The name as written.
        name: String,
        /// The resolved type, `plural.group/version`.
        resource: String,
    },
    /// The server does not serve a kind in the requested `apiVersion`.
    #[error("the API server does not serve {kind} in apiVersion {api_version}")]
    VersionNotServed {
        /// The requested `apiVersion`.
        api_version: String,
        /// The kind.
        kind: String,
    },
    /// A request for objects failed; `message` is the server's status message when it gave one.
    #[error("{what}: {message}")]
    Api {
        /// The request, e.g. `list Deployment.apps in namespace shop`.
        what: String,
        /// HTTP status code when the server answered (403 = forbidden).
        code: Option<u16>,
        /// The server's message (never an object body).
        message: String,
    },
    /// A response could not be decoded.
    #[error("cannot decode the response to {what}")]
    Decode {
        /// The request.
        what: String,
        /// What went wrong (serde's message names a position, never the content).
        #[source]
        source: serde_json::Error,
    },
}

/// One kind (in one namespace, when namespaces are listed) that could not be listed or watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindError {
    /// The type.
    pub kind: GroupKind,
    /// The namespace of the failing list/watch; `None` for a cluster-wide one.
    pub namespace: Option<String>,
    /// True for a 403: the credentials lack `list`/`watch` on this type.
    pub forbidden: bool,
    /// The server's message or the transport error (never an object body).
    pub message: String,
}

// === impl Error ===

impl Error {
    /// Builds [`Error::Api`] from a client error, keeping only the status code and message.
    pub fn api(what: impl Into<String>, err: &kube::Error) -> Self {
        let (code, message) = describe(err);
        Error::Api {
            what: what.into(),
            code,
            message,
        }
    }

    /// True when the server answered 403.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::Api {
                code: Some(403),
                ..
            }
        )
    }
}

// === impl KindError ===

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} in namespace {ns}: {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for KindError {}

/// Status code (when the server answered) and a body-free message for a client error.
pub(crate) fn describe(err: &kube::Error) -> (Option<u16>, String) {
    match err {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            (Some(status.code), message)
        }
        other => (None, chain(other)),
    }
}

/// The error and its sources joined with `: ` (transport errors only; never a body).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}

fn context_suffix(context: &Option<String>) -> String {
    match context {
        Some(c) => format!(" (context {c})"),
        None => String::new(),
    }
}

fn suggestion_suffix(suggestions: &[String]) -> String {
    match suggestions {
        [] => "; `kubectl api-resources` lists the served types".to_owned(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_resource_suggests() {
        let err = Error::UnknownResource {
            name: "deploymnts".into(),
            suggestions: vec!["deployments".into()],
        };
        assert_eq!(
            err.to_string(),
            "unknown resource type `deploymnts`; did you mean `deployments`?"
        );
    }
}

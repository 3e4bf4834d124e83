//! The Kubernetes edge of DriftGuard: live state from the API server.
//!
//! - [`client`]: a [`kube::Client`] from `kubernetes.config_path` / `context`, `KUBECONFIG`, the
//!   default kubeconfig or the in-cluster service account.
//! - [`discovery`]: which resource types the server serves; resolves the names users write in
//!   `kubernetes.resources` (plural, singular, kind, short name, `plural.group`) to a
//!   [`ResolvedKind`], and answers "is this kind namespaced?" for the Git reader.
//! - [`scope`]: the namespaces, system-namespace skipping and label selector of the configuration.
//! - [`ingest`]: the one door every live object passes through — Secret values are replaced by
//!   digests ([`driftguard_core::SecretHasher::redact`]) before anything else sees the object.
//! - [`watch`]: one watcher per kind (and per namespace when namespaces are listed) feeding a
//!   shared [`LiveCache`], a per-kind [`WatchStates`] summary and a channel of [`LiveEvent`]s.
//! - [`probe`]: a cheap request every few seconds with a short deadline, so an API server that
//!   stopped answering (frozen, partitioned) is noticed and the watches restart when it is back.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease, for several replicas.
//! - [`list`]: the one-shot list for `driftguard check` and the read of one object in the
//!   `apiVersion` its Git manifest uses.
//!
//! Architecture invariant: no object body — and so no Secret value — is ever logged or put in an
//! error message by this crate; an unredacted object never leaves [`ingest`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cache;
pub mod client;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod ingest;
pub mod lease;
pub mod list;
pub mod probe;
pub mod scope;
pub mod types;
pub mod watch;

pub use cache::{KindReadiness, KindState, LiveCache, WatchStates, WatchStatesSummary};
pub use client::{Protocols, client_config, connect, connect_with};
pub use crd::crd_defaults;
pub use discovery::{DiscoveryMethod, DiscoverySnapshot, LazyDiscovery, SharedDiscovery};
pub use error::{Error, KindError, Result};
pub use ingest::ingest;
pub use list::{get_in_version, list_once};
pub use probe::{ApiHealth, ApiProbe, ProbeOptions};
pub use scope::WatchScope;
pub use types::{GroupKind, ResolvedKind};
pub use watch::{LiveEvent, LiveWatcher, WatchControl, WatchOptions};

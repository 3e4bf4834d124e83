//! What the handlers share ([`ApiState`]) and the path prefix the bearer token guards.

use std::sync::Arc;

use driftguard_store::Store;

use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::runs::Runs;

/// Prefix of the versioned API; every path under it is behind the bearer token when one is set.
pub const API_PREFIX: &str = "/api/v1";

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Drift records and history.
    pub store: Arc<dyn Store>,
    /// Analysis runs (`POST /api/v1/analyze`, `GET /api/v1/analysis/{run_id}`).
    pub runs: Arc<Runs>,
    /// Component readiness (`GET /ready`).
    pub readiness: Arc<Readiness>,
    /// Every metric (`GET /metrics`, and the HTTP families this module fills).
    pub metrics: Arc<Metrics>,
    /// Bearer token required under [`API_PREFIX`]; `None` or empty disables the check.
    pub auth_token: Option<Arc<str>>,
    /// The stream behind `GET /api/v1/events` (also registered as an event sink).
    pub events: Arc<super::events::EventHub>,
    /// The repository's web address (`https://github.com/org/repo`), for the dashboard's links
    /// to files in Git ([`crate::ui::web_base`]); `None` when not known.
    pub source_web: Option<Arc<str>>,
    /// This replica's role (issue 19): a follower queues analyses in the store and answers
    /// runs from it.
    pub leadership: Arc<crate::leader::Leadership>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiState")
            .field("auth", &self.token().is_some())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The configured token, `None` when unset or empty (no check).
    pub(super) fn token(&self) -> Option<&str> {
        self.auth_token.as_deref().filter(|t| !t.is_empty())
    }
}

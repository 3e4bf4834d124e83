//! The live objects of `serve`: the watch cache, trusted per kind once listed and healthy, and
//! each kind's watch state on `/ready`.

use std::collections::HashMap;

use driftguard_core::{LiveObject, ResourceKey};
use driftguard_kube::{GroupKind, KindState, LiveCache, ResolvedKind};

use crate::evaluate::LiveView;
use crate::health::{Health, Readiness};
use crate::metrics::{KindLabels, Metrics};

/// The live objects of `serve`: the watch cache, trusted per kind once listed and healthy.
pub struct WatchedLive {
    /// The cache.
    pub cache: LiveCache,
    /// Each kind's watch state.
    pub readiness: driftguard_kube::Readiness,
    /// The watched kinds.
    pub kinds: HashMap<GroupKind, ResolvedKind>,
}

impl LiveView for WatchedLive {
    fn trustworthy(&self, key: &ResourceKey) -> bool {
        let gk = GroupKind::new(key.group.clone(), key.kind.clone());
        if !self.kinds.contains_key(&gk) {
            return false;
        }
        self.readiness
            .kind(&gk)
            .is_some_and(|r| r.listed_once && matches!(r.state, KindState::Ready))
    }

    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        self.cache.lookup(key)
    }
}

/// The readiness component of a watched kind.
pub fn component(kind: &ResolvedKind) -> String {
    if kind.group.is_empty() {
        format!("watch/{}", kind.plural)
    } else {
        format!("watch/{}.{}", kind.plural, kind.group)
    }
}

// === impl WatchedLive ===

impl WatchedLive {
    /// Shows `kind`'s watch state on `/ready` and in the `driftguard_watch_failing` gauge.
    pub fn update_readiness(&self, kind: &GroupKind, readiness: &Readiness, metrics: &Metrics) {
        let Some(resolved) = self.kinds.get(kind) else {
            return;
        };
        let name = component(resolved);
        let Some(state) = self.readiness.kind(kind) else {
            return;
        };
        let (health, message, error) = match &state.state {
            KindState::Pending => (Health::Pending, "listing".to_owned(), false),
            KindState::Ready => (
                Health::Ok,
                format!("{} objects", self.cache.len(kind)),
                false,
            ),
            KindState::Forbidden(m) => (Health::Degraded, format!("forbidden: {m}"), true),
            KindState::Error(m) => (Health::Degraded, format!("failing: {m}"), true),
            KindState::Reconnecting(m) => (Health::Degraded, format!("reconnecting: {m}"), true),
        };
        if matches!(state.state, KindState::Forbidden(_)) {
            readiness.set_not_required(&name);
        }
        readiness.set(&name, health, message);
        metrics
            .watch_errors
            .get_or_create(&KindLabels {
                kind: kind.kind.clone(),
            })
            .set(i64::from(error));
    }
}

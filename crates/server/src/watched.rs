//! The live objects of `serve`: the watch cache, trusted per kind once listed and healthy, and
//! each kind's watch state on `/ready`.

use std::collections::{HashMap, HashSet};

use driftguard_core::{LiveObject, ResourceKey};
use driftguard_git::Snapshot;
use driftguard_kube::{
    GroupKind, KindState, LiveCache, LiveWatcher, ResolvedKind, SharedDiscovery,
};

use crate::evaluate::{LiveView, Stamp};
use crate::health::{Health, Readiness};
use crate::metrics::{KindLabels, Metrics};

/// The live objects of `serve`: the watch cache, trusted per kind once listed and healthy.
pub struct WatchedLive {
    /// The cache.
    pub cache: LiveCache,
    /// Each kind's watch state.
    pub readiness: driftguard_kube::WatchStates,
    /// The watched kinds.
    pub kinds: HashMap<GroupKind, ResolvedKind>,
    /// The watches, and discovery to resolve kinds Git holds that nobody configured (as
    /// `check` does, so both commands evaluate the same resources).
    pub watcher: LiveWatcher,
    /// API discovery.
    pub discovery: SharedDiscovery,
    /// Kinds in Git the cluster does not serve (logged once each).
    unserved: HashSet<GroupKind>,
    /// Kinds watched because Git holds them (not configured) that the service account may not
    /// watch: a deliberate RBAC choice (Secrets are opt-in in `deploy/`), so they are dropped
    /// with a warning rather than degrading readiness, and not tried again.
    refused: HashSet<GroupKind>,
    /// The kinds `kubernetes.resources` names.
    configured: HashSet<GroupKind>,
    /// Kinds evaluated whole since their watches were last all listed: a kind watched per
    /// namespace becomes trusted only when its last namespace lists, and the namespaces that
    /// listed before are evaluated then.
    settled: HashSet<GroupKind>,
}

impl LiveView for WatchedLive {
    fn trustworthy(&self, key: &ResourceKey) -> bool {
        self.kind_trusted(&GroupKind::new(key.group.clone(), key.kind.clone()))
    }

    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        self.cache.lookup(key)
    }

    fn stamp(&self, key: &ResourceKey) -> Stamp {
        match self.cache.resource_version(key) {
            None => Stamp::Absent,
            Some(version) if version.is_empty() => Stamp::Unknown,
            Some(version) => Stamp::Version(version),
        }
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
    /// The live view of `watcher`'s `kinds`.
    pub fn new(
        watcher: LiveWatcher,
        discovery: SharedDiscovery,
        kinds: HashMap<GroupKind, ResolvedKind>,
    ) -> Self {
        Self {
            cache: watcher.cache(),
            readiness: watcher.readiness(),
            configured: kinds.keys().cloned().collect(),
            kinds,
            watcher,
            discovery,
            unserved: HashSet::new(),
            refused: HashSet::new(),
            settled: HashSet::new(),
        }
    }

    /// Starts watching every kind `snapshot` holds that is not watched yet (and the cluster
    /// serves), registering its readiness component. Returns the kinds added.
    pub fn adopt_kinds(&mut self, snapshot: &Snapshot, readiness: &Readiness) -> Vec<GroupKind> {
        let wanted: HashSet<GroupKind> = snapshot
            .objects
            .keys()
            .map(|k| GroupKind::new(k.group.clone(), k.kind.clone()))
            .filter(|gk| !self.kinds.contains_key(gk) && !self.refused.contains(gk))
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let discovery = self.discovery.snapshot();
        let mut added = Vec::new();
        for gk in wanted {
            match discovery.kind(&gk) {
                Some(resolved) => {
                    readiness.register(&component(&resolved), true, "listing");
                    self.watcher.watch_kind(resolved.clone());
                    self.kinds.insert(gk.clone(), resolved);
                    self.unserved.remove(&gk);
                    added.push(gk);
                }
                None => {
                    if self.unserved.insert(gk.clone()) {
                        tracing::warn!(
                            kind = %gk.kind,
                            group = %gk.group,
                            "Git holds a kind the cluster does not serve; its resources cannot be compared"
                        );
                    }
                }
            }
        }
        if !added.is_empty() {
            tracing::info!(kinds = ?added.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(), "watching kinds found in Git");
        }
        added
    }

    /// True when `kind` is watched, has listed everywhere and is healthy: its cache is the
    /// cluster.
    fn kind_trusted(&self, kind: &GroupKind) -> bool {
        self.kinds.contains_key(kind)
            && self
                .readiness
                .kind(kind)
                .is_some_and(|r| r.listed_once && matches!(r.state, KindState::Ready))
    }

    /// After `kind` (re)listed somewhere: true the first time it is trusted as a whole since
    /// it last was not, when every namespace's objects must be evaluated (not only the
    /// namespace that just listed).
    pub fn newly_settled(&mut self, kind: &GroupKind) -> bool {
        if self.kind_trusted(kind) {
            self.settled.insert(kind.clone())
        } else {
            self.settled.remove(kind);
            false
        }
    }

    /// Drops `kind` when it was watched only because Git holds it and the service account may
    /// not watch it. Returns true when it did.
    pub fn drop_if_refused(&mut self, kind: &GroupKind, readiness: &Readiness) -> bool {
        if self.configured.contains(kind) {
            return false;
        }
        let forbidden = self
            .readiness
            .kind(kind)
            .is_some_and(|r| matches!(r.state, KindState::Forbidden(_)));
        if !forbidden {
            return false;
        }
        if let Some(resolved) = self.kinds.remove(kind) {
            readiness.remove(&component(&resolved));
        }
        self.watcher.unwatch_kind(kind);
        self.refused.insert(kind.clone());
        tracing::warn!(
            kind = %kind.kind,
            group = %kind.group,
            "Git holds this kind but the service account may not watch it; its resources are not compared (grant list/watch, or name it in kubernetes.resources to see it on /ready)"
        );
        true
    }

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

//! Watches: one kube-rs watcher per kind (per kind and namespace when namespaces are listed),
//! each feeding the shared [`LiveCache`], the [`WatchStates`] summary and a channel of
//! [`LiveEvent`]s for the engine.
//!
//! Deletion is only ever concluded from a `DELETED` watch event or from a *completed* list that
//! no longer returns the object ([`LiveEvent::Synced`]). A broken watch, an unreachable API
//! server or a forbidden kind never makes objects look deleted: the cache keeps them and the
//! kind's state says what is wrong.
//!
//! kube-rs' reflector store is deliberately not used: it would hold every object as received,
//! Secret values included. The cache here only ever sees objects after [`ingest`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftguard_core::{LiveObject, ResourceKey, SecretHasher};
use futures::StreamExt as _;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cache::{KindState, LiveCache, WatchStates};
use crate::error::describe;
use crate::ingest::{ingest, to_value};
use crate::scope::WatchScope;
use crate::types::{GroupKind, ResolvedKind};

/// What the watchers tell the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// An object was created or changed (also sent for every object of a first list, and for
    /// objects that changed while a watch was away and came back in a relist).
    Applied {
        /// The redacted, prepared object (boxed: it is much larger than the other events).
        object: Box<LiveObject>,
        /// When the watcher received it.
        seen_at: DateTime<Utc>,
    },
    /// An object was deleted (a `DELETED` watch event, or absent from a completed relist).
    Deleted {
        /// Its identity.
        key: ResourceKey,
        /// When the watcher learnt it.
        seen_at: DateTime<Utc>,
    },
    /// A complete list of `kind` (in `namespace`, or everywhere) was received: `keys` is every
    /// object of that scope. The only authoritative moment to drop objects not in it.
    Synced {
        /// The kind.
        kind: GroupKind,
        /// The namespace of the list; `None` for a cluster-wide list.
        namespace: Option<String>,
        /// Every object the list returned.
        keys: Vec<ResourceKey>,
        /// When the list completed.
        seen_at: DateTime<Utc>,
    },
    /// A watch changed state (ready, forbidden, failing, reconnecting).
    KindStatus {
        /// The kind.
        kind: GroupKind,
        /// The namespace of the watch; `None` for a cluster-wide watch.
        namespace: Option<String>,
        /// The new state.
        status: KindState,
        /// When it changed.
        seen_at: DateTime<Utc>,
    },
}

/// Tuning of the watchers.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// While a watch that had listed is failing, how often a one-item list checks whether the server is back
    /// (kube-rs resumes a watch silently, so success has no event of its own).
    pub probe_interval: Duration,
    /// Page size of the (re)lists.
    pub page_size: u32,
}

/// Tells every watch of a [`LiveWatcher`] that the API server stopped answering, or that it
/// answers again (see [`crate::probe`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct WatchControl {
    tx: Arc<watch::Sender<Control>>,
}

/// What [`WatchControl`] broadcasts.
#[derive(Debug, Clone, Default)]
struct Control {
    /// Bumped to make every watch drop its stream and start again with a fresh list.
    generation: u64,
    /// Set while the API server does not answer: the reason.
    stalled: Option<String>,
}

/// The running watchers of a set of kinds. Dropping it stops them.
pub struct LiveWatcher {
    client: kube::Client,
    control: WatchControl,
    scope: WatchScope,
    hasher: SecretHasher,
    events: mpsc::Sender<LiveEvent>,
    options: WatchOptions,
    cache: LiveCache,
    readiness: WatchStates,
    watches: HashMap<GroupKind, (ResolvedKind, Vec<JoinHandle<()>>)>,
}

/// Everything one watch task needs.
struct WatchTask {
    client: kube::Client,
    kind: ResolvedKind,
    group_kind: GroupKind,
    namespace: Option<String>,
    scope: WatchScope,
    hasher: SecretHasher,
    events: mpsc::Sender<LiveEvent>,
    options: WatchOptions,
    cache: LiveCache,
    readiness: WatchStates,
    control: watch::Receiver<Control>,
}

// === impl WatchControl ===

impl WatchControl {
    fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Control::default())),
        }
    }

    /// The API server does not answer: every watch that had listed turns `Reconnecting` with
    /// `reason` (its objects are kept, nothing of its kind is evaluated meanwhile).
    pub fn stalled(&self, reason: String) {
        self.tx.send_modify(|c| c.stalled = Some(reason));
    }

    /// The API server answers again: every watch drops its connection (which may be dead
    /// without knowing it) and starts over with a fresh list.
    pub fn resume(&self) {
        self.tx.send_modify(|c| {
            c.stalled = None;
            c.generation += 1;
        });
    }
}

// === impl WatchOptions ===

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(2),
            page_size: 500,
        }
    }
}

// === impl LiveWatcher ===

impl LiveWatcher {
    /// A watcher set with nothing watched yet; add kinds with [`LiveWatcher::watch_kind`].
    /// Must be called inside a tokio runtime.
    pub fn new(
        client: kube::Client,
        scope: WatchScope,
        hasher: SecretHasher,
        events: mpsc::Sender<LiveEvent>,
        options: WatchOptions,
    ) -> Self {
        Self {
            client,
            control: WatchControl::new(),
            scope,
            hasher,
            events,
            options,
            cache: LiveCache::default(),
            readiness: WatchStates::default(),
            watches: HashMap::new(),
        }
    }

    /// Starts watching `kinds` with default options.
    pub fn start(
        client: kube::Client,
        kinds: &[ResolvedKind],
        scope: WatchScope,
        hasher: SecretHasher,
        events: mpsc::Sender<LiveEvent>,
    ) -> Self {
        let mut this = Self::new(client, scope, hasher, events, WatchOptions::default());
        for kind in kinds {
            this.watch_kind(kind.clone());
        }
        this
    }

    /// Starts watching one kind (one watch per listed namespace for a namespaced kind). Returns
    /// false when the kind is already watched in that version; a kind watched in another
    /// version is restarted in the new one.
    pub fn watch_kind(&mut self, kind: ResolvedKind) -> bool {
        let group_kind = kind.group_kind();
        if let Some((existing, _)) = self.watches.get(&group_kind) {
            if *existing == kind {
                return false;
            }
            self.unwatch_kind(&group_kind);
        }
        let mut handles = Vec::new();
        for namespace in self.scope.targets(&kind) {
            self.readiness
                .set(&group_kind, namespace.as_deref(), KindState::Pending);
            let task = WatchTask {
                client: self.client.clone(),
                kind: kind.clone(),
                group_kind: group_kind.clone(),
                namespace,
                scope: self.scope.clone(),
                hasher: self.hasher.clone(),
                events: self.events.clone(),
                options: self.options.clone(),
                cache: self.cache.clone(),
                readiness: self.readiness.clone(),
                control: self.control.tx.subscribe(),
            };
            handles.push(tokio::spawn(task.run()));
        }
        self.watches.insert(group_kind, (kind, handles));
        true
    }

    /// Stops watching a kind and forgets its objects and readiness (no events are sent: the
    /// kind left the configuration, its objects did not disappear).
    pub fn unwatch_kind(&mut self, kind: &GroupKind) {
        if let Some((_, handles)) = self.watches.remove(kind) {
            for handle in handles {
                handle.abort();
            }
        }
        self.cache.clear_kind(kind);
        self.readiness.remove_kind(kind);
    }

    /// The watched kinds.
    pub fn kinds(&self) -> Vec<ResolvedKind> {
        self.watches.values().map(|(k, _)| k.clone()).collect()
    }

    /// The shared cache.
    pub fn cache(&self) -> LiveCache {
        self.cache.clone()
    }

    /// The shared readiness summary.
    pub fn readiness(&self) -> WatchStates {
        self.readiness.clone()
    }

    /// The handle that marks every watch stalled or restarts them all (for [`crate::probe`]).
    pub fn control(&self) -> WatchControl {
        self.control.clone()
    }

    /// Stops every watch.
    pub fn shutdown(&mut self) {
        for (_, (_, handles)) in self.watches.drain() {
            for handle in handles {
                handle.abort();
            }
        }
    }
}

impl Drop for LiveWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for LiveWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveWatcher")
            .field("kinds", &self.watches.keys().collect::<Vec<_>>())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

// === impl WatchTask ===

impl WatchTask {
    fn api(&self) -> Api<DynamicObject> {
        let resource = self.kind.api_resource();
        match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    async fn run(mut self) {
        let api = self.api();
        let mut config = watcher::Config::default().page_size(self.options.page_size);
        if let Some(labels) = &self.scope.label_selector {
            config = config.labels(labels);
        }
        let fields = self
            .scope
            .field_selector(&self.kind, self.namespace.as_deref());
        if let Some(fields) = &fields {
            config = config.fields(fields);
        }
        let mut listed_once = false;
        let mut generation = self.control.borrow().generation;
        let mut control_open = true;

        tracing::debug!(kind = %self.group_kind, namespace = ?self.namespace, "watch starting");
        // One round per stream: a restart (the API server answers again after a stall) drops
        // the stream, whose connection may be dead without knowing it, and lists afresh.
        loop {
            let stream = watcher(api.clone(), config.clone()).default_backoff();
            futures::pin_mut!(stream);
            let mut listing: Option<HashSet<(String, String)>> = None;
            // Set when a watch that had listed fails (unreachable, or forbidden after an RBAC
            // change): kube-rs resumes such a watch without an event, so a probe tells when it
            // works again.
            let mut recovering = false;
            let mut probe = tokio::time::interval(self.options.probe_interval);
            probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let restart = loop {
                tokio::select! {
                    item = stream.next() => {
                        let Some(item) = item else { break false };
                        match item {
                            Ok(event) => {
                                if recovering && matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_)) {
                                    recovering = false;
                                    self.set_state(KindState::Ready).await;
                                }
                                self.handle(event, &mut listing, &mut listed_once, &mut recovering).await;
                            }
                            Err(err) => {
                                let state = state_after(&err, listed_once);
                                recovering = listed_once;
                                if self.readiness_differs(&state) {
                                    tracing::warn!(
                                        kind = %self.group_kind,
                                        namespace = ?self.namespace,
                                        state = state.name(),
                                        error = state.message().unwrap_or_default(),
                                        "watch failing; retrying with backoff"
                                    );
                                }
                                self.set_state(state).await;
                            }
                        }
                    }
                    _ = probe.tick(), if recovering => {
                        let params = ListParams::default().limit(1);
                        if api.list_metadata(&params).await.is_ok() {
                            recovering = false;
                            tracing::info!(kind = %self.group_kind, namespace = ?self.namespace, "API server reachable again; watch resumed");
                            self.set_state(KindState::Ready).await;
                        }
                    }
                    changed = self.control.changed(), if control_open => {
                        if changed.is_err() {
                            control_open = false;
                            continue;
                        }
                        let control = self.control.borrow_and_update().clone();
                        if let Some(reason) = control.stalled
                            && listed_once
                        {
                            self.set_state(KindState::Reconnecting(reason)).await;
                        }
                        if control.generation != generation {
                            generation = control.generation;
                            break true;
                        }
                    }
                }
            };
            if !restart {
                break;
            }
            tracing::info!(kind = %self.group_kind, namespace = ?self.namespace, "watch restarting with a fresh list");
        }
    }

    async fn handle(
        &self,
        event: watcher::Event<DynamicObject>,
        listing: &mut Option<HashSet<(String, String)>>,
        listed_once: &mut bool,
        recovering: &mut bool,
    ) {
        match event {
            watcher::Event::Init => *listing = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(live) = self.ingest(&object) {
                    if let Some(seen) = listing.as_mut() {
                        seen.insert((live.key.namespace.clone(), live.key.name.clone()));
                    }
                    self.apply(live).await;
                }
            }
            watcher::Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                let now = Utc::now();
                for key in
                    self.cache
                        .retain_listed(&self.group_kind, self.namespace.as_deref(), &seen)
                {
                    self.send(LiveEvent::Deleted { key, seen_at: now }).await;
                }
                let mut keys: Vec<ResourceKey> = seen
                    .into_iter()
                    .map(|(ns, name)| ResourceKey::new(&self.kind.group, &self.kind.kind, ns, name))
                    .collect();
                keys.sort();
                tracing::debug!(kind = %self.group_kind, namespace = ?self.namespace, objects = keys.len(), "list complete");
                // Ready first: a consumer that receives `Synced` re-evaluates the kind's objects,
                // and only does so for a kind whose watch is ready — the other order left a
                // freshly listed kind unevaluated until its next event.
                *listed_once = true;
                *recovering = false;
                self.set_state(KindState::Ready).await;
                self.send(LiveEvent::Synced {
                    kind: self.group_kind.clone(),
                    namespace: self.namespace.clone(),
                    keys,
                    seen_at: now,
                })
                .await;
            }
            watcher::Event::Apply(object) => {
                if let Some(live) = self.ingest(&object) {
                    self.apply(live).await;
                }
            }
            watcher::Event::Delete(object) => {
                let namespace = if self.kind.namespaced {
                    object.metadata.namespace.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                let Some(name) = object.metadata.name.clone() else {
                    return;
                };
                if !self.scope.allows_namespace(&namespace) {
                    return;
                }
                let key = ResourceKey::new(&self.kind.group, &self.kind.kind, namespace, name);
                self.cache.remove(&key);
                self.send(LiveEvent::Deleted {
                    key,
                    seen_at: Utc::now(),
                })
                .await;
            }
        }
    }

    /// Redacts and converts one object; `None` when it is out of scope or malformed.
    fn ingest(&self, object: &DynamicObject) -> Option<LiveObject> {
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        if self.kind.namespaced && !self.scope.allows_namespace(namespace) {
            return None;
        }
        ingest(&self.kind, to_value(object)?, &self.hasher)
    }

    async fn apply(&self, live: LiveObject) {
        if self.cache.upsert(&live) {
            self.send(LiveEvent::Applied {
                object: Box::new(live),
                seen_at: Utc::now(),
            })
            .await;
        }
    }

    fn readiness_differs(&self, state: &KindState) -> bool {
        self.readiness
            .watch_state(&self.group_kind, self.namespace.as_deref())
            .is_none_or(|current| current.name() != state.name())
    }

    async fn set_state(&self, state: KindState) {
        if self
            .readiness
            .set(&self.group_kind, self.namespace.as_deref(), state.clone())
        {
            if state == KindState::Ready {
                tracing::info!(kind = %self.group_kind, namespace = ?self.namespace, "watch ready");
            }
            self.send(LiveEvent::KindStatus {
                kind: self.group_kind.clone(),
                namespace: self.namespace.clone(),
                status: state,
                seen_at: Utc::now(),
            })
            .await;
        }
    }

    async fn send(&self, event: LiveEvent) {
        // A dropped receiver only means nobody listens any more; the cache stays current.
        let _ = self.events.send(event).await;
    }
}

/// The state a watch error puts the watch in.
fn state_after(err: &watcher::Error, listed_once: bool) -> KindState {
    let (code, message) = match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => describe(e),
        watcher::Error::WatchError(status) => (Some(status.code), status.message.clone()),
        watcher::Error::NoResourceVersion => (None, err.to_string()),
    };
    match code {
        Some(403) => KindState::Forbidden(message),
        _ if listed_once => KindState::Reconnecting(message),
        _ => KindState::Error(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, "Reason").with_code(code).boxed())
    }

    #[test]
    fn errors_map_to_states() {
        let forbidden = watcher::Error::InitialListFailed(api_error(403, "secrets is forbidden"));
        assert_eq!(
            state_after(&forbidden, false),
            KindState::Forbidden("secrets is forbidden".into())
        );
        let gone = watcher::Error::WatchError(
            Status::failure("too old", "Expired").with_code(410).boxed(),
        );
        assert_eq!(
            state_after(&gone, true),
            KindState::Reconnecting("too old".into())
        );
        let down = watcher::Error::InitialListFailed(api_error(503, "unavailable"));
        assert_eq!(
            state_after(&down, false),
            KindState::Error("unavailable".into())
        );
    }
}

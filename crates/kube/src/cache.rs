//! The shared live cache (what the watchers last saw, already redacted) and the per-kind
//! readiness summary behind `/ready`.
//!
//! Objects are stored as compact JSON text rather than `serde_json::Value` trees: a `Value` map
//! costs several times the bytes of its text, and the cache holds every watched object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use driftguard_core::{LiveObject, ResourceKey};

use crate::types::GroupKind;

/// Everything the watchers currently know, by kind. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct LiveCache {
    inner: Arc<RwLock<HashMap<GroupKind, KindStore>>>,
}

/// Objects of one kind by (namespace, name).
#[derive(Default)]
struct KindStore {
    objects: BTreeMap<(Box<str>, Box<str>), Entry>,
}

struct Entry {
    resource_version: Box<str>,
    /// The serialised [`LiveObject`].
    json: Box<str>,
}

/// The state of one watch (one kind, or one kind in one namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindState {
    /// Started, first list not complete yet.
    Pending,
    /// Listed, watching.
    Ready,
    /// The credentials may not list/watch this kind (403); the message is the server's.
    Forbidden(String),
    /// Failing before its first complete list (retried with backoff).
    Error(String),
    /// Was ready; the watch broke and is being re-established (objects are kept meanwhile).
    Reconnecting(String),
}

/// The watch state of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindReadiness {
    /// The worst state among the kind's watches (forbidden, error, reconnecting, pending, ready).
    pub state: KindState,
    /// True once every watch of the kind completed a first list.
    pub listed_once: bool,
    /// When the state was entered.
    pub since: DateTime<Utc>,
}

/// The watch state of every watched kind (not the service's /ready, which shows them). Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct WatchStates {
    inner: Arc<RwLock<StateMap>>,
}

/// One entry per watch: (kind, namespace of a per-namespace watch).
type StateMap = BTreeMap<(GroupKind, Option<String>), KindReadiness>;

/// A summary for `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatesSummary {
    /// Every permitted watch has listed once (forbidden kinds do not hold readiness back).
    pub ready: bool,
    /// Something is not `Ready` (forbidden, failing, reconnecting or still pending).
    pub degraded: bool,
    /// Per kind.
    pub kinds: BTreeMap<GroupKind, KindReadiness>,
}

// === impl LiveCache ===

impl LiveCache {
    /// The cached object with this identity (`None` also when its entry cannot be decoded; see
    /// [`LiveCache::lookup`] to tell the two apart).
    pub fn get(&self, key: &ResourceKey) -> Option<LiveObject> {
        self.lookup(key).ok().flatten()
    }

    /// The cached object with this identity: `Ok(None)` when there is none, `Err` with the
    /// decode error when its entry cannot be read back — which must never be taken for an
    /// absent object (that would be a false MissingResource).
    pub fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        self.with_entry(key, |entry| serde_json::from_str(&entry.json))
            .transpose()
            .map_err(|e| format!("the cached object cannot be decoded: {e}"))
    }

    /// The `resourceVersion` of the cached object with this identity (`None` when there is
    /// none): what identifies its content without decoding it.
    pub fn resource_version(&self, key: &ResourceKey) -> Option<String> {
        self.with_entry(key, |entry| entry.resource_version.to_string())
    }

    /// `read` of the entry with this identity, under the lock (`None` when there is none).
    fn with_entry<T>(&self, key: &ResourceKey, read: impl FnOnce(&Entry) -> T) -> Option<T> {
        let map = self.read();
        let store = map.get(&GroupKind::new(&key.group, &key.kind))?;
        store
            .objects
            .get(&(
                Box::from(key.namespace.as_str()),
                Box::from(key.name.as_str()),
            ))
            .map(read)
    }

    /// Every cached object of one kind, ordered by namespace and name.
    pub fn snapshot_kind(&self, kind: &GroupKind) -> Vec<LiveObject> {
        let map = self.read();
        map.get(kind)
            .map(|store| {
                store
                    .objects
                    .values()
                    .filter_map(|e| serde_json::from_str(&e.json).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Identities of every cached object of one kind.
    pub fn keys(&self, kind: &GroupKind) -> Vec<ResourceKey> {
        let map = self.read();
        map.get(kind)
            .map(|store| {
                store
                    .objects
                    .keys()
                    .map(|(ns, name)| ResourceKey::new(&kind.group, &kind.kind, &**ns, &**name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of cached objects of one kind.
    pub fn len(&self, kind: &GroupKind) -> usize {
        self.read().get(kind).map_or(0, |s| s.objects.len())
    }

    /// Number of cached objects per kind.
    pub fn lens(&self) -> BTreeMap<GroupKind, usize> {
        self.read()
            .iter()
            .map(|(k, s)| (k.clone(), s.objects.len()))
            .collect()
    }

    /// Total number of cached objects.
    pub fn total_len(&self) -> usize {
        self.read().values().map(|s| s.objects.len()).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }

    /// Bytes of stored object text and keys (a lower bound of the cache's heap use).
    pub fn approx_bytes(&self) -> usize {
        self.read()
            .values()
            .flat_map(|s| s.objects.iter())
            .map(|((ns, name), e)| ns.len() + name.len() + e.resource_version.len() + e.json.len())
            .sum()
    }

    /// Inserts or replaces an object; false when the cached copy has the same resourceVersion
    /// (a relist returning an unchanged object).
    pub(crate) fn upsert(&self, object: &LiveObject) -> bool {
        let resource_version = object.resource_version.as_deref().unwrap_or_default();
        let Ok(json) = serde_json::to_string(object) else {
            return false;
        };
        let kind = GroupKind::new(&object.key.group, &object.key.kind);
        let id = (
            Box::from(object.key.namespace.as_str()),
            Box::from(object.key.name.as_str()),
        );
        let mut map = self.write();
        let store = map.entry(kind).or_default();
        if let Some(existing) = store.objects.get(&id)
            && !resource_version.is_empty()
            && &*existing.resource_version == resource_version
        {
            return false;
        }
        store.objects.insert(
            id,
            Entry {
                resource_version: resource_version.into(),
                json: json.into_boxed_str(),
            },
        );
        true
    }

    /// Removes an object; true when it was cached.
    pub(crate) fn remove(&self, key: &ResourceKey) -> bool {
        let mut map = self.write();
        let Some(store) = map.get_mut(&GroupKind::new(&key.group, &key.kind)) else {
            return false;
        };
        store
            .objects
            .remove(&(
                Box::from(key.namespace.as_str()),
                Box::from(key.name.as_str()),
            ))
            .is_some()
    }

    /// After a complete list of `kind` (in `namespace`, or everywhere for `None`): drops every
    /// cached object of that scope that the list did not return and returns their identities.
    pub(crate) fn retain_listed(
        &self,
        kind: &GroupKind,
        namespace: Option<&str>,
        listed: &HashSet<(String, String)>,
    ) -> Vec<ResourceKey> {
        let mut map = self.write();
        let Some(store) = map.get_mut(kind) else {
            return Vec::new();
        };
        let gone: Vec<(Box<str>, Box<str>)> = store
            .objects
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == &**ns))
            .filter(|(ns, name)| !listed.contains(&(ns.to_string(), name.to_string())))
            .cloned()
            .collect();
        gone.into_iter()
            .map(|id| {
                store.objects.remove(&id);
                ResourceKey::new(&kind.group, &kind.kind, &*id.0, &*id.1)
            })
            .collect()
    }

    /// Forgets a kind entirely (its watch stopped).
    pub(crate) fn clear_kind(&self, kind: &GroupKind) {
        self.write().remove(kind);
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<GroupKind, KindStore>> {
        // A panic while holding the lock cannot leave a half-written entry (every write is a
        // single insert/remove), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<GroupKind, KindStore>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for LiveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the contents.
        f.debug_struct("LiveCache")
            .field("objects", &self.total_len())
            .finish()
    }
}

// === impl KindState ===

impl KindState {
    /// Short name: `pending`, `ready`, `forbidden`, `error`, `reconnecting`.
    pub fn name(&self) -> &'static str {
        match self {
            KindState::Pending => "pending",
            KindState::Ready => "ready",
            KindState::Forbidden(_) => "forbidden",
            KindState::Error(_) => "error",
            KindState::Reconnecting(_) => "reconnecting",
        }
    }

    /// The message of a failing state.
    pub fn message(&self) -> Option<&str> {
        match self {
            KindState::Pending | KindState::Ready => None,
            KindState::Forbidden(m) | KindState::Error(m) | KindState::Reconnecting(m) => Some(m),
        }
    }

    fn severity(&self) -> u8 {
        match self {
            KindState::Ready => 0,
            KindState::Pending => 1,
            KindState::Reconnecting(_) => 2,
            KindState::Error(_) => 3,
            KindState::Forbidden(_) => 4,
        }
    }

    fn with_namespace(&self, namespace: Option<&str>) -> KindState {
        let Some(ns) = namespace else {
            return self.clone();
        };
        match self {
            KindState::Forbidden(m) => KindState::Forbidden(format!("namespace {ns}: {m}")),
            KindState::Error(m) => KindState::Error(format!("namespace {ns}: {m}")),
            KindState::Reconnecting(m) => KindState::Reconnecting(format!("namespace {ns}: {m}")),
            other => other.clone(),
        }
    }
}

// === impl WatchStates ===

impl WatchStates {
    /// The aggregated readiness of one kind over its watches.
    pub fn kind(&self, kind: &GroupKind) -> Option<KindReadiness> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        aggregate(
            map.iter()
                .filter(|((k, _), _)| k == kind)
                .map(|((_, ns), r)| (ns.as_deref(), r)),
        )
    }

    /// Every kind, plus the overall verdict.
    pub fn summary(&self) -> WatchStatesSummary {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut kinds = BTreeMap::new();
        let names: Vec<GroupKind> = map.keys().map(|(k, _)| k.clone()).collect();
        for kind in names {
            if kinds.contains_key(&kind) {
                continue;
            }
            let agg = aggregate(
                map.iter()
                    .filter(|((k, _), _)| *k == kind)
                    .map(|((_, ns), r)| (ns.as_deref(), r)),
            );
            if let Some(agg) = agg {
                kinds.insert(kind, agg);
            }
        }
        let ready = map
            .values()
            .all(|r| r.listed_once || matches!(r.state, KindState::Forbidden(_)));
        let degraded = map.values().any(|r| r.state != KindState::Ready);
        WatchStatesSummary {
            ready,
            degraded,
            kinds,
        }
    }

    /// Records the state of one watch; returns true when it changed.
    pub(crate) fn set(&self, kind: &GroupKind, namespace: Option<&str>, state: KindState) -> bool {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry((kind.clone(), namespace.map(str::to_owned)))
            .or_insert_with(|| KindReadiness {
                state: KindState::Pending,
                listed_once: false,
                since: Utc::now(),
            });
        if state == KindState::Ready {
            entry.listed_once = true;
        }
        if entry.state == state {
            return false;
        }
        entry.state = state;
        entry.since = Utc::now();
        true
    }

    /// The state of one watch.
    pub(crate) fn watch_state(
        &self,
        kind: &GroupKind,
        namespace: Option<&str>,
    ) -> Option<KindState> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(kind.clone(), namespace.map(str::to_owned)))
            .map(|r| r.state.clone())
    }

    /// Forgets a kind (its watch stopped).
    pub(crate) fn remove_kind(&self, kind: &GroupKind) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|(k, _), _| k != kind);
    }
}

impl std::fmt::Debug for WatchStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WatchStates").field(&self.summary()).finish()
    }
}

fn aggregate<'a>(
    watches: impl Iterator<Item = (Option<&'a str>, &'a KindReadiness)>,
) -> Option<KindReadiness> {
    let mut worst: Option<KindReadiness> = None;
    let mut listed_once = true;
    for (ns, r) in watches {
        listed_once &= r.listed_once;
        let candidate = KindReadiness {
            state: r.state.with_namespace(ns),
            listed_once: r.listed_once,
            since: r.since,
        };
        worst = match worst {
            None => Some(candidate),
            Some(w) if candidate.state.severity() > w.state.severity() => Some(candidate),
            Some(w)
                if candidate.state.severity() == w.state.severity()
                    && candidate.since > w.since =>
            {
                Some(KindReadiness {
                    since: candidate.since,
                    ..w
                })
            }
            keep => keep,
        };
    }
    worst.map(|w| KindReadiness { listed_once, ..w })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(ns: &str, name: &str, rv: &str) -> LiveObject {
        LiveObject::from_api(
            ResourceKey::new("", "ConfigMap", ns, name),
            "v1".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
                   "data": {"k": "v"}}),
        )
    }

    #[test]
    fn cache_round_trips_and_relists() {
        let cache = LiveCache::default();
        let cm = GroupKind::new("", "ConfigMap");
        assert!(cache.upsert(&live("a", "one", "1")));
        assert!(
            !cache.upsert(&live("a", "one", "1")),
            "same resourceVersion is no change"
        );
        assert!(cache.upsert(&live("a", "one", "2")));
        assert!(cache.upsert(&live("b", "two", "3")));
        assert_eq!(
            cache.get(&ResourceKey::new("", "ConfigMap", "a", "one")),
            Some(live("a", "one", "2"))
        );
        assert_eq!(cache.len(&cm), 2);
        // A relist of namespace a that returns nothing drops only a's objects.
        let gone = cache.retain_listed(&cm, Some("a"), &HashSet::new());
        assert_eq!(gone, vec![ResourceKey::new("", "ConfigMap", "a", "one")]);
        assert_eq!(
            cache.keys(&cm),
            vec![ResourceKey::new("", "ConfigMap", "b", "two")]
        );
        assert!(cache.remove(&ResourceKey::new("", "ConfigMap", "b", "two")));
        assert!(cache.is_empty());
    }

    #[test]
    fn an_unreadable_entry_is_no_absent_object() {
        let cache = LiveCache::default();
        let key = ResourceKey::new("", "ConfigMap", "a", "one");
        assert!(cache.upsert(&live("a", "one", "1")));
        assert_eq!(cache.lookup(&key), Ok(Some(live("a", "one", "1"))));
        // Damage the stored text, as a bug or a bit flip would.
        if let Some(entry) = cache
            .write()
            .get_mut(&GroupKind::new("", "ConfigMap"))
            .and_then(|s| s.objects.values_mut().next())
        {
            entry.json = Box::from("{not json");
        }
        let read = cache.lookup(&key);
        assert!(
            matches!(&read, Err(e) if e.contains("cannot be decoded")),
            "{read:?}"
        );
        assert_eq!(
            cache.lookup(&ResourceKey::new("", "ConfigMap", "a", "other")),
            Ok(None)
        );
    }

    #[test]
    fn readiness_aggregates_watches() {
        let r = WatchStates::default();
        let cm = GroupKind::new("", "ConfigMap");
        let sec = GroupKind::new("", "Secret");
        r.set(&cm, Some("a"), KindState::Pending);
        r.set(&cm, Some("b"), KindState::Pending);
        r.set(&sec, None, KindState::Pending);
        assert!(!r.summary().ready);
        r.set(&cm, Some("a"), KindState::Ready);
        r.set(&cm, Some("b"), KindState::Ready);
        r.set(
            &sec,
            None,
            KindState::Forbidden("secrets is forbidden".into()),
        );
        let s = r.summary();
        assert!(s.ready, "forbidden kinds do not hold readiness back");
        assert!(s.degraded);
        assert_eq!(s.kinds[&cm].state, KindState::Ready);
        assert!(s.kinds[&cm].listed_once);
        r.set(
            &cm,
            Some("b"),
            KindState::Reconnecting("connection refused".into()),
        );
        let k = r.kind(&cm).unwrap();
        assert_eq!(
            k.state,
            KindState::Reconnecting("namespace b: connection refused".into())
        );
        assert!(r.summary().ready, "a reconnecting watch has listed once");
    }
}

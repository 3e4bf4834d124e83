//! API discovery: which resource types the server serves, in which versions, with which names.
//!
//! kube-rs' own `Discovery` keeps neither short names nor singular names, and its aggregated mode
//! silently returns *no groups at all* from servers older than 1.26 (they answer the aggregated
//! `Accept` header with a plain `APIGroupList`, whose fields the aggregated type defaults away).
//! So this module asks for aggregated discovery, checks the `kind` of the answer, and falls back
//! to the per-group-version requests every server understands.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kube::core::discovery::v2::{
    ACCEPT_AGGREGATED_DISCOVERY_V2, APIGroupDiscovery, APIGroupDiscoveryList,
};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::{GroupKind, ResolvedKind};

/// How often [`SharedDiscovery::spawn_refresh`] re-reads discovery by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// How many group versions are queried at once during legacy discovery.
const LEGACY_CONCURRENCY: usize = 8;

/// Which discovery protocol the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMethod {
    /// Aggregated discovery (`apidiscovery.k8s.io`, Kubernetes ≥ 1.26): two requests.
    Aggregated,
    /// One request per group version (every server).
    Legacy,
}

/// One resource type in one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    group: String,
    version: String,
    kind: String,
    plural: String,
    singular: String,
    short_names: Vec<String>,
    namespaced: bool,
    verbs: Vec<String>,
}

/// One group as discovered: versions in the server's order of preference.
#[derive(Debug, Clone, Default)]
struct GroupData {
    versions: Vec<(String, Vec<Served>)>,
}

/// What the server served at one moment. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct DiscoverySnapshot {
    method: DiscoveryMethod,
    fetched_at: DateTime<Utc>,
    /// Every served (group, version, resource); groups in priority order (core first), each
    /// group's versions preferred first.
    served: Vec<Served>,
    /// Indexes into `served`: the entry used for each (group, plural) — from the group's preferred
    /// version when it serves the type, else from the most preferred version that does.
    preferred: Vec<usize>,
    /// Group versions whose discovery failed (e.g. an unavailable aggregated API server).
    failed: Vec<String>,
    /// The server's `gitVersion` (`v1.20.2`), when `/version` answered.
    version: Option<String>,
}

/// A discovery snapshot that can be refreshed (so a CRD installed later is picked up).
#[derive(Clone)]
pub struct SharedDiscovery {
    client: kube::Client,
    current: Arc<RwLock<Arc<DiscoverySnapshot>>>,
}

// === impl DiscoverySnapshot ===

impl DiscoverySnapshot {
    /// Runs discovery against the server: aggregated when it is served, legacy otherwise.
    pub async fn fetch(client: &kube::Client) -> Result<Self> {
        let mut snapshot = match fetch_aggregated(client).await {
            Some(groups) => Self::build(DiscoveryMethod::Aggregated, groups, Vec::new()),
            None => {
                let (groups, failed) = fetch_legacy(client).await?;
                Self::build(DiscoveryMethod::Legacy, groups, failed)
            }
        };
        // Only Helm's `.Capabilities.KubeVersion` needs it: a failure is not discovery's.
        snapshot.version = match client.apiserver_version().await {
            Ok(info) => Some(info.git_version),
            Err(error) => {
                tracing::debug!(%error, "GET /version failed; charts render with Helm's default version");
                None
            }
        };
        Ok(snapshot)
    }

    /// Helm's `.Capabilities` for this cluster: its version and every served `group/version`
    /// and `group/version/Kind`.
    pub fn capabilities(&self) -> Option<driftguard_core::Capabilities> {
        let version = self.version.as_deref()?;
        // `v1.20.2+k3s1`, `v1.20.2-eks-1`: the semantic version alone.
        let core: String = version
            .trim_start_matches('v')
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if core.split('.').filter(|p| !p.is_empty()).count() < 2 {
            return None;
        }
        let mut api_versions: Vec<String> = self
            .served
            .iter()
            .flat_map(|s| {
                let gv = if s.group.is_empty() {
                    s.version.clone()
                } else {
                    format!("{}/{}", s.group, s.version)
                };
                let gvk = format!("{gv}/{}", s.kind);
                [gv, gvk]
            })
            .collect();
        api_versions.sort();
        api_versions.dedup();
        Some(driftguard_core::Capabilities {
            kube_version: format!("v{}", core.trim_end_matches('.')),
            api_versions,
        })
    }

    fn build(method: DiscoveryMethod, groups: Vec<GroupData>, failed: Vec<String>) -> Self {
        let mut served = Vec::new();
        let mut preferred = Vec::new();
        for group in groups {
            let mut seen: Vec<String> = Vec::new();
            for (_, resources) in group.versions {
                for resource in resources {
                    if !seen.contains(&resource.plural) {
                        seen.push(resource.plural.clone());
                        preferred.push(served.len());
                    }
                    served.push(resource);
                }
            }
        }
        Self {
            method,
            fetched_at: Utc::now(),
            served,
            preferred,
            failed,
            version: None,
        }
    }

    /// The protocol the server answered.
    pub fn method(&self) -> DiscoveryMethod {
        self.method
    }

    /// When this snapshot was taken.
    pub fn fetched_at(&self) -> DateTime<Utc> {
        self.fetched_at
    }

    /// Group versions that could not be discovered (`group/version`), e.g. an aggregated API
    /// whose backing server is down. Their types are missing from this snapshot.
    pub fn failed_group_versions(&self) -> &[String] {
        &self.failed
    }

    /// Every type in its preferred version, in discovery order (core group first).
    pub fn kinds(&self) -> Vec<ResolvedKind> {
        self.preferred
            .iter()
            .filter_map(|&i| self.served.get(i))
            .map(Served::resolved)
            .collect()
    }

    /// Resolves a name from `kubernetes.resources` the way `kubectl get` does: plural
    /// (`deployments`), singular (`deployment`), kind (`Deployment`), short name (`deploy`),
    /// optionally qualified by group (`deployments.apps`) or version and group
    /// (`deployments.v1.apps`). Several groups serving the name: the core group wins, then the
    /// server's group order. The type must support `list` and `watch`.
    pub fn resolve(&self, name: &str) -> Result<ResolvedKind> {
        let wanted = name.trim().to_lowercase();
        let found = self
            .find(&wanted, None)
            .or_else(|| {
                let (base, rest) = wanted.split_once('.')?;
                self.find(base, Some((None, rest))).or_else(|| {
                    let (version, group) = rest.split_once('.')?;
                    self.find(base, Some((Some(version), group)))
                })
            })
            .ok_or_else(|| Error::UnknownResource {
                name: name.to_owned(),
                suggestions: self.suggestions(&wanted),
            })?;
        let watchable = ["list", "watch"]
            .iter()
            .all(|verb| found.verbs.iter().any(|v| v == verb));
        if !watchable {
            return Err(Error::NotWatchable {
                name: name.to_owned(),
                resource: found.resolved().to_string(),
            });
        }
        Ok(found.resolved())
    }

    /// Resolves every name; errors are returned per name, in order.
    pub fn resolve_all<S: AsRef<str>>(&self, names: &[S]) -> (Vec<ResolvedKind>, Vec<Error>) {
        let mut kinds: Vec<ResolvedKind> = Vec::new();
        let mut errors = Vec::new();
        for name in names {
            match self.resolve(name.as_ref()) {
                Ok(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Ok(_) => {}
                Err(err) => errors.push(err),
            }
        }
        (kinds, errors)
    }

    /// Scope lookup for the Git reader: `Some(true)` when `group`/`kind` is namespaced,
    /// `Some(false)` when cluster-scoped, `None` when the server does not serve it.
    pub fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.served
            .iter()
            .find(|s| s.group == group && s.kind == kind)
            .map(|s| s.namespaced)
    }

    /// The type in its preferred version, by group and kind.
    pub fn kind(&self, group_kind: &GroupKind) -> Option<ResolvedKind> {
        self.preferred
            .iter()
            .filter_map(|&i| self.served.get(i))
            .find(|s| s.group == group_kind.group && s.kind == group_kind.kind)
            .map(Served::resolved)
    }

    /// The type in exactly `api_version` (`apps/v1`, `v1`), when the server serves it there.
    pub fn kind_in_version(&self, api_version: &str, kind: &str) -> Option<ResolvedKind> {
        let (group, version) = split_api_version(api_version);
        self.served
            .iter()
            .find(|s| s.group == group && s.version == version && s.kind == kind)
            .map(Served::resolved)
    }

    /// True when the server serves `api_version` at all (for telling "unknown version" apart from
    /// "this version does not have that kind").
    pub fn serves_group_version(&self, api_version: &str) -> bool {
        let (group, version) = split_api_version(api_version);
        self.served
            .iter()
            .any(|s| s.group == group && s.version == version)
    }

    fn find(&self, base: &str, qualifier: Option<(Option<&str>, &str)>) -> Option<&Served> {
        let candidates: Vec<&Served> = match qualifier {
            None => self
                .preferred
                .iter()
                .filter_map(|&i| self.served.get(i))
                .collect(),
            Some((None, group)) => self
                .preferred
                .iter()
                .filter_map(|&i| self.served.get(i))
                .filter(|s| s.group == group)
                .collect(),
            Some((Some(version), group)) => self
                .served
                .iter()
                .filter(|s| s.group == group && s.version == version)
                .collect(),
        };
        // Exact resource names beat kinds, which beat short names (kubectl's order).
        let by = [
            |s: &Served, b: &str| s.plural == b,
            |s: &Served, b: &str| s.singular == b,
            |s: &Served, b: &str| s.kind.to_lowercase() == b,
            |s: &Served, b: &str| s.short_names.iter().any(|n| n == b),
        ];
        by.iter()
            .find_map(|matches| candidates.iter().copied().find(|s| matches(s, base)))
    }

    fn suggestions(&self, wanted: &str) -> Vec<String> {
        let budget = (wanted.chars().count() / 3).clamp(1, 3);
        let mut scored: Vec<(usize, String)> = Vec::new();
        for s in self.preferred.iter().filter_map(|&i| self.served.get(i)) {
            let mut names = vec![s.plural.clone(), s.kind.clone(), s.singular.clone()];
            names.extend(s.short_names.iter().cloned());
            if !s.group.is_empty() {
                names.push(format!("{}.{}", s.plural, s.group));
            }
            for name in names {
                let distance = levenshtein(wanted, &name.to_lowercase());
                if distance <= budget && !scored.iter().any(|(_, n)| n.eq_ignore_ascii_case(&name))
                {
                    scored.push((distance, name));
                }
            }
        }
        scored.sort();
        scored.into_iter().take(3).map(|(_, n)| n).collect()
    }
}

// === impl Served ===

impl Served {
    fn resolved(&self) -> ResolvedKind {
        ResolvedKind {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
            namespaced: self.namespaced,
        }
    }
}

// === impl SharedDiscovery ===

/// Discovery answers the Git reader's question: is this kind namespaced?
impl driftguard_core::ScopeLookup for SharedDiscovery {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.snapshot().is_namespaced(group, kind)
    }

    fn capabilities(&self) -> Option<driftguard_core::Capabilities> {
        self.snapshot().capabilities()
    }
}

impl SharedDiscovery {
    /// Runs discovery once and keeps the result.
    pub async fn new(client: kube::Client) -> Result<Self> {
        let snapshot = DiscoverySnapshot::fetch(&client).await?;
        Ok(Self {
            client,
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
        })
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<DiscoverySnapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads discovery; on failure the previous snapshot stays in place.
    pub async fn refresh(&self) -> Result<Arc<DiscoverySnapshot>> {
        let fresh = Arc::new(DiscoverySnapshot::fetch(&self.client).await?);
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }

    /// Refreshes every `every` in a background task (failures are logged and retried at the next
    /// tick). Abort the returned handle to stop.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match this.refresh().await {
                    Ok(snapshot) => tracing::debug!(
                        types = snapshot.preferred.len(),
                        method = ?snapshot.method,
                        "discovery refreshed"
                    ),
                    Err(err) => tracing::warn!(
                        error = %crate::error::chain(&err),
                        "discovery refresh failed; keeping the previous snapshot"
                    ),
                }
            }
        })
    }
}

impl std::fmt::Debug for SharedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDiscovery").finish_non_exhaustive()
    }
}

// === impl LazyDiscovery ===

/// Discovery read only as far as the questions asked need — `driftguard check`'s, where every
/// request is waited for. `/api` and `/apis` first (two requests: the groups in the server's
/// order, their versions, the preferred one; on a server with aggregated discovery they hold
/// everything), then a group's resources (every version of it) only when an answer can depend
/// on that group:
///
/// - a scope or kind question ([`LazyDiscovery::is_namespaced`], [`LazyDiscovery::kind`]) reads
///   that group alone;
/// - a group-qualified name (`deployments.apps`, `deployments.v1.apps`, `Widget.example.com`)
///   reads the group it names;
/// - an unqualified name is looked for group by group in priority order (core first, a few
///   groups in flight at once) and settled by the first group serving it as a *plural*
///   (`deployments`: the core group, `apiregistration.k8s.io`, `extensions`, `apps`); a
///   singular, kind or short name (`deployment`, `Deployment`, `deploy`) may be beaten by a
///   plural of any later group, so it reads everything, as does an unknown name (its
///   suggestions come from every group).
///
/// Every answer is the one a [`DiscoverySnapshot`] read in full gives: each is computed by the
/// same code over a snapshot of the groups read, complete in every group the answer can depend
/// on. One assumption, the API server's own rule: no served name (plural, singular or short
/// name — DNS labels — or kind) holds a dot, so a dotted name can only be group-qualified.
#[derive(Clone)]
pub struct LazyDiscovery {
    inner: Arc<LazyInner>,
}

struct LazyInner {
    client: kube::Client,
    method: DiscoveryMethod,
    /// Groups in priority order, core first.
    groups: Vec<LazyGroup>,
    /// The server's `gitVersion`, read when the capabilities are asked for.
    version: tokio::sync::OnceCell<Option<String>>,
    /// Bounds the group-version requests in flight.
    permits: tokio::sync::Semaphore,
    /// Group-version requests made (for tests and the debug log).
    reads: std::sync::atomic::AtomicUsize,
}

struct LazyGroup {
    name: String,
    /// Versions, preferred first.
    versions: Vec<String>,
    loaded: tokio::sync::OnceCell<Arc<LoadedGroup>>,
}

/// One group, every version read.
struct LoadedGroup {
    data: GroupData,
    /// Its group versions whose discovery failed.
    failed: Vec<String>,
}

/// Groups looked for at once when an unqualified name is resolved.
const LOOKAHEAD_GROUPS: usize = 4;

impl LazyDiscovery {
    /// Reads `/api` and `/apis` (both at once); nothing else yet.
    pub async fn new(client: kube::Client) -> Result<Self> {
        let (method, groups) = match fetch_roots(&client).await? {
            Roots::Aggregated(groups) => (
                DiscoveryMethod::Aggregated,
                groups
                    .into_iter()
                    .map(|(name, data)| LazyGroup {
                        name,
                        versions: data.versions.iter().map(|(v, _)| v.clone()).collect(),
                        loaded: tokio::sync::OnceCell::new_with(Some(Arc::new(LoadedGroup {
                            data,
                            failed: Vec::new(),
                        }))),
                    })
                    .collect(),
            ),
            Roots::Legacy(groups) => (
                DiscoveryMethod::Legacy,
                groups
                    .into_iter()
                    .map(|(name, versions)| LazyGroup {
                        name,
                        versions,
                        loaded: tokio::sync::OnceCell::new(),
                    })
                    .collect(),
            ),
        };
        Ok(Self {
            inner: Arc::new(LazyInner {
                client,
                method,
                groups,
                version: tokio::sync::OnceCell::new(),
                permits: tokio::sync::Semaphore::new(LEGACY_CONCURRENCY),
                reads: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// The protocol the server answered.
    pub fn method(&self) -> DiscoveryMethod {
        self.inner.method
    }

    /// How many group versions have been read so far (each at most once).
    pub fn group_versions_read(&self) -> usize {
        self.inner.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many group versions the server serves (what a full discovery reads).
    pub fn group_versions_served(&self) -> usize {
        self.inner.groups.iter().map(|g| g.versions.len()).sum()
    }

    /// [`DiscoverySnapshot::resolve`], reading only the groups the name can depend on.
    pub async fn resolve(&self, name: &str) -> Result<ResolvedKind> {
        let wanted = name.trim().to_lowercase();
        if let Some((_, rest)) = wanted.split_once('.') {
            // Group-qualified: `rest` is a group, or `version.group`.
            let mut needed: Vec<usize> = self.index_of(rest).into_iter().collect();
            if let Some((_, group)) = rest.split_once('.') {
                needed.extend(self.index_of(group));
            }
            needed.sort_unstable();
            needed.dedup();
            let snapshot = self.snapshot_of(&needed).await;
            match snapshot.resolve(name) {
                Err(Error::UnknownResource { .. }) => {}
                settled => return settled,
            }
        } else {
            let mut in_flight = futures::stream::FuturesOrdered::new();
            let count = self.inner.groups.len();
            let mut next = 0;
            while next < count.min(LOOKAHEAD_GROUPS) {
                in_flight.push_back(self.group_spawned(next));
                next += 1;
            }
            let mut done = 0;
            while let Some(group) = in_flight.next().await {
                let serves_plural = group.as_ref().is_some_and(|g| {
                    g.data
                        .versions
                        .iter()
                        .flat_map(|(_, resources)| resources)
                        .any(|r| r.plural == wanted)
                });
                done += 1;
                if serves_plural {
                    // Groups 0..done are read: the first plural match is among them.
                    let prefix: Vec<usize> = (0..done).collect();
                    return self.snapshot_of(&prefix).await.resolve(name);
                }
                if next < count {
                    in_flight.push_back(self.group_spawned(next));
                    next += 1;
                }
            }
        }
        self.everything().await.resolve(name)
    }

    /// [`DiscoverySnapshot::resolve_all`]: every name at once, errors per name, in order.
    pub async fn resolve_all<S: AsRef<str>>(&self, names: &[S]) -> (Vec<ResolvedKind>, Vec<Error>) {
        let results =
            futures::future::join_all(names.iter().map(|n| self.resolve(n.as_ref()))).await;
        let mut kinds: Vec<ResolvedKind> = Vec::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Ok(_) => {}
                Err(err) => errors.push(err),
            }
        }
        (kinds, errors)
    }

    /// [`DiscoverySnapshot::kind`], reading that group alone.
    pub async fn kind(&self, group_kind: &GroupKind) -> Option<ResolvedKind> {
        let index = self.index_of(&group_kind.group)?;
        self.snapshot_of(&[index]).await.kind(group_kind)
    }

    /// [`DiscoverySnapshot::is_namespaced`], reading that group alone.
    pub async fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        let index = self.index_of(group)?;
        self.group(index).await?;
        self.is_namespaced_now(group, kind).flatten()
    }

    /// The answer of [`LazyDiscovery::is_namespaced`] when it needs no request: `None` while
    /// the group is not read yet.
    pub fn is_namespaced_now(&self, group: &str, kind: &str) -> Option<Option<bool>> {
        let Some(index) = self.index_of(group) else {
            return Some(None);
        };
        let loaded = self.inner.groups.get(index)?.loaded.get()?;
        Some(
            loaded
                .data
                .versions
                .iter()
                .flat_map(|(_, resources)| resources)
                .find(|s| s.group == group && s.kind == kind)
                .map(|s| s.namespaced),
        )
    }

    /// [`DiscoverySnapshot::capabilities`]: every group, and the server's version.
    pub async fn capabilities(&self) -> Option<driftguard_core::Capabilities> {
        let (mut snapshot, version) = futures::join!(self.everything(), self.version());
        snapshot.version = version;
        snapshot.capabilities()
    }

    /// Every group read: the snapshot a full discovery gives (without the server's version).
    pub async fn everything(&self) -> DiscoverySnapshot {
        let all: Vec<usize> = (0..self.inner.groups.len()).collect();
        self.snapshot_of(&all).await
    }

    async fn version(&self) -> Option<String> {
        self.inner
            .version
            .get_or_init(|| async {
                match self.inner.client.apiserver_version().await {
                    Ok(info) => Some(info.git_version),
                    Err(error) => {
                        tracing::debug!(%error, "GET /version failed; charts render with Helm's default version");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    fn index_of(&self, group: &str) -> Option<usize> {
        self.inner.groups.iter().position(|g| g.name == group)
    }

    /// The snapshot of the groups `indexes` (ascending), each read in full.
    async fn snapshot_of(&self, indexes: &[usize]) -> DiscoverySnapshot {
        let loaded = futures::future::join_all(indexes.iter().map(|&i| self.group(i))).await;
        let mut groups = Vec::new();
        let mut failed = Vec::new();
        for group in loaded.into_iter().flatten() {
            groups.push(group.data.clone());
            failed.extend(group.failed.iter().cloned());
        }
        let mut snapshot = DiscoverySnapshot::build(self.inner.method, groups, failed);
        snapshot.version = self.inner.version.get().cloned().flatten();
        snapshot
    }

    /// Group `index`, read in full (once; later callers share the answer).
    async fn group(&self, index: usize) -> Option<Arc<LoadedGroup>> {
        let group = self.inner.groups.get(index)?;
        let loaded = group
            .loaded
            .get_or_init(|| fetch_group(&self.inner, &group.name, &group.versions))
            .await;
        Some(Arc::clone(loaded))
    }

    /// [`LazyDiscovery::group`] in a task of its own: a look-ahead that is not needed in the
    /// end still completes (and is kept) rather than cutting its connection.
    fn group_spawned(
        &self,
        index: usize,
    ) -> impl std::future::Future<Output = Option<Arc<LoadedGroup>>> + use<> {
        let this = self.clone();
        let task = tokio::spawn(async move { this.group(index).await });
        async move { task.await.ok().flatten() }
    }
}

impl std::fmt::Debug for LazyDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyDiscovery")
            .field("method", &self.inner.method)
            .field("groups", &self.inner.groups.len())
            .field("group_versions_read", &self.group_versions_read())
            .finish_non_exhaustive()
    }
}

/// Every version of one group (at once, within the request bound); a version that fails is
/// logged and skipped, as in a full discovery.
async fn fetch_group(inner: &LazyInner, group: &str, versions: &[String]) -> Arc<LoadedGroup> {
    let results = futures::future::join_all(versions.iter().map(|version| async move {
        let gv = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let _permit = inner.permits.acquire().await;
        inner
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let list = if group.is_empty() {
            inner.client.list_core_api_resources(version).await
        } else {
            inner.client.list_api_group_resources(&gv).await
        };
        (version, gv, list)
    }))
    .await;
    let mut data = GroupData::default();
    let mut failed = Vec::new();
    for (version, gv, list) in results {
        match list {
            Ok(list) => data
                .versions
                .push((version.clone(), served_in(list, group, version))),
            Err(err) => {
                tracing::warn!(group_version = %gv, error = %crate::error::chain(&err), "discovery of a group version failed; its types are skipped");
                failed.push(gv);
            }
        }
    }
    Arc::new(LoadedGroup { data, failed })
}

/// What `/api` and `/apis` said.
enum Roots {
    /// Aggregated discovery: every group (named) with its resources.
    Aggregated(Vec<(String, GroupData)>),
    /// Legacy discovery: every group (core first, named) with its versions, preferred first.
    Legacy(Vec<(String, Vec<String>)>),
}

/// `/api` and `/apis`, both at once, asking for aggregated discovery; a server without it
/// answers the plain lists, which are used as they are (a server answering neither way is
/// asked again plainly, and its error reported).
async fn fetch_roots(client: &kube::Client) -> Result<Roots> {
    let (api, apis) = futures::join!(get_root(client, "/api"), get_root(client, "/apis"));
    let kind_of = |v: &Option<Value>| {
        v.as_ref()
            .and_then(|v| v.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_kind, apis_kind) = (kind_of(&api), kind_of(&apis));
    if api_kind == "APIGroupDiscoveryList" && apis_kind == "APIGroupDiscoveryList" {
        let parse = |v: Option<Value>| {
            v.and_then(|v| serde_json::from_value::<APIGroupDiscoveryList>(v).ok())
        };
        if let (Some(core), Some(groups)) = (parse(api.clone()), parse(apis.clone())) {
            let groups = core
                .items
                .into_iter()
                .chain(groups.items)
                .map(|group| {
                    let name = group
                        .metadata
                        .as_ref()
                        .and_then(|m| m.name.clone())
                        .unwrap_or_default();
                    (name, group_from_v2(group))
                })
                .collect();
            return Ok(Roots::Aggregated(groups));
        }
    }
    tracing::debug!(
        api = %api_kind,
        apis = %apis_kind,
        "server answered without aggregated discovery; using legacy discovery"
    );
    let core_versions = match api.filter(|_| api_kind == "APIVersions").and_then(|v| {
        serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIVersions>(v)
            .ok()
    }) {
        Some(versions) => versions,
        None => client
            .list_core_api_versions()
            .await
            .map_err(|source| Error::Discovery {
                what: "GET /api".into(),
                source,
            })?,
    };
    let api_groups = match apis.filter(|_| apis_kind == "APIGroupList").and_then(|v| {
        serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList>(v)
            .ok()
    }) {
        Some(groups) => groups,
        None => client
            .list_api_groups()
            .await
            .map_err(|source| Error::Discovery {
                what: "GET /apis".into(),
                source,
            })?,
    };
    let mut groups = vec![(String::new(), core_versions.versions)];
    for group in api_groups.groups {
        let preferred = group.preferred_version.map(|p| p.version);
        let mut versions: Vec<String> = group.versions.into_iter().map(|v| v.version).collect();
        if let Some(p) = preferred
            && let Some(pos) = versions.iter().position(|v| *v == p)
        {
            let p = versions.remove(pos);
            versions.insert(0, p);
        }
        groups.push((group.name, versions));
    }
    Ok(Roots::Legacy(groups))
}

/// One root discovery document, asked for in its aggregated form; `None` on any error.
async fn get_root(client: &kube::Client, path: &str) -> Option<Value> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, ACCEPT_AGGREGATED_DISCOVERY_V2)
        .body(Vec::new())
        .ok()?;
    match client.request_text(request).await {
        Ok(text) => serde_json::from_str(&text).ok(),
        Err(err) => {
            tracing::debug!(path, error = %crate::error::chain(&err), "discovery root unavailable");
            None
        }
    }
}

// === fetching ===

/// Aggregated discovery, or `None` when the server does not answer it (any error, or a plain
/// `APIGroupList` — what servers before 1.26 send for the aggregated `Accept` header).
async fn fetch_aggregated(client: &kube::Client) -> Option<Vec<GroupData>> {
    let core = get_aggregated(client, "/api").await?;
    let apis = get_aggregated(client, "/apis").await?;
    let mut groups = Vec::new();
    for group in core.items.into_iter().chain(apis.items) {
        groups.push(group_from_v2(group));
    }
    Some(groups)
}

async fn get_aggregated(client: &kube::Client, path: &str) -> Option<APIGroupDiscoveryList> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, ACCEPT_AGGREGATED_DISCOVERY_V2)
        .body(Vec::new())
        .ok()?;
    let text = match client.request_text(request).await {
        Ok(text) => text,
        Err(err) => {
            tracing::debug!(path, error = %crate::error::chain(&err), "aggregated discovery unavailable");
            return None;
        }
    };
    let value: Value = serde_json::from_str(&text).ok()?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "APIGroupDiscoveryList" {
        tracing::debug!(
            path,
            kind,
            "server answered without aggregated discovery; using legacy discovery"
        );
        return None;
    }
    serde_json::from_value(value).ok()
}

fn group_from_v2(group: APIGroupDiscovery) -> GroupData {
    let name = group
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let versions = group
        .versions
        .into_iter()
        .map(|version| {
            let v = version.version.unwrap_or_default();
            let resources = version
                .resources
                .into_iter()
                .filter_map(|r| {
                    let plural = r.resource?;
                    let kind = r.response_kind.and_then(|k| k.kind)?;
                    Some(Served {
                        group: name.clone(),
                        version: v.clone(),
                        singular: r
                            .singular_resource
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| kind.to_lowercase()),
                        kind,
                        plural,
                        short_names: r.short_names,
                        namespaced: r.scope.as_deref() == Some("Namespaced"),
                        verbs: r.verbs,
                    })
                })
                .collect();
            (v, resources)
        })
        .collect();
    GroupData { versions }
}

/// Legacy discovery: `/api`, `/apis`, then one request per group version.
async fn fetch_legacy(client: &kube::Client) -> Result<(Vec<GroupData>, Vec<String>)> {
    let core_versions =
        client
            .list_core_api_versions()
            .await
            .map_err(|source| Error::Discovery {
                what: "GET /api".into(),
                source,
            })?;
    let api_groups = client
        .list_api_groups()
        .await
        .map_err(|source| Error::Discovery {
            what: "GET /apis".into(),
            source,
        })?;

    // (group index, group, version) in priority order: core first, then the server's order,
    // each group's preferred version first.
    let mut names = vec![String::new()];
    let mut wanted: Vec<(usize, String, String)> = core_versions
        .versions
        .iter()
        .map(|v| (0, String::new(), v.clone()))
        .collect();
    for group in api_groups.groups {
        let index = names.len();
        names.push(group.name.clone());
        let preferred = group.preferred_version.map(|p| p.version);
        let mut versions: Vec<String> = group.versions.into_iter().map(|v| v.version).collect();
        if let Some(p) = preferred
            && let Some(pos) = versions.iter().position(|v| *v == p)
        {
            let p = versions.remove(pos);
            versions.insert(0, p);
        }
        wanted.extend(versions.into_iter().map(|v| (index, group.name.clone(), v)));
    }

    let results: Vec<_> = futures::stream::iter(wanted)
        .map(|(index, group, version)| async move {
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            let list = if group.is_empty() {
                client.list_core_api_resources(&version).await
            } else {
                client.list_api_group_resources(&gv).await
            };
            (index, group, version, gv, list)
        })
        .buffered(LEGACY_CONCURRENCY)
        .collect()
        .await;

    let mut groups: Vec<GroupData> = names.into_iter().map(|_| GroupData::default()).collect();
    let mut failed = Vec::new();
    for (index, group, version, gv, list) in results {
        let list = match list {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(group_version = %gv, error = %crate::error::chain(&err), "discovery of a group version failed; its types are skipped");
                failed.push(gv);
                continue;
            }
        };
        let resources = served_in(list, &group, &version);
        if let Some(data) = groups.get_mut(index) {
            data.versions.push((version, resources));
        }
    }
    Ok((groups, failed))
}

/// The resource types of one legacy group-version answer (subresources left out).
fn served_in(
    list: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
    group: &str,
    version: &str,
) -> Vec<Served> {
    list.resources
        .into_iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| Served {
            group: r
                .group
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| group.to_owned()),
            version: r
                .version
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| version.to_owned()),
            singular: if r.singular_name.is_empty() {
                r.kind.to_lowercase()
            } else {
                r.singular_name
            },
            kind: r.kind,
            plural: r.name,
            short_names: r.short_names.unwrap_or_default(),
            namespaced: r.namespaced,
            verbs: r.verbs,
        })
        .collect()
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (`""`, `v1`).
fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Edit distance (insertions, deletions, substitutions) between two strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            let delete = previous[j + 1] + 1;
            let insert = current[j] + 1;
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        short: &[&str],
        ns: bool,
    ) -> Served {
        Served {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: short.iter().map(|s| (*s).to_owned()).collect(),
            namespaced: ns,
            verbs: vec!["get".into(), "list".into(), "watch".into()],
        }
    }

    fn snapshot() -> DiscoverySnapshot {
        let mut review = served(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            &[],
            false,
        );
        review.verbs = vec!["create".into()];
        DiscoverySnapshot::build(
            DiscoveryMethod::Legacy,
            vec![
                GroupData {
                    versions: vec![(
                        "v1".into(),
                        vec![
                            served("", "v1", "ConfigMap", "configmaps", &["cm"], true),
                            served("", "v1", "Event", "events", &["ev"], true),
                            served("", "v1", "Namespace", "namespaces", &["ns"], false),
                        ],
                    )],
                },
                GroupData {
                    versions: vec![(
                        "v1".into(),
                        vec![served(
                            "apps",
                            "v1",
                            "Deployment",
                            "deployments",
                            &["deploy"],
                            true,
                        )],
                    )],
                },
                GroupData {
                    versions: vec![
                        (
                            "v1".into(),
                            vec![served(
                                "events.k8s.io",
                                "v1",
                                "Event",
                                "events",
                                &["ev"],
                                true,
                            )],
                        ),
                        (
                            "v1beta1".into(),
                            vec![served(
                                "events.k8s.io",
                                "v1beta1",
                                "Event",
                                "events",
                                &["ev"],
                                true,
                            )],
                        ),
                    ],
                },
                GroupData {
                    versions: vec![
                        (
                            "v1".into(),
                            vec![served(
                                "storage.k8s.io",
                                "v1",
                                "StorageClass",
                                "storageclasses",
                                &["sc"],
                                false,
                            )],
                        ),
                        (
                            "v1beta1".into(),
                            vec![
                                served(
                                    "storage.k8s.io",
                                    "v1beta1",
                                    "StorageClass",
                                    "storageclasses",
                                    &["sc"],
                                    false,
                                ),
                                served(
                                    "storage.k8s.io",
                                    "v1beta1",
                                    "CSIStorageCapacity",
                                    "csistoragecapacities",
                                    &[],
                                    true,
                                ),
                            ],
                        ),
                    ],
                },
                GroupData {
                    versions: vec![("v1".into(), vec![review])],
                },
            ],
            Vec::new(),
        )
    }

    #[test]
    fn every_spelling_resolves() {
        let s = snapshot();
        for name in [
            "deployments",
            "deployment",
            "Deployment",
            "deploy",
            "deployments.apps",
            "deployments.v1.apps",
            "Deployment.apps",
        ] {
            let k = s.resolve(name).unwrap();
            assert_eq!(
                (k.group.as_str(), k.kind.as_str(), k.version.as_str()),
                ("apps", "Deployment", "v1"),
                "{name}"
            );
            assert!(k.namespaced);
        }
        assert_eq!(s.resolve("cm").unwrap().kind, "ConfigMap");
        assert!(!s.resolve("ns").unwrap().namespaced);
    }

    #[test]
    fn core_group_wins_and_group_qualifies() {
        let s = snapshot();
        assert_eq!(s.resolve("events").unwrap().group, "");
        let e = s.resolve("events.events.k8s.io").unwrap();
        assert_eq!(
            (e.group.as_str(), e.version.as_str()),
            ("events.k8s.io", "v1")
        );
        let beta = s.resolve("events.v1beta1.events.k8s.io").unwrap();
        assert_eq!(beta.version, "v1beta1");
    }

    #[test]
    fn preferred_version_and_fallback_version() {
        let s = snapshot();
        assert_eq!(s.resolve("sc").unwrap().version, "v1");
        // Only served in a non-preferred version: that version is used.
        assert_eq!(
            s.resolve("csistoragecapacities").unwrap().version,
            "v1beta1"
        );
        assert!(
            s.kind_in_version("storage.k8s.io/v1beta1", "StorageClass")
                .is_some()
        );
        assert!(
            s.kind_in_version("storage.k8s.io/v1alpha1", "StorageClass")
                .is_none()
        );
        assert!(s.serves_group_version("storage.k8s.io/v1beta1"));
        assert!(!s.serves_group_version("storage.k8s.io/v1alpha1"));
    }

    #[test]
    fn unknown_names_get_suggestions() {
        let s = snapshot();
        match s.resolve("deploymnets") {
            Err(Error::UnknownResource { suggestions, .. }) => {
                assert_eq!(suggestions, vec!["deployments", "Deployment"])
            }
            other => panic!("{other:?}"),
        }
        match s.resolve("confgmap") {
            Err(Error::UnknownResource { suggestions, .. }) => {
                assert_eq!(suggestions, vec!["ConfigMap", "configmaps"])
            }
            other => panic!("{other:?}"),
        }
        match s.resolve("zzzzzzzzzz") {
            Err(err @ Error::UnknownResource { .. }) => {
                assert!(err.to_string().contains("kubectl api-resources"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unwatchable_types_are_refused() {
        assert!(matches!(
            snapshot().resolve("tokenreviews"),
            Err(Error::NotWatchable { .. })
        ));
    }

    #[test]
    fn scope_lookup() {
        let s = snapshot();
        assert_eq!(s.is_namespaced("apps", "Deployment"), Some(true));
        assert_eq!(
            s.is_namespaced("storage.k8s.io", "StorageClass"),
            Some(false)
        );
        assert_eq!(s.is_namespaced("example.com", "Widget"), None);
    }

    #[test]
    fn aggregated_answer_is_parsed() {
        let list: APIGroupDiscoveryList = serde_json::from_value(serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [{"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [{
                "resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"],
                "verbs": ["get", "list", "watch"]}]}]}]
        }))
        .unwrap();
        let groups = list.items.into_iter().map(group_from_v2).collect();
        let s = DiscoverySnapshot::build(DiscoveryMethod::Aggregated, groups, Vec::new());
        let k = s.resolve("deploy").unwrap();
        assert_eq!(k.api_version(), "apps/v1");
        assert!(k.namespaced);
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ab"), 2);
        assert_eq!(levenshtein("same", "same"), 0);
    }
}

//! `driftguard check`: one Git load, one list per kind, and `serve`'s evaluation
//! ([`crate::evaluate`]) over that list — no store, no history (records are `active` or `none`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use driftguard_config::Config;
use driftguard_core::engine::EngineConfig;
use driftguard_core::{DriftRecord, LiveObject, ResourceKey, SecretHasher};
use driftguard_git::{ReadOptions, Snapshot, is_url, load_once};
use driftguard_kube::{GroupKind, KindError, LazyDiscovery, ResolvedKind, WatchScope};
use driftguard_store::Write;
use futures::future::{BoxFuture, FutureExt as _};
use futures::stream::{FuturesUnordered, StreamExt as _};
use tokio::task::JoinHandle;

use crate::analyzer::Analyzer;
use crate::errors::chain;
use crate::evaluate::{Evaluated, Evaluation, LiveView, Scope, evaluate};
use crate::selector::Selector;
use crate::unmanaged::Claim;

/// One error met while checking (an entry of `errors` in `check`'s JSON document, contract §6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckError {
    /// What failed: a file, a resource type, `git`, `kubernetes`, `config`.
    pub source: String,
    /// Why (never a Secret value).
    pub message: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Commit analysed (`None` for a directory read from disk).
    pub git_commit: Option<String>,
    /// Every managed resource (active or none) plus unmanaged ones when reported, by id.
    pub records: Vec<DriftRecord>,
    /// Everything that could not be analysed.
    pub errors: Vec<CheckError>,
}

fn error(source: impl Into<String>, message: impl Into<String>) -> CheckError {
    CheckError {
        source: source.into(),
        message: message.into(),
    }
}

/// Runs one analysis. Never fails as a whole: what could not be read is in `errors`.
///
/// Nothing waits that need not: the Git load starts at once on a blocking thread (its parser
/// asks discovery whether a kind is namespaced, and waits for that one group only); the
/// Kubernetes client and discovery's roots (`/api`, `/apis`) meanwhile; each configured kind is
/// listed as soon as its name is resolved (reading only the groups the name can depend on, see
/// [`LazyDiscovery`]), each kind found only in Git as soon as the snapshot is built; each kind
/// is evaluated, on its own task, as soon as both its list and the snapshot are in. The result
/// is the one of reading everything in turn: records sorted by id, errors in the same order.
pub async fn check(config: &Config) -> CheckOutcome {
    let started = Instant::now();
    let mark = |what: &str| {
        tracing::debug!(
            ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            "check: {what}"
        );
    };
    let mut out = CheckOutcome::default();
    let engine: EngineConfig = match config.drift_detection.engine_config() {
        Ok(e) => e,
        Err(e) => {
            out.errors
                .push(error("config", format!("drift_detection.ignore: {e}")));
            return out;
        }
    };
    let selector = match Selector::parse(&config.kubernetes.labels) {
        Ok(s) => s,
        Err(e) => {
            out.errors
                .push(error("config", format!("kubernetes.labels: {e}")));
            return out;
        }
    };
    if config.git.repository_url.trim().is_empty() {
        out.errors.push(error(
            "config",
            "no repository: pass --repo URL|PATH or set git.repository_url",
        ));
        return out;
    }
    // Digests only need to agree within this process: a fresh random key per run.
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let hasher = match config.drift_detection.redact_rules() {
        Ok(redact) => SecretHasher::new(key).with_redact_rules(redact),
        Err(e) => {
            out.errors.push(error("config", e));
            return out;
        }
    };

    // The client and discovery's roots, on a task of their own.
    let kube: Kube = {
        let cfg = config.kubernetes.clone();
        let task = tokio::spawn(async move {
            let client =
                driftguard_kube::connect_with(&cfg, driftguard_kube::Protocols::Multiplexed)
                    .await
                    .map_err(|e| chain(&e))?;
            tracing::trace!("check: client built");
            let discovery = LazyDiscovery::new(client.clone())
                .await
                .map_err(|e| chain(&e))?;
            Ok((client, discovery))
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(format!("the Kubernetes client stopped: {e}")))
        }
        .boxed()
        .shared()
    };
    // The Git load at once: fetching needs nothing from the cluster.
    let scope_lookup = DiscoveryScope {
        kube: kube.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let git = tokio::spawn(load_snapshot(config.clone(), hasher.clone(), scope_lookup));

    let kube = kube.await;
    mark("connected; discovery roots read");
    let (client, discovery) = match kube {
        Ok(pair) => (Some(pair.0), Some(pair.1)),
        Err(message) => {
            out.errors.push(error("kubernetes", message));
            (None, None)
        }
    };

    // The configured kinds, each listed as soon as its name is resolved.
    let scope = WatchScope::from_config(&config.kubernetes);
    let mut lists: Vec<(ResolvedKind, JoinHandle<Listed>)> = Vec::new();
    let mut resource_errors = Vec::new();
    if let (Some(client), Some(discovery)) = (&client, &discovery) {
        let mut resolving: FuturesUnordered<_> = config
            .kubernetes
            .resources
            .iter()
            .enumerate()
            .map(|(i, name)| async move { (i, discovery.resolve(name).await) })
            .collect();
        let mut resolved: Vec<(usize, Result<ResolvedKind, driftguard_kube::Error>)> = Vec::new();
        let mut started_lists: Vec<(ResolvedKind, JoinHandle<Listed>)> = Vec::new();
        while let Some((i, result)) = resolving.next().await {
            if let Ok(kind) = &result
                && !started_lists.iter().any(|(k, _)| k == kind)
            {
                let handle = spawn_list(client, kind.clone(), &scope, &hasher);
                started_lists.push((kind.clone(), handle));
            }
            resolved.push((i, result));
        }
        // In the order of the configuration, as `resolve_all` has it.
        resolved.sort_by_key(|(i, _)| *i);
        for (_, result) in resolved {
            match result {
                Ok(kind) => {
                    if let Some(at) = started_lists.iter().position(|(k, _)| *k == kind) {
                        lists.push(started_lists.swap_remove(at));
                    }
                }
                Err(e) => resource_errors.push(e),
            }
        }
        mark("configured kinds resolved; their lists started");
    }

    let snapshot = match git.await {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => {
            abort(&lists);
            out.errors.push(e);
            return out;
        }
        Err(e) => {
            abort(&lists);
            out.errors
                .push(error("git", format!("the Git reader stopped: {e}")));
            return out;
        }
    };
    mark("snapshot built");
    out.git_commit = Some(snapshot.commit.clone())
        .filter(|c| c != driftguard_git::WORKING_TREE && !c.is_empty());
    for e in &snapshot.errors {
        out.errors.push(error(
            match e.line {
                Some(line) => format!("{}:{line}", e.path),
                None => e.path.clone(),
            },
            e.message.clone(),
        ));
    }
    let (Some(client), Some(discovery)) = (client, discovery) else {
        return out;
    };
    for e in resource_errors {
        out.errors.push(error("kubernetes.resources", chain(&e)));
    }

    // The kinds found only in the repository.
    let repo_kinds: BTreeSet<GroupKind> = snapshot
        .objects
        .keys()
        .map(|k| GroupKind::new(k.group.clone(), k.kind.clone()))
        .filter(|gk| !lists.iter().any(|(k, _)| k.group_kind() == *gk))
        .collect();
    let found = futures::future::join_all(repo_kinds.iter().map(|gk| discovery.kind(gk))).await;
    let mut unserved: BTreeSet<String> = BTreeSet::new();
    for (gk, resolved) in repo_kinds.into_iter().zip(found) {
        match resolved {
            Some(kind) => {
                let handle = spawn_list(&client, kind.clone(), &scope, &hasher);
                lists.push((kind, handle));
            }
            None => {
                unserved.insert(if gk.group.is_empty() {
                    gk.kind
                } else {
                    format!("{}.{}", gk.kind, gk.group)
                });
            }
        }
    }
    for kind in &unserved {
        out.errors
            .push(error(kind.clone(), "the cluster does not serve this kind"));
    }
    tracing::debug!(
        ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        group_versions_read = discovery.group_versions_read(),
        group_versions_served = discovery.group_versions_served(),
        "check: every kind resolved"
    );

    // The CRDs' schema defaults (only read when a custom resource is compared).
    let crd_defaults =
        crate::crds::defaults_for(&client, lists.iter().map(|(k, _)| k.group.as_str())).await;
    let kinds: Vec<ResolvedKind> = lists.iter().map(|(k, _)| k.clone()).collect();
    let shared = Arc::new(Shared {
        engine: EngineConfig {
            crd_defaults,
            ..engine
        },
        report_unmanaged: config.drift_detection.report_unmanaged,
        claim: Claim::new(scope.clone(), selector.clone(), &config.kubernetes.labels),
        scope: Scope {
            watch: scope,
            selector,
        },
        client,
        hasher,
        snapshot: Arc::new(snapshot),
        now: Utc::now(),
    });

    // Each kind evaluated as soon as it is listed, on a task of its own.
    let mut listing: FuturesUnordered<_> = lists
        .into_iter()
        .enumerate()
        .map(|(i, (_, handle))| async move { (i, handle.await) })
        .collect();
    let mut evaluations: Vec<(usize, JoinHandle<Evaluations>)> = Vec::new();
    let mut kind_errors: Vec<(usize, Vec<KindError>)> = Vec::new();
    while let Some((i, listed)) = listing.next().await {
        let Some(kind) = kinds.get(i) else { continue };
        let (objects, errors) = match listed {
            Ok(listed) => listed,
            Err(e) => (
                Vec::new(),
                vec![KindError {
                    kind: kind.group_kind(),
                    namespace: None,
                    forbidden: false,
                    message: format!("the list stopped: {e}"),
                }],
            ),
        };
        mark(&format!("listed {}", kind.plural));
        // A kind with any failed list is not trusted: none of its resources is evaluated.
        if errors.is_empty() {
            for (keys, live) in chunks(&shared.snapshot, &kind.group_kind(), objects) {
                let shared = Arc::clone(&shared);
                evaluations.push((
                    i,
                    tokio::spawn(async move { evaluate_keys(&shared, keys, live).await }),
                ));
            }
        }
        kind_errors.push((i, errors));
    }
    kind_errors.sort_by_key(|(i, _)| *i);
    for e in kind_errors.into_iter().flat_map(|(_, errors)| errors) {
        let what = match &e.namespace {
            Some(ns) => format!("{} in {ns}", plural_of(&kinds, &e.kind)),
            None => plural_of(&kinds, &e.kind),
        };
        let message = if e.forbidden {
            format!("forbidden: {}", e.message)
        } else {
            e.message.clone()
        };
        out.errors.push(error(what, message));
    }
    let mut failed: Vec<(ResourceKey, String)> = Vec::new();
    for (i, evaluation) in evaluations {
        match evaluation.await {
            Ok(done) => {
                out.records.extend(done.records);
                failed.extend(done.failed);
            }
            Err(e) => {
                let what = kinds.get(i).map_or_else(String::new, |k| k.plural.clone());
                out.errors
                    .push(error(what, format!("the evaluation stopped: {e}")));
            }
        }
    }
    // In resource order, as one pass over every resource reports them.
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, message) in failed {
        out.errors.push(error(key.resource_id(), message));
    }
    // Freeing the snapshot (every desired object) need not delay the report.
    tokio::task::spawn_blocking(move || drop(shared));
    out.records
        .sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
    mark("evaluated");
    out
}

/// The Kubernetes client and discovery, once connected (or why not), for whoever asks first.
type Kube =
    futures::future::Shared<BoxFuture<'static, Result<(kube::Client, LazyDiscovery), String>>>;

/// One kind's list: its objects and the lists that failed.
type Listed = (Vec<LiveObject>, Vec<KindError>);

/// What every kind's evaluation shares.
struct Shared {
    engine: EngineConfig,
    report_unmanaged: bool,
    claim: Claim,
    scope: Scope,
    client: kube::Client,
    hasher: SecretHasher,
    snapshot: Arc<Snapshot>,
    now: chrono::DateTime<Utc>,
}

/// One kind's records, and the resources that could not be evaluated.
#[derive(Default)]
struct Evaluations {
    records: Vec<DriftRecord>,
    failed: Vec<(ResourceKey, String)>,
}

/// Resources evaluated by one task (a kind of 500 resources is evaluated on four).
const EVALUATE_CHUNK: usize = 128;

/// Every resource of `kind` (in Git or listed), in order, cut in chunks of about
/// [`EVALUATE_CHUNK`], each with its live objects.
fn chunks(
    snapshot: &Snapshot,
    kind: &GroupKind,
    objects: Vec<LiveObject>,
) -> Vec<(Vec<ResourceKey>, BTreeMap<ResourceKey, LiveObject>)> {
    let mut live: BTreeMap<ResourceKey, LiveObject> =
        objects.into_iter().map(|l| (l.key.clone(), l)).collect();
    let mut keys: BTreeSet<ResourceKey> = snapshot
        .objects
        .keys()
        .filter(|k| k.group == kind.group && k.kind == kind.kind)
        .cloned()
        .collect();
    keys.extend(live.keys().cloned());
    let count = keys.len().div_ceil(EVALUATE_CHUNK).max(1);
    let size = keys.len().div_ceil(count).max(1);
    let mut keys = keys.into_iter();
    let mut out = Vec::new();
    loop {
        let chunk: Vec<ResourceKey> = keys.by_ref().take(size).collect();
        if chunk.is_empty() {
            return out;
        }
        let objects = chunk.iter().filter_map(|k| live.remove_entry(k)).collect();
        out.push((chunk, objects));
    }
}

/// `serve`'s evaluation of `keys` from an empty history. Resources are independent of each
/// other there, so each chunk of a kind has an analyzer of its own.
async fn evaluate_keys(
    shared: &Shared,
    keys: Vec<ResourceKey>,
    objects: BTreeMap<ResourceKey, LiveObject>,
) -> Evaluations {
    let live = ListedLive {
        objects: Mutex::new(objects),
    };
    let mut analyzer = Analyzer::new(shared.engine.clone(), shared.report_unmanaged, Vec::new())
        .with_claim(shared.claim.clone());
    let evaluation = Evaluation {
        scope: &shared.scope,
        client: &shared.client,
        hasher: &shared.hasher,
    };
    let mut out = Evaluations::default();
    for key in keys {
        match evaluate(
            &evaluation,
            &mut analyzer,
            &live,
            &shared.snapshot,
            &key,
            shared.now,
        )
        .await
        {
            Evaluated::Skipped | Evaluated::Unchanged => {}
            Evaluated::Failed(e) => out.failed.push((key, e)),
            Evaluated::Done(outcome) => {
                // From an empty history every evaluated resource writes its first record, with
                // its states.
                if let Some(Write::Upsert { record, .. }) = outcome.write {
                    out.records.push(record);
                }
            }
        }
    }
    out
}

/// The live objects of a chunk of one kind's list (a list that failed is never evaluated).
struct ListedLive {
    /// Each resource is evaluated once: its object is handed over, not copied.
    objects: Mutex<BTreeMap<ResourceKey, LiveObject>>,
}

impl LiveView for ListedLive {
    fn trustworthy(&self, _key: &ResourceKey) -> bool {
        true
    }

    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        Ok(match self.objects.lock() {
            Ok(mut objects) => objects.remove(key),
            Err(poisoned) => poisoned.into_inner().remove(key),
        })
    }
}

fn plural_of(kinds: &[ResolvedKind], gk: &GroupKind) -> String {
    kinds
        .iter()
        .find(|k| k.group_kind() == *gk)
        .map_or_else(|| gk.kind.clone(), |k| k.plural.clone())
}

/// Lists one kind (per namespace when namespaces are listed) on a task of its own.
fn spawn_list(
    client: &kube::Client,
    kind: ResolvedKind,
    scope: &WatchScope,
    hasher: &SecretHasher,
) -> JoinHandle<Listed> {
    let (client, scope, hasher) = (client.clone(), scope.clone(), hasher.clone());
    tokio::spawn(async move {
        driftguard_kube::list_once(&client, std::slice::from_ref(&kind), &scope, &hasher).await
    })
}

fn abort(lists: &[(ResolvedKind, JoinHandle<Listed>)]) {
    for (_, handle) in lists {
        handle.abort();
    }
}

/// Discovery's answers for the Git reader, which runs on a blocking thread: an answer that
/// needs a request (the roots, or that kind's group) waits for it there. Without a cluster (no
/// client, no discovery) there is no answer, and the reader's built-in table applies — as when
/// the reader has no lookup at all.
struct DiscoveryScope {
    kube: Kube,
    runtime: tokio::runtime::Handle,
}

impl DiscoveryScope {
    /// Asks discovery on the runtime and waits here (never on a runtime thread).
    fn wait<T, F, Fut>(&self, ask: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(LazyDiscovery) -> Fut + Send + 'static,
        Fut: Future<Output = Option<T>> + Send,
    {
        let (answer, receive) = std::sync::mpsc::channel();
        let kube = self.kube.clone();
        self.runtime.spawn(async move {
            let found = match kube.await {
                Ok((_, discovery)) => ask(discovery).await,
                Err(_) => None,
            };
            let _ = answer.send(found);
        });
        receive.recv().ok().flatten()
    }
}

impl driftguard_core::ScopeLookup for DiscoveryScope {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        match self.kube.peek() {
            Some(Err(_)) => return None,
            Some(Ok((_, discovery))) => {
                if let Some(answer) = discovery.is_namespaced_now(group, kind) {
                    return answer;
                }
            }
            None => {}
        }
        let (group, kind) = (group.to_owned(), kind.to_owned());
        self.wait(move |discovery| async move { discovery.is_namespaced(&group, &kind).await })
    }

    fn capabilities(&self) -> Option<driftguard_core::Capabilities> {
        self.wait(|discovery| async move { discovery.capabilities().await })
    }
}

async fn load_snapshot(
    config: Config,
    hasher: SecretHasher,
    scope: DiscoveryScope,
) -> Result<Snapshot, CheckError> {
    let options = ReadOptions::for_config(&config, hasher)
        .map_err(|e| error("git", chain(&e)))?
        .with_scope_lookup(Arc::new(scope));
    let repository = config.git.repository_url.trim().to_owned();
    tokio::task::spawn_blocking(move || {
        // A URL: shallow fetch into a self-cleaning temp dir (a `file://` repository is read
        // in place); a path: read as it is on disk.
        let source = if is_url(&repository) {
            "git".to_owned()
        } else {
            repository
        };
        load_once(&config.git, options).map_err(|e| error(source, chain(&e)))
    })
    .await
    .map_err(|e| error("git", format!("the Git reader stopped: {e}")))?
}

//! `driftguard check`: one Git load, one list per kind, and `serve`'s evaluation
//! ([`crate::evaluate`]) over that list — no store, no history (records are `active` or `none`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use driftguard_config::Config;
use driftguard_core::engine::EngineConfig;
use driftguard_core::{DriftRecord, LiveObject, ResourceKey, SecretHasher};
use driftguard_git::{ReadOptions, Snapshot, is_url, load_once};
use driftguard_kube::{GroupKind, ResolvedKind, SharedDiscovery, WatchScope};
use driftguard_store::Write;

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
pub async fn check(config: &Config) -> CheckOutcome {
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

    // Kubernetes first: discovery tells the Git reader which kinds are cluster-scoped.
    let client = match driftguard_kube::connect(&config.kubernetes).await {
        Ok(c) => Some(c),
        Err(e) => {
            out.errors.push(error("kubernetes", chain(&e)));
            None
        }
    };
    let discovery = match &client {
        Some(c) => match SharedDiscovery::new(c.clone()).await {
            Ok(d) => Some(d),
            Err(e) => {
                out.errors.push(error("kubernetes", chain(&e)));
                None
            }
        },
        None => None,
    };

    let snapshot = match load_snapshot(config, &hasher, discovery.clone()).await {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
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

    // Kinds: the configured resources plus every kind the repository contains.
    let disc = discovery.snapshot();
    let (mut kinds, errors) = disc.resolve_all(&config.kubernetes.resources);
    for e in errors {
        out.errors.push(error("kubernetes.resources", chain(&e)));
    }
    let mut unserved: BTreeSet<String> = BTreeSet::new();
    let repo_kinds: BTreeSet<(String, String)> = snapshot
        .objects
        .keys()
        .map(|k| (k.group.clone(), k.kind.clone()))
        .collect();
    for (group, kind) in repo_kinds {
        let gk = GroupKind::new(group.clone(), kind.clone());
        if kinds.iter().any(|k| k.group_kind() == gk) {
            continue;
        }
        match disc.kind(&gk) {
            Some(resolved) => kinds.push(resolved),
            None => {
                unserved.insert(if group.is_empty() {
                    kind
                } else {
                    format!("{kind}.{group}")
                });
            }
        }
    }
    for kind in &unserved {
        out.errors
            .push(error(kind.clone(), "the cluster does not serve this kind"));
    }

    let scope = WatchScope::from_config(&config.kubernetes);
    // Lists and the CRDs' schema defaults (only read when a custom resource is compared) at once.
    let (listed, crd_defaults) = tokio::join!(
        driftguard_kube::list_once(&client, &kinds, &scope, &hasher),
        crate::crds::defaults_for(&client, kinds.iter().map(|k| k.group.as_str())),
    );
    let (live, kind_errors) = listed;
    let engine = EngineConfig {
        crd_defaults,
        ..engine
    };
    let mut failed: BTreeSet<GroupKind> = BTreeSet::new();
    for e in kind_errors {
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
        failed.insert(e.kind);
    }
    let live = ListedLive {
        objects: live.into_iter().map(|l| (l.key.clone(), l)).collect(),
        kinds: kinds
            .iter()
            .map(|k| k.group_kind())
            .filter(|gk| !failed.contains(gk))
            .collect(),
    };

    // `serve`'s evaluation, over the one-shot list, from an empty history.
    let claim = Claim::new(scope.clone(), selector.clone(), &config.kubernetes.labels);
    let mut analyzer = Analyzer::new(engine, config.drift_detection.report_unmanaged, Vec::new())
        .with_claim(claim);
    let scope = Scope {
        watch: scope,
        selector,
    };
    let evaluation = Evaluation {
        scope: &scope,
        client: &client,
        hasher: &hasher,
    };
    let mut keys: BTreeSet<&ResourceKey> = snapshot.objects.keys().collect();
    keys.extend(live.objects.keys());
    let now = Utc::now();
    for key in keys {
        match evaluate(&evaluation, &mut analyzer, &live, &snapshot, key, now).await {
            Evaluated::Skipped => {}
            Evaluated::Failed(e) => out.errors.push(error(key.resource_id(), e)),
            Evaluated::Done(outcome) => {
                // From an empty history every evaluated resource writes its first record, with
                // its states.
                if let Some(Write::Upsert { record, .. }) = outcome.write {
                    out.records.push(record);
                }
            }
        }
    }
    out.records
        .sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
    out
}

/// The live objects of one list per kind.
struct ListedLive {
    objects: BTreeMap<ResourceKey, LiveObject>,
    /// Kinds listed without error.
    kinds: BTreeSet<GroupKind>,
}

impl LiveView for ListedLive {
    fn trustworthy(&self, key: &ResourceKey) -> bool {
        self.kinds
            .contains(&GroupKind::new(key.group.clone(), key.kind.clone()))
    }

    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
        Ok(self.objects.get(key).cloned())
    }
}

fn plural_of(kinds: &[ResolvedKind], gk: &GroupKind) -> String {
    kinds
        .iter()
        .find(|k| k.group_kind() == *gk)
        .map_or_else(|| gk.kind.clone(), |k| k.plural.clone())
}

async fn load_snapshot(
    config: &Config,
    hasher: &SecretHasher,
    discovery: Option<SharedDiscovery>,
) -> Result<Snapshot, CheckError> {
    let mut options =
        ReadOptions::for_config(config, hasher.clone()).map_err(|e| error("git", chain(&e)))?;
    if let Some(d) = discovery {
        options = options.with_scope_lookup(Arc::new(d));
    }
    let repository = config.git.repository_url.trim().to_owned();
    let git = config.git.clone();
    tokio::task::spawn_blocking(move || {
        // A URL: shallow fetch into a self-cleaning temp dir; a path: read as it is on disk.
        let source = if is_url(&repository) {
            "git".to_owned()
        } else {
            repository
        };
        load_once(&git, options).map_err(|e| error(source, chain(&e)))
    })
    .await
    .map_err(|e| error("git", format!("the Git reader stopped: {e}")))?
}

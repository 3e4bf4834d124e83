//! The drift engine: compares one desired object with its live counterpart and returns the
//! classified, attributed, filtered and sorted changes (contract §2.1–§3).
//!
//! Pipeline: [`normalize`] both sides → structural diff (keyed lists by merge key, additions
//! outside Git from `managedFields` and the last-applied configuration) → attribution →
//! [`crate::classify::classify`] → ignore rules → sort by field.
//!
//! # Decisions where the contract is silent
//!
//! - **Normalisation** keeps the spelling of quantities and int-or-string values (changes show
//!   what was written: `from: 500m, to: "1"`); they are compared by value. The records'
//!   `desired_state`/`live_state` are the normalised objects, so their hashes can differ for
//!   equal quantities spelled differently — drift is decided by the changes, never by the hashes.
//! - **Empty values**: a Git value that is `null`, `""`, `{}` or `[]` equals an absent live
//!   field; an empty string inside a user-data map (labels, annotations, ConfigMap data) is a
//!   value. A user-data map absent live is compared entry by entry (one change per key).
//! - **Unkeyed lists** (args, tolerations, RBAC rules, Ingress rules, envFrom, projected sources)
//!   are equal when they have the same length and every field Git sets in each item is equal
//!   live (fields only live inside them are server defaults).
//! - **Additions outside Git** are reported at the highest path owned only by foreign managers;
//!   a keyed list absent in Git is reported item by item (`env[name=X]`, not `env`). Without
//!   any `managedFields`, only new labels/annotations (not Kubernetes' own prefixes, but
//!   `app.kubernetes.io/` counts as the user's), new ConfigMap/Secret keys and new keyed list
//!   items are additions.
//! - **Attribution**: the most recent owner of the path; for additions the most recent foreign
//!   owner. A changed value owned by an applier whose last-applied value is not the live one
//!   (e.g. `kubectl scale` on v1.20, which records no manager) has no manager. Removals have no
//!   manager (nobody owns an absent field). `unmanaged()` names the manager that wrote last.
//! - **Classification**: `selector.matchLabels` and Service `selector` are selectors, not labels
//!   (GenericChange, medium); labels/annotations under the pod template are Label/Annotation
//!   changes even though they sit under `spec`; a whole container added or removed is a
//!   GenericChange; a whole volume or env item is classified by what it references; a whole
//!   `envFrom` change is a SecretChange when the set of `secretRef`s differs, a ConfigMapChange
//!   when the set of `configMapRef`s differs, else a ConfigurationChange. An absent
//!   `spec.replicas` counts as 1 for the Scaling severity.
//! - **Ignore rules** suppress changes only; the normalised states are not edited. A rule with
//!   neither paths nor managers also suppresses `MissingResource`/`UnmanagedResource`.
//! - `missing()` has `live_hash: ""`; `unmanaged()` has `desired_hash: ""` and `to: null`.
//! - **Preparation**: normalising and hashing happen where objects enter
//!   ([`DesiredObject::new`] when Git is read, [`LiveObject::from_api`] when a watch event
//!   arrives), once per object version; [`compare`] only diffs. A full analysis of unchanged
//!   resources therefore costs the diff alone.
//!
//! ```
//! use driftguard_core::engine::{compare, EngineConfig};
//! use driftguard_core::{DesiredObject, LiveObject, ResourceKey, Source};
//! use serde_json::json;
//!
//! let key = ResourceKey::from_api_version("v1", "ConfigMap", "default", "app");
//! let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!                     "metadata": {"name": "app", "namespace": "default"},
//!                     "data": {"retries": "3"}});
//! let source = Source { commit: String::new(), path: "cm.yaml".into(), doc_index: 0, line: None, helm_release: None };
//! let desired = DesiredObject::new(key.clone(), "v1".into(), object.clone(), source);
//! let mut live_json = object;
//! live_json["data"]["retries"] = json!("5");
//! let live = LiveObject::from_api(key, "v1".into(), live_json);
//! let result = compare(&desired, &live, &EngineConfig::default());
//! assert_eq!(result.changes.len(), 1);
//! assert_eq!(result.changes[0].field.to_string(), "data.retries");
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::change::{Change, DriftType, Op, Severity};
use crate::classify::classify;
use crate::crd::CrdDefaults;
use crate::diff::{LastApplied, Managers, RawChange, Walker};
use crate::identity::ResourceKey;
use crate::object::{DesiredObject, LiveObject, ManagedFieldsEntry};
use crate::path::FieldPath;
use crate::warning::Warning;

pub use crate::ignore::IgnoreRule;
pub use crate::normalize::normalize;

/// Field managers that apply Git's content (their writes are the desired state).
pub const DEFAULT_APPLIERS: [&str; 7] = [
    "kubectl-client-side-apply",
    "kubectl",
    "argocd-controller",
    "kustomize-controller",
    "helm-controller",
    "helm",
    "driftguard",
];

/// Field managers of Kubernetes controllers (their additions are not drift).
pub const DEFAULT_CONTROLLERS: [&str; 7] = [
    "kube-controller-manager",
    "kube-scheduler",
    "horizontal-pod-autoscaler",
    "vpa-recommender",
    "vpa-updater",
    "cluster-autoscaler",
    "kube-apiserver",
];

/// How the engine judges changes.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Field managers treated as the GitOps applier (exact names).
    pub appliers: Vec<String>,
    /// Field managers treated as controllers (exact names).
    pub controllers: Vec<String>,
    /// Ignore rules, applied to every change.
    pub ignore: Vec<IgnoreRule>,
    /// The `default`s of custom resources' schemas, read from their CRDs: a live-only field
    /// holding its schema default is not an addition.
    pub crd_defaults: Arc<CrdDefaults>,
}

/// The result of comparing one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Changes, sorted by field, ignore rules applied.
    pub changes: Vec<Change>,
    /// `sha256:<hex>` of the normalised desired object, [`DesiredObject::state_hash`] (`""` when
    /// there is none: unmanaged resources). The normalised objects themselves are
    /// [`DesiredObject::state`] and [`LiveObject::object`]; a comparison does not copy them.
    pub desired_hash: String,
    /// `sha256:<hex>` of the normalised live object, [`LiveObject::hash`] (`""` when there is
    /// none: missing resources).
    pub live_hash: String,
    /// Number of changes suppressed by ignore rules.
    pub ignored: usize,
    /// Warnings (contract §9): the desired object's own and the fields the server rewrites.
    pub warnings: Vec<Warning>,
}

// === impl EngineConfig ===

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            appliers: DEFAULT_APPLIERS.iter().map(|s| (*s).to_owned()).collect(),
            controllers: DEFAULT_CONTROLLERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            ignore: Vec::new(),
            crd_defaults: Arc::default(),
        }
    }
}

impl EngineConfig {
    /// True when `manager` is one of the appliers.
    pub fn is_applier(&self, manager: &str) -> bool {
        self.appliers.iter().any(|a| a == manager)
    }

    /// True when `manager` is one of the controllers.
    pub fn is_controller(&self, manager: &str) -> bool {
        self.controllers.iter().any(|c| c == manager)
    }

    fn ignores_whole(&self, key: &ResourceKey) -> bool {
        self.ignore.iter().any(|r| r.covers_whole_resource(key))
    }

    fn ignores(&self, key: &ResourceKey, change: &Change) -> bool {
        self.ignore.iter().any(|r| r.matches(key, change))
    }
}

// === impl Comparison ===

impl Comparison {
    /// True when at least one change remains.
    pub fn has_drift(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The headline type and severity (contract §2): the most severe change, ties by table order.
    pub fn headline(&self) -> Option<(DriftType, Severity)> {
        crate::change::headline(&self.changes)
    }
}

/// Compares a desired object with its live counterpart. Both sides arrive normalised and hashed
/// (see [`DesiredObject::new`] and [`LiveObject::from_api`]), so this is the structural diff,
/// classification, ignore rules and sorting — nothing is copied or re-hashed; the desired state
/// is parsed from its text.
pub fn compare(desired: &DesiredObject, live: &LiveObject, cfg: &EngineConfig) -> Comparison {
    compare_state(desired, &desired.state.value(), live, cfg)
}

/// [`compare`] with `desired`'s state already parsed (`state` is `desired.state.value()`), for a
/// caller that keeps the tree for the record it writes.
pub fn compare_state(
    desired: &DesiredObject,
    state: &Value,
    live: &LiveObject,
    cfg: &EngineConfig,
) -> Comparison {
    // kubectl's last-applied configuration. When it is the Git manifest (the usual case; matched
    // by the hash taken when the object arrived, see `LastAppliedText::hash`) it adds nothing
    // beyond Git and is not parsed. It is not normalised: it is only consulted for presence and
    // compared by value.
    let applied = live.last_applied.as_ref();
    let applied_is_git = applied.is_some_and(|a| a.hash == desired.hash);
    let last_applied = if applied_is_git {
        None
    } else {
        applied
            .and_then(|a| serde_json::from_str::<Value>(&a.text).ok())
            .filter(Value::is_object)
            .filter(|a| !is_server_dump(a))
    };
    let kind = desired.key.kind.as_str();
    let walker = Walker::new(
        kind,
        &desired.api_version,
        &cfg.crd_defaults,
        &live.managed_fields,
        Managers {
            appliers: &cfg.appliers,
            controllers: &cfg.controllers,
        },
        LastApplied {
            present: applied.is_some(),
            is_git: applied_is_git,
        },
    );
    let (raw, found) = walker.run(state, &live.object, last_applied.as_ref());
    let mut warnings = desired.warnings.clone();
    warnings.extend(found);
    let mut ignored = 0;
    let mut changes: Vec<Change> = raw
        .into_iter()
        .map(|r| classified(kind, r))
        // Fields two renders disagree on are not compared (their warning says so).
        .filter(|c| !desired.unstable.iter().any(|p| c.field.matched_by(p)))
        .filter(|c| {
            let keep = !cfg.ignores(&desired.key, c);
            if !keep {
                ignored += 1;
            }
            keep
        })
        .collect();
    changes.sort_by(|a, b| a.field.cmp(&b.field).then(a.op.cmp(&b.op)));
    Comparison {
        changes,
        desired_hash: desired.state_hash.clone(),
        live_hash: live.hash.clone(),
        ignored,
        warnings,
    }
}

/// True for a last-applied copy that is a dump of a live object rather than a manifest someone
/// wrote: `kubectl get -o json | kubectl replace -f -` rewrites the annotation with the whole
/// object it sent (uid, resourceVersion, every default). Fields it lists are then no evidence
/// of an addition.
fn is_server_dump(applied: &Value) -> bool {
    let meta = &applied["metadata"];
    !meta["uid"].is_null() || !meta["resourceVersion"].is_null() || !meta["managedFields"].is_null()
}

/// The verdict for a resource in Git and absent from the cluster: one `MissingResource` change
/// (unless an ignore rule covers the whole resource).
pub fn missing(desired: &DesiredObject, cfg: &EngineConfig) -> Comparison {
    let change = Change {
        field: FieldPath::root(),
        op: Op::Removed,
        from: None,
        to: None,
        drift_type: DriftType::MissingResource,
        severity: Severity::High,
        manager: None,
        changed_at: None,
        source_line: None,
    };
    let whole = cfg.ignores_whole(&desired.key);
    Comparison {
        changes: if whole { Vec::new() } else { vec![change] },
        desired_hash: desired.state_hash.clone(),
        live_hash: String::new(),
        ignored: usize::from(whole),
        warnings: desired.warnings.clone(),
    }
}

/// The verdict for a live object absent from Git: one `UnmanagedResource` change (unless an
/// ignore rule covers the whole resource), attributed to the manager that wrote it last.
pub fn unmanaged(live: &LiveObject, cfg: &EngineConfig) -> Comparison {
    let (manager, changed_at) = last_writer(&live.managed_fields);
    let change = Change {
        field: FieldPath::root(),
        op: Op::Added,
        from: None,
        to: None,
        drift_type: DriftType::UnmanagedResource,
        severity: Severity::Low,
        manager,
        changed_at,
        source_line: None,
    };
    let whole = cfg.ignores_whole(&live.key);
    Comparison {
        changes: if whole { Vec::new() } else { vec![change] },
        desired_hash: String::new(),
        live_hash: live.hash.clone(),
        ignored: usize::from(whole),
        warnings: Vec::new(),
    }
}

fn classified(kind: &str, raw: RawChange) -> Change {
    let (drift_type, severity) =
        classify(kind, &raw.field, raw.op, raw.from.as_ref(), raw.to.as_ref());
    Change {
        field: raw.field,
        op: raw.op,
        from: raw.from,
        to: raw.to,
        drift_type,
        severity,
        manager: raw.manager,
        changed_at: raw.changed_at,
        source_line: None,
    }
}

/// The entry written most recently (status writes excluded).
fn last_writer(entries: &[ManagedFieldsEntry]) -> (Option<String>, Option<DateTime<Utc>>) {
    entries
        .iter()
        .filter(|e| e.subresource.as_deref() != Some("status"))
        .enumerate()
        .max_by(|(i, a), (j, b)| a.time.cmp(&b.time).then(i.cmp(j)))
        .map_or((None, None), |(_, e)| (Some(e.manager.clone()), e.time))
}

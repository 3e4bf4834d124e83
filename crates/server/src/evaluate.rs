//! One evaluation path for `serve` and `check`.
//!
//! Evaluating a resource is the same whoever asks: skip it when its kind cannot be trusted
//! (not watched, not listed yet, failing), when its desired object is out of scope, read its
//! live object (again in Git's apiVersion when the cluster stores another one), drop a live-only
//! object out of scope, and hand the pair to the [`Analyzer`]. `serve` reads live objects from
//! its watch cache, `check` from one list per kind: both implement [`LiveView`], and both call
//! [`evaluate`].

use chrono::{DateTime, Utc};
use driftguard_core::{DesiredObject, LiveObject, ResourceKey, SecretHasher};
use driftguard_git::Snapshot;
use driftguard_kube::WatchScope;
use serde_json::Value;

use crate::analyzer::{Analyzer, Outcome};
use crate::errors::chain;
use crate::selector::Selector;

/// Where live objects come from.
pub trait LiveView {
    /// True when `key`'s kind is watched (or listed) and what is known of it can be trusted:
    /// otherwise nothing about it may change state (an unreachable API server never produces
    /// "missing").
    fn trustworthy(&self, key: &ResourceKey) -> bool;

    /// The live object of `key` (`None` when absent), or why it cannot be read.
    fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String>;
}

/// The scope of a configuration: watched namespaces and the label selector. The one predicate
/// both commands apply.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Namespaces (and the selector's text, for the watches).
    pub watch: WatchScope,
    /// The parsed `kubernetes.labels`.
    pub selector: Selector,
}

/// What one evaluation needs besides the resource.
pub struct Evaluation<'a> {
    /// Scope.
    pub scope: &'a Scope,
    /// For reading an object in another apiVersion.
    pub client: &'a kube::Client,
    /// Digests the object read that way.
    pub hasher: &'a SecretHasher,
}

/// The result of evaluating one resource.
pub enum Evaluated {
    /// Nothing to say about it (untrusted kind, out of scope).
    Skipped,
    /// It could not be read; the message names why (no Secret value).
    Failed(String),
    /// The analyzer's outcome.
    Done(Box<Outcome>),
}

// === impl Scope ===

impl Scope {
    /// True when an object of `namespace` with this body is in scope.
    pub fn admits(&self, namespace: &str, object: &Value) -> bool {
        self.watch.allows_namespace(namespace) && self.selector.matches(object)
    }
}

/// Evaluates `key` against `snapshot` and `live`, updating `analyzer`.
pub async fn evaluate(
    evaluation: &Evaluation<'_>,
    analyzer: &mut Analyzer,
    live: &impl LiveView,
    snapshot: &Snapshot,
    key: &ResourceKey,
    now: DateTime<Utc>,
) -> Evaluated {
    if !live.trustworthy(key) {
        return Evaluated::Skipped;
    }
    let desired: Option<&DesiredObject> = snapshot.get(key);
    if let Some(d) = desired
        && !evaluation.scope.admits(&d.key.namespace, &d.object)
    {
        return Evaluated::Skipped;
    }
    // An entry that cannot be read back is reported and the resource left as it is: taking it
    // for an absent object would report it missing.
    let mut live_object = match live.lookup(key) {
        Ok(object) => object,
        Err(e) => return Evaluated::Failed(e),
    };
    if let (Some(d), Some(l)) = (desired, live_object.as_ref())
        && d.api_version != l.api_version
    {
        match driftguard_kube::get_in_version(
            evaluation.client,
            &d.api_version,
            &key.kind,
            &key.namespace,
            &key.name,
            evaluation.hasher,
        )
        .await
        {
            Ok(fetched) => live_object = fetched,
            Err(e) => return Evaluated::Failed(chain(&e)),
        }
    }
    if let Some(l) = &live_object
        && desired.is_none()
        && !evaluation.scope.admits(&l.key.namespace, &l.object)
    {
        live_object = None;
    }
    let commit = Some(snapshot.commit.as_str()).filter(|c| *c != driftguard_git::WORKING_TREE);
    // Each change's line is read from the snapshot's files (for the few resources with changes).
    Evaluated::Done(Box::new(analyzer.evaluate_with_lines(
        key,
        desired,
        live_object.as_ref(),
        commit,
        now,
        snapshot,
    )))
}

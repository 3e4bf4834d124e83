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

use crate::analyzer::{Analyzer, Inputs, Outcome};
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

    /// What identifies the live object's content without reading it; by default nothing, and
    /// every evaluation runs.
    fn stamp(&self, _key: &ResourceKey) -> Stamp {
        Stamp::Unknown
    }
}

/// What a [`LiveView`] knows of a live object's content before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// Nothing: the resource is evaluated.
    Unknown,
    /// There is no live object.
    Absent,
    /// Its `resourceVersion`.
    Version(String),
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
    /// Evaluated before with the same inputs ([`Inputs`]): the verdict stands, nothing to write.
    Unchanged,
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

    /// [`Scope::admits`] for a desired object, whose text is parsed only when a label
    /// selector has to read it.
    pub fn admits_desired(&self, desired: &DesiredObject) -> bool {
        self.watch.allows_namespace(&desired.key.namespace)
            && (self.selector.is_everything() || self.selector.matches(&desired.object.value()))
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
        && !evaluation.scope.admits_desired(d)
    {
        return Evaluated::Skipped;
    }
    let commit = Some(snapshot.commit.as_str()).filter(|c| *c != driftguard_git::WORKING_TREE);
    // The same inputs as last time: the verdict stands, and the live object is not even read.
    let same = match live.stamp(key) {
        Stamp::Unknown => None,
        Stamp::Absent => Some(Inputs::of(key, desired, None, commit)),
        Stamp::Version(v) => Some(Inputs::of(key, desired, Some(&v), commit)),
    };
    if same.is_some_and(|inputs| analyzer.unchanged(key, inputs)) {
        return Evaluated::Unchanged;
    }
    // An entry that cannot be read back is reported and the resource left as it is: taking it
    // for an absent object would report it missing.
    let mut live_object = match live.lookup(key) {
        Ok(object) => object,
        Err(e) => return Evaluated::Failed(e),
    };
    // Remembered from the object read (the cache may have moved since the stamp), and only
    // where the view stamps at all.
    let inputs = match &live_object {
        _ if same.is_none() => None,
        None => Some(Inputs::of(key, desired, None, commit)),
        Some(l) => l
            .resource_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| Inputs::of(key, desired, Some(v), commit)),
    };
    let present = desired.is_some() || live_object.is_some();
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
    // Each change's line is read from the snapshot's files (for the few resources with changes).
    let outcome =
        analyzer.evaluate_with_lines(key, desired, live_object.as_ref(), commit, now, snapshot);
    if let Some(inputs) = inputs {
        analyzer.remember(key, inputs, present);
    }
    Evaluated::Done(Box::new(outcome))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::Arc;

    use driftguard_core::{EngineConfig, Source};
    use serde_json::json;

    use super::*;

    /// A live view over a map, stamping with `resourceVersion` (or not), counting its reads.
    struct Map {
        objects: RefCell<HashMap<ResourceKey, LiveObject>>,
        stamps: bool,
        reads: Cell<usize>,
    }

    impl LiveView for Map {
        fn trustworthy(&self, _: &ResourceKey) -> bool {
            true
        }
        fn lookup(&self, key: &ResourceKey) -> Result<Option<LiveObject>, String> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.objects.borrow().get(key).cloned())
        }
        fn stamp(&self, key: &ResourceKey) -> Stamp {
            if !self.stamps {
                return Stamp::Unknown;
            }
            match self.objects.borrow().get(key) {
                Some(l) => Stamp::Version(l.resource_version.clone().unwrap_or_default()),
                None => Stamp::Absent,
            }
        }
    }

    fn key() -> ResourceKey {
        ResourceKey::from_api_version("v1", "ConfigMap", "ns", "settings")
    }

    fn live(value: &str, version: &str) -> LiveObject {
        LiveObject::from_api(
            key(),
            "v1".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "ns", "resourceVersion": version},
                "data": {"mode": value}}),
        )
    }

    fn snapshot() -> Snapshot {
        let desired = DesiredObject::new(
            key(),
            "v1".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "ns"}, "data": {"mode": "on"}}),
            Source {
                commit: "c0ffee0000".into(),
                path: "settings.yaml".into(),
                doc_index: 0,
                line: Some(1),
                helm_release: None,
            },
        );
        let mut snapshot = Snapshot {
            commit: "c0ffee0000".into(),
            ..Snapshot::default()
        };
        snapshot.objects.insert(key(), Arc::new(desired));
        snapshot
    }

    /// What happened, in order, to evaluations of the one resource.
    async fn run(view: &Map, steps: &[Option<(&str, &str)>]) -> Vec<&'static str> {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let hasher = SecretHasher::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let scope = Scope::default();
        let evaluation = Evaluation {
            scope: &scope,
            client: &client,
            hasher: &hasher,
        };
        let snapshot = snapshot();
        let mut analyzer = Analyzer::new(EngineConfig::default(), false, Vec::new());
        let mut out = Vec::new();
        for step in steps {
            match step {
                Some((value, version)) => {
                    view.objects
                        .borrow_mut()
                        .insert(key(), live(value, version));
                }
                None => {
                    view.objects.borrow_mut().remove(&key());
                }
            }
            let reads = view.reads.get();
            let what = match evaluate(
                &evaluation,
                &mut analyzer,
                view,
                &snapshot,
                &key(),
                Utc::now(),
            )
            .await
            {
                Evaluated::Unchanged => "unchanged",
                Evaluated::Skipped => "skipped",
                Evaluated::Failed(_) => "failed",
                Evaluated::Done(o) => match (o.write.is_some(), o.record.map(|r| r.drift_status)) {
                    (true, Some(driftguard_core::DriftStatus::Active)) => "drift written",
                    (true, Some(driftguard_core::DriftStatus::Resolved)) => "resolution written",
                    (true, _) => "written",
                    (false, _) => "evaluated, nothing to write",
                },
            };
            assert_eq!(
                view.reads.get() - reads,
                usize::from(what != "unchanged"),
                "{what}: reads"
            );
            out.push(what);
        }
        out
    }

    #[tokio::test]
    async fn a_stamped_view_is_not_read_again_for_the_same_inputs() {
        let view = Map {
            objects: RefCell::default(),
            stamps: true,
            reads: Cell::new(0),
        };
        let steps = [
            Some(("on", "1")),
            Some(("on", "1")),
            Some(("off", "2")),
            Some(("off", "2")),
            // A write that changes nothing the comparison sees still has a new version.
            Some(("off", "3")),
            Some(("on", "4")),
            Some(("on", "4")),
            None,
            None,
        ];
        assert_eq!(
            run(&view, &steps).await,
            [
                "written",
                "unchanged",
                "drift written",
                "unchanged",
                "evaluated, nothing to write",
                "resolution written",
                "unchanged",
                "drift written",
                "unchanged",
            ]
        );
    }

    #[tokio::test]
    async fn a_view_without_stamps_is_always_read() {
        let view = Map {
            objects: RefCell::default(),
            stamps: false,
            reads: Cell::new(0),
        };
        let steps = [Some(("on", "1")), Some(("on", "1")), Some(("off", "2"))];
        assert_eq!(
            run(&view, &steps).await,
            ["written", "evaluated, nothing to write", "drift written"]
        );
    }
}

//! Which live objects absent from Git DriftGuard may report as `UnmanagedResource` (with
//! `drift_detection.report_unmanaged: true`): only what it can claim as *ours and orphaned*.
//!
//! A live object that is not in the current Git snapshot is reported when
//!
//! 1. **Git held it before** (`serve` only: the store has a record for it that was managed, or an
//!    unmanaged record that remembers where in Git it was — see [`was_in_git`]), whatever its
//!    scope; or
//! 2. it is **claimed by scope** ([`Claim::claims`]):
//!    - a *namespaced* object in a watched namespace (`kubernetes.namespaces` / `check -n`, or
//!      every namespace but the skipped system ones when none is listed) that matches
//!      `kubernetes.labels` when a selector is set;
//!    - a *cluster-scoped* object only when `kubernetes.labels` is set and it matches — a
//!      namespace filter says nothing about cluster-scoped objects, so without a selector
//!      DriftGuard never claims every Namespace or ClusterRole of the cluster;
//!
//!    and in both cases only a top-level object (no `metadata.ownerReferences`: a ReplicaSet of
//!    a Deployment is a child, not an orphan) that the API server does not create by itself in
//!    every namespace (the `default` ServiceAccount and its token Secrets, the
//!    `kube-root-ca.crt` ConfigMap, the `kubernetes` Service of `default`) — the exceptions
//!    Argo CD's orphaned-resource monitoring makes too.

use driftguard_core::{DriftRecord, LiveObject};
use driftguard_kube::WatchScope;
use serde_json::Value;

use crate::selector::Selector;

/// The scope DriftGuard claims unmanaged objects in.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    scope: WatchScope,
    selector: Selector,
    has_selector: bool,
}

// === impl Claim ===

impl Claim {
    /// The claim of a configuration: the watch scope and the label selector (`kubernetes.labels`,
    /// empty for none).
    pub fn new(scope: WatchScope, selector: Selector, labels: &str) -> Self {
        Self {
            scope,
            selector,
            has_selector: !labels.trim().is_empty(),
        }
    }

    /// True when `live`, absent from Git (and never seen in Git), is DriftGuard's to report.
    pub fn claims(&self, live: &LiveObject) -> bool {
        let object = &live.object;
        if !self.selector.matches(object) || owned(object) || server_made(live) {
            return false;
        }
        if live.key.namespace.is_empty() {
            self.has_selector
        } else {
            self.scope.allows_namespace(&live.key.namespace)
        }
    }
}

/// True when the previous record of a resource says Git held it: it was managed, or it is the
/// unmanaged record of an object removed from Git (which keeps the `source_path` it had).
pub fn was_in_git(previous: &DriftRecord) -> bool {
    previous.managed || previous.source_path.is_some()
}

fn owned(object: &Value) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
}

/// Objects the control plane creates by itself.
fn server_made(live: &LiveObject) -> bool {
    let key = &live.key;
    if !key.group.is_empty() {
        return false;
    }
    match key.kind.as_str() {
        "ServiceAccount" => key.name == "default",
        "ConfigMap" => key.name == "kube-root-ca.crt",
        "Service" => key.namespace == "default" && key.name == "kubernetes",
        "Secret" => {
            live.object.pointer("/type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
                && live
                    .object
                    .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                    .and_then(Value::as_str)
                    == Some("default")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftguard_core::ResourceKey;
    use serde_json::json;

    fn live(api_version: &str, kind: &str, ns: &str, name: &str, extra: Value) -> LiveObject {
        let mut object = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name}});
        if !ns.is_empty() {
            object["metadata"]["namespace"] = json!(ns);
        }
        if let (Some(o), Value::Object(e)) = (object.as_object_mut(), extra) {
            for (k, v) in e {
                if k == "metadata" {
                    if let (Some(m), Value::Object(em)) = (o["metadata"].as_object_mut(), v) {
                        m.extend(em);
                    }
                } else {
                    o.insert(k, v);
                }
            }
        }
        LiveObject::from_api(
            ResourceKey::from_api_version(api_version, kind, ns, name),
            api_version.into(),
            object,
        )
    }

    fn claim(namespaces: &[&str], labels: &str) -> Claim {
        let scope = WatchScope::namespaces(namespaces.iter().copied()).with_labels(labels);
        Claim::new(scope, Selector::parse(labels).unwrap(), labels)
    }

    #[test]
    fn namespaced_objects_are_claimed_in_watched_namespaces_only() {
        let c = claim(&["shop"], "");
        let cm = |ns| live("v1", "ConfigMap", ns, "by-hand", json!({}));
        assert!(c.claims(&cm("shop")));
        assert!(!c.claims(&cm("other")), "outside the watched namespaces");
    }

    #[test]
    fn cluster_scoped_objects_need_a_matching_selector() {
        let ns = live("v1", "Namespace", "", "someone-elses", json!({}));
        let role = live(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "",
            "ours",
            json!({"metadata": {"labels": {"team": "shop"}}}),
        );
        let none = claim(&["shop"], "");
        assert!(!none.claims(&ns), "no selector: no cluster-scoped claim");
        assert!(!none.claims(&role));
        let by_label = claim(&["shop"], "team=shop");
        assert!(by_label.claims(&role), "the selector matches");
        assert!(!by_label.claims(&ns), "the selector does not match");
    }

    #[test]
    fn children_and_server_made_objects_are_never_claimed() {
        let c = claim(&[], "");
        let child = live(
            "apps/v1",
            "ReplicaSet",
            "shop",
            "web-5d9c",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                "name": "web", "uid": "u"}]}}),
        );
        assert!(!c.claims(&child));
        assert!(!c.claims(&live("v1", "ServiceAccount", "shop", "default", json!({}))));
        assert!(c.claims(&live("v1", "ServiceAccount", "shop", "builder", json!({}))));
        assert!(!c.claims(&live(
            "v1",
            "ConfigMap",
            "shop",
            "kube-root-ca.crt",
            json!({})
        )));
        assert!(!c.claims(&live("v1", "Service", "default", "kubernetes", json!({}))));
        assert!(c.claims(&live("v1", "Service", "shop", "kubernetes", json!({}))));
        let token = live(
            "v1",
            "Secret",
            "shop",
            "default-token-abcde",
            json!({"type": "kubernetes.io/service-account-token",
                "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}),
        );
        assert!(!c.claims(&token));
    }

    #[test]
    fn system_namespaces_are_not_claimed_when_skipped() {
        let mut cfg = driftguard_config::Config::default();
        cfg.kubernetes.skip_system_namespaces = true;
        let c = Claim::new(
            WatchScope::from_config(&cfg.kubernetes),
            Selector::default(),
            "",
        );
        assert!(!c.claims(&live("v1", "ConfigMap", "kube-system", "x", json!({}))));
        assert!(c.claims(&live("v1", "ConfigMap", "shop", "x", json!({}))));
    }
}

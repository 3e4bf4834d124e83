//! What part of the cluster is watched: `kubernetes.namespaces`, `skip_system_namespaces` (plus
//! `extra_system_namespaces`) and the `labels` selector.

use driftguard_config::KubernetesConfig;

use crate::types::ResolvedKind;

/// The watched part of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchScope {
    /// Namespaces to watch; empty = all. Listed namespaces get one watch per kind each, which
    /// works with namespace-scoped permissions (a `Role` per namespace) only.
    pub namespaces: Vec<String>,
    /// Namespaces whose objects are ignored (system namespaces, when no namespace is listed).
    pub excluded_namespaces: Vec<String>,
    /// Label selector (`app=web,tier!=db`), `None` for every object.
    pub label_selector: Option<String>,
}

// === impl WatchScope ===

impl WatchScope {
    /// The scope configured in `kubernetes.*`. Listed namespaces win over system-namespace
    /// skipping (listing `kube-system` watches it), as in [`KubernetesConfig::namespace_skipped`].
    pub fn from_config(cfg: &KubernetesConfig) -> Self {
        let excluded_namespaces = if cfg.skip_system_namespaces && cfg.namespaces.is_empty() {
            cfg.system_namespaces()
        } else {
            Vec::new()
        };
        let label_selector = Some(cfg.labels.trim().to_owned()).filter(|s| !s.is_empty());
        Self {
            namespaces: dedup(&cfg.namespaces),
            excluded_namespaces,
            label_selector,
        }
    }

    /// Everything, no selector.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these namespaces.
    pub fn namespaces<S: Into<String>>(namespaces: impl IntoIterator<Item = S>) -> Self {
        Self {
            namespaces: namespaces.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The same scope with a label selector.
    pub fn with_labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into()).filter(|s| !s.is_empty());
        self
    }

    /// True when objects in `namespace` (`""` for cluster-scoped objects) are in scope.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        if namespace.is_empty() {
            return true;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == namespace) {
            return false;
        }
        !self.excluded_namespaces.iter().any(|n| n == namespace)
    }

    /// The list/watch targets of one kind: `Some(namespace)` for each listed namespace of a
    /// namespaced kind, else a single cluster-wide `None`.
    pub fn targets(&self, kind: &ResolvedKind) -> Vec<Option<String>> {
        if kind.namespaced && !self.namespaces.is_empty() {
            self.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        }
    }

    /// Server-side field selector excluding the skipped namespaces from a cluster-wide list or
    /// watch of a namespaced kind (`metadata.namespace` is selectable on every type, custom
    /// resources included), so their objects never cross the wire.
    pub fn field_selector(&self, kind: &ResolvedKind, target: Option<&str>) -> Option<String> {
        if !kind.namespaced || target.is_some() || self.excluded_namespaces.is_empty() {
            return None;
        }
        Some(
            self.excluded_namespaces
                .iter()
                .map(|ns| format!("metadata.namespace!={ns}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

fn dedup(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let item = item.trim();
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(namespaced: bool) -> ResolvedKind {
        ResolvedKind {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced,
        }
    }

    #[test]
    fn system_namespaces_skipped_unless_listed() {
        let cfg = KubernetesConfig {
            extra_system_namespaces: vec!["monitoring".into()],
            labels: "app=web".into(),
            ..KubernetesConfig::default()
        };
        let scope = WatchScope::from_config(&cfg);
        assert!(!scope.allows_namespace("kube-system"));
        assert!(!scope.allows_namespace("monitoring"));
        assert!(scope.allows_namespace("shop"));
        assert!(scope.allows_namespace(""));
        assert_eq!(scope.label_selector.as_deref(), Some("app=web"));
        assert_eq!(scope.targets(&kind(true)), vec![None]);
        assert_eq!(
            scope.field_selector(&kind(true), None).as_deref(),
            Some(
                "metadata.namespace!=kube-system,metadata.namespace!=kube-public,metadata.namespace!=kube-node-lease,metadata.namespace!=monitoring"
            )
        );
        assert_eq!(scope.field_selector(&kind(false), None), None);

        let listed = WatchScope::from_config(&KubernetesConfig {
            namespaces: vec!["kube-system".into(), "shop".into(), "shop".into()],
            ..KubernetesConfig::default()
        });
        assert!(listed.allows_namespace("kube-system"));
        assert!(!listed.allows_namespace("other"));
        assert_eq!(
            listed.targets(&kind(true)),
            vec![Some("kube-system".into()), Some("shop".into())]
        );
        assert_eq!(listed.targets(&kind(false)), vec![None]);
        assert_eq!(listed.label_selector, None);
    }
}

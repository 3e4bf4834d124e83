//! Resource identity: API group + kind + namespace + name (contract §1).
//!
//! The API version is deliberately not part of the identity: `storage.k8s.io/v1beta1` and
//! `storage.k8s.io/v1` StorageClass `slow` are the same resource.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for the UUIDv5 record ids (a fixed, random UUID so ids are stable forever).
const RECORD_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x5b, 0x0e, 0x6c, 0x3a, 0x91, 0x2d, 0x4f, 0x7e, 0xa4, 0x18, 0x3c, 0x77, 0xd2, 0x09, 0x6e, 0x41,
]);

/// The identity of one Kubernetes resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// API group, `""` for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace, `""` for cluster-scoped resources.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

// === impl ResourceKey ===

impl ResourceKey {
    /// Builds a key.
    pub fn new(
        group: impl Into<String>,
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Builds a key from an `apiVersion` (`apps/v1`, `v1`) and the rest.
    pub fn from_api_version(
        api_version: &str,
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self::new(group_of(api_version), kind, namespace, name)
    }

    /// The `Kind:namespace:name` id of contract §1 (group-qualified only when asked, see
    /// [`ResourceKey::qualified_resource_id`]).
    pub fn resource_id(&self) -> String {
        format!("{}:{}:{}", self.kind, self.namespace, self.name)
    }

    /// `Kind.group:namespace:name`, used for a non-core kind whose plain id would collide with a
    /// kind of the same name in another group.
    pub fn qualified_resource_id(&self) -> String {
        if self.group.is_empty() {
            self.resource_id()
        } else {
            format!(
                "{}.{}:{}:{}",
                self.kind, self.group, self.namespace, self.name
            )
        }
    }

    /// The stable record id: a UUIDv5 of the identity.
    pub fn record_uuid(&self) -> Uuid {
        let text = format!(
            "{}/{}/{}/{}",
            self.group, self.kind, self.namespace, self.name
        );
        Uuid::new_v5(&RECORD_ID_NAMESPACE, text.as_bytes())
    }

    /// True for cluster-scoped resources.
    pub fn is_cluster_scoped(&self) -> bool {
        self.namespace.is_empty()
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_id())
    }
}

/// The group part of an `apiVersion`: `apps/v1` → `apps`, `v1` → `""`.
pub fn group_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

/// The version part of an `apiVersion`: `apps/v1` → `v1`, `v1` → `v1`.
pub fn version_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((_, version)) => version,
        None => api_version,
    }
}

/// Answers whether a kind is namespaced. The Kubernetes edge implements it with API discovery;
/// the Git reader asks it where a manifest without `metadata.namespace` belongs.
///
/// `None` means "don't know" and falls back to the built-in table, then to "namespaced".
pub trait ScopeLookup: Send + Sync {
    /// `Some(true)` when objects of `group`/`kind` live in a namespace, `Some(false)` when they
    /// are cluster-scoped.
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool>;

    /// What the cluster is, for a renderer that adapts to it (Helm's `.Capabilities`); `None`
    /// when unknown (no cluster: the renderer's defaults apply).
    fn capabilities(&self) -> Option<Capabilities> {
        None
    }
}

/// The watched cluster as a chart sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The API server's version, `v1.20.2` (build suffixes removed).
    pub kube_version: String,
    /// Every served `group/version` (`v1` for the core group) and `group/version/Kind`, sorted.
    pub api_versions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_contract() {
        let key = ResourceKey::from_api_version("apps/v1", "Deployment", "driftguard", "nginx-app");
        assert_eq!(key.resource_id(), "Deployment:driftguard:nginx-app");
        assert_eq!(key.group, "apps");
        let cluster = ResourceKey::from_api_version(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "",
            "view-drift",
        );
        assert_eq!(cluster.resource_id(), "ClusterRole::view-drift");
        assert_eq!(
            cluster.qualified_resource_id(),
            "ClusterRole.rbac.authorization.k8s.io::view-drift"
        );
    }

    #[test]
    fn record_uuid_ignores_version_and_differs_by_identity() {
        let a = ResourceKey::from_api_version("storage.k8s.io/v1beta1", "StorageClass", "", "slow");
        let b = ResourceKey::from_api_version("storage.k8s.io/v1", "StorageClass", "", "slow");
        let c = ResourceKey::from_api_version("storage.k8s.io/v1", "StorageClass", "", "fast");
        assert_eq!(a.record_uuid(), b.record_uuid());
        assert_ne!(a.record_uuid(), c.record_uuid());
        assert_eq!(a.record_uuid().get_version_num(), 5);
    }
}

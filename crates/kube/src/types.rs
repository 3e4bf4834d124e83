//! Names for resource types: [`GroupKind`] (identity, no version) and [`ResolvedKind`] (what
//! discovery found for a name in `kubernetes.resources`).

use std::fmt;

use kube::discovery::ApiResource;

/// An API group and kind — the type part of a resource's identity (no version, contract §1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKind {
    /// API group, `""` for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

/// One resource type as discovery resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolvedKind {
    /// API group, `""` for the core group.
    pub group: String,
    /// The version the server prefers for this type (watches and lists use it).
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// True for namespaced types, false for cluster-scoped ones.
    pub namespaced: bool,
}

// === impl GroupKind ===

impl GroupKind {
    /// Builds a group-kind.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for GroupKind {
    /// `Kind` for the core group, `Kind.group` otherwise (as `kubectl` prints them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

// === impl ResolvedKind ===

impl ResolvedKind {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The version-free type identity.
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.kind)
    }

    /// The dynamic-API descriptor kube-rs needs for requests.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

impl fmt::Display for ResolvedKind {
    /// `deployments.apps/v1`, `configmaps/v1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.plural, self.version)
        } else {
            write!(f, "{}.{}/{}", self.plural, self.group, self.version)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_like_kubectl() {
        let deploy = ResolvedKind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
        };
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.group_kind().to_string(), "Deployment.apps");
        assert_eq!(deploy.to_string(), "deployments.apps/v1");
        assert_eq!(GroupKind::new("", "Secret").to_string(), "Secret");
        let ar = deploy.api_resource();
        assert_eq!(ar.api_version, "apps/v1");
        assert_eq!(ar.plural, "deployments");
    }
}

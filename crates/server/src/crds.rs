//! Custom resources' schema defaults for the engine: read from the cluster's CRDs when the
//! objects compared include a custom resource (a built-in group needs none; the request is
//! skipped).

use std::sync::Arc;

use driftguard_core::crd::CrdDefaults;

/// Groups served by Kubernetes itself (no CRD behind them).
const BUILTIN_GROUPS: [&str; 19] = [
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "metrics.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// True when a group can be served by a CRD: CRD groups always hold a dot, and Kubernetes'
/// own dotted groups are listed.
pub(crate) fn is_custom_group(group: &str) -> bool {
    group.contains('.') && !BUILTIN_GROUPS.contains(&group)
}

/// The schema defaults when any of `groups` is custom, else empty. A failure (CRDs forbidden
/// to us, say) is logged: custom resources are then compared without their defaults.
pub(crate) async fn defaults_for<'g>(
    client: &kube::Client,
    mut groups: impl Iterator<Item = &'g str>,
) -> Arc<CrdDefaults> {
    if !groups.any(is_custom_group) {
        return Arc::default();
    }
    match driftguard_kube::crd_defaults(client).await {
        Ok(defaults) => {
            tracing::debug!(
                versions = defaults.len(),
                "read custom resources' schema defaults"
            );
            Arc::new(defaults)
        }
        Err(e) => {
            tracing::warn!(
                error = %crate::errors::chain(&e),
                "cannot read CustomResourceDefinitions; custom resources are compared without \
                 their schema defaults"
            );
            Arc::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_groups() {
        assert!(is_custom_group("example.com"));
        assert!(is_custom_group("gateway.networking.k8s.io"));
        assert!(!is_custom_group(""));
        assert!(!is_custom_group("apps"));
        assert!(!is_custom_group("rbac.authorization.k8s.io"));
    }
}

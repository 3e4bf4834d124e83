//! Which kinds are cluster-scoped: a built-in table plus an optional lookup from API discovery.

pub use driftguard_core::ScopeLookup;

/// Cluster-scoped kinds of Kubernetes itself and of common add-ons, as `(group, kind)`.
pub const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("scheduling.k8s.io", "PriorityClass"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("policy", "PodSecurityPolicy"),
    ("extensions", "PodSecurityPolicy"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"),
    ("authentication.k8s.io", "TokenReview"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("cert-manager.io", "ClusterIssuer"),
    ("metrics.k8s.io", "NodeMetrics"),
];

/// True when `group`/`kind` is namespaced: the caller's lookup first, then [`CLUSTER_SCOPED`],
/// then namespaced (the common case, and the one the API server would default to for a CRD
/// whose scope is unknown here).
pub fn is_namespaced(lookup: Option<&dyn ScopeLookup>, group: &str, kind: &str) -> bool {
    if let Some(answer) = lookup.and_then(|l| l.is_namespaced(group, kind)) {
        return answer;
    }
    !CLUSTER_SCOPED
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Crds;
    impl ScopeLookup for Crds {
        fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
            (group == "example.com" && kind == "Cluster").then_some(false)
        }
    }

    #[test]
    fn table_then_lookup() {
        assert!(!is_namespaced(None, "", "Namespace"));
        assert!(!is_namespaced(
            None,
            "rbac.authorization.k8s.io",
            "ClusterRole"
        ));
        assert!(is_namespaced(None, "apps", "Deployment"));
        assert!(is_namespaced(None, "example.com", "Cluster"));
        assert!(!is_namespaced(Some(&Crds), "example.com", "Cluster"));
    }
}

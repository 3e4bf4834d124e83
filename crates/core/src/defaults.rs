//! What the API server adds by itself: defaults, allocated values and fields it derives from
//! others. A field present only live whose value is what the server would have put there is not
//! an addition, whoever `managedFields` names as its owner (`kubectl create` and `kubectl
//! replace` own every field they stored, defaults included; a server-side apply by a new manager
//! takes them all over).
//!
//! The table is data: one [`Rule`] per defaulted field, written as a path pattern relative to
//! where its type lives, with the Kubernetes defaulting function it comes from. Sources (all in
//! kubernetes/kubernetes, `pkg/apis/<group>/<version>/defaults.go` unless said otherwise):
//!
//! - core/v1: `SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Probe`,
//!   `SetDefaults_HTTPGetAction`, `SetDefaults_*VolumeSource`, `SetDefaults_Service`,
//!   `SetDefaults_ServicePort` (via `SetDefaults_Service`), `SetDefaults_Secret`,
//!   `SetDefaults_PersistentVolume(Claim)`, `SetDefaults_Namespace(Spec)`,
//!   `SetDefaults_ObjectFieldSelector`, `SetDefaults_ReplicationController`,
//!   `SetDefaults_LimitRangeItem`; the Service registry (`pkg/registry/core/service/storage`)
//!   allocates `clusterIP(s)`, `nodePort`, `healthCheckNodePort` and sets `ipFamilies`/
//!   `ipFamilyPolicy`; admission plugins `StorageObjectInUseProtection` (finalizers),
//!   `DefaultStorageClass`, `DefaultTolerationSeconds`, `Priority`, `ServiceAccount`;
//! - apps/v1 (and v1beta2, v1beta1): `SetDefaults_Deployment`, `SetDefaults_DaemonSet`,
//!   `SetDefaults_StatefulSet`, `SetDefaults_ReplicaSet`;
//! - batch/v1, v1beta1: `SetDefaults_Job`, `SetDefaults_CronJob`; the Job strategy
//!   (`pkg/registry/batch/job/strategy.go`, `generateSelector`);
//! - autoscaling/v1, v2beta1, v2beta2: `SetDefaults_HorizontalPodAutoscaler`;
//! - networking/v1, v1beta1, extensions/v1beta1: `SetDefaults_NetworkPolicy`,
//!   `SetDefaults_HTTPIngressPath`;
//! - rbac/v1: `SetDefaults_Subject`; storage/v1: `SetDefaults_StorageClass`,
//!   `SetDefaults_CSIDriver`; scheduling/v1: `SetDefaults_PriorityClass`;
//!   certificates/v1: the CSR strategy (`PrepareForCreate` sets the requester's identity).
//!
//! Patterns: segments separated by `.`, `[]` for any list item, `a|b` for alternatives, `*` for
//! any name. A pattern starting with a `$place` is relative to where a type lives in each kind
//! ([`PLACES`]): `$pod` a pod spec, `$meta` a pod template's metadata, `$job` a job spec, `$pvc`
//! a claim's spec.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::crd::CrdDefaults;
use crate::schema::scalars_equal;

/// What the server puts at a path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fill {
    /// This JSON value.
    Json(&'static str),
    /// Any value: the server allocates or derives it (cluster IPs, node ports, a Job's selector).
    Any,
    /// The live value of a sibling field (`targetPort` = `port`, the `serviceAccount` alias).
    Sibling(&'static str),
    /// A container's `imagePullPolicy`: `Always` for `:latest` or no tag, else `IfNotPresent`.
    PullPolicy,
    /// A `[clusterIP]` list.
    ClusterIps,
    /// Tolerations added by the DefaultTolerationSeconds admission plugin (not-ready and
    /// unreachable, NoExecute, 300 s): a list of only those.
    DefaultTolerations,
}

/// One defaulted field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    /// Kinds it applies to (`*`: any kind that has the pattern's place).
    kinds: &'static [&'static str],
    /// API versions it applies to (empty: all).
    versions: &'static [&'static str],
    pattern: &'static str,
    fill: Fill,
}

/// Where a type lives, per kind: `(place, kinds, path)`.
const PLACES: &[(&str, &[&str], &str)] = &[
    ("$pod", &["Pod"], "spec"),
    ("$pod", &["PodTemplate"], "template.spec"),
    (
        "$pod",
        &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ],
        "spec.template.spec",
    ),
    ("$pod", &["CronJob"], "spec.jobTemplate.spec.template.spec"),
    ("$meta", &["Pod"], "metadata"),
    ("$meta", &["PodTemplate"], "template.metadata"),
    (
        "$meta",
        &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ],
        "spec.template.metadata",
    ),
    (
        "$meta",
        &["CronJob"],
        "spec.jobTemplate.spec.template.metadata",
    ),
    ("$job", &["Job"], "spec"),
    ("$job", &["CronJob"], "spec.jobTemplate.spec"),
    ("$pvc", &["PersistentVolumeClaim"], "spec"),
    (
        "$pvc",
        &["StatefulSet"],
        "spec.volumeClaimTemplates.[].spec",
    ),
];

const ANY: &[&str] = &["*"];
const ALL: &[&str] = &[];

const fn rule(kinds: &'static [&'static str], pattern: &'static str, fill: Fill) -> Rule {
    Rule {
        kinds,
        versions: ALL,
        pattern,
        fill,
    }
}

const fn versioned(
    kinds: &'static [&'static str],
    versions: &'static [&'static str],
    pattern: &'static str,
    fill: Fill,
) -> Rule {
    Rule {
        kinds,
        versions,
        pattern,
        fill,
    }
}

const APPS_V1: &[&str] = &["apps/v1", "apps/v1beta2"];

/// The defaults table.
static RULES: &[Rule] = &[
    // --- pod spec (SetDefaults_PodSpec) ---
    rule(ANY, "$pod.dnsPolicy", Fill::Json(r#""ClusterFirst""#)),
    rule(ANY, "$pod.restartPolicy", Fill::Json(r#""Always""#)),
    rule(ANY, "$pod.terminationGracePeriodSeconds", Fill::Json("30")),
    rule(
        ANY,
        "$pod.schedulerName",
        Fill::Json(r#""default-scheduler""#),
    ),
    rule(ANY, "$pod.enableServiceLinks", Fill::Json("true")),
    rule(ANY, "$pod.securityContext", Fill::Json("{}")),
    // The deprecated alias always follows `serviceAccountName` (v1 conversion).
    rule(
        ANY,
        "$pod.serviceAccount",
        Fill::Sibling("serviceAccountName"),
    ),
    rule(
        ANY,
        "$pod.serviceAccountName",
        Fill::Sibling("serviceAccount"),
    ),
    // Admission (Priority): the priority of the (default) class, and its preemption policy.
    rule(&["Pod"], "$pod.priority", Fill::Json("0")),
    rule(
        &["Pod"],
        "$pod.preemptionPolicy",
        Fill::Json(r#""PreemptLowerPriority""#),
    ),
    // Admission (ServiceAccount): the default account and its token volume.
    rule(
        &["Pod"],
        "$pod.serviceAccountName",
        Fill::Json(r#""default""#),
    ),
    rule(&["Pod"], "$pod.serviceAccount", Fill::Json(r#""default""#)),
    rule(&["Pod"], "$pod.nodeName", Fill::Any),
    // Admission (DefaultTolerationSeconds).
    rule(&["Pod"], "$pod.tolerations", Fill::DefaultTolerations),
    // SetDefaults_Pod: requests default to the limits when only limits are set.
    rule(
        &["Pod"],
        "$pod.containers|initContainers.[].resources.requests",
        Fill::Sibling("limits"),
    ),
    // The server mirrors securityContext.seccompProfile into the legacy annotation.
    rule(
        &["Pod"],
        "metadata.annotations.seccomp.security.alpha.kubernetes.io/pod",
        Fill::Any,
    ),
    // --- containers (SetDefaults_Container, SetDefaults_ContainerPort) ---
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].terminationMessagePath",
        Fill::Json(r#""/dev/termination-log""#),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].terminationMessagePolicy",
        Fill::Json(r#""File""#),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].imagePullPolicy",
        Fill::PullPolicy,
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].ports.[].protocol",
        Fill::Json(r#""TCP""#),
    ),
    // hostNetwork pods: hostPort follows containerPort.
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].ports.[].hostPort",
        Fill::Sibling("containerPort"),
    ),
    // Probes and handlers (SetDefaults_Probe, SetDefaults_HTTPGetAction).
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].livenessProbe|readinessProbe|startupProbe.timeoutSeconds",
        Fill::Json("1"),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].livenessProbe|readinessProbe|startupProbe.periodSeconds",
        Fill::Json("10"),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].livenessProbe|readinessProbe|startupProbe.successThreshold",
        Fill::Json("1"),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].livenessProbe|readinessProbe|startupProbe.failureThreshold",
        Fill::Json("3"),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].livenessProbe|readinessProbe|startupProbe.httpGet.scheme",
        Fill::Json(r#""HTTP""#),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].lifecycle.postStart|preStop.httpGet.scheme",
        Fill::Json(r#""HTTP""#),
    ),
    // Downward API (SetDefaults_ObjectFieldSelector).
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].env.[].valueFrom.fieldRef.apiVersion",
        Fill::Json(r#""v1""#),
    ),
    rule(
        ANY,
        "$pod.containers|initContainers|ephemeralContainers.[].env.[].valueFrom.resourceFieldRef.divisor",
        Fill::Json(r#""0""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].downwardAPI.items.[].fieldRef.apiVersion",
        Fill::Json(r#""v1""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].downwardAPI.items.[].resourceFieldRef.divisor",
        Fill::Json(r#""0""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].projected.sources.[].downwardAPI.items.[].fieldRef.apiVersion",
        Fill::Json(r#""v1""#),
    ),
    // --- volumes (SetDefaults_*VolumeSource) ---
    rule(ANY, "$pod.volumes.[].secret.defaultMode", Fill::Json("420")),
    rule(
        ANY,
        "$pod.volumes.[].configMap.defaultMode",
        Fill::Json("420"),
    ),
    rule(
        ANY,
        "$pod.volumes.[].downwardAPI.defaultMode",
        Fill::Json("420"),
    ),
    rule(
        ANY,
        "$pod.volumes.[].projected.defaultMode",
        Fill::Json("420"),
    ),
    rule(ANY, "$pod.volumes.[].hostPath.type", Fill::Json(r#""""#)),
    rule(
        ANY,
        "$pod.volumes.[].iscsi.iscsiInterface",
        Fill::Json(r#""default""#),
    ),
    rule(ANY, "$pod.volumes.[].rbd.pool", Fill::Json(r#""rbd""#)),
    rule(ANY, "$pod.volumes.[].rbd.user", Fill::Json(r#""admin""#)),
    rule(
        ANY,
        "$pod.volumes.[].rbd.keyring",
        Fill::Json(r#""/etc/ceph/keyring""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].azureDisk.cachingMode",
        Fill::Json(r#""ReadWrite""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].azureDisk.fsType",
        Fill::Json(r#""ext4""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].azureDisk.readOnly",
        Fill::Json("false"),
    ),
    rule(
        ANY,
        "$pod.volumes.[].azureDisk.kind",
        Fill::Json(r#""Shared""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].scaleIO.storageMode",
        Fill::Json(r#""ThinProvisioned""#),
    ),
    rule(
        ANY,
        "$pod.volumes.[].scaleIO.fsType",
        Fill::Json(r#""xfs""#),
    ),
    // A volume without a source is an emptyDir (SetDefaults_Volume).
    rule(ANY, "$pod.volumes.[].emptyDir", Fill::Json("{}")),
    // --- Deployments (apps/v1 and v1beta2 SetDefaults_Deployment) ---
    rule(
        &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "ReplicationController",
        ],
        "spec.replicas",
        Fill::Json("1"),
    ),
    versioned(
        &["Deployment"],
        APPS_V1,
        "spec.strategy.type",
        Fill::Json(r#""RollingUpdate""#),
    ),
    versioned(
        &["Deployment"],
        APPS_V1,
        "spec.strategy.rollingUpdate.maxSurge",
        Fill::Json(r#""25%""#),
    ),
    versioned(
        &["Deployment"],
        APPS_V1,
        "spec.strategy.rollingUpdate.maxUnavailable",
        Fill::Json(r#""25%""#),
    ),
    versioned(
        &["Deployment"],
        APPS_V1,
        "spec.revisionHistoryLimit",
        Fill::Json("10"),
    ),
    versioned(
        &["Deployment"],
        APPS_V1,
        "spec.progressDeadlineSeconds",
        Fill::Json("600"),
    ),
    versioned(
        &["Deployment"],
        &["apps/v1beta1"],
        "spec.strategy.type",
        Fill::Json(r#""RollingUpdate""#),
    ),
    versioned(
        &["Deployment"],
        &["apps/v1beta1"],
        "spec.strategy.rollingUpdate.maxSurge",
        Fill::Json(r#""25%""#),
    ),
    versioned(
        &["Deployment"],
        &["apps/v1beta1"],
        "spec.strategy.rollingUpdate.maxUnavailable",
        Fill::Json(r#""25%""#),
    ),
    versioned(
        &["Deployment"],
        &["apps/v1beta1"],
        "spec.revisionHistoryLimit",
        Fill::Json("2"),
    ),
    versioned(
        &["Deployment"],
        &["apps/v1beta1"],
        "spec.progressDeadlineSeconds",
        Fill::Json("600"),
    ),
    versioned(
        &["Deployment", "DaemonSet"],
        &["extensions/v1beta1"],
        "spec.strategy|updateStrategy.type",
        Fill::Json(r#""RollingUpdate""#),
    ),
    versioned(
        &["Deployment"],
        &["extensions/v1beta1"],
        "spec.strategy.rollingUpdate.maxSurge",
        Fill::Json("1"),
    ),
    versioned(
        &["Deployment"],
        &["extensions/v1beta1"],
        "spec.strategy.rollingUpdate.maxUnavailable",
        Fill::Json("1"),
    ),
    versioned(
        &["Deployment", "DaemonSet"],
        &["extensions/v1beta1"],
        "spec.revisionHistoryLimit",
        Fill::Json("2147483647"),
    ),
    versioned(
        &["Deployment"],
        &["extensions/v1beta1"],
        "spec.progressDeadlineSeconds",
        Fill::Json("2147483647"),
    ),
    // --- DaemonSets ---
    versioned(
        &["DaemonSet"],
        APPS_V1,
        "spec.updateStrategy.type",
        Fill::Json(r#""RollingUpdate""#),
    ),
    rule(
        &["DaemonSet"],
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        Fill::Json("1"),
    ),
    // v1.21 and later also default maxSurge.
    rule(
        &["DaemonSet"],
        "spec.updateStrategy.rollingUpdate.maxSurge",
        Fill::Json("0"),
    ),
    versioned(
        &["DaemonSet"],
        APPS_V1,
        "spec.revisionHistoryLimit",
        Fill::Json("10"),
    ),
    // --- StatefulSets ---
    rule(
        &["StatefulSet"],
        "spec.podManagementPolicy",
        Fill::Json(r#""OrderedReady""#),
    ),
    versioned(
        &["StatefulSet"],
        APPS_V1,
        "spec.updateStrategy.type",
        Fill::Json(r#""RollingUpdate""#),
    ),
    versioned(
        &["StatefulSet"],
        &["apps/v1beta1"],
        "spec.updateStrategy.type",
        Fill::Json(r#""OnDelete""#),
    ),
    rule(
        &["StatefulSet"],
        "spec.updateStrategy.rollingUpdate.partition",
        Fill::Json("0"),
    ),
    rule(
        &["StatefulSet"],
        "spec.revisionHistoryLimit",
        Fill::Json("10"),
    ),
    rule(
        &["StatefulSet"],
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted|whenScaled",
        Fill::Json(r#""Retain""#),
    ),
    // The claim templates are stored as claims: kind, apiVersion and an empty status.
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates.[].apiVersion",
        Fill::Json(r#""v1""#),
    ),
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates.[].kind",
        Fill::Json(r#""PersistentVolumeClaim""#),
    ),
    rule(
        &["StatefulSet"],
        "spec.volumeClaimTemplates.[].status",
        Fill::Any,
    ),
    // --- claims and volumes ---
    rule(ANY, "$pvc.volumeMode", Fill::Json(r#""Filesystem""#)),
    // Admission (DefaultStorageClass) and the binder.
    rule(
        &["PersistentVolumeClaim"],
        "spec.storageClassName",
        Fill::Any,
    ),
    rule(&["PersistentVolumeClaim"], "spec.volumeName", Fill::Any),
    rule(
        &["PersistentVolume"],
        "spec.persistentVolumeReclaimPolicy",
        Fill::Json(r#""Retain""#),
    ),
    rule(
        &["PersistentVolume"],
        "spec.volumeMode",
        Fill::Json(r#""Filesystem""#),
    ),
    rule(&["PersistentVolume"], "spec.claimRef", Fill::Any),
    // Admission (StorageObjectInUseProtection).
    rule(
        &["PersistentVolumeClaim"],
        "metadata.finalizers",
        Fill::Json(r#"["kubernetes.io/pvc-protection"]"#),
    ),
    rule(
        &["PersistentVolume"],
        "metadata.finalizers",
        Fill::Json(r#"["kubernetes.io/pv-protection"]"#),
    ),
    // --- ReplicationControllers: selector and labels from the template ---
    rule(&["ReplicationController"], "spec.selector", Fill::Any),
    rule(&["ReplicationController"], "metadata.labels", Fill::Any),
    // --- Jobs and CronJobs ---
    rule(&["Job"], "spec.completions", Fill::Json("1")),
    rule(&["Job"], "spec.parallelism", Fill::Json("1")),
    rule(&["Job"], "spec.backoffLimit", Fill::Json("6")),
    rule(
        &["Job"],
        "spec.completionMode",
        Fill::Json(r#""NonIndexed""#),
    ),
    rule(&["Job"], "spec.suspend", Fill::Json("false")),
    rule(
        &["Job"],
        "spec.podReplacementPolicy",
        Fill::Json(r#""TerminatingOrFailed""#),
    ),
    // A generated selector and the labels that match it (unless manualSelector).
    rule(&["Job"], "spec.selector", Fill::Any),
    // SetDefaults_Job copies the template's labels (the generated ones included) to a Job
    // that has none.
    rule(
        &["Job"],
        "metadata.labels.controller-uid|job-name|batch.kubernetes.io/controller-uid|batch.kubernetes.io/job-name",
        Fill::Any,
    ),
    rule(
        &["Job"],
        "$meta.labels.controller-uid|job-name|batch.kubernetes.io/controller-uid|batch.kubernetes.io/job-name",
        Fill::Any,
    ),
    rule(
        &["CronJob"],
        "spec.concurrencyPolicy",
        Fill::Json(r#""Allow""#),
    ),
    rule(&["CronJob"], "spec.suspend", Fill::Json("false")),
    rule(
        &["CronJob"],
        "spec.successfulJobsHistoryLimit",
        Fill::Json("3"),
    ),
    rule(&["CronJob"], "spec.failedJobsHistoryLimit", Fill::Json("1")),
    // --- Services (SetDefaults_Service and the registry) ---
    rule(&["Service"], "spec.type", Fill::Json(r#""ClusterIP""#)),
    rule(
        &["Service"],
        "spec.sessionAffinity",
        Fill::Json(r#""None""#),
    ),
    rule(
        &["Service"],
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        Fill::Json("10800"),
    ),
    rule(
        &["Service"],
        "spec.ports.[].protocol",
        Fill::Json(r#""TCP""#),
    ),
    rule(
        &["Service"],
        "spec.ports.[].targetPort",
        Fill::Sibling("port"),
    ),
    rule(&["Service"], "spec.ports.[].nodePort", Fill::Any),
    rule(&["Service"], "spec.clusterIP", Fill::Any),
    rule(&["Service"], "spec.clusterIPs", Fill::ClusterIps),
    rule(&["Service"], "spec.ipFamilies", Fill::Any),
    rule(
        &["Service"],
        "spec.ipFamilyPolicy",
        Fill::Json(r#""SingleStack""#),
    ),
    rule(
        &["Service"],
        "spec.externalTrafficPolicy",
        Fill::Json(r#""Cluster""#),
    ),
    rule(
        &["Service"],
        "spec.internalTrafficPolicy",
        Fill::Json(r#""Cluster""#),
    ),
    rule(&["Service"], "spec.healthCheckNodePort", Fill::Any),
    rule(
        &["Service"],
        "spec.allocateLoadBalancerNodePorts",
        Fill::Json("true"),
    ),
    // --- other core kinds ---
    rule(&["Secret"], "type", Fill::Json(r#""Opaque""#)),
    rule(
        &["Namespace"],
        "spec.finalizers",
        Fill::Json(r#"["kubernetes"]"#),
    ),
    rule(
        &["Namespace"],
        "metadata.labels.kubernetes.io/metadata.name",
        Fill::Any,
    ),
    rule(&["ServiceAccount"], "secrets", Fill::Any),
    // --- autoscaling ---
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.minReplicas",
        Fill::Json("1"),
    ),
    versioned(
        &["HorizontalPodAutoscaler"],
        &["autoscaling/v2beta2", "autoscaling/v2"],
        "spec.metrics",
        Fill::Json(
            r#"[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}]"#,
        ),
    ),
    versioned(
        &["HorizontalPodAutoscaler"],
        &["autoscaling/v2beta1"],
        "spec.metrics",
        Fill::Json(
            r#"[{"type":"Resource","resource":{"name":"cpu","targetAverageUtilization":80}}]"#,
        ),
    ),
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.behavior.scaleUp|scaleDown.selectPolicy",
        Fill::Json(r#""Max""#),
    ),
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.behavior.scaleUp.stabilizationWindowSeconds",
        Fill::Json("0"),
    ),
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
        Fill::Json("300"),
    ),
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.behavior.scaleUp.policies",
        Fill::Json(
            r#"[{"type":"Pods","value":4,"periodSeconds":15},{"type":"Percent","value":100,"periodSeconds":15}]"#,
        ),
    ),
    rule(
        &["HorizontalPodAutoscaler"],
        "spec.behavior.scaleDown.policies",
        Fill::Json(r#"[{"type":"Percent","value":100,"periodSeconds":15}]"#),
    ),
    // --- networking ---
    rule(
        &["NetworkPolicy"],
        "spec.policyTypes",
        Fill::Json(r#"["Ingress"]"#),
    ),
    rule(
        &["NetworkPolicy"],
        "spec.ingress|egress.[].ports.[].protocol",
        Fill::Json(r#""TCP""#),
    ),
    versioned(
        &["Ingress"],
        &["networking.k8s.io/v1beta1", "extensions/v1beta1"],
        "spec.rules.[].http.paths.[].pathType",
        Fill::Json(r#""ImplementationSpecific""#),
    ),
    // --- RBAC (SetDefaults_Subject) ---
    rule(
        &["RoleBinding", "ClusterRoleBinding"],
        "subjects.[].apiGroup",
        Fill::Any,
    ),
    // --- storage and scheduling ---
    rule(
        &["StorageClass"],
        "reclaimPolicy",
        Fill::Json(r#""Delete""#),
    ),
    rule(
        &["StorageClass"],
        "volumeBindingMode",
        Fill::Json(r#""Immediate""#),
    ),
    rule(&["CSIDriver"], "spec.attachRequired", Fill::Json("true")),
    rule(&["CSIDriver"], "spec.podInfoOnMount", Fill::Json("false")),
    rule(
        &["CSIDriver"],
        "spec.volumeLifecycleModes",
        Fill::Json(r#"["Persistent"]"#),
    ),
    rule(
        &["CSIDriver"],
        "spec.storageCapacity|requiresRepublish|seLinuxMount",
        Fill::Json("false"),
    ),
    rule(
        &["CSIDriver"],
        "spec.fsGroupPolicy",
        Fill::Json(r#""ReadWriteOnceWithFSType""#),
    ),
    rule(
        &["PriorityClass"],
        "preemptionPolicy",
        Fill::Json(r#""PreemptLowerPriority""#),
    ),
    rule(
        &["PodSecurityPolicy"],
        "spec.allowPrivilegeEscalation",
        Fill::Json("true"),
    ),
    // --- CertificateSigningRequests: the requester's identity, set by the server ---
    rule(
        &["CertificateSigningRequest"],
        "spec.username|uid|groups|extra",
        Fill::Any,
    ),
    rule(&["CertificateSigningRequest"], "spec.signerName", Fill::Any),
    // --- APIService, CRDs ---
    rule(
        &["CustomResourceDefinition"],
        "spec.conversion",
        Fill::Json(r#"{"strategy":"None"}"#),
    ),
];

/// Fields the server rewrites whatever Git asks: a Git value that differs is never drift, but a
/// warning ("Git can never match"). `(kinds, pattern)`.
static REWRITTEN: &[(&[&str], &str)] = &[
    (ANY, "$pod.serviceAccount"),
    (
        &["CertificateSigningRequest"],
        "spec.username|uid|groups|extra",
    ),
];

/// One parsed pattern segment.
#[derive(Debug)]
enum Seg {
    /// Any of these names.
    Names(Vec<&'static str>),
    /// Any name.
    AnyName,
    /// A list item.
    Item,
}

/// A rule with its pattern split into the place prefix (as steps) and the rest.
#[derive(Debug)]
pub(crate) struct Compiled {
    rule: Rule,
    /// `(kinds, prefix)` alternatives for the pattern's place; one unconditional entry (all
    /// kinds of the rule) when the pattern has no place.
    prefixes: Vec<(&'static [&'static str], Vec<Seg>)>,
    rest: Vec<Seg>,
    /// The parsed JSON of a [`Fill::Json`].
    value: Option<Value>,
}

/// One step of a path, as the walker sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StepRef<'a> {
    Field(&'a str),
    Item,
}

fn split(pattern: &'static str) -> Vec<Seg> {
    pattern
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "[]" => Seg::Item,
            "*" => Seg::AnyName,
            names => Seg::Names(names.split('|').collect()),
        })
        .collect()
}

/// Splits a label-like pattern segment: names with dots (`kubernetes.io/metadata.name`) are
/// written whole in the table, so they are re-joined here when a `/` shows they are one key.
fn split_keys(pattern: &'static str) -> Vec<Seg> {
    // Keys with a `/` (label and annotation keys) contain dots: everything after the map's
    // name (`labels.`) is one segment.
    for marker in ["labels.", "annotations."] {
        if let Some(at) = pattern.find(marker) {
            let (head, tail) = pattern.split_at(at + marker.len());
            if tail.contains('/') {
                let mut segs = split(head);
                segs.push(Seg::Names(tail.split('|').collect()));
                return segs;
            }
        }
    }
    split(pattern)
}

fn compile(rule: Rule) -> Compiled {
    let (prefixes, rest) = match rule.pattern.split_once('.') {
        Some((place, rest)) if place.starts_with('$') => {
            let prefixes = PLACES
                .iter()
                .filter(|(p, _, _)| *p == place)
                .map(|(_, kinds, path)| (*kinds, split(path)))
                .collect();
            (prefixes, split_keys(rest))
        }
        _ => (vec![(ANY, Vec::new())], split_keys(rule.pattern)),
    };
    let value = match rule.fill {
        Fill::Json(text) => serde_json::from_str(text).ok(),
        _ => None,
    };
    Compiled {
        rule,
        prefixes,
        rest,
        value,
    }
}

static COMPILED: LazyLock<Vec<Compiled>> =
    LazyLock::new(|| RULES.iter().copied().map(compile).collect());

static COMPILED_REWRITTEN: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
    REWRITTEN
        .iter()
        .map(|(kinds, pattern)| {
            compile(Rule {
                kinds,
                versions: ALL,
                pattern,
                fill: Fill::Any,
            })
        })
        .collect()
});

fn seg_matches(seg: &Seg, step: StepRef<'_>) -> bool {
    match (seg, step) {
        (Seg::Item, StepRef::Item) => true,
        (Seg::AnyName, StepRef::Field(_)) => true,
        (Seg::Names(names), StepRef::Field(name)) => names.contains(&name),
        _ => false,
    }
}

fn kind_matches(kinds: &[&str], kind: &str) -> bool {
    kinds.iter().any(|k| *k == "*" || *k == kind)
}

impl Compiled {
    fn matches(&self, kind: &str, api_version: &str, steps: &[StepRef<'_>]) -> bool {
        if !kind_matches(self.rule.kinds, kind) {
            return false;
        }
        if !self.rule.versions.is_empty() && !self.rule.versions.contains(&api_version) {
            return false;
        }
        let Some(split) = steps.len().checked_sub(self.rest.len()) else {
            return false;
        };
        let (head, tail) = steps.split_at(split);
        if !self.rest.iter().zip(tail).all(|(s, t)| seg_matches(s, *t)) {
            return false;
        }
        self.prefixes.iter().any(|(kinds, prefix)| {
            kind_matches(kinds, kind)
                && prefix.len() == head.len()
                && prefix.iter().zip(head).all(|(s, t)| seg_matches(s, *t))
        })
    }
}

/// The rule for a path, if any.
fn rule_at<'r>(
    rules: &'r [Compiled],
    kind: &str,
    api_version: &str,
    steps: &[StepRef<'_>],
) -> Option<&'r Compiled> {
    rules.iter().find(|r| r.matches(kind, api_version, steps))
}

/// True when `live` at `steps` is what the server puts there by itself. `parent` is the live map
/// holding the field (for rules that follow a sibling). Maps are defaults when every entry is.
/// Custom resources use the `default`s of their CRD's schema (`crd`).
pub(crate) fn is_server_default<'v>(
    kind: &str,
    api_version: &str,
    crd: &CrdDefaults,
    steps: &mut Vec<StepRef<'v>>,
    live: &'v Value,
    parent: Option<&Map<String, Value>>,
) -> bool {
    let at = Place {
        kind,
        api_version,
        crd,
    };
    is_default_at(&at, steps, live, parent, 0)
}

/// What kind of object a path is in.
struct Place<'c> {
    kind: &'c str,
    api_version: &'c str,
    crd: &'c CrdDefaults,
}

fn is_default_at<'v>(
    at: &Place<'_>,
    steps: &mut Vec<StepRef<'v>>,
    live: &'v Value,
    parent: Option<&Map<String, Value>>,
    depth: usize,
) -> bool {
    if crate::schema::is_empty_like(live) {
        return true;
    }
    if let Some(rule) = rule_at(&COMPILED, at.kind, at.api_version, steps)
        && fill_matches(rule, steps, live, parent)
    {
        return true;
    }
    if let Some(default) = at.crd.default_at(at.api_version, at.kind, steps)
        && equal_default(steps, default, live)
    {
        return true;
    }
    if depth > 16 {
        return false;
    }
    match live {
        Value::Object(map) => map.iter().all(|(key, value)| {
            steps.push(StepRef::Field(key));
            let ok = is_default_at(at, steps, value, Some(map), depth + 1);
            steps.pop();
            ok
        }),
        _ => false,
    }
}

fn fill_matches(
    rule: &Compiled,
    steps: &[StepRef<'_>],
    live: &Value,
    parent: Option<&Map<String, Value>>,
) -> bool {
    let key = match steps.last() {
        Some(StepRef::Field(k)) => Some(*k),
        _ => None,
    };
    match rule.rule.fill {
        Fill::Any => true,
        Fill::Json(_) => rule.value.as_ref().is_some_and(|v| {
            crate::schema::subset_equal(key, None, v, live, 0) && same_shape(v, live)
        }),
        Fill::Sibling(name) => parent
            .and_then(|p| p.get(name))
            .is_some_and(|s| scalars_equal(key, None, s, live)),
        Fill::PullPolicy => {
            let image = parent.and_then(|p| p.get("image")).and_then(Value::as_str);
            live.as_str() == Some(pull_policy(image.unwrap_or("")))
        }
        Fill::DefaultTolerations => live
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(is_default_toleration)),
        Fill::ClusterIps => match (parent.and_then(|p| p.get("clusterIP")), live) {
            (Some(ip), Value::Array(ips)) => ips.first() == Some(ip),
            _ => false,
        },
    }
}

/// A default equals the live value: by value, with nothing more live.
fn equal_default(steps: &[StepRef<'_>], default: &Value, live: &Value) -> bool {
    let key = match steps.last() {
        Some(StepRef::Field(k)) => Some(*k),
        _ => None,
    };
    crate::schema::subset_equal(key, None, default, live, 0) && same_shape(default, live)
}

/// Lists and maps of a default are equal only with nothing more live (subset equality alone
/// would accept extra entries).
fn same_shape(default: &Value, live: &Value) -> bool {
    match (default, live) {
        (Value::Object(d), Value::Object(l)) => {
            l.keys().all(|k| d.contains_key(k))
                && d.iter()
                    .all(|(k, v)| l.get(k).is_none_or(|lv| same_shape(v, lv)))
        }
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| same_shape(a, b))
        }
        _ => true,
    }
}

/// A toleration the DefaultTolerationSeconds admission plugin adds.
pub(crate) fn is_default_toleration(item: &Value) -> bool {
    let Some(map) = item.as_object() else {
        return false;
    };
    let key = map.get("key").and_then(Value::as_str);
    map.len() == 4
        && matches!(
            key,
            Some("node.kubernetes.io/not-ready" | "node.kubernetes.io/unreachable")
        )
        && map.get("operator").and_then(Value::as_str) == Some("Exists")
        && map.get("effect").and_then(Value::as_str) == Some("NoExecute")
        && map.get("tolerationSeconds").and_then(Value::as_u64) == Some(300)
}

/// `imagePullPolicy`'s default for an image (SetDefaults_Container): `Always` when the parsed
/// tag is `latest` (absent tags parse as `latest`), else `IfNotPresent` — also for a reference
/// that does not parse, and for a digest without a tag.
fn pull_policy(image: &str) -> &'static str {
    if !is_reference(image) {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match (last.rsplit_once(':'), digest) {
        (Some((_, "latest")), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

/// True for an image reference the docker reference grammar accepts (lower-case path
/// components, an optional `host[:port]/`, `:tag`, `@algorithm:hex`).
fn is_reference(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return false;
        };
        if algorithm.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The tag, after the last component's `:`.
    if let Some(last) = parts.last_mut()
        && let Some((path, tag)) = last.split_once(':')
    {
        let ok = tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return false;
        }
        *last = path;
    }
    // A first component with a `.` or `:`, or `localhost`, is a registry host.
    let first = parts.first().copied().unwrap_or_default();
    let host = parts.len() > 1 && (first.contains(['.', ':']) || first == "localhost");
    let components = if host {
        parts.get(1..).unwrap_or_default()
    } else {
        &parts[..]
    };
    !components.is_empty() && components.iter().all(|c| is_path_component(c))
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if !bytes.first().is_some_and(|b| alnum(*b)) || !bytes.last().is_some_and(|b| alnum(*b)) {
        return false;
    }
    let mut separator: &[u8] = &[];
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if alnum(b) {
            if !separator.is_empty() {
                let ok = matches!(separator, b"." | b"_" | b"__")
                    || separator.iter().all(|s| *s == b'-');
                if !ok {
                    return false;
                }
                separator = &[];
            }
            start = i + 1;
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator = bytes.get(start..=i).unwrap_or_default();
        } else {
            return false;
        }
    }
    true
}

/// True when the server rewrites the field at `steps` whatever Git asks (the value it stores
/// is not Git's): Git's value there is never drift.
pub(crate) fn is_rewritten(kind: &str, api_version: &str, steps: &[StepRef<'_>]) -> bool {
    rule_at(&COMPILED_REWRITTEN, kind, api_version, steps).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn steps(path: &'static str) -> Vec<StepRef<'static>> {
        path.split('.')
            .map(|s| {
                if s == "[]" {
                    StepRef::Item
                } else {
                    StepRef::Field(s)
                }
            })
            .collect()
    }

    fn default(kind: &str, version: &str, path: &'static str, live: Value, parent: Value) -> bool {
        is_server_default(
            kind,
            version,
            &CrdDefaults::default(),
            &mut steps(path),
            &live,
            parent.as_object(),
        )
    }

    #[test]
    fn every_rule_compiles() {
        for c in COMPILED.iter() {
            assert!(!c.rest.is_empty(), "{}", c.rule.pattern);
            assert!(!c.prefixes.is_empty(), "{}: unknown place", c.rule.pattern);
            if matches!(c.rule.fill, Fill::Json(_)) {
                assert!(c.value.is_some(), "{}: bad JSON", c.rule.pattern);
            }
        }
    }

    #[test]
    fn pod_spec_defaults_in_every_workload() {
        for (kind, path) in [
            ("Deployment", "spec.template.spec.dnsPolicy"),
            ("CronJob", "spec.jobTemplate.spec.template.spec.dnsPolicy"),
            ("Pod", "spec.dnsPolicy"),
        ] {
            assert!(
                default(kind, "v1", path, json!("ClusterFirst"), json!({})),
                "{kind}"
            );
            assert!(
                !default(kind, "v1", path, json!("Default"), json!({})),
                "{kind}"
            );
        }
        assert!(!default(
            "ConfigMap",
            "v1",
            "spec.template.spec.dnsPolicy",
            json!("ClusterFirst"),
            json!({})
        ));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let p = "spec.template.spec.containers.[].imagePullPolicy";
        let c = |image: &str| json!({ "image": image });
        assert!(default(
            "Deployment",
            "apps/v1",
            p,
            json!("Always"),
            c("nginx")
        ));
        assert!(default(
            "Deployment",
            "apps/v1",
            p,
            json!("Always"),
            c("nginx:latest")
        ));
        assert!(default(
            "Deployment",
            "apps/v1",
            p,
            json!("IfNotPresent"),
            c("nginx:1.25")
        ));
        assert!(default(
            "Deployment",
            "apps/v1",
            p,
            json!("IfNotPresent"),
            c("r.io:5000/nginx@sha256:ab")
        ));
        assert!(!default(
            "Deployment",
            "apps/v1",
            p,
            json!("Always"),
            c("nginx:1.25")
        ));
        assert!(!default(
            "Deployment",
            "apps/v1",
            p,
            json!("Never"),
            c("nginx")
        ));
        // A reference the server cannot parse gets IfNotPresent.
        let pod = "spec.containers.[].imagePullPolicy";
        assert!(default(
            "Pod",
            "v1",
            pod,
            json!("IfNotPresent"),
            c("<your-private-image>")
        ));
        assert!(default(
            "Pod",
            "v1",
            pod,
            json!("IfNotPresent"),
            c("MyImage")
        ));
        assert!(default(
            "Pod",
            "v1",
            pod,
            json!("Always"),
            c("localhost:5000/team/app")
        ));
        assert!(default(
            "Pod",
            "v1",
            pod,
            json!("Always"),
            c("gcr.io/a/b:latest")
        ));
    }

    #[test]
    fn whole_maps_of_defaults() {
        let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        assert!(default(
            "Deployment",
            "apps/v1",
            "spec.strategy",
            strategy.clone(),
            json!({})
        ));
        assert!(!default(
            "Deployment",
            "extensions/v1beta1",
            "spec.strategy",
            strategy,
            json!({})
        ));
        let changed = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "25%"}});
        assert!(!default(
            "Deployment",
            "apps/v1",
            "spec.strategy",
            changed,
            json!({})
        ));
        let probe = json!({"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3});
        assert!(default(
            "StatefulSet",
            "apps/v1",
            "spec.template.spec.containers.[].readinessProbe",
            probe,
            json!({})
        ));
    }

    #[test]
    fn siblings_and_lists() {
        let port = json!({"port": 80, "targetPort": 80});
        assert!(default(
            "Service",
            "v1",
            "spec.ports.[].targetPort",
            json!(80),
            port.clone()
        ));
        assert!(!default(
            "Service",
            "v1",
            "spec.ports.[].targetPort",
            json!(8080),
            port
        ));
        let svc = json!({"clusterIP": "10.0.0.7"});
        assert!(default(
            "Service",
            "v1",
            "spec.clusterIPs",
            json!(["10.0.0.7"]),
            svc.clone()
        ));
        assert!(!default(
            "Service",
            "v1",
            "spec.clusterIPs",
            json!(["10.0.0.8"]),
            svc
        ));
        assert!(default(
            "Namespace",
            "v1",
            "spec.finalizers",
            json!(["kubernetes"]),
            json!({})
        ));
        assert!(!default(
            "Namespace",
            "v1",
            "spec.finalizers",
            json!(["kubernetes", "x"]),
            json!({})
        ));
        let mut label = vec![
            StepRef::Field("metadata"),
            StepRef::Field("labels"),
            StepRef::Field("kubernetes.io/metadata.name"),
        ];
        assert!(is_server_default(
            "Namespace",
            "v1",
            &CrdDefaults::default(),
            &mut label,
            &json!("a"),
            None
        ));
        let sa = json!({"serviceAccountName": "web"});
        assert!(default(
            "Deployment",
            "apps/v1",
            "spec.template.spec.serviceAccount",
            json!("web"),
            sa.clone()
        ));
        assert!(!default(
            "Deployment",
            "apps/v1",
            "spec.template.spec.serviceAccount",
            json!("other"),
            sa
        ));
    }

    #[test]
    fn rewritten_fields() {
        assert!(is_rewritten(
            "Deployment",
            "apps/v1",
            &steps("spec.template.spec.serviceAccount")
        ));
        assert!(is_rewritten(
            "CertificateSigningRequest",
            "certificates.k8s.io/v1",
            &steps("spec.username")
        ));
        assert!(!is_rewritten(
            "Deployment",
            "apps/v1",
            &steps("spec.template.spec.serviceAccountName")
        ));
    }
}

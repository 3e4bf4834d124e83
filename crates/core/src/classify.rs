//! Classification and severity (contract §3), decided on the structured path — never by
//! substring — and, for changes reported at a list item or a whole list (`env[name=X]`,
//! `volumes[name=v]`, `envFrom`), on the keys of the item that changed.
//!
//! Keys inside user-data maps (`labels`, `annotations`, ConfigMap/Secret `data`, `matchLabels`,
//! `nodeSelector`, Service `selector`) are data, not structure: a label named `securityContext`
//! is a label.

use serde_json::Value;

use crate::change::{DriftType, Op, Severity};
use crate::path::{FieldPath, Segment};
use crate::schema::CONTAINER_LISTS;

const RBAC_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];
const SECURITY_FIELDS: [&str; 6] = [
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
];

/// The type and severity of one change of an object of `kind` (contract §3; the first matching
/// row wins). `from` is the Git value, `to` the live value.
pub fn classify(
    kind: &str,
    field: &FieldPath,
    op: Op,
    from: Option<&Value>,
    to: Option<&Value>,
) -> (DriftType, Severity) {
    let t = drift_type(kind, field, from, to);
    let severity = match t {
        DriftType::Scaling => scaling_severity(op, from, to),
        other => default_severity(other),
    };
    (t, severity)
}

/// The fixed severity of each type (Scaling: see [`scaling_severity`]).
pub fn default_severity(t: DriftType) -> Severity {
    match t {
        DriftType::MissingResource
        | DriftType::SecretChange
        | DriftType::SecurityChange
        | DriftType::VersionChange => Severity::High,
        DriftType::Scaling
        | DriftType::ResourceChange
        | DriftType::ConfigMapChange
        | DriftType::ConfigurationChange
        | DriftType::PortChange
        | DriftType::VolumeChange
        | DriftType::GenericChange => Severity::Medium,
        DriftType::LabelChange | DriftType::AnnotationChange | DriftType::UnmanagedResource => {
            Severity::Low
        }
    }
}

/// Scaling severity: high when `|live − git| / git > 50 %` (or git = 0 and live > 0), else
/// medium. An absent `replicas` counts as the API default, 1.
pub fn scaling_severity(op: Op, from: Option<&Value>, to: Option<&Value>) -> Severity {
    let read = |v: Option<&Value>| match v {
        None => Some(1.0),
        Some(v) => v.as_f64(),
    };
    let (git, live) = match op {
        Op::Added => (Some(1.0), read(to)),
        Op::Removed => (read(from), Some(1.0)),
        Op::Changed => (read(from), read(to)),
    };
    let (Some(git), Some(live)) = (git, live) else {
        return Severity::Medium;
    };
    let high = if git == 0.0 {
        live > 0.0
    } else {
        (live - git).abs() / git.abs() > 0.5
    };
    if high {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// The structural keys of a path: map keys with list items skipped, cut after the first
/// user-data map (so the user's key names never classify).
fn structural_keys<'a>(kind: &str, segments: &'a [Segment]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = Vec::with_capacity(segments.len());
    for segment in segments {
        let Segment::Key(key) = segment else {
            continue;
        };
        let previous = keys.last().copied();
        keys.push(key);
        let user_map = match key.as_str() {
            "labels" | "annotations" => previous == Some("metadata"),
            "data" | "binaryData" | "stringData" => keys.len() == 1,
            "matchLabels" | "nodeSelector" => true,
            "selector" => kind == "Service" && keys.len() == 2,
            _ => false,
        };
        if user_map {
            break;
        }
    }
    keys
}

/// After `list[item]` (the first occurrence of `list` followed by an item), the rest of the path.
fn after_item<'a>(segments: &'a [Segment], lists: &[&str]) -> Option<&'a [Segment]> {
    segments.windows(2).enumerate().find_map(|(i, w)| match w {
        [Segment::Key(k), Segment::Item(_)] if lists.contains(&k.as_str()) => segments.get(i + 2..),
        _ => None,
    })
}

fn first_key(rest: &[Segment]) -> Option<&str> {
    match rest.first() {
        Some(Segment::Key(k)) => Some(k),
        _ => None,
    }
}

fn has_key(value: &Value, key: &str, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    match value {
        Value::Object(map) => {
            map.contains_key(key) || map.values().any(|v| has_key(v, key, depth - 1))
        }
        Value::Array(items) => items.iter().any(|v| has_key(v, key, depth - 1)),
        _ => false,
    }
}

fn either_has_key(from: Option<&Value>, to: Option<&Value>, key: &str, depth: usize) -> bool {
    from.is_some_and(|v| has_key(v, key, depth)) || to.is_some_and(|v| has_key(v, key, depth))
}

/// Reference kind of a change inside a container's `env`, `envFrom` or a pod's `volumes`.
#[derive(PartialEq)]
enum Reference {
    Secret,
    ConfigMap,
    Neither,
}

fn env_reference(rest: &[Segment], from: Option<&Value>, to: Option<&Value>) -> Reference {
    let keys: Vec<&str> = rest
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            _ => None,
        })
        .collect();
    if keys.contains(&"secretKeyRef") {
        return Reference::Secret;
    }
    if keys.contains(&"configMapKeyRef") {
        return Reference::ConfigMap;
    }
    // Reported at the item or at `valueFrom`: look at what the item refers to.
    let deep = keys.len() <= 2;
    if deep && either_has_key(from, to, "secretKeyRef", 3) {
        Reference::Secret
    } else if deep && either_has_key(from, to, "configMapKeyRef", 3) {
        Reference::ConfigMap
    } else {
        Reference::Neither
    }
}

fn env_from_reference(from: Option<&Value>, to: Option<&Value>) -> Reference {
    // Which Secrets and ConfigMaps each side refers to; a change of either set decides, any
    // other difference (prefix, optional) is configuration.
    let refs = |v: Option<&Value>, key: &str| -> Vec<Value> {
        let mut out: Vec<Value> = match v {
            Some(Value::Array(items)) => items.iter().filter_map(|i| i.get(key).cloned()).collect(),
            _ => Vec::new(),
        };
        out.sort_by_key(ToString::to_string);
        out
    };
    if refs(from, "secretRef") != refs(to, "secretRef") {
        Reference::Secret
    } else if refs(from, "configMapRef") != refs(to, "configMapRef") {
        Reference::ConfigMap
    } else {
        Reference::Neither
    }
}

fn volume_reference(rest: &[Segment], from: Option<&Value>, to: Option<&Value>) -> Reference {
    let source_refers = |key: &str| match rest.get(1..) {
        // `projected` (or below): the sources reported whole decide.
        Some(_) => either_has_key(from, to, key, 4),
        None => false,
    };
    match first_key(rest) {
        Some("secret") => Reference::Secret,
        Some("configMap") => Reference::ConfigMap,
        Some("projected") => {
            if source_refers("secret") {
                Reference::Secret
            } else if source_refers("configMap") {
                Reference::ConfigMap
            } else {
                Reference::Neither
            }
        }
        Some(_) => Reference::Neither,
        // The whole volume: its source decides.
        None => {
            let top = |key: &str| {
                from.is_some_and(|v| v.get(key).is_some())
                    || to.is_some_and(|v| v.get(key).is_some())
            };
            if top("secret") || either_has_key(from, to, "secret", 4) && top("projected") {
                Reference::Secret
            } else if top("configMap")
                || either_has_key(from, to, "configMap", 4) && top("projected")
            {
                Reference::ConfigMap
            } else {
                Reference::Neither
            }
        }
    }
}

fn drift_type(
    kind: &str,
    field: &FieldPath,
    from: Option<&Value>,
    to: Option<&Value>,
) -> DriftType {
    let segments = field.segments();
    let keys = structural_keys(kind, segments);
    let top = keys.first().copied();
    let container = after_item(segments, &CONTAINER_LISTS);
    let container_key = container.and_then(first_key);
    let in_labels = keys.windows(2).any(|w| w == ["metadata", "labels"]);
    let in_annotations = keys.windows(2).any(|w| w == ["metadata", "annotations"]);
    let volume = if in_labels || in_annotations {
        None
    } else {
        after_item(segments, &["volumes"])
    };

    let env = match container_key {
        Some("env") => Some(env_reference(container.unwrap_or_default(), from, to)),
        _ => None,
    };
    let env_from = match container_key {
        Some("envFrom") => Some(env_from_reference(from, to)),
        _ => None,
    };
    let volume_ref = volume.map(|rest| volume_reference(rest, from, to));
    let refers = |r: Reference| {
        env.as_ref() == Some(&r) || env_from.as_ref() == Some(&r) || volume_ref.as_ref() == Some(&r)
    };

    // SecretChange
    if (kind == "Secret" && matches!(top, Some("data" | "stringData" | "type")))
        || keys.contains(&"secretKeyRef")
        || keys.contains(&"imagePullSecrets")
        || refers(Reference::Secret)
    {
        return DriftType::SecretChange;
    }
    // SecurityChange
    if keys.contains(&"securityContext")
        || keys.iter().any(|k| SECURITY_FIELDS.contains(k))
        || (RBAC_KINDS.contains(&kind)
            && matches!(
                top,
                Some("rules" | "subjects" | "roleRef" | "aggregationRule")
            ))
    {
        return DriftType::SecurityChange;
    }
    // VersionChange
    if let Some([Segment::Key(k)]) = container
        && k == "image"
    {
        return DriftType::VersionChange;
    }
    // Scaling
    if matches!(segments, [Segment::Key(a), Segment::Key(b)] if a == "spec" && b == "replicas") {
        return DriftType::Scaling;
    }
    // ResourceChange
    if container_key == Some("resources") {
        return DriftType::ResourceChange;
    }
    // ConfigMapChange
    if (kind == "ConfigMap" && matches!(top, Some("data" | "binaryData")))
        || keys.contains(&"configMapKeyRef")
        || refers(Reference::ConfigMap)
    {
        return DriftType::ConfigMapChange;
    }
    // ConfigurationChange
    if matches!(container_key, Some("env" | "envFrom" | "args" | "command")) {
        return DriftType::ConfigurationChange;
    }
    // PortChange
    if container_key == Some("ports")
        || (kind == "Service" && keys.first() == Some(&"spec") && keys.get(1) == Some(&"ports"))
    {
        return DriftType::PortChange;
    }
    // VolumeChange
    if !in_labels
        && !in_annotations
        && keys
            .iter()
            .any(|k| matches!(*k, "volumes" | "volumeMounts" | "volumeDevices"))
    {
        return DriftType::VolumeChange;
    }
    // Labels and annotations are never GenericChange, wherever they sit (object or template).
    if in_labels {
        return DriftType::LabelChange;
    }
    if in_annotations {
        return DriftType::AnnotationChange;
    }
    DriftType::GenericChange
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(kind: &str, path: &str) -> DriftType {
        let field = FieldPath::parse(path).unwrap_or_else(|e| panic!("{e}"));
        drift_type(kind, &field, None, None)
    }

    #[test]
    fn rows_by_path() {
        assert_eq!(t("Secret", "data.password"), DriftType::SecretChange);
        assert_eq!(t("ConfigMap", "data.password"), DriftType::ConfigMapChange);
        assert_eq!(
            t(
                "Deployment",
                "spec.template.spec.containers[name=a].env[name=X].valueFrom.secretKeyRef.key"
            ),
            DriftType::SecretChange
        );
        assert_eq!(
            t("Deployment", "spec.template.spec.containers[name=a].image"),
            DriftType::VersionChange
        );
        assert_eq!(
            t("Deployment", "metadata.labels.securityContext"),
            DriftType::LabelChange
        );
        assert_eq!(
            t("Deployment", "spec.template.metadata.labels.app"),
            DriftType::LabelChange
        );
        assert_eq!(
            t("Deployment", "spec.selector.matchLabels.app"),
            DriftType::GenericChange
        );
        assert_eq!(t("ConfigMap", "data.image"), DriftType::ConfigMapChange);
        assert_eq!(t("ClusterRole", "rules"), DriftType::SecurityChange);
    }

    #[test]
    fn scaling_boundaries() {
        let s = |a: i64, b: i64| scaling_severity(Op::Changed, Some(&json!(a)), Some(&json!(b)));
        assert_eq!(s(2, 3), Severity::Medium);
        assert_eq!(s(2, 4), Severity::High);
        assert_eq!(s(0, 1), Severity::High);
        assert_eq!(s(4, 2), Severity::Medium);
        assert_eq!(s(4, 1), Severity::High);
    }
}

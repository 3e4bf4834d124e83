//! One difference between Git and the cluster (contract §2.1), its type and severity (§3).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::FieldPath;

/// What happened at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Present on both sides with different values.
    Changed,
    /// Present live, absent in Git.
    Added,
    /// In Git, absent live.
    Removed,
}

/// The drift types of contract §3, in table order (earlier = wins ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DriftType {
    /// In Git, absent in the cluster.
    MissingResource,
    /// Secret data or anything referencing a Secret.
    SecretChange,
    /// Security contexts, host namespaces, service accounts, RBAC.
    SecurityChange,
    /// Container images.
    VersionChange,
    /// `spec.replicas`.
    Scaling,
    /// Container resources.
    ResourceChange,
    /// ConfigMap data or references to ConfigMaps.
    ConfigMapChange,
    /// Env, envFrom, args, command.
    ConfigurationChange,
    /// Container and Service ports.
    PortChange,
    /// Volumes and mounts.
    VolumeChange,
    /// Anything else under spec, data or the top level.
    GenericChange,
    /// Labels.
    LabelChange,
    /// Annotations.
    AnnotationChange,
    /// In the cluster, absent in Git.
    UnmanagedResource,
}

/// Severity levels, ordered `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Metadata-only drift.
    Low,
    /// Behaviour-changing drift.
    Medium,
    /// Security, version and large scaling drift.
    High,
}

/// One difference (contract §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Where (contract §2.2); root for whole-resource verdicts.
    pub field: FieldPath,
    /// What happened.
    pub op: Op,
    /// The Git value (`null` for `added`).
    pub from: Option<Value>,
    /// The live value (`null` for `removed`).
    pub to: Option<Value>,
    /// Drift type (contract §3).
    #[serde(rename = "type")]
    pub drift_type: DriftType,
    /// Severity (contract §3).
    pub severity: Severity,
    /// Field manager that last wrote this path, when known.
    pub manager: Option<String>,
    /// When that manager last wrote it, when known.
    pub changed_at: Option<DateTime<Utc>>,
    /// 1-based line, in the record's source file, where Git writes the desired value at
    /// `field` (for a field Git does not set, an `added` one: the line of its nearest ancestor
    /// Git sets). `None` when unknown: rendered output (Kustomize, Helm), a resource not in Git,
    /// a file that could not be read again. Older stored records have none.
    #[serde(default)]
    pub source_line: Option<usize>,
}

// === impl DriftType ===

impl DriftType {
    /// Every type, in table order.
    pub const ALL: [DriftType; 14] = [
        DriftType::MissingResource,
        DriftType::SecretChange,
        DriftType::SecurityChange,
        DriftType::VersionChange,
        DriftType::Scaling,
        DriftType::ResourceChange,
        DriftType::ConfigMapChange,
        DriftType::ConfigurationChange,
        DriftType::PortChange,
        DriftType::VolumeChange,
        DriftType::GenericChange,
        DriftType::LabelChange,
        DriftType::AnnotationChange,
        DriftType::UnmanagedResource,
    ];

    /// The contract name, e.g. `Scaling`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftType::MissingResource => "MissingResource",
            DriftType::SecretChange => "SecretChange",
            DriftType::SecurityChange => "SecurityChange",
            DriftType::VersionChange => "VersionChange",
            DriftType::Scaling => "Scaling",
            DriftType::ResourceChange => "ResourceChange",
            DriftType::ConfigMapChange => "ConfigMapChange",
            DriftType::ConfigurationChange => "ConfigurationChange",
            DriftType::PortChange => "PortChange",
            DriftType::VolumeChange => "VolumeChange",
            DriftType::GenericChange => "GenericChange",
            DriftType::LabelChange => "LabelChange",
            DriftType::AnnotationChange => "AnnotationChange",
            DriftType::UnmanagedResource => "UnmanagedResource",
        }
    }
}

impl fmt::Display for DriftType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DriftType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown drift type {s:?}"))
    }
}

// === impl Severity ===

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 3] = [Severity::Low, Severity::Medium, Severity::High];

    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?} (expected low, medium or high)"))
    }
}

// === impl Op ===

impl Op {
    /// `changed`, `added` or `removed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Changed => "changed",
            Op::Added => "added",
            Op::Removed => "removed",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The headline of a set of changes: the most severe change, ties broken by table order.
pub fn headline(changes: &[Change]) -> Option<(DriftType, Severity)> {
    changes
        .iter()
        .map(|c| (c.drift_type, c.severity))
        .min_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(t: DriftType, s: Severity) -> Change {
        Change {
            field: FieldPath::root(),
            op: Op::Changed,
            from: None,
            to: None,
            drift_type: t,
            severity: s,
            manager: None,
            changed_at: None,
            source_line: None,
        }
    }

    #[test]
    fn headline_is_most_severe_then_table_order() {
        let changes = vec![
            change(DriftType::LabelChange, Severity::Low),
            change(DriftType::Scaling, Severity::Medium),
            change(DriftType::ConfigurationChange, Severity::Medium),
        ];
        assert_eq!(
            headline(&changes),
            Some((DriftType::Scaling, Severity::Medium))
        );
        assert_eq!(headline(&[]), None);
    }

    #[test]
    fn serialises_with_contract_names() {
        let json = serde_json::to_value(change(DriftType::VersionChange, Severity::High)).unwrap();
        assert_eq!(json["type"], "VersionChange");
        assert_eq!(json["severity"], "high");
        assert_eq!(json["op"], "changed");
        assert_eq!(json["field"], "");
        assert!(json["manager"].is_null());
        assert!(json["source_line"].is_null());
    }

    #[test]
    fn source_line_is_an_integer_and_optional_when_read() {
        let mut with_line = change(DriftType::Scaling, Severity::Medium);
        with_line.source_line = Some(9);
        let json = serde_json::to_value(&with_line).unwrap();
        assert_eq!(json["source_line"], 9);
        // A change stored before changes carried lines still reads.
        let mut older = json.clone();
        older.as_object_mut().unwrap().remove("source_line");
        let read: Change = serde_json::from_value(older).unwrap();
        assert_eq!(read.source_line, None);
        assert_eq!(serde_json::from_value::<Change>(json).unwrap(), with_line);
    }
}

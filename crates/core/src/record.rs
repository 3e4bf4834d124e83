//! Drift records (contract §2) and episodes (one stretch of drift, §1).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{Change, DriftType, Severity};
use crate::warning::Warning;

/// The lifecycle state of a record (contract §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftStatus {
    /// Changes are present now.
    Active,
    /// Drifted before, matches Git now.
    Resolved,
    /// Never drifted (in this view).
    None,
}

impl DriftStatus {
    /// `active`, `resolved` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Active => "active",
            DriftStatus::Resolved => "resolved",
            DriftStatus::None => "none",
        }
    }
}

impl fmt::Display for DriftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DriftStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(DriftStatus::Active),
            "resolved" => Ok(DriftStatus::Resolved),
            "none" => Ok(DriftStatus::None),
            other => Err(format!(
                "unknown status {other:?} (expected active, resolved or none)"
            )),
        }
    }
}

/// The current verdict for one resource (contract §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRecord {
    /// UUIDv5 of the identity.
    pub id: Uuid,
    /// `Kind:namespace:name`.
    pub resource_id: String,
    /// Kind.
    pub kind: String,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// API version compared.
    pub api_version: String,
    /// True exactly when `drift_status` is `active`.
    pub drift_detected: bool,
    /// Lifecycle state.
    pub drift_status: DriftStatus,
    /// Current changes, sorted by field; empty when not active.
    pub drift_details: Vec<Change>,
    /// What Git asks for that the server will never store, and fields left out of the
    /// comparison (contract §9); never drift. `[]` when there are none.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Headline type; `None` when not active.
    pub drift_type: Option<DriftType>,
    /// Headline severity; `None` when not active.
    pub severity: Option<Severity>,
    /// Normalised desired object (Secret values digested).
    pub desired_state: Option<Value>,
    /// Normalised live object (Secret values digested).
    pub live_state: Option<Value>,
    /// Hash of the normalised desired object.
    pub last_known_good_hash: Option<String>,
    /// Hash of the normalised live object.
    pub live_hash: Option<String>,
    /// Commit the desired state came from.
    pub git_commit: Option<String>,
    /// `path#N` in the repository (`<chart>/templates/<file>#N` for a Helm release).
    pub source_path: Option<String>,
    /// 1-based line of the document in `source_path`'s file, when the file was read from Git as
    /// it is (not for Kustomize or Helm output).
    #[serde(default)]
    pub source_line: Option<usize>,
    /// The Helm release that rendered the resource's desired state (contract §9).
    #[serde(default)]
    pub helm_release: Option<String>,
    /// True when the resource is in Git.
    pub managed: bool,
    /// Start of the current or last episode.
    pub first_detected: Option<DateTime<Utc>>,
    /// When the last episode was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it was resolved.
    pub resolution_message: Option<String>,
    /// Last time the verdict changed.
    pub last_updated: DateTime<Utc>,
    /// First time the record was written.
    pub created_at: DateTime<Utc>,
}

/// One stretch of drift for one resource, from detection to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// When the drift was detected.
    pub first_detected: DateTime<Utc>,
    /// When it was resolved (`None` while active).
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it was resolved.
    pub resolution_message: Option<String>,
    /// Headline type of the episode's last set of changes (before resolution, for a closed one).
    pub drift_type: Option<DriftType>,
    /// Headline severity of that same set of changes.
    pub severity: Option<Severity>,
    /// The changes seen (the last set while active; the set seen before resolution after).
    pub changes: Vec<Change>,
    /// The commit the drift was measured against.
    pub git_commit: Option<String>,
}

impl Episode {
    /// Time to resolve, when resolved.
    pub fn duration(&self) -> Option<chrono::Duration> {
        self.resolved_at.map(|end| end - self.first_detected)
    }
}

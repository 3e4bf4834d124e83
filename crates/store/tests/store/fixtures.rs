//! Data builders shared by the contract tests and the benchmark.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftguard_core::state::{self, Observation, Transition};
use driftguard_core::{Change, DriftRecord, DriftType, FieldPath, Op, ResourceKey, Severity};
use driftguard_store::{Store, Write};
use serde_json::json;

pub const C1: &str = "3f2a9c1d0e5b6a7980112233445566778899aabb";
pub const C2: &str = "9be0d11f00112233445566778899aabbccddeeff";

/// A fixed instant with nanoseconds, to prove timestamps survive the round trip exactly.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 4, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::nanoseconds(123_456_789)
}

/// `t0` plus some minutes.
pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

pub fn key(kind: &str, namespace: &str, name: &str) -> ResourceKey {
    let group = match kind {
        "Deployment" | "StatefulSet" => "apps",
        "ClusterRole" | "Role" => "rbac.authorization.k8s.io",
        _ => "",
    };
    ResourceKey::new(group, kind, namespace, name)
}

pub fn change(field: &str, drift_type: DriftType, severity: Severity) -> Change {
    Change {
        field: FieldPath::parse(field).unwrap_or_else(|e| panic!("bad path {field}: {e}")),
        op: Op::Changed,
        from: Some(json!(2)),
        to: Some(json!(3)),
        drift_type,
        severity,
        manager: Some("kubectl-edit".into()),
        changed_at: Some(t0()),
        source_line: None,
    }
}

pub fn scaling() -> Change {
    change("spec.replicas", DriftType::Scaling, Severity::Medium)
}

pub fn image() -> Change {
    change(
        "spec.template.spec.containers[name=web].image",
        DriftType::VersionChange,
        Severity::High,
    )
}

pub fn label() -> Change {
    change(
        "metadata.labels.hotfix",
        DriftType::LabelChange,
        Severity::Low,
    )
}

pub fn observation(
    key: &ResourceKey,
    changes: Vec<Change>,
    desired: &str,
    live: &str,
    commit: &str,
) -> Observation {
    Observation {
        key: key.clone(),
        api_version: if key.group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{}/v1", key.group)
        },
        managed: true,
        changes,
        warnings: Vec::new(),
        desired_state: Some(json!({"kind": key.kind, "metadata": {"name": key.name,
            "labels": {"app.kubernetes.io/name": key.name}}, "spec": {"v": desired}})),
        live_state: Some(json!({"kind": key.kind, "metadata": {"name": key.name,
            "labels": {"app.kubernetes.io/name": key.name}}, "spec": {"v": live}})),
        desired_hash: Some(format!("sha256:{desired}")),
        live_hash: Some(format!("sha256:{live}")),
        git_commit: Some(commit.to_owned()),
        source_path: Some(format!("{}/{}.yaml#0", key.namespace, key.name)),
        source_line: None,
        helm_release: None,
        cause: None,
    }
}

/// Runs the state machine and writes the result the way the engine does (one batch).
pub async fn step(
    store: &Arc<dyn Store>,
    previous: Option<&DriftRecord>,
    obs: Observation,
    now: DateTime<Utc>,
) -> Transition {
    let t = state::advance(previous, obs, now);
    if t.changed {
        store
            .apply(&[Write::Upsert {
                record: t.record.clone(),
                episode: t.episode.clone(),
            }])
            .await
            .unwrap_or_else(|e| panic!("apply: {e:?}"));
    }
    t
}

/// Drifted → active at `start`; clean again (live reverted) at `end` when given.
pub async fn drift(
    store: &Arc<dyn Store>,
    key: &ResourceKey,
    changes: Vec<Change>,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
) -> DriftRecord {
    let clean = step(store, None, observation(key, vec![], "d1", "l1", C1), start).await;
    let active = step(
        store,
        Some(&clean.record),
        observation(key, changes, "d1", "l2", C1),
        start,
    )
    .await;
    match end {
        None => active.record,
        Some(end) => {
            step(
                store,
                Some(&active.record),
                observation(key, vec![], "d1", "l1", C1),
                end,
            )
            .await
            .record
        }
    }
}

//! The analyzer's unit tests.
#![allow(clippy::unwrap_used)]
use super::*;
use driftguard_core::{DriftType, Source};
use serde_json::json;

fn desired(replicas: u64) -> DesiredObject {
    let object = json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","namespace":"ns"},"spec":{"replicas":replicas}});
    DesiredObject::new(
        ResourceKey::from_api_version("apps/v1", "Deployment", "ns", "web"),
        "apps/v1".into(),
        object,
        Source {
            commit: "c0ffee0000".into(),
            path: "web.yaml".into(),
            doc_index: 0,
            line: Some(1),
            helm_release: None,
        },
    )
}

fn live(replicas: u64) -> LiveObject {
    LiveObject::from_api(
        ResourceKey::from_api_version("apps/v1", "Deployment", "ns", "web"),
        "apps/v1".into(),
        json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"ns"},"spec":{"replicas":replicas}}),
    )
}

#[test]
fn drift_is_detected_continued_and_resolved_with_one_write_each() {
    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let key = desired(2).key.clone();
    let t0 = Utc::now();
    let first = a.evaluate(
        &key,
        Some(&desired(2)),
        Some(&live(2)),
        Some("c0ffee0000"),
        t0,
    );
    assert!(first.write.is_some(), "the first verdict is written");
    assert_eq!(
        first.record.as_ref().unwrap().drift_status,
        DriftStatus::None
    );
    let same = a.evaluate(
        &key,
        Some(&desired(2)),
        Some(&live(2)),
        Some("c0ffee0000"),
        t0,
    );
    assert!(
        same.write.is_none(),
        "an unchanged verdict is not rewritten"
    );

    let drifted = a.evaluate(
        &key,
        Some(&desired(2)),
        Some(&live(3)),
        Some("c0ffee0000"),
        t0,
    );
    assert_eq!(drifted.event, Some(Event::Detected));
    let record = drifted.record.unwrap();
    assert_eq!(record.drift_type, Some(DriftType::Scaling));
    assert_eq!(record.drift_details[0].field.to_string(), "spec.replicas");

    let resolved = a.evaluate(
        &key,
        Some(&desired(2)),
        Some(&live(2)),
        Some("c0ffee0000"),
        t0,
    );
    assert_eq!(resolved.event, Some(Event::Resolved));
    let record = resolved.record.unwrap();
    assert_eq!(record.drift_status, DriftStatus::Resolved);
    assert_eq!(
        record.resolution_message.as_deref(),
        Some("live state matches Git again at commit c0ffee0")
    );
}

#[test]
fn memory_keeps_no_states_and_forced_writes_carry_them() {
    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let key = desired(2).key.clone();
    let now = Utc::now();
    let first = a.evaluate(&key, Some(&desired(2)), Some(&live(2)), Some("c"), now);
    let Some(Write::Upsert { record, .. }) = first.write else {
        panic!("first verdict is written")
    };
    assert!(
        record.desired_state.is_some() && record.live_state.is_some(),
        "the store gets the states"
    );
    assert!(
        a.record(&key.resource_id())
            .unwrap()
            .desired_state
            .is_none(),
        "memory does not"
    );
    assert!(
        a.evaluate(&key, Some(&desired(2)), Some(&live(2)), Some("c"), now)
            .write
            .is_none()
    );
    a.set_force_writes(true);
    let forced = a.evaluate(&key, Some(&desired(2)), Some(&live(2)), Some("c"), now);
    let Some(Write::Upsert { record, episode }) = forced.write else {
        panic!("forced write")
    };
    assert!(record.desired_state.is_some() && record.live_state.is_some());
    assert!(episode.is_none());
    assert!(
        forced.record.unwrap().desired_state.is_none(),
        "the outcome's record is for logs and metrics: no states"
    );
}

#[test]
fn missing_and_gone_from_both() {
    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let key = desired(2).key.clone();
    let now = Utc::now();
    let missing = a.evaluate(&key, Some(&desired(2)), None, Some("c"), now);
    assert_eq!(
        missing.record.unwrap().drift_type,
        Some(DriftType::MissingResource)
    );
    let gone = a.evaluate(&key, None, None, Some("d"), now);
    assert!(matches!(
        gone.write,
        Some(Write::Remove {
            closing_episode: Some(_),
            ..
        })
    ));
    assert!(a.record(&key.resource_id()).is_none());
}

#[test]
fn removed_from_git_resolves_an_active_drift() {
    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let key = desired(2).key.clone();
    let now = Utc::now();
    a.evaluate(
        &key,
        Some(&desired(2)),
        Some(&live(5)),
        Some("aaaaaaa1"),
        now,
    );
    let out = a.evaluate(&key, None, Some(&live(5)), Some("bbbbbbb2"), now);
    let record = out.record.unwrap();
    assert_eq!(record.drift_status, DriftStatus::Resolved);
    assert!(!record.managed);
    assert_eq!(
        record.resolution_message.as_deref(),
        Some("resource removed from Git at commit bbbbbbb")
    );
}

fn cluster_role() -> (ResourceKey, DesiredObject, LiveObject) {
    let key =
        ResourceKey::from_api_version("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader");
    let object = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
        "metadata":{"name":"reader"},"rules":[]});
    let d = DesiredObject::new(
        key.clone(),
        "rbac.authorization.k8s.io/v1".into(),
        object.clone(),
        Source {
            commit: "aaaaaaa1".into(),
            path: "rbac.yaml".into(),
            doc_index: 1,
            line: Some(1),
            helm_release: None,
        },
    );
    let l = LiveObject::from_api(key.clone(), "rbac.authorization.k8s.io/v1".into(), object);
    (key, d, l)
}

#[test]
fn cluster_scoped_orphans_of_git_stay_reported_and_others_never_are() {
    let mut a = Analyzer::new(EngineConfig::default(), true, Vec::new());
    let now = Utc::now();
    let (key, d, l) = cluster_role();
    // Never in Git, no selector: not claimed, no record.
    let out = a.evaluate(&key, None, Some(&l), Some("aaaaaaa1"), now);
    assert!(out.write.is_none() && out.record.is_none());

    // In Git, then removed from it: an UnmanagedResource that remembers its source.
    a.evaluate(&key, Some(&d), Some(&l), Some("aaaaaaa1"), now);
    let orphan = a
        .evaluate(&key, None, Some(&l), Some("bbbbbbb2"), now)
        .record
        .unwrap();
    assert_eq!(orphan.drift_type, Some(DriftType::UnmanagedResource));
    assert!(!orphan.managed);
    assert_eq!(orphan.source_path.as_deref(), Some("rbac.yaml#1"));
    // Evaluated again (a live event, a full analysis, a restart from the store): still ours.
    let again = a.evaluate(&key, None, Some(&l), Some("bbbbbbb2"), now);
    assert!(again.write.is_none(), "an unchanged verdict");
    assert_eq!(
        again.record.unwrap().drift_type,
        Some(DriftType::UnmanagedResource)
    );
    let stored: Vec<DriftRecord> = a.records().cloned().collect();
    let mut restarted = Analyzer::new(EngineConfig::default(), true, stored);
    let after = restarted.evaluate(&key, None, Some(&l), Some("bbbbbbb2"), now);
    assert!(after.write.is_none());
    assert_eq!(after.record.unwrap().drift_status, DriftStatus::Active);
}

#[test]
fn unclaimed_unmanaged_records_from_before_leave_the_view() {
    let now = Utc::now();
    let key = ResourceKey::from_api_version("v1", "Namespace", "", "someone-elses");
    let l = LiveObject::from_api(
        key.clone(),
        "v1".into(),
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"someone-elses"}}),
    );
    // A flood record stored before claims existed: active, unmanaged, no source.
    let mut a = Analyzer::new(EngineConfig::default(), true, Vec::new());
    a.report_unmanaged = true;
    a.claim = Claim::new(
        driftguard_kube::WatchScope::all().with_labels("x=y"),
        crate::selector::Selector::parse("x=y").unwrap(),
        "x=y",
    );
    let labelled = LiveObject::from_api(
        key.clone(),
        "v1".into(),
        json!({"apiVersion":"v1","kind":"Namespace",
            "metadata":{"name":"someone-elses","labels":{"x":"y"}}}),
    );
    let flood = a
        .evaluate(&key, None, Some(&labelled), Some("c"), now)
        .record
        .unwrap();
    assert!(flood.source_path.is_none());
    let stored: Vec<DriftRecord> = a.records().cloned().collect();
    let mut b = Analyzer::new(EngineConfig::default(), true, stored);
    let out = b.evaluate(&key, None, Some(&l), Some("c"), now);
    let Some(Write::Remove {
        closing_episode: Some(episode),
        ..
    }) = out.write
    else {
        panic!("the unclaimed record is removed with its episode closed: {out:?}")
    };
    assert!(episode.resolved_at.is_some());
    assert!(b.record(&key.resource_id()).is_none());
}

#[test]
fn a_scaled_deployment_links_spec_replicas_to_the_line_of_replicas_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "# the web tier\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: ns\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";
    std::fs::write(dir.path().join("web.yaml"), text).unwrap();
    let options = driftguard_git::ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        driftguard_core::SecretHasher::new(vec![7; 32]),
    )
    .unwrap();
    let snapshot = driftguard_git::load_local(dir.path(), &options, None).unwrap();
    let key = ResourceKey::from_api_version("apps/v1", "Deployment", "ns", "web");
    let desired = snapshot.get(&key).unwrap();
    let mut object = desired.object.value();
    object["spec"]["replicas"] = json!(3);
    object["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    let live = LiveObject::from_api(key.clone(), "apps/v1".into(), object);

    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let out = a.evaluate_with_lines(
        &key,
        Some(desired),
        Some(&live),
        None,
        Utc::now(),
        &snapshot,
    );
    let record = out.record.unwrap();
    assert_eq!(
        record.source_line,
        Some(3),
        "the document starts after `---`"
    );
    let lines: Vec<(String, Option<usize>)> = record
        .drift_details
        .iter()
        .map(|c| (c.field.to_string(), c.source_line))
        .collect();
    assert_eq!(
        lines,
        [
            ("spec.replicas".to_owned(), Some(9)),
            (
                "spec.template.spec.containers[name=web].image".to_owned(),
                Some(14)
            ),
        ]
    );
    let Some(Write::Upsert {
        record: written, ..
    }) = out.write
    else {
        panic!("the verdict is written");
    };
    assert_eq!(written.drift_details, record.drift_details);
    let json = serde_json::to_value(&written).unwrap();
    assert_eq!(json["drift_details"][0]["source_line"], 9);

    // Without a snapshot (the plain entry point), no line is claimed.
    let mut b = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let plain = b.evaluate(&key, Some(desired), Some(&live), None, Utc::now());
    assert!(
        plain
            .record
            .unwrap()
            .drift_details
            .iter()
            .all(|c| c.source_line.is_none())
    );
}

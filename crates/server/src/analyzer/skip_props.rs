//! Passing over unchanged evaluations never hides a change: an analyzer that skips evaluations
//! whose [`Inputs`] it remembers gives, after every step of any sequence of changes to any
//! input, the same writes, events and records as one that evaluates everything. And the tally
//! behind the records gauge is always a recount of the records.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, TimeZone};
use driftguard_core::{IgnoreRule, Source, Warning};
use proptest::prelude::*;
use serde_json::json;

use super::*;

const KEYS: usize = 2;
const COMMITS: [&str; 3] = ["c0ffee0000", "beef000000", ""];

fn key(k: usize) -> ResourceKey {
    ResourceKey::from_api_version("apps/v1", "Deployment", "ns", format!("web{k}"))
}

/// A desired object of key `k` in one of five variants: two of them hold the same object at
/// another line or file, one carries a warning.
fn desired(k: usize, variant: u8, commit: &str) -> DesiredObject {
    let mut object = json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":format!("web{k}"),"namespace":"ns"},"spec":{"replicas":2}});
    let (mut path, mut line) = ("web.yaml", Some(1));
    match variant {
        1 => object["spec"]["replicas"] = json!(3),
        2 => line = Some(5),
        3 => path = "apps/web.yaml",
        _ => {}
    }
    let mut d = DesiredObject::new(
        key(k),
        "apps/v1".into(),
        object,
        Source {
            commit: commit.into(),
            path: path.into(),
            doc_index: 0,
            line,
            helm_release: None,
        },
    );
    if variant == 4 {
        d.warnings.push(Warning {
            field: FieldPath::parse("spec.replicas").unwrap(),
            code: "duplicate-key".into(),
            message: "replicas is set twice; the last value is kept".into(),
        });
    }
    d
}

/// A live object of key `k` in one of four variants, at `version` (the API server gives every
/// write a new one).
fn live(k: usize, variant: u8, version: u64) -> LiveObject {
    let mut object = json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":format!("web{k}"),"namespace":"ns",
            "resourceVersion": version.to_string()},
        "spec":{"replicas":2}});
    match variant {
        1 => object["spec"]["replicas"] = json!(3),
        2 => object["metadata"]["labels"] = json!({"hotfix": "true"}),
        3 => {
            object["spec"]["replicas"] = json!(3);
            object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update",
                "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        }
        _ => {}
    }
    LiveObject::from_api(key(k), "apps/v1".into(), object)
}

fn engine(ignore_replicas: bool) -> EngineConfig {
    let mut engine = EngineConfig::default();
    if ignore_replicas {
        engine
            .ignore
            .push(IgnoreRule::parse(None, None, None, &["spec.replicas"], Vec::new()).unwrap());
    }
    engine
}

#[derive(Debug, Clone)]
enum Step {
    Desired(usize, Option<u8>),
    Live(usize, Option<u8>),
    Commit(usize),
    Engine(bool),
    Force(bool),
    Evaluate(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..KEYS, proptest::option::of(0u8..5)).prop_map(|(k, v)| Step::Desired(k, v)),
        1 => (0..KEYS, proptest::option::of(0u8..4)).prop_map(|(k, v)| Step::Live(k, v)),
        1 => (0..COMMITS.len()).prop_map(Step::Commit),
        1 => any::<bool>().prop_map(Step::Engine),
        1 => any::<bool>().prop_map(Step::Force),
        // Evaluations are half the steps: most of them repeat inputs, which is what is skipped.
        4 => (0..KEYS).prop_map(Step::Evaluate),
    ]
}

fn records(a: &Analyzer) -> Vec<String> {
    let mut out: Vec<String> = a
        .records()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_skipped_evaluation_never_hides_a_change(steps in proptest::collection::vec(step(), 1..60)) {
        let mut plain = Analyzer::new(EngineConfig::default(), true, Vec::new());
        let mut skipping = Analyzer::new(EngineConfig::default(), true, Vec::new());
        let mut desired_variant: [Option<u8>; KEYS] = [Some(0); KEYS];
        let mut live_state: [Option<(u8, u64)>; KEYS] = [Some((0, 1)); KEYS];
        let mut version = 1u64;
        let mut commit = 0usize;
        let mut previous: Option<(usize, Inputs)> = None;
        let mut force = false;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let now = t0 + Duration::seconds(i as i64);
            if !matches!(step, Step::Evaluate(_)) {
                previous = None;
            }
            match *step {
                Step::Desired(k, v) => desired_variant[k] = v,
                Step::Live(k, v) => {
                    version += 1;
                    live_state[k] = v.map(|v| (v, version));
                }
                Step::Commit(c) => commit = c,
                Step::Engine(on) => {
                    plain.set_engine(engine(on));
                    skipping.set_engine(engine(on));
                }
                Step::Force(on) => {
                    force = on;
                    plain.set_force_writes(on);
                    skipping.set_force_writes(on);
                }
                Step::Evaluate(k) => {
                    let c = COMMITS[commit];
                    let d = desired_variant[k].map(|v| desired(k, v, c));
                    let l = live_state[k].map(|(v, rv)| live(k, v, rv));
                    let commit = Some(c).filter(|c| !c.is_empty());
                    let expected = plain.evaluate(&key(k), d.as_ref(), l.as_ref(), commit, now);
                    let version = live_state[k].map(|(_, rv)| rv.to_string());
                    let inputs = Inputs::of(&key(k), d.as_ref(), version.as_deref(), commit);
                    // Not a vacuous property: the same present inputs twice in a row, nothing
                    // forcing writes, are skipped.
                    let present = d.is_some() || l.is_some();
                    if previous == Some((k, inputs)) && present && !force {
                        prop_assert!(skipping.unchanged(&key(k), inputs), "a repeat was evaluated (step {})", i);
                    }
                    previous = Some((k, inputs));
                    if skipping.unchanged(&key(k), inputs) {
                        prop_assert_eq!(&expected.write, &None, "a skipped evaluation would have written (step {})", i);
                        prop_assert_eq!(expected.event, None, "a skipped evaluation had an event (step {})", i);
                    } else {
                        let got = skipping.evaluate(&key(k), d.as_ref(), l.as_ref(), commit, now);
                        skipping.remember(&key(k), inputs, present);
                        prop_assert_eq!(&got.write, &expected.write, "step {}", i);
                        prop_assert_eq!(got.event, expected.event, "step {}", i);
                    }
                }
            }
            prop_assert_eq!(records(&skipping), records(&plain), "records after step {} ({:?})", i, step);
            // The tally behind the records gauge is a recount of the records, whatever happened.
            for a in [&plain, &skipping] {
                let mut recount: HashMap<RecordLabels, i64> = HashMap::new();
                for r in a.records() {
                    *recount.entry(labels_of(r)).or_default() += 1;
                }
                let tally: HashMap<RecordLabels, i64> = a.tally().map(|(l, n)| (l.clone(), n)).collect();
                prop_assert_eq!(&tally, &recount, "tally after step {}", i);
                let active = a.records().filter(|r| r.drift_status == DriftStatus::Active).count() as u64;
                prop_assert_eq!(a.active(), active);
            }
        }
    }
}

#[test]
fn the_same_inputs_are_skipped_and_any_changed_input_is_not() {
    let mut a = Analyzer::new(EngineConfig::default(), false, Vec::new());
    let k = key(0);
    let c = Some("c0ffee0000");
    let d = desired(0, 0, "c0ffee0000");
    let inputs =
        |d: &DesiredObject, version: &str, commit| Inputs::of(&k, Some(d), Some(version), commit);
    let first = inputs(&d, "7", c);
    assert!(
        !a.unchanged(&k, first),
        "nothing is remembered before an evaluation"
    );
    a.evaluate(&k, Some(&d), Some(&live(0, 1, 7)), c, Utc::now());
    a.remember(&k, first, true);
    assert!(a.unchanged(&k, first));
    assert_eq!(a.remembered(), 1);
    // Each input on its own.
    assert!(!a.unchanged(&k, inputs(&d, "8", c)), "live object written");
    assert!(
        !a.unchanged(&k, inputs(&d, "7", Some("beef000000"))),
        "commit"
    );
    assert!(
        !a.unchanged(&k, inputs(&desired(0, 1, "c0ffee0000"), "7", c)),
        "desired object"
    );
    assert!(
        !a.unchanged(&k, inputs(&desired(0, 2, "c0ffee0000"), "7", c)),
        "line in Git"
    );
    assert!(
        !a.unchanged(&k, inputs(&desired(0, 4, "c0ffee0000"), "7", c)),
        "warnings"
    );
    assert!(
        !a.unchanged(&k, Inputs::of(&k, None, Some("7"), c)),
        "removed from Git"
    );
    assert!(
        !a.unchanged(&k, Inputs::of(&k, Some(&d), None, c)),
        "deleted from the cluster"
    );
    assert!(
        !a.unchanged(
            &key(1),
            Inputs::of(&key(1), Some(&desired(1, 0, "c0ffee0000")), Some("7"), c)
        ),
        "another resource"
    );
    // Forced writes and a new engine configuration evaluate everything again.
    a.set_force_writes(true);
    assert!(!a.unchanged(&k, first));
    a.set_force_writes(false);
    assert!(a.unchanged(&k, first));
    a.set_engine(engine(true));
    assert!(!a.unchanged(&k, first));
    assert_eq!(a.remembered(), 0);
    // Gone from both sides: forgotten.
    a.remember(&k, first, true);
    a.remember(&k, Inputs::of(&k, None, None, c), false);
    assert_eq!(a.remembered(), 0);
}

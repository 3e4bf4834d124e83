//! `drift_detection.redact`: both entry forms load from the file and the environment, become the
//! core's rules, and a bad entry is an error naming the key, the entry's index and the origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use driftguard_config::{LoadOptions, Origin, RedactRuleConfig, load};
use driftguard_core::SecretHasher;
use serde_json::json;

const ENV_VAR: &str = "DRIFTGUARD_DRIFT_DETECTION__REDACT";

fn options(file: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        file,
        search_dir: Some(PathBuf::from("/nonexistent-driftguard-dir")),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    }
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("driftguard.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn redact_entries_load_in_both_forms_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "drift_detection:\n  redact:\n    - spec.template.spec.containers[*].env[name=*PASSWORD*].value\n    - kind: ConfigMap\n      paths: [data.password, 'data[\"db.url\"]']\n",
    );
    let loaded = load(&options(Some(path.clone()), &[])).unwrap();
    let redact = &loaded.config.drift_detection.redact;
    assert_eq!(
        redact[0],
        RedactRuleConfig::Path(
            "spec.template.spec.containers[*].env[name=*PASSWORD*].value".into()
        )
    );
    assert_eq!(
        redact[1],
        RedactRuleConfig::Rule {
            kind: Some("ConfigMap".into()),
            paths: vec!["data.password".into(), "data[\"db.url\"]".into()],
        }
    );
    assert_eq!(loaded.origin("drift_detection.redact"), Origin::File(path));

    let rules = loaded.config.drift_detection.redact_rules().unwrap();
    assert_eq!(rules.rules().len(), 2);
    let hasher = SecretHasher::new(vec![3u8; 32]).with_redact_rules(rules);
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"password": "hunter2", "db.url": "postgres://u:p@db", "mode": "fast"}});
    hasher.redact(&mut cm);
    assert_eq!(cm["data"]["password"], hasher.digest(b"hunter2"));
    assert_eq!(cm["data"]["db.url"], hasher.digest(b"postgres://u:p@db"));
    assert_eq!(cm["data"]["mode"], "fast");
}

#[test]
fn redact_from_the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "drift_detection:\n  redact: [data.password]\n");
    let loaded = load(&options(
        Some(path),
        &[(
            ENV_VAR,
            "[{kind: Deployment, paths: ['spec.template.spec.containers[*].env[*].value']}]",
        )],
    ))
    .unwrap();
    assert_eq!(
        loaded.config.drift_detection.redact,
        vec![RedactRuleConfig::Rule {
            kind: Some("Deployment".into()),
            paths: vec!["spec.template.spec.containers[*].env[*].value".into()],
        }]
    );
    assert_eq!(
        loaded.origin("drift_detection.redact"),
        Origin::Env(ENV_VAR.into())
    );
    // Absent: no rules, only Secrets are digested.
    let none = load(&options(None, &[])).unwrap();
    assert!(none.config.drift_detection.redact.is_empty());
    assert!(
        none.config
            .drift_detection
            .redact_rules()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_redact_entries_name_the_key_the_index_and_the_origin() {
    for (text, needles) in [
        (
            "drift_detection:\n  redact: [data.password, 'spec..x']\n",
            &["drift_detection.redact[1]", "invalid field path", "spec..x"][..],
        ),
        (
            "drift_detection:\n  redact: [data.a, data.b, {kind: ConfigMap, paths: ['data[']}]\n",
            &["drift_detection.redact[2]", "invalid field path"][..],
        ),
        (
            "drift_detection:\n  redact: [{kind: '[', paths: [data.a]}]\n",
            &["drift_detection.redact[0]", "kind glob"][..],
        ),
        (
            "drift_detection:\n  redact: [{kind: ConfigMap}]\n",
            &["drift_detection.redact[0]", "no paths"][..],
        ),
        (
            "drift_detection:\n  redact: ['']\n",
            &["drift_detection.redact[0]", "whole object"][..],
        ),
        (
            "drift_detection:\n  redact: [{kind: ConfigMap, paths: [data.a], name: x}]\n",
            &["drift_detection.redact", "name"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, text);
        let err = load(&options(Some(path.clone()), &[]))
            .expect_err(text)
            .to_string();
        for needle in needles {
            assert!(err.contains(needle), "{text}: {err:?} lacks {needle:?}");
        }
        assert!(err.contains(&path.display().to_string()), "{text}: {err}");
    }

    let err = load(&options(None, &[(ENV_VAR, "['a[name=x']")]))
        .expect_err("bad pattern from the environment")
        .to_string();
    assert!(err.contains("drift_detection.redact[0]"), "{err}");
    assert!(err.contains(ENV_VAR), "{err}");
}

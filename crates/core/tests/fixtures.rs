//! Data-driven engine tests: every directory under `tests/fixtures/` is one case.
//!
//! - `desired.yaml`: the Git manifest (absent in `unmanaged` mode);
//! - `live.yaml`: the object as the API server returns it, with `managedFields`, `status` and the
//!   last-applied annotation (absent in `missing` mode);
//! - `expected.yaml`: `changes:` — the exact list (field, op, from, to, type, severity, manager,
//!   and `changed_at` when given) — and optionally `ignored:` (default 0) and `warnings:`
//!   (`{field, code}` of each warning; default none). A string
//!   `hmac-of:<text>` stands for the Secret digest of `<text>`;
//! - `case.yaml` (optional): `mode: compare | missing | unmanaged` and `ignore:` rules
//!   (`{kind, namespace, name, paths, managers}`).
//!
//! Both objects go through the Secret redaction the edges apply, then `LiveObject::from_api`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use driftguard_core::engine::{EngineConfig, IgnoreRule, compare, missing, normalize, unmanaged};
use driftguard_core::{DesiredObject, LiveObject, ResourceKey, SecretHasher, Source};
use driftguard_yaml::{Limits, parse_documents};
use serde_json::{Map, Value, json};

const KEY: &[u8] = b"fixture-key-fixture-key-fixture!";

/// A fixture file's (first) document, read as DriftGuard reads manifests (kubectl's rules).
fn read_yaml(path: &Path) -> Option<Value> {
    let text = fs::read_to_string(path).ok()?;
    let documents = parse_documents(&text, &Limits::default())
        .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), e.line.unwrap_or(0)));
    Some(
        documents
            .into_iter()
            .next()
            .map_or(Value::Null, |document| document.value),
    )
}

fn key_of(object: &Value) -> ResourceKey {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    ResourceKey::from_api_version(
        &s("/apiVersion"),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

fn desired_of(mut object: Value) -> DesiredObject {
    SecretHasher::new(KEY.to_vec()).redact(&mut object);
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_owned();
    let source = Source {
        commit: "0".repeat(40),
        path: "fixture.yaml".into(),
        doc_index: 0,
        line: None,
        helm_release: None,
    };
    DesiredObject::new(key_of(&object), api_version, object, source)
}

fn live_of(mut object: Value) -> LiveObject {
    SecretHasher::new(KEY.to_vec()).redact(&mut object);
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_owned();
    LiveObject::from_api(key_of(&object), api_version, object)
}

fn config_of(case: Option<&Value>) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    let Some(rules) = case.and_then(|c| c.get("ignore")).and_then(Value::as_array) else {
        return cfg;
    };
    for rule in rules {
        let text = |k: &str| rule.get(k).and_then(Value::as_str).map(str::to_owned);
        let list = |k: &str| -> Vec<String> {
            rule.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        cfg.ignore.push(
            IgnoreRule::parse(
                text("kind"),
                text("namespace"),
                text("name"),
                &list("paths"),
                list("managers"),
            )
            .unwrap(),
        );
    }
    cfg
}

/// Replaces `hmac-of:<text>` by the digest of `<text>`.
fn resolve_digests(value: &mut Value, hasher: &SecretHasher) {
    match value {
        Value::String(s) => {
            if let Some(plain) = s.strip_prefix("hmac-of:") {
                *s = hasher.digest(plain.as_bytes());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_digests(v, hasher)),
        Value::Object(map) => map.values_mut().for_each(|v| resolve_digests(v, hasher)),
        _ => {}
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let case = read_yaml(&dir.join("case.yaml"));
    let expected = read_yaml(&dir.join("expected.yaml")).ok_or("missing expected.yaml")?;
    let cfg = config_of(case.as_ref());
    let mode = case
        .as_ref()
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("compare");
    let desired_raw = read_yaml(&dir.join("desired.yaml"));
    let live_raw = read_yaml(&dir.join("live.yaml"));
    let desired = desired_raw.clone().map(desired_of);
    let live = live_raw.clone().map(live_of);
    let result = match (mode, &desired, &live) {
        ("compare", Some(d), Some(l)) => compare(d, l, &cfg),
        ("missing", Some(d), None) => missing(d, &cfg),
        ("unmanaged", None, Some(l)) => unmanaged(l, &cfg),
        (mode, d, l) => {
            return Err(format!(
                "mode {mode} needs other files (desired: {}, live: {})",
                d.is_some(),
                l.is_some()
            ));
        }
    };

    let hasher = SecretHasher::new(KEY.to_vec());
    let mut want: Vec<Value> = expected
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .ok_or("expected.yaml needs a `changes:` list")?;
    want.iter_mut().for_each(|v| resolve_digests(v, &hasher));
    let got: Vec<Value> = result
        .changes
        .iter()
        .zip(want.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(change, w)| {
            let full = serde_json::to_value(change).unwrap();
            let mut shown = Map::new();
            for k in ["field", "op", "from", "to", "type", "severity", "manager"] {
                shown.insert(k.into(), full[k].clone());
            }
            if w.is_some_and(|w| w.get("changed_at").is_some()) {
                shown.insert("changed_at".into(), full["changed_at"].clone());
            }
            Value::Object(shown)
        })
        .collect();
    let want: Vec<Value> = want
        .into_iter()
        .map(|w| {
            let mut shown = Map::new();
            for k in ["field", "op", "from", "to", "type", "severity", "manager"] {
                shown.insert(k.into(), w.get(k).cloned().unwrap_or(Value::Null));
            }
            if let Some(at) = w.get("changed_at") {
                shown.insert("changed_at".into(), at.clone());
            }
            Value::Object(shown)
        })
        .collect();
    let mut problems = Vec::new();
    if got != want {
        problems.push(format!(
            "changes differ\n  expected: {}\n  actual:   {}",
            serde_json::to_string_pretty(&want).unwrap_or_default(),
            serde_json::to_string_pretty(&got).unwrap_or_default()
        ));
    }
    // Warnings (contract §9): `warnings:` lists `{field, code}`; absent means none.
    let want_warnings: Vec<Value> = expected
        .get("warnings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let got_warnings: Vec<Value> = result
        .warnings
        .iter()
        .map(|w| json!({"field": w.field.to_string(), "code": w.code}))
        .collect();
    if got_warnings != want_warnings {
        problems.push(format!(
            "warnings differ\n  expected: {}\n  actual:   {}",
            serde_json::to_string(&want_warnings).unwrap_or_default(),
            serde_json::to_string(&got_warnings).unwrap_or_default()
        ));
    }
    let want_ignored = expected.get("ignored").and_then(Value::as_u64).unwrap_or(0);
    if result.ignored as u64 != want_ignored {
        problems.push(format!(
            "ignored: expected {want_ignored}, got {}",
            result.ignored
        ));
    }
    // Invariants of every comparison: the hashes are those of the objects normalised on the
    // spot (preparation where objects enter changes nothing), and the normalised objects keep
    // neither managedFields nor the last-applied annotation.
    let fresh = |raw: Option<Value>| {
        raw.map(|mut v| {
            hasher.redact(&mut v);
            normalize(&v)
        })
    };
    let desired_state = desired.as_ref().map(|d| d.state.value());
    for (side, state, fresh, hash) in [
        (
            "desired",
            desired_state.as_ref(),
            fresh(desired_raw),
            &result.desired_hash,
        ),
        (
            "live",
            live.as_ref().map(|l| &l.object),
            fresh(live_raw),
            &result.live_hash,
        ),
    ] {
        let (Some(state), Some(fresh)) = (state, fresh) else {
            if !hash.is_empty() {
                problems.push(format!("{side}: a hash without a {side} object"));
            }
            continue;
        };
        if state != &fresh {
            problems.push(format!(
                "{side}: the prepared state is not the object normalised"
            ));
        }
        if hash != &driftguard_core::canonical::content_hash(&fresh) {
            problems.push(format!(
                "{side}: hash is not the content hash of the normalised state"
            ));
        }
        let text = state.to_string();
        if text.contains("managedFields") || text.contains("last-applied-configuration") {
            problems
                .push("normalised state keeps managedFields or the last-applied annotation".into());
        }
    }
    let mut sorted = result.changes.clone();
    sorted.sort_by(|a, b| a.field.cmp(&b.field));
    if sorted
        .iter()
        .map(|c| &c.field)
        .ne(result.changes.iter().map(|c| &c.field))
    {
        problems.push("changes are not sorted by field".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn fixtures() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 60, "only {} fixture cases", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            run_case(dir).err().map(|e| {
                format!(
                    "--- {}\n{e}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixture cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn fixture_secret_values_never_leak() {
    // The Secret cases' plain values must not appear anywhere in the comparison.
    for dir in case_dirs()
        .iter()
        .filter(|d| d.to_string_lossy().contains("secret"))
    {
        let desired = read_yaml(&dir.join("desired.yaml")).map(desired_of);
        let live = read_yaml(&dir.join("live.yaml")).map(live_of);
        if let (Some(d), Some(l)) = (desired, live)
            && d.key.kind == "Secret"
        {
            let result = compare(&d, &l, &EngineConfig::default());
            let text = json!([
                result.changes,
                d.state.value(),
                d.object.value(),
                l.object,
                l.last_applied
            ])
            .to_string();
            for canary in ["s3cret", "hunter2", "czNjcmV0", "aHVudGVyMg=="] {
                assert!(!text.contains(canary), "{}: {canary} leaked", dir.display());
            }
        }
    }
}

/// Two renders of a chart that generates a password and stamps a checksum of it: only those
/// fields differ, they are left out of the comparison with a `non-deterministic` warning, and a
/// live object holding a third password (applied from yet another render) shows no drift —
/// while a real change elsewhere still does.
#[test]
fn fields_two_renders_disagree_on_are_not_compared() {
    let render = |password: &str, checksum: &str| {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "n"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"},
                                          "annotations": {"checksum/secret": checksum}},
                    "spec": {"containers": [{"name": "web", "image": "web:1",
                        "env": [{"name": "MODE", "value": "prod"},
                                {"name": "TOKEN", "value": password}]}]}}}
        });
        DesiredObject::new(
            ResourceKey::from_api_version("apps/v1", "Deployment", "n", "web"),
            "apps/v1".into(),
            object,
            Source {
                commit: String::new(),
                path: "web/templates/deployment.yaml".into(),
                doc_index: 0,
                line: None,
                helm_release: Some("web".into()),
            },
        )
    };
    let (first, second) = (render("aaaa", "c1"), render("bbbb", "c2"));
    let fields: Vec<String> = first
        .differing_fields(&second)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.template.metadata.annotations[\"checksum/secret\"]",
            "spec.template.spec.containers[name=web].env[name=TOKEN].value",
        ]
    );
    assert!(first.differing_fields(&render("aaaa", "c1")).is_empty());
    let desired = first.clone().with_unstable(first.differing_fields(&second));
    assert_eq!(
        desired
            .warnings
            .iter()
            .filter(|w| w.code == "non-deterministic")
            .count(),
        2
    );
    let live = |password: &str, replicas: u64| {
        let mut object = render(password, "c3").object.value();
        object["spec"]["replicas"] = json!(replicas);
        LiveObject::from_api(desired.key.clone(), "apps/v1".into(), object)
    };
    let cfg = EngineConfig::default();
    let quiet = compare(&desired, &live("cccc", 2), &cfg);
    assert!(quiet.changes.is_empty(), "{:?}", quiet.changes);
    assert_eq!(quiet.warnings.len(), 2);
    let scaled = compare(&desired, &live("cccc", 5), &cfg);
    let changed: Vec<String> = scaled.changes.iter().map(|c| c.field.to_string()).collect();
    assert_eq!(changed, ["spec.replicas"]);
}

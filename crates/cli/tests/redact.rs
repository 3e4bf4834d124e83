//! `drift_detection.redact` against the real control plane (`DRIFTGUARD_TEST_KUBECONFIG`): a
//! password in a Deployment's environment (and one in a ConfigMap) is digested on both sides,
//! so a live change is reported as drift between two digests and the clear value appears nowhere
//! — not in `check`'s output, not in `serve`'s API, log or SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);
const DIGEST_PREFIX: &str = "hmac-sha256:";
const ENV_FIELD: &str = "spec.template.spec.containers[name=api].env[name=DB_PASSWORD].value";

const REDACT: &str = "drift_detection:\n  redact:\n    - spec.template.spec.containers[*].env[name=*PASSWORD*].value\n    - kind: ConfigMap\n      paths: [data.password]\n";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

/// A value no other test and no fixture can contain.
fn canary(prefix: &str) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{prefix}-{:016x}", h.finish())
}

fn manifests(ns: &str, password: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n    spec:\n      containers:\n      - name: api\n        image: nginx:1.25\n        env:\n        - name: LOG_LEVEL\n          value: info\n        - name: DB_PASSWORD\n          value: {password}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api-settings\n  namespace: {ns}\ndata:\n  mode: fast\n  password: {password}\n"
    )
}

fn check(ns: &TestNamespace, repo: &Path, config: &Path, json: bool) -> Output {
    let mut command = Command::new(binary());
    command.arg("check");
    if json {
        command.args(["--output", "json"]);
    }
    command
        .arg("--config")
        .arg(config)
        .arg("--repo")
        .arg(repo)
        .arg("--kubeconfig")
        .arg(ns.kubeconfig())
        .args(["--namespace", ns.name()])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("DRIFTGUARD_DRIFT_DETECTION__REDACT")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn record<'a>(output: &Output, records: &'a mut Vec<Value>, id: &str) -> &'a Value {
    let doc: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", printed(output)));
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc:#}");
    *records = doc["drift_records"].as_array().unwrap().clone();
    records
        .iter()
        .find(|r| r["resource_id"] == id)
        .unwrap_or_else(|| panic!("no record {id}: {records:#?}"))
}

fn assert_absent(what: &str, text: &str, canaries: &[&str]) {
    for canary in canaries {
        assert!(
            !text.contains(canary),
            "{what} holds the clear value {canary}:\n{text}"
        );
    }
}

/// The change at the env value, asserting it is one digest against another.
fn env_change(record: &Value) -> Value {
    let change = record["drift_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == ENV_FIELD)
        .unwrap_or_else(|| panic!("no change at {ENV_FIELD}: {record:#}"))
        .clone();
    assert_eq!(change["op"], "changed", "{change:#}");
    for side in ["from", "to"] {
        assert!(
            change[side].as_str().unwrap().starts_with(DIGEST_PREFIX),
            "{side} is not a digest: {change:#}"
        );
    }
    assert_ne!(change["from"], change["to"]);
    change
}

#[test]
fn cluster_redact_check_reports_env_drift_as_digests_only() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("redact-check").unwrap();
    let (first, second) = (canary("canary"), canary("canary2"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), manifests(ns.name(), &first)).unwrap();
    ns.apply_file(dir.path().join("app.yaml")).unwrap();

    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("driftguard.yaml");
    std::fs::write(&config, REDACT).unwrap();
    let deployment = format!("Deployment:{}:api", ns.name());
    let config_map = format!("ConfigMap:{}:api-settings", ns.name());

    // Unchanged: the digests of both sides agree, no drift.
    let clean = check(&ns, dir.path(), &config, true);
    assert_absent("check output", &printed(&clean), &[&first]);
    let mut records = Vec::new();
    let r = record(&clean, &mut records, &deployment);
    assert_eq!(r["drift_status"], "none", "{r:#}");
    let r = record(&clean, &mut records, &config_map);
    assert_eq!(r["drift_status"], "none", "{r:#}");
    assert_eq!(clean.status.code(), Some(0), "{}", printed(&clean));

    // Changed live: drift at the env value, between two digests; neither value is printed.
    ns.set_env("deployment/api", &[("DB_PASSWORD", &second)])
        .unwrap();
    let drifted = check(&ns, dir.path(), &config, true);
    assert_absent(
        "check --output json",
        &printed(&drifted),
        &[&first, &second],
    );
    let r = record(&drifted, &mut records, &deployment).clone();
    assert_eq!(r["drift_status"], "active", "{r:#}");
    env_change(&r);
    let r = record(&drifted, &mut records, &config_map);
    assert_eq!(r["drift_status"], "none", "{r:#}");
    let table = check(&ns, dir.path(), &config, false);
    assert_absent("check (table)", &printed(&table), &[&first, &second]);

    // The same check without the rules does show the values: the assertions above can fail.
    std::fs::write(&config, "drift_detection:\n  redact: []\n").unwrap();
    let plain = check(&ns, dir.path(), &config, true);
    assert!(
        printed(&plain).contains(&second),
        "without redact the live value is reported: {}",
        printed(&plain)
    );
}

fn wait_record(serve: &mut ServeProcess, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    serve
        .wait_for(DEADLINE, |p| {
            let (status, body) = p.get(&format!("/api/v1/drift-records/{id}"))?;
            let r: Option<Value> = (status == 200).then(|| serde_json::from_str(&body).unwrap());
            let ok = r.as_ref().is_some_and(&check);
            if ok {
                found = r;
            }
            Ok(ok)
        })
        .unwrap_or_else(|e| panic!("{id}: {e:#}\nlog:\n{}", serve.log()));
    found.unwrap()
}

#[test]
fn cluster_redact_serve_keeps_values_out_of_api_log_and_store() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("redact-serve").unwrap();
    let name = ns.name().to_owned();
    let (first, second, third) = (canary("canary"), canary("canary2"), canary("canary3"));
    let repo = TestRepo::with_files(&[("app.yaml", &manifests(&name, &first))]).unwrap();
    ns.apply_file(repo.work_path().join("app.yaml")).unwrap();
    // Changed before serve starts: found by the first full analysis.
    ns.set_env("deployment/api", &[("DB_PASSWORD", &second)])
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{name}]\n  resources: [deployments, configmaps]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\n{REDACT}",
        db = dir.path().join("dg.db").display(),
        kc = ns.kubeconfig().display(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();

    let id = format!("Deployment:{name}:api");
    let detected = wait_record(&mut serve, &id, |r| r["drift_status"] == "active");
    let before = env_change(&detected);

    // Changed again while watched: the watch event carries the new value, digested.
    ns.set_env("deployment/api", &[("DB_PASSWORD", &third)])
        .unwrap();
    let after = wait_record(&mut serve, &id, |r| {
        r["drift_details"].as_array().is_some_and(|d| {
            d.iter()
                .any(|c| c["field"] == ENV_FIELD && c["to"] != before["to"])
        })
    });
    let change = env_change(&after);
    assert_eq!(change["from"], before["from"], "Git's digest is stable");

    let canaries = [first.as_str(), second.as_str(), third.as_str()];
    for path in [
        "/api/v1/drift-records?limit=10000".to_owned(),
        format!("/api/v1/drift-records/{id}"),
        format!("/api/v1/drift-records/{id}/history"),
        format!("/api/v1/drift-records/ConfigMap:{name}:api-settings"),
        "/api/v1/statistics".to_owned(),
    ] {
        let (status, body) = serve.get(&path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert_absent(&path, &body, &canaries);
    }
    serve.terminate(Duration::from_secs(10)).unwrap();
    assert_absent("serve log", &serve.log(), &canaries);
    // Every file of the store (the database and its WAL), as bytes.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for canary in canaries {
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{} holds the clear value {canary}",
                    path.display()
                );
            }
        }
    }
    assert!(files >= 1, "the SQLite file exists");
}

//! The store is told the truth (issue 14): `driftguard serve` against a SQLite file that starts
//! refusing writes (what a read-only file, a full disk or a rotated MongoDB password look like),
//! and a restart over a corrupt row.
//!
//! Refusal is real SQLite behaviour: triggers that `RAISE(ABORT, …)` make every write statement
//! fail inside SQLite, as a read-only file does (these tests run as root, which ignores file
//! modes, so `chmod` cannot make the file read-only for them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use rusqlite::Connection;
use serde_json::Value;

const TABLES: [&str; 3] = ["records", "episodes", "departed"];
const OPS: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn manifests(namespace: &str) -> String {
    let text = std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .expect("examples/manifests/nginx.yaml");
    text.replace("namespace: driftguard", &format!("namespace: {namespace}"))
}

fn refuse_writes(db: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    for table in TABLES {
        for op in OPS {
            conn.execute_batch(&format!(
                "CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END;"
            ))
            .unwrap();
        }
    }
}

fn accept_writes(db: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    for table in TABLES {
        for op in OPS {
            conn.execute_batch(&format!("DROP TRIGGER refuse_{table}_{op};"))
                .unwrap();
        }
    }
}

fn ready(serve: &ServeProcess) -> anyhow::Result<Value> {
    let (_, body) = serve.get("/ready")?;
    Ok(serde_json::from_str(&body)?)
}

fn record(serve: &ServeProcess, id: &str) -> Option<Value> {
    let (status, body) = serve.get(&format!("/api/v1/drift-records/{id}")).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn history(serve: &ServeProcess, id: &str) -> Vec<Value> {
    let (status, body) = serve
        .get(&format!("/api/v1/drift-records/{id}/history"))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .cloned()
        .or_else(|| v["history"].as_array().cloned())
        .or_else(|| v["episodes"].as_array().cloned())
        .unwrap_or_else(|| panic!("history shape: {v}"))
}

#[test]
fn cluster_serve_refused_writes_and_a_corrupt_row_lose_no_verdict() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("storefail").unwrap();
    let yaml = manifests(ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dg.db");
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\n  resources: [deployments, services]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\n",
        db = db.display(),
        kc = cluster.kubeconfig().display(),
        ns = ns.name(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let deployment = format!("Deployment:{}:nginx-app", ns.name());
    let service = format!("Service:{}:nginx-service", ns.name());
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| {
            Ok(ready(p)?["status"] == "ready"
                && record(p, &deployment).is_some_and(|r| r["drift_status"] == "none"))
        })
        .unwrap();

    // The store refuses every write. A drift opens and closes meanwhile, then opens again.
    refuse_writes(&db);
    ns.scale("deployment/nginx-app", 5).unwrap();
    let mut seen = Value::Null;
    serve
        .wait_for(Duration::from_secs(30), |p| {
            seen = ready(p)?;
            let store = &seen["components"]["store"];
            Ok(store["status"] == "degraded"
                && store["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("refusing writes")))
        })
        .unwrap_or_else(|e| panic!("/ready never said the store refuses writes: {e:#}\n{seen:#}"));
    assert_eq!(
        record(&serve, &deployment).unwrap()["drift_status"],
        "none",
        "nothing reached the store"
    );
    ns.scale("deployment/nginx-app", 2).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    ns.scale("deployment/nginx-app", 7).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // Writes are taken again: every verdict of the refusal lands.
    accept_writes(&db);
    let mut last = Value::Null;
    serve
        .wait_for(Duration::from_secs(30), |p| {
            last = record(p, &deployment).unwrap_or(Value::Null);
            Ok(last["drift_status"] == "active" && ready(p)?["status"] == "ready")
        })
        .unwrap_or_else(|e| panic!("the drift never landed: {e:#}\n{last:#}"));
    assert!(
        last["drift_details"].to_string().contains("spec.replicas"),
        "{last:#}"
    );
    let episodes = history(&serve, &deployment);
    assert_eq!(
        episodes.len(),
        2,
        "the closed episode of the refusal and the open one: {episodes:#?}"
    );
    assert!(
        serve.log().contains("store rejected writes"),
        "the refusal is logged"
    );

    // A corrupt row: start-up skips it (logged), becomes ready and rewrites the truth.
    serve.terminate(Duration::from_secs(15)).unwrap();
    {
        let conn = Connection::open(&db).unwrap();
        let changed = conn
            .execute(
                "UPDATE records SET record_json = '{not json' WHERE resource_id = ?1",
                [&service],
            )
            .unwrap();
        assert_eq!(changed, 1, "the service's record was stored");
    }
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| {
            Ok(ready(p)?["status"] == "ready"
                && record(p, &service).is_some_and(|r| r["drift_status"] == "none")
                && record(p, &deployment).is_some_and(|r| r["drift_status"] == "active"))
        })
        .unwrap_or_else(|e| panic!("start-up over a corrupt row: {e:#}\n{}", serve.log()));
    assert!(
        serve
            .log()
            .contains("skipping a stored record that cannot be decoded"),
        "the corrupt row is reported"
    );
}

//! End to end: `driftguard serve` as a subprocess against the real control plane and a real Git
//! repository, walking the original README's "Comprehensive Testing Guide" (steps 1–10) with
//! assertions on every answer. Tests poll with a generous deadline; they never sleep-then-assert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::mongo::TestMongo;
use driftguard_test_support::serve::ServeProcess;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn seed_manifests(namespace: &str) -> String {
    let text = std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .expect("examples/manifests/nginx.yaml");
    text.replace("namespace: driftguard", &format!("namespace: {namespace}"))
}

enum Store {
    Sqlite,
    Mongo(String),
}

struct Setup {
    ns: TestNamespace,
    repo: TestRepo,
    serve: ServeProcess,
    _dir: tempfile::TempDir,
}

fn setup(prefix: &str, store: Store, extra: &str) -> Setup {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace(prefix).unwrap();
    let manifests = seed_manifests(ns.name());
    let repo = TestRepo::with_files(&[("test-deployment.yaml", &manifests)]).unwrap();
    // Step 2: the manifests are applied before the service starts.
    ns.apply_yaml(&manifests).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = match store {
        Store::Sqlite => format!(
            "database:\n  driver: sqlite\n  path: {}\n",
            dir.path().join("dg.db").display()
        ),
        Store::Mongo(db) => {
            let uri = TestMongo::shared().uri().to_owned();
            format!("database:\n  driver: mongodb\n  uri: \"{uri}\"\n  dbname: {db}\n")
        }
    };
    let config = format!(
        "{database}kubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\n{extra}",
        kc = ns.kubeconfig().display(),
        ns = ns.name(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();
    Setup {
        ns,
        repo,
        serve,
        _dir: dir,
    }
}

fn record(serve: &ServeProcess, id: &str) -> Option<Value> {
    let (status, body) = serve.get(&format!("/api/v1/drift-records/{id}")).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

/// Waits until the record satisfies `check`, returning it.
fn wait_record(
    serve: &mut ServeProcess,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut found = None;
    serve
        .wait_for(DEADLINE, |p| {
            let r = record(p, id);
            let ok = r.as_ref().is_some_and(&check);
            if ok {
                found = r;
            }
            Ok(ok)
        })
        .unwrap_or_else(|e| panic!("{id}: {what}: {e:#}\nlast record: {:#?}", record(serve, id)));
    found.unwrap()
}

fn has_change(record: &Value, field: &str, drift_type: &str, severity: &str) -> bool {
    record["drift_details"].as_array().is_some_and(|changes| {
        changes
            .iter()
            .any(|c| c["field"] == field && c["type"] == drift_type && c["severity"] == severity)
    })
}

/// Triggers an analysis and waits for that run to complete (the `/analyze` variant).
fn analyze(serve: &mut ServeProcess) {
    let (status, body) = serve.post("/api/v1/analyze", None).unwrap();
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["message"], "Drift analysis triggered successfully");
    assert_eq!(answer["status"], "started");
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    serve
        .wait_for(DEADLINE, |p| {
            let run = p.get_json(&format!("/api/v1/analysis/{run_id}"))?;
            Ok(run["status"] == "completed")
        })
        .unwrap();
}

fn seed_guide(prefix: &str, store: Store, with_analyze: bool) {
    let mut s = setup(
        prefix,
        store,
        "drift_detection:\n  enable_periodic: false\n",
    );
    let ns = s.ns.name().to_owned();
    let deployment = format!("Deployment:{ns}:nginx-app");
    let step = |serve: &mut ServeProcess| {
        if with_analyze {
            analyze(serve);
        }
    };

    // Step 1: health.
    let health = s.serve.get_json("/health").unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["message"], "Service is running");
    // The service runs without transparent huge pages (its resident memory is counted in small
    // pages); the kernel says so in the process status.
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.serve.pid())).unwrap();
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"));
    assert_eq!(thp.map(str::trim), Some("0"), "{status}");
    // ... and with the allocator returning freed pages at once: the environment it started
    // itself again with (a value the caller set is kept).
    let environ = std::fs::read(format!("/proc/{}/environ", s.serve.pid())).unwrap();
    let purge: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|v| v.strip_prefix(b"MIMALLOC_PURGE_DELAY="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let expected = std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "0".to_owned());
    assert_eq!(purge, [expected]);

    // Steps 3-4: no drift after the first apply.
    step(&mut s.serve);
    s.serve
        .wait_for(DEADLINE, |p| {
            Ok(p.get_json("/api/v1/drift-records")?["count"] == 3)
        })
        .unwrap();
    let all = s.serve.get_json("/api/v1/drift-records").unwrap();
    assert_eq!(all["total"], 3);
    for r in all["drift_records"].as_array().unwrap() {
        assert_eq!(r["drift_detected"], false, "{r:#}");
        assert_eq!(r["drift_status"], "none", "{r:#}");
        assert!(r["drift_details"].as_array().unwrap().is_empty());
        assert_eq!(r["managed"], true);
        assert_eq!(r["git_commit"], s.repo.head().unwrap().as_str());
    }

    // Steps 5-6: scale 2 → 3 is an active Scaling/medium record.
    s.ns.scale("deployment/nginx-app", 3).unwrap();
    step(&mut s.serve);
    let r = wait_record(&mut s.serve, &deployment, "scaled to 3", |r| {
        r["drift_status"] == "active"
    });
    assert_eq!(r["drift_type"], "Scaling");
    assert_eq!(r["severity"], "medium");
    assert_eq!(r["drift_details"][0]["field"], "spec.replicas");
    assert_eq!(r["drift_details"][0]["from"], 2);
    assert_eq!(r["drift_details"][0]["to"], 3);
    let active = s.serve.get_json("/api/v1/drift-records/active").unwrap();
    assert_eq!(active["status"], "active");
    assert_eq!(active["count"], 1);
    assert_eq!(
        active["drift_records"][0]["resource_id"],
        deployment.as_str()
    );

    // Step 7: scaling back resolves it.
    s.ns.scale("deployment/nginx-app", 2).unwrap();
    step(&mut s.serve);
    let r = wait_record(&mut s.serve, &deployment, "scaled back", |r| {
        r["drift_status"] == "resolved"
    });
    assert_eq!(r["drift_detected"], false);
    assert!(r["resolved_at"].is_string());
    let message = r["resolution_message"].as_str().unwrap();
    assert!(message.contains("matches Git again"), "{message}");
    let resolved = s.serve.get_json("/api/v1/drift-records/resolved").unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["count"], 1);

    // Step 8: image, env and resource drift.
    s.ns.set_image("deployment/nginx-app", "nginx", "nginx:1.24")
        .unwrap();
    step(&mut s.serve);
    let r = wait_record(&mut s.serve, &deployment, "image changed", |r| {
        has_change(
            r,
            "spec.template.spec.containers[name=nginx].image",
            "VersionChange",
            "high",
        )
    });
    assert_eq!(r["drift_type"], "VersionChange");
    assert_eq!(r["severity"], "high");
    s.ns.set_env("deployment/nginx-app", &[("NGINX_ENV", "staging")])
        .unwrap();
    step(&mut s.serve);
    wait_record(&mut s.serve, &deployment, "env changed", |r| {
        has_change(
            r,
            "spec.template.spec.containers[name=nginx].env[name=NGINX_ENV].value",
            "ConfigurationChange",
            "medium",
        )
    });
    s.ns.patch(
        "deployment/nginx-app",
        driftguard_test_support::cluster::PatchType::Strategic,
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","resources":{"requests":{"memory":"128Mi"}}}]}}}}"#,
        None,
    )
    .unwrap();
    step(&mut s.serve);
    let r = wait_record(&mut s.serve, &deployment, "resources changed", |r| {
        has_change(
            r,
            "spec.template.spec.containers[name=nginx].resources.requests.memory",
            "ResourceChange",
            "medium",
        )
    });
    assert_eq!(r["drift_details"].as_array().unwrap().len(), 3, "{r:#}");

    // Step 9: exact statistics.
    let stats = s.serve.get_json("/api/v1/statistics").unwrap()["statistics"].clone();
    assert_eq!(stats["total_records"], 3, "{stats:#}");
    assert_eq!(stats["active_drift"], 1, "{stats:#}");
    assert_eq!(stats["resolved_drift"], 0, "{stats:#}");
    assert_eq!(stats["no_drift"], 2, "{stats:#}");
    assert_eq!(stats["recent_active_drift"], 1, "{stats:#}");
    assert_eq!(stats["recent_resolutions"], 1, "{stats:#}");
    assert_eq!(stats["active_percentage"], 33.33, "{stats:#}");
    assert_eq!(stats["resolved_percentage"], 0.0, "{stats:#}");

    // Step 10: filters.
    let by_ns = s
        .serve
        .get_json(&format!("/api/v1/drift-records?namespace={ns}"))
        .unwrap();
    assert_eq!(by_ns["count"], 3);
    let other_ns = s
        .serve
        .get_json("/api/v1/drift-records?namespace=elsewhere")
        .unwrap();
    assert_eq!(other_ns["count"], 0);
    assert_eq!(other_ns["drift_records"], serde_json::json!([]));
    let drifted = s
        .serve
        .get_json("/api/v1/drift-records?drift_detected=true")
        .unwrap();
    assert_eq!(drifted["count"], 1);
    assert_eq!(
        drifted["drift_records"][0]["resource_id"],
        deployment.as_str()
    );
    let clean = s
        .serve
        .get_json("/api/v1/drift-records?drift_detected=false")
        .unwrap();
    assert_eq!(clean["count"], 2);
    let by_type = s
        .serve
        .get_json("/api/v1/drift-records?type=ResourceChange")
        .unwrap();
    assert_eq!(by_type["count"], 1);
    let by_kind = s
        .serve
        .get_json("/api/v1/drift-records?kind=Service")
        .unwrap();
    assert_eq!(by_kind["count"], 1);
    let one = s
        .serve
        .get_json(&format!("/api/v1/drift-records/{deployment}"))
        .unwrap();
    assert_eq!(one["resource_id"], deployment.as_str());
    let history = s
        .serve
        .get_json(&format!("/api/v1/drift-records/{deployment}/history"))
        .unwrap();
    let episodes = history["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2, "{history:#}");
    assert!(
        episodes[0]["resolved_at"].is_null(),
        "newest first: the active episode"
    );
    assert_eq!(episodes[1]["drift_type"], "Scaling");
    assert!(episodes[1]["resolved_at"].is_string());
    let (status, _) = s
        .serve
        .get("/api/v1/drift-records?drift_detected=maybe")
        .unwrap();
    assert_eq!(status, 400);

    // No Secret-like noise and the emoji events are in the log, once per transition.
    let log = s.serve.log();
    assert_eq!(log.matches("⚠️ drift detected").count(), 2, "{log}");
    assert_eq!(log.matches("✅ drift resolved").count(), 1, "{log}");
    assert!(log.contains("📊 analysis completed"));
    assert!(log.contains("🚀 DriftGuard starting"));

    // Graceful shutdown on SIGTERM.
    let status = s.serve.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn cluster_e2e_seed_guide_sqlite_by_watch() {
    seed_guide("e2e-sqlite-watch", Store::Sqlite, false);
}

#[test]
fn cluster_e2e_seed_guide_sqlite_with_analyze() {
    seed_guide("e2e-sqlite-analyze", Store::Sqlite, true);
}

#[test]
fn cluster_mongo_e2e_seed_guide_by_watch() {
    let db = driftguard_test_support::unique_name("e2e");
    seed_guide("e2e-mongo-watch", Store::Mongo(db), false);
}

#[test]
fn cluster_e2e_commit_adopting_the_live_value_resolves_and_names_the_commit() {
    let mut s = setup("e2e-commit", Store::Sqlite, "");
    let ns = s.ns.name().to_owned();
    let deployment = format!("Deployment:{ns}:nginx-app");
    wait_record(&mut s.serve, &deployment, "first analysis", |r| {
        r["drift_status"] == "none"
    });
    s.ns.scale("deployment/nginx-app", 3).unwrap();
    wait_record(&mut s.serve, &deployment, "scaled", |r| {
        r["drift_status"] == "active"
    });

    let adopted = seed_manifests(&ns).replace("replicas: 2", "replicas: 3");
    s.repo.write("test-deployment.yaml", &adopted).unwrap();
    let sha = s.repo.commit("adopt 3 replicas").unwrap();
    let r = wait_record(&mut s.serve, &deployment, "commit adopts live", |r| {
        r["drift_status"] == "resolved"
    });
    let message = r["resolution_message"].as_str().unwrap();
    assert!(
        message.contains(&sha[..7]),
        "{message} should name commit {sha}"
    );
    assert!(message.contains("adopts"), "{message}");
    assert_eq!(r["git_commit"], sha.as_str());

    // A commit that moves Git away from the live state is drift too (a new episode).
    let diverged = seed_manifests(&ns).replace("replicas: 2", "replicas: 5");
    s.repo.write("test-deployment.yaml", &diverged).unwrap();
    let sha2 = s.repo.commit("want 5 replicas").unwrap();
    let r = wait_record(&mut s.serve, &deployment, "commit diverges", |r| {
        r["drift_status"] == "active"
    });
    assert_eq!(r["git_commit"], sha2.as_str());
    assert_eq!(r["drift_details"][0]["from"], 5);
    assert_eq!(r["drift_details"][0]["to"], 3);
    let history = s
        .serve
        .get_json(&format!("/api/v1/drift-records/{deployment}/history"))
        .unwrap();
    assert_eq!(history["episodes"].as_array().unwrap().len(), 2);
}

#[test]
fn cluster_e2e_analyze_triggers_coalesce_and_start_after_the_trigger() {
    let mut s = setup(
        "e2e-coalesce",
        Store::Sqlite,
        "drift_detection:\n  enable_periodic: false\n",
    );
    let mut triggers = Vec::new();
    for _ in 0..12 {
        let before = chrono::Utc::now();
        let (status, body) = s.serve.post("/api/v1/analyze", None).unwrap();
        assert_eq!(status, 202);
        let v: Value = serde_json::from_str(&body).unwrap();
        triggers.push((before, v["run_id"].as_str().unwrap().to_owned()));
    }
    let mut runs = std::collections::BTreeMap::new();
    for (_, id) in &triggers {
        let mut run = Value::Null;
        s.serve
            .wait_for(DEADLINE, |p| {
                run = p.get_json(&format!("/api/v1/analysis/{id}"))?;
                Ok(run["status"] == "completed")
            })
            .unwrap();
        runs.insert(id.clone(), run);
    }
    for (before, id) in &triggers {
        let run = &runs[id];
        let started: chrono::DateTime<chrono::Utc> =
            run["started_at"].as_str().unwrap().parse().unwrap();
        assert!(
            started >= *before,
            "run {id} started {started} before its trigger at {before}"
        );
    }
    // Which triggers share a run depends on timing; that every trigger is served by exactly one
    // run, which starts after it, does not (the sharing itself is unit-tested in runs.rs).
    let requests: u64 = runs.values().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(
        requests,
        triggers.len() as u64,
        "every trigger is counted by exactly one run"
    );
    let (status, _) = s
        .serve
        .get("/api/v1/analysis/00000000-0000-0000-0000-000000000000")
        .unwrap();
    assert_eq!(status, 404);
}

#[test]
fn cluster_e2e_deleted_resource_is_missing_then_resolved_when_recreated() {
    let mut s = setup("e2e-missing", Store::Sqlite, "");
    let ns = s.ns.name().to_owned();
    let cm = format!("ConfigMap:{ns}:nginx-config");
    wait_record(&mut s.serve, &cm, "first analysis", |r| {
        r["drift_status"] == "none"
    });
    s.ns.delete("configmap/nginx-config").unwrap();
    let r = wait_record(&mut s.serve, &cm, "deleted", |r| {
        r["drift_status"] == "active"
    });
    assert_eq!(r["drift_type"], "MissingResource");
    assert_eq!(r["severity"], "high");
    assert_eq!(r["drift_details"][0]["field"], "");
    assert_eq!(r["drift_details"][0]["op"], "removed");
    s.ns.apply_yaml(&seed_manifests(&ns)).unwrap();
    wait_record(&mut s.serve, &cm, "recreated", |r| {
        r["drift_status"] == "resolved"
    });
    let started = Instant::now();
    // Readiness stays ready throughout.
    let (status, _) = s.serve.get("/ready").unwrap();
    assert_eq!(status, 200, "after {:?}", started.elapsed());
}

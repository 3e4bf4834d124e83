//! `drift_detection.report_unmanaged`: only orphans DriftGuard can claim are reported, on `check`
//! and on `serve`, against the real control plane (`DRIFTGUARD_TEST_KUBECONFIG`).
//!
//! The repository holds a Namespace and a ClusterRole next to namespaced objects — the shape that
//! used to report every Namespace of the cluster as `UnmanagedResource`. The shared plane has many
//! namespaces and cluster roles made by other tests, which is exactly what must not show up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn seed(namespace: &str) -> String {
    std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .unwrap()
    .replace("namespace: driftguard", &format!("namespace: {namespace}"))
}

fn namespace_yaml(ns: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
}

fn cluster_role_yaml(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\n{labels}rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n"
    )
}

/// Deletes the cluster-scoped objects a test made, whatever happens to the test.
struct ClusterRoles(Vec<String>);

impl Drop for ClusterRoles {
    fn drop(&mut self) {
        let cluster = TestCluster::shared();
        for name in &self.0 {
            let _ = cluster.kubectl(&["delete", "clusterrole", name, "--ignore-not-found"]);
        }
    }
}

fn unmanaged_ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["drift_type"] == "UnmanagedResource")
        .map(|r| r["resource_id"].as_str().unwrap().to_owned())
        .collect()
}

fn check(ns: &TestNamespace, repo: &Path, config: &Path) -> Output {
    Command::new(binary())
        .args(["check", "--output", "json", "--config"])
        .arg(config)
        .arg("--repo")
        .arg(repo)
        .arg("--kubeconfig")
        .arg(ns.kubeconfig())
        .args(["--namespace", ns.name()])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn records_of(output: &Output) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc:#}");
    doc["drift_records"].as_array().unwrap().clone()
}

#[test]
fn cluster_unmanaged_check_claims_the_watched_namespace_and_the_selector_only() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("unmanaged-check").unwrap();
    let other = cluster.namespace("unmanaged-check-other").unwrap();
    let (name, ours) = (ns.name(), format!("{}-reader", ns.name()));
    let by_hand_role = format!("{}-by-hand", ns.name());
    let _cleanup = ClusterRoles(vec![ours.clone(), by_hand_role.clone()]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("namespace.yaml"), namespace_yaml(name)).unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), cluster_role_yaml(&ours, "")).unwrap();
    std::fs::write(dir.path().join("app.yaml"), seed(name)).unwrap();
    for file in ["namespace.yaml", "rbac.yaml", "app.yaml"] {
        ns.apply_file(dir.path().join(file)).unwrap();
    }
    // Made by hand: a ConfigMap in the watched namespace (ours: an orphan), one in another
    // namespace (not watched), and a ClusterRole nobody claims.
    ns.kubectl(&["create", "configmap", "by-hand", "--from-literal=a=b"])
        .unwrap();
    other
        .kubectl(&["create", "configmap", "elsewhere", "--from-literal=a=b"])
        .unwrap();
    cluster
        .kubectl_with_stdin(
            &["apply", "-f", "-"],
            &cluster_role_yaml(&by_hand_role, &format!("  labels:\n    claim: {name}\n")),
        )
        .unwrap();

    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("driftguard.yaml");
    std::fs::write(&config, "drift_detection:\n  report_unmanaged: true\n").unwrap();
    let output = check(&ns, dir.path(), &config);
    let records = records_of(&output);
    assert_eq!(
        unmanaged_ids(&records),
        BTreeSet::from([format!("ConfigMap:{name}:by-hand")]),
        "only the orphan of the watched namespace"
    );
    let namespaces: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "Namespace")
        .collect();
    assert_eq!(
        namespaces.len(),
        1,
        "only the Namespace in Git: {namespaces:#?}"
    );
    assert_eq!(namespaces[0]["managed"], true);
    assert_eq!(namespaces[0]["drift_status"], "none");
    let role = records
        .iter()
        .find(|r| r["resource_id"] == format!("ClusterRole::{ours}"))
        .expect("the ClusterRole in Git");
    assert_eq!(role["drift_status"], "none");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["kind"] == "ClusterRole")
            .count(),
        1,
        "no other cluster role of the plane"
    );
    // The orphan is low and fails the default threshold.
    assert_eq!(output.status.code(), Some(1));

    // With a label selector, cluster-scoped objects that match it are claimed too, and objects
    // outside it (the unlabelled ConfigMap) are not.
    std::fs::write(
        &config,
        format!(
            "drift_detection:\n  report_unmanaged: true\nkubernetes:\n  labels: claim={name}\n"
        ),
    )
    .unwrap();
    let records = records_of(&check(&ns, dir.path(), &config));
    assert_eq!(
        unmanaged_ids(&records),
        BTreeSet::from([format!("ClusterRole::{by_hand_role}")]),
        "{records:#?}"
    );
}

fn record(serve: &ServeProcess, id: &str) -> Option<Value> {
    let (status, body) = serve.get(&format!("/api/v1/drift-records/{id}")).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn wait_record(serve: &mut ServeProcess, id: &str, check: impl Fn(&Value) -> bool) -> Value {
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
        .unwrap_or_else(|e| {
            panic!(
                "{id}: {e:#}\nlast record: {:#?}\nall: {:#?}",
                record(serve, id),
                serve.get("/api/v1/drift-records?limit=10000").ok()
            )
        });
    found.unwrap()
}

fn analyze(serve: &mut ServeProcess) {
    let (status, body) = serve.post("/api/v1/analyze", None).unwrap();
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    serve
        .wait_for(DEADLINE, |p| {
            let run = p.get_json(&format!("/api/v1/analysis/{run_id}"))?;
            Ok(run["status"] == "completed")
        })
        .unwrap();
}

fn listed(serve: &ServeProcess, query: &str) -> Vec<Value> {
    serve
        .get_json(&format!("/api/v1/drift-records?limit=10000&{query}"))
        .unwrap()["drift_records"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn cluster_unmanaged_serve_reports_orphans_of_git_and_the_namespace_only() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("unmanaged-serve").unwrap();
    let name = ns.name().to_owned();
    let ours = format!("{name}-reader");
    let by_hand_role = format!("{name}-by-hand");
    let _cleanup = ClusterRoles(vec![ours.clone(), by_hand_role.clone()]);
    let repo = TestRepo::with_files(&[
        ("namespace.yaml", &namespace_yaml(&name)),
        ("rbac.yaml", &cluster_role_yaml(&ours, "")),
        ("app.yaml", &seed(&name)),
    ])
    .unwrap();
    for file in ["namespace.yaml", "rbac.yaml", "app.yaml"] {
        ns.apply_file(repo.work_path().join(file)).unwrap();
    }
    cluster
        .kubectl_with_stdin(&["apply", "-f", "-"], &cluster_role_yaml(&by_hand_role, ""))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{name}]\n  resources: [deployments, services, configmaps, secrets, namespaces, clusterroles]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\ndrift_detection:\n  enable_periodic: false\n  report_unmanaged: true\n",
        db = dir.path().join("dg.db").display(),
        kc = ns.kubeconfig().display(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();

    // A ConfigMap made by hand in the watched namespace: an orphan, reported live.
    ns.kubectl(&["create", "configmap", "by-hand", "--from-literal=a=b"])
        .unwrap();
    let orphan = wait_record(&mut serve, &format!("ConfigMap:{name}:by-hand"), |r| {
        r["drift_type"] == "UnmanagedResource"
    });
    assert_eq!(orphan["managed"], false);
    assert_eq!(orphan["severity"], "low");

    // The ClusterRole leaves Git: it is now an orphan of Git, and says where Git had it.
    let role_id = format!("ClusterRole::{ours}");
    let managed = wait_record(&mut serve, &role_id, |r| r["managed"] == true);
    assert_eq!(managed["drift_status"], "none", "{managed:#}");
    repo.remove("rbac.yaml").unwrap();
    let commit = repo.commit("the reader role is no longer in Git").unwrap();
    let role = wait_record(&mut serve, &role_id, |r| {
        r["drift_type"] == "UnmanagedResource"
    });
    assert_eq!(role["managed"], false);
    assert_eq!(role["drift_status"], "active");
    assert_eq!(role["source_path"], "rbac.yaml#0");
    assert_eq!(role["git_commit"], commit.as_str());

    // A full analysis keeps exactly these two, and never the plane's other cluster objects.
    analyze(&mut serve);
    let unmanaged = unmanaged_ids(&listed(&serve, "type=UnmanagedResource"));
    assert_eq!(
        unmanaged,
        BTreeSet::from([format!("ConfigMap:{name}:by-hand"), role_id.clone()]),
    );
    assert!(
        record(&serve, &format!("ClusterRole::{by_hand_role}")).is_none(),
        "a ClusterRole never in Git is not claimed without a selector"
    );
    let namespaces = listed(&serve, "kind=Namespace");
    assert_eq!(
        namespaces
            .iter()
            .map(|r| r["resource_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![format!("Namespace::{name}")],
        "only the Namespace in Git"
    );
    let roles = listed(&serve, "kind=ClusterRole");
    assert_eq!(roles.len(), 1, "{roles:#?}");

    // Put back in Git, the orphan is managed again and its drift resolves.
    repo.write("rbac.yaml", &cluster_role_yaml(&ours, ""))
        .unwrap();
    repo.commit("the reader role is back").unwrap();
    let back = wait_record(&mut serve, &role_id, |r| r["managed"] == true);
    assert_eq!(back["drift_status"], "resolved");
}

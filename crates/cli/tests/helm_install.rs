//! Objects that reach the cluster through Helm itself (`helm install`, `helm upgrade`: Helm 4
//! applies server-side as field manager `helm` and stamps `meta.helm.sh/*` annotations and the
//! `app.kubernetes.io/managed-by: Helm` label) compared with the same chart rendered from Git:
//! what Helm writes is GitOps applying, not drift; a hand edit afterwards still is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::records::run_check_json;
use driftguard_test_support::{charts_dir, copy_dir, helm_binary};
use serde_json::Value;

/// Runs the pinned Helm against the test cluster.
fn helm(ns: &TestNamespace, args: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .args(args)
        .args(["--namespace", ns.name()])
        .env("KUBECONFIG", ns.kubeconfig())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("dg-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("dg-helm-config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("dg-helm-data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(ns: &TestNamespace, repo: &Path, config: &Path) -> (Output, Value) {
    let args: [&OsStr; 8] = [
        "--config".as_ref(),
        config.as_os_str(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--kubeconfig".as_ref(),
        ns.kubeconfig().as_os_str(),
        "--namespace".as_ref(),
        ns.name().as_ref(),
    ];
    run_check_json(Path::new(env!("CARGO_BIN_EXE_driftguard")), args)
}

fn records(doc: &Value) -> Vec<(String, bool, String, String)> {
    let mut out: Vec<(String, bool, String, String)> = doc["drift_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource_id"].as_str().unwrap().to_owned(),
                r["drift_detected"].as_bool().unwrap(),
                r["helm_release"].as_str().unwrap_or("").to_owned(),
                r["source_path"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn cluster_helm_install_and_upgrade_are_not_drift() {
    let ns = TestCluster::shared().namespace("helm-install").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let chart = repo.path().join("charts/podinfo");
    copy_dir(&charts_dir().join("podinfo"), &chart);
    std::fs::write(repo.path().join("prod.yaml"), "replicaCount: 2\n").unwrap();
    let config = repo.path().join("driftguard.yaml");
    std::fs::write(
        &config,
        format!(
            "helm:\n  binary: {}\n  releases:\n  - name: web\n    chart: charts/podinfo\n    namespace: {}\n    values_files: [prod.yaml]\n",
            helm_binary().display(),
            ns.name()
        ),
    )
    .unwrap();
    let chart_arg = chart.to_str().unwrap();
    let values = repo.path().join("prod.yaml");
    let values_arg = values.to_str().unwrap();
    helm(&ns, &["install", "web", chart_arg, "-f", values_arg]);
    let deployment = ns.get_json("deployment/web-podinfo").unwrap();
    let managers: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"helm"), "{managers:?}");
    assert_eq!(
        deployment["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "web"
    );

    let expected = vec![
        (
            format!("Deployment:{}:web-podinfo", ns.name()),
            false,
            "web".to_owned(),
            "charts/podinfo/templates/deployment.yaml#0".to_owned(),
        ),
        (
            format!("Service:{}:web-podinfo", ns.name()),
            false,
            "web".to_owned(),
            "charts/podinfo/templates/service.yaml#0".to_owned(),
        ),
    ];
    let (output, doc) = check(&ns, repo.path(), &config);
    assert_eq!(output.status.code(), Some(0), "{doc:#}");
    assert_eq!(records(&doc), expected, "{doc:#}");

    // helm upgrade with new values, and Git following: still nothing.
    std::fs::write(&values, "replicaCount: 3\n").unwrap();
    helm(&ns, &["upgrade", "web", chart_arg, "-f", values_arg]);
    let (output, doc) = check(&ns, repo.path(), &config);
    assert_eq!(output.status.code(), Some(0), "{doc:#}");
    assert_eq!(records(&doc), expected, "{doc:#}");

    // A hand edit after Helm is drift, attributed to its manager.
    ns.scale("deployment/web-podinfo", 5).unwrap();
    let (_, doc) = check(&ns, repo.path(), &config);
    let record = doc["drift_records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Deployment")
        .unwrap();
    assert_eq!(record["drift_detected"], true, "{record:#}");
    let change = &record["drift_details"][0];
    assert_eq!(change["field"], "spec.replicas", "{record:#}");
    assert_eq!(change["from"], 3, "{record:#}");
    assert_eq!(change["to"], 5, "{record:#}");
    assert_eq!(record["drift_type"], "Scaling", "{record:#}");
}

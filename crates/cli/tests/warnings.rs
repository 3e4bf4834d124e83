//! Record warnings in `driftguard check` (contract §9), as a black box against the real control
//! plane: printed in the table and the JSON, never in the exit code unless `--fail-on-warnings`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use serde_json::Value;

/// A Deployment whose pod template asks for a `serviceAccount` alias that disagrees with
/// `serviceAccountName`: the server always stores the alias as the name, Git can never match.
fn deployment(namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: aliased
  namespace: {namespace}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: aliased}}
  template:
    metadata:
      labels: {{app: aliased}}
    spec:
      serviceAccount: a
      serviceAccountName: b
      containers:
      - name: web
        image: nginx:1.25
"
    )
}

fn check(ns: &TestNamespace, repo: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftguard"))
        .arg("check")
        .arg("--repo")
        .arg(repo)
        .arg("--kubeconfig")
        .arg(ns.kubeconfig())
        .args(["--namespace", ns.name()])
        .args(extra)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn cluster_check_warnings_are_printed_and_fail_only_with_the_flag() {
    let ns = TestCluster::shared().namespace("check-warnings").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), deployment(ns.name())).unwrap();
    ns.apply_yaml(&deployment(ns.name())).unwrap();

    let output = check(&ns, dir.path(), &["--output", "json"]);
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        output.status.code(),
        Some(0),
        "warnings alone exit 0: {doc:#}"
    );
    let record = &doc["drift_records"][0];
    assert_eq!(
        record["resource_id"],
        format!("Deployment:{}:aliased", ns.name())
    );
    assert_eq!(
        record["drift_detected"], false,
        "a warning is not drift: {record:#}"
    );
    let warnings = record["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{record:#}");
    assert_eq!(warnings[0]["code"], "server-rewrites");
    assert_eq!(warnings[0]["field"], "spec.template.spec.serviceAccount");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Git can never match"),
        "{record:#}"
    );

    let failing = check(&ns, dir.path(), &["--fail-on-warnings"]);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "--fail-on-warnings fails on a warning"
    );
    let text = String::from_utf8_lossy(&failing.stdout);
    assert!(text.contains("WARNINGS (1)"), "{text}");
    assert!(
        text.contains(
            "warning  server-rewrites spec.template.spec.serviceAccount: Git can never match"
        ),
        "{text}"
    );
    assert!(
        text.contains("0 drifted, 1 in sync, 0 errors, 1 warning"),
        "{text}"
    );

    // A real drift next to the warning: the record shows both, and the exit code is the drift's.
    ns.set_image("deployment/aliased", "web", "nginx:1.26")
        .unwrap();
    let drifted = check(&ns, dir.path(), &["--fail-on", "high"]);
    let text = String::from_utf8_lossy(&drifted.stdout);
    assert_eq!(drifted.status.code(), Some(1), "{text}");
    assert!(text.contains("HIGH (1)"), "{text}");
    assert!(text.contains("warning  server-rewrites"), "{text}");
    assert!(
        !text.contains("WARNINGS ("),
        "listed under its drift: {text}"
    );
}

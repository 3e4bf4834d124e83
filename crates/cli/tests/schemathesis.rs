//! Schemathesis (from PyPI) against a live `driftguard serve` on the real control plane: every
//! operation of the served OpenAPI document, a bounded number of examples, no 5xx and no answer
//! that breaks the document's schema — with and without the bearer token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;

fn run(token: Option<&str>) {
    let ns = TestCluster::shared().namespace("schemathesis").unwrap();
    let manifests = std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .unwrap()
    .replace(
        "namespace: driftguard",
        &format!("namespace: {}", ns.name()),
    );
    ns.apply_yaml(&manifests).unwrap();
    ns.scale("deployment/nginx-app", 3).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &manifests)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  path: {}\nkubernetes:\n  config_path: {}\n  namespaces: [{}]\ngit:\n  repository_url: \"{}\"\n  workdir: {}\n",
        dir.path().join("db.sqlite").display(),
        ns.kubeconfig().display(),
        ns.name(),
        repo.url(),
        dir.path().join("git").display()
    );
    let env: Vec<(&str, &str)> = token
        .map(|t| vec![("DRIFTGUARD_SERVER__AUTH_TOKEN", t)])
        .unwrap_or_default();
    let mut serve =
        ServeProcess::start(Path::new(env!("CARGO_BIN_EXE_driftguard")), &config, &env).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();

    let mut command = Command::new("bash");
    command
        .arg(driftguard_test_support::repo_root().join("scripts/schemathesis.sh"))
        .arg(serve.base_url())
        .env("SCHEMATHESIS_MAX_EXAMPLES", "15");
    match token {
        Some(t) => command.env("DRIFTGUARD_SERVER__AUTH_TOKEN", t),
        None => command.env_remove("DRIFTGUARD_SERVER__AUTH_TOKEN"),
    };
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    // Every operation but the document itself (which schemathesis does not test) was exercised.
    assert!(
        stdout.contains("11 selected") || stdout.contains("11 total") || stdout.contains("/11"),
        "{stdout}"
    );
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

#[test]
fn cluster_schemathesis_on_live_serve() {
    run(None);
}

#[test]
fn cluster_schemathesis_on_live_serve_with_token() {
    run(Some("s3cret-test-token"));
}

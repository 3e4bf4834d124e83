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

/// The install step, started twice at once on an empty venv directory (issue 15: on a fresh
/// machine the two tests above both built `~/.cache/driftguard/venv-schemathesis` and one found no
/// `pip`). Both must succeed, exactly one of them installs — the other waits on the lock and
/// finds it done — and the venv works. Downloads schemathesis from PyPI (no cluster needed).
#[test]
fn schemathesis_install_twice_at_once_on_an_empty_venv() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv-schemathesis");
    std::fs::create_dir(&venv).unwrap();
    let start = || {
        Command::new("bash")
            .arg(driftguard_test_support::repo_root().join("scripts/schemathesis.sh"))
            .arg("--install")
            .env("DRIFTGUARD_SCHEMATHESIS_VENV", &venv)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let shown = |o: &std::process::Output| {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    for out in &outputs {
        assert!(out.status.success(), "an install failed: {}", shown(out));
    }
    let installs = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("schemathesis: installing"))
        .count();
    assert_eq!(
        installs,
        1,
        "exactly one of the two runs must install, the other wait for it:\n{}\n---\n{}",
        shown(&outputs[0]),
        shown(&outputs[1])
    );
    let version = Command::new(venv.join("bin/schemathesis"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        version.status.success(),
        "the venv does not work: {}",
        shown(&version)
    );
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("version"),
        "{}",
        shown(&version)
    );
}

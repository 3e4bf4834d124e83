//! `driftguard check` as a black box: exit codes, the JSON document, the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::git_peers::{HttpsPeer, SshPeer};
use serde_json::Value;

fn seed(namespace: &str) -> String {
    std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .unwrap()
    .replace("namespace: driftguard", &format!("namespace: {namespace}"))
}

fn check(ns: &TestNamespace, repo: &str, extra: &[&str]) -> Output {
    check_command(ns, repo, extra).output().unwrap()
}

fn check_command(ns: &TestNamespace, repo: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftguard"));
    command
        .args(["check", "--repo", repo, "--kubeconfig"])
        .arg(ns.kubeconfig())
        .args(["--namespace", ns.name()])
        .args(extra)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir());
    command
}

/// Everything a run printed.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The message of the run's `git` error.
fn git_error(output: &Output) -> String {
    let doc = json(output);
    doc["errors"]
        .as_array()
        .and_then(|errors| errors.iter().find(|e| e["source"] == "git"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no git error in {doc}"))
        .to_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn setup(prefix: &str) -> (TestNamespace, tempfile::TempDir) {
    let ns = TestCluster::shared().namespace(prefix).unwrap();
    ns.apply_yaml(&seed(ns.name())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), seed(ns.name())).unwrap();
    (ns, dir)
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn cluster_check_clean_drifted_and_fail_on() {
    let (ns, dir) = setup("check-exit");

    let clean = check(&ns, path(dir.path()), &["--output", "json"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let doc = json(&clean);
    assert!(
        doc["git_commit"].is_null(),
        "a directory read from disk has no commit"
    );
    assert_eq!(doc["count"], 3);
    assert_eq!(doc["errors"], serde_json::json!([]));
    for r in doc["drift_records"].as_array().unwrap() {
        assert_eq!(r["drift_status"], "none");
        assert_eq!(r["managed"], true);
        assert!(r["source_path"].as_str().unwrap().starts_with("app.yaml#"));
    }

    ns.scale("deployment/nginx-app", 3).unwrap();
    let drifted = check(&ns, path(dir.path()), &["--output", "json"]);
    assert_eq!(drifted.status.code(), Some(1));
    let doc = json(&drifted);
    let active: Vec<&Value> = doc["drift_records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["drift_status"] == "active")
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(
        active[0]["resource_id"],
        format!("Deployment:{}:nginx-app", ns.name())
    );
    assert_eq!(active[0]["drift_type"], "Scaling");
    assert_eq!(active[0]["severity"], "medium");

    // Medium drift does not fail a high threshold, and does fail a medium one.
    assert_eq!(
        check(&ns, path(dir.path()), &["--fail-on", "high"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        check(&ns, path(dir.path()), &["--fail-on", "medium"])
            .status
            .code(),
        Some(1)
    );

    // The table names the resource under its severity, without colour when not on a terminal.
    let table = check(&ns, path(dir.path()), &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("MEDIUM (1)"), "{text}");
    assert!(
        text.contains(&format!("Deployment:{}:nginx-app", ns.name())),
        "{text}"
    );
    assert!(text.contains("spec.replicas: 2 → 3"), "{text}");
    assert!(text.contains("1 drifted, 2 in sync, 0 errors"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour codes when stdout is not a terminal"
    );
}

#[test]
fn cluster_check_reports_bad_files_and_still_analyses_the_rest() {
    let (ns, dir) = setup("check-bad");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
    )
    .unwrap();
    let out = check(&ns, path(dir.path()), &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a file that does not parse is an error"
    );
    let doc = json(&out);
    assert_eq!(doc["count"], 3, "the good file is still analysed: {doc:#}");
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{doc:#}");
    assert!(
        errors[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("broken.yaml"),
        "{errors:?}"
    );
}

#[test]
fn cluster_check_reads_a_git_url_at_a_branch() {
    let ns = TestCluster::shared().namespace("check-git").unwrap();
    ns.apply_yaml(&seed(ns.name())).unwrap();
    let repo = TestRepo::with_files(&[("deploy/app.yaml", &seed(ns.name()))]).unwrap();
    let out = check(
        &ns,
        &repo.url(),
        &["--branch", "main", "--path", "deploy", "--output", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["git_commit"], repo.head().unwrap().as_str());
    assert_eq!(doc["count"], 3);
    assert_eq!(doc["drift_records"][0]["source_path"], "deploy/app.yaml#2");
}

/// The records of a JSON report without what differs between two runs of the same check (when,
/// and the commit a directory does not have).
fn comparable(doc: &Value) -> Vec<Value> {
    doc["drift_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for field in [
                "id",
                "git_commit",
                "first_detected",
                "resolved_at",
                "last_updated",
                "created_at",
            ] {
                r.as_object_mut().unwrap().remove(field);
            }
            r
        })
        .collect()
}

/// A number logged as `name=N` on stderr.
fn logged(output: &Output, name: &str) -> usize {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = stderr
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in:\n{stderr}"));
    stderr[at + name.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn cluster_check_reads_a_file_url_in_place_fetches_git_shallow_and_gives_the_same_records() {
    let ns = TestCluster::shared().namespace("check-same").unwrap();
    ns.apply_yaml(&seed(ns.name())).unwrap();
    ns.scale("deployment/nginx-app", 3).unwrap();
    // History the check never needs: a shallow fetch leaves it out.
    let repo = TestRepo::with_files(&[("deploy/app.yaml", "# first\n")]).unwrap();
    for i in 0..5 {
        repo.write("deploy/app.yaml", &format!("# version {i}\n"))
            .unwrap();
        repo.commit(&format!("version {i}")).unwrap();
    }
    repo.write("deploy/app.yaml", &seed(ns.name())).unwrap();
    let head = repo.commit("the manifests").unwrap();
    let daemon = repo.serve_git_daemon().unwrap();
    let work = repo.work_path();

    let by_url = check(
        &ns,
        &repo.url(),
        &["--output", "json", "--log-level", "debug"],
    );
    let by_daemon = check(&ns, &daemon, &["--output", "json"]);
    let by_path = check(&ns, path(&work), &["--output", "json"]);
    for (what, out) in [
        ("file://", &by_url),
        ("git://", &by_daemon),
        ("path", &by_path),
    ] {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", printed(out));
    }
    let (url, daemon_doc, dir) = (json(&by_url), json(&by_daemon), json(&by_path));
    assert_eq!(url["git_commit"], head.as_str());
    assert_eq!(daemon_doc["git_commit"], head.as_str());
    assert!(dir["git_commit"].is_null());
    assert_eq!(url["count"], 3);
    assert_eq!(comparable(&url), comparable(&dir));
    assert_eq!(comparable(&daemon_doc), comparable(&dir));
    assert_eq!(url["errors"], dir["errors"]);
    assert_eq!(daemon_doc["errors"], dir["errors"]);

    // Discovery read only the groups the default resources and the repository's kinds need.
    let read = logged(&by_url, "group_versions_read");
    let served = logged(&by_url, "group_versions_served");
    assert!(
        read > 0 && read < served / 2,
        "{read} of {served} group versions read"
    );
}

#[test]
fn cluster_check_fetches_over_https_with_a_token() {
    const TOKEN: &str = "tok-5e1f0c2a9b";
    const WRONG: &str = "tok-wrong-77d3";
    let ns = TestCluster::shared().namespace("check-https").unwrap();
    ns.apply_yaml(&seed(ns.name())).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &seed(ns.name()))]).unwrap();
    let peer = HttpsPeer::start(&repo, "deploy-bot", TOKEN).unwrap();
    let run = |token: &str, trusted: bool| {
        let mut command = check_command(&ns, &peer.url, &["--output", "json"]);
        command
            .env("DRIFTGUARD_GIT_USERNAME", "deploy-bot")
            .env("DRIFTGUARD_GIT_TOKEN", token)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if trusted {
            command.env("SSL_CERT_FILE", &peer.ca_file);
        }
        command.output().unwrap()
    };

    let ok = run(TOKEN, true);
    assert_eq!(ok.status.code(), Some(0), "{}", printed(&ok));
    let doc = json(&ok);
    assert_eq!(doc["git_commit"], repo.head().unwrap().as_str());
    assert_eq!(doc["count"], 3);
    assert!(!printed(&ok).contains(TOKEN));

    let refused = run(WRONG, true);
    assert_eq!(refused.status.code(), Some(2), "{}", printed(&refused));
    let message = git_error(&refused);
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!printed(&refused).contains(WRONG), "{}", printed(&refused));

    let untrusted = run(TOKEN, false);
    assert_eq!(untrusted.status.code(), Some(2), "{}", printed(&untrusted));
    let message = git_error(&untrusted);
    assert!(message.contains("SSL_CERT_FILE"), "{message}");
    assert!(!printed(&untrusted).contains(TOKEN));
}

#[test]
fn cluster_check_fetches_over_ssh_with_a_key_and_a_known_host() {
    let ns = TestCluster::shared().namespace("check-ssh").unwrap();
    ns.apply_yaml(&seed(ns.name())).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &seed(ns.name()))]).unwrap();
    let peer = SshPeer::start(&repo).unwrap();
    let stranger = tempfile::tempdir().unwrap();
    let run = |home: &Path| {
        check_command(&ns, &peer.url, &["--output", "json"])
            .env("HOME", home)
            .env("DRIFTGUARD_GIT_SSH_KEY", &peer.key)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };

    let ok = run(&peer.home());
    assert_eq!(ok.status.code(), Some(0), "{}", printed(&ok));
    let doc = json(&ok);
    assert_eq!(doc["git_commit"], repo.head().unwrap().as_str());
    assert_eq!(doc["count"], 3);

    // A host that is not in known_hosts is refused, and the message says what to do.
    let unknown = run(stranger.path());
    assert_eq!(unknown.status.code(), Some(2), "{}", printed(&unknown));
    let message = git_error(&unknown);
    assert!(message.contains("known_hosts"), "{message}");
}

#[test]
fn cluster_check_unreachable_cluster_and_bad_config_exit_2() {
    let (ns, dir) = setup("check-down");
    let kubeconfig = dir.path().join("dead-kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: x}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftguard"))
        .args([
            "check",
            "--repo",
            path(dir.path()),
            "--output",
            "json",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .args(["-n", ns.name()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    assert!(!doc["errors"].as_array().unwrap().is_empty());

    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "server:\n  prot: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftguard"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.prot") && stderr.contains("bad.yaml"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_driftguard"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("driftguard "), "{text}");
    assert!(text.contains("commit "), "{text}");
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["serve", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_driftguard"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: driftguard"), "{help}");
        if args == ["check", "--help"] {
            // check is for CI: it must say it never notifies (issue 17).
            assert!(help.contains("check never notifies"), "{help}");
        }
    }
}

#[test]
fn serve_on_a_taken_port_prints_the_whole_error_chain() {
    // Hold the port: `serve` must fail to bind it and say why.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftguard"))
        .arg("serve")
        .env("DRIFTGUARD_SERVER__PORT", port.to_string())
        .env("DRIFTGUARD_SERVER__ADDRESS", "127.0.0.1")
        .env(
            "DRIFTGUARD_GIT__REPOSITORY_URL",
            "file:///nonexistent/repo.git",
        )
        .env("DRIFTGUARD_DATABASE__PATH", dir.path().join("dg.db"))
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("MONGODB_URI")
        .env_remove("MONGODB_HOST")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It exits at once; never wait for ever on a serve that did bind somehow.
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running on a taken port");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    drop(taken);
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(
        stderr.contains("address already in use") || stderr.contains("address in use"),
        "the OS reason is printed: {stderr}"
    );
}

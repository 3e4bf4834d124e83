//! An API server that stops answering (issue 14, "blind but ready"): `driftguard serve` against a
//! private control plane whose kube-apiserver is frozen with SIGSTOP — what a network partition
//! looks like to a client: the TCP connections stay open and silent, no watch ever fails.
//! `/ready` must say so within 10 s, naming the API server, and everything must come back by
//! itself after SIGCONT, a change made right then included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use driftguard_test_support::cluster::PrivateCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use serde_json::Value;

/// The budget of the issue: a stalled API server is noticed within 10 s.
const NOTICE_WITHIN: Duration = Duration::from_secs(10);

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

/// A process this test stopped with SIGSTOP; continued (SIGCONT) when dropped, whatever happens,
/// so the private plane can be shut down normally.
struct Frozen {
    pid: u32,
}

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(
            comm.trim(),
            "kube-apiserver",
            "pid {pid} is not our API server"
        );
        signal("-STOP", pid);
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", self.pid);
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid} failed");
}

fn ready(serve: &ServeProcess) -> anyhow::Result<Value> {
    let (_, body) = serve.get("/ready")?;
    Ok(serde_json::from_str(&body)?)
}

fn record(serve: &ServeProcess, id: &str) -> Option<Value> {
    let (status, body) = serve.get(&format!("/api/v1/drift-records/{id}")).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

#[test]
fn cluster_serial_frozen_apiserver_degrades_readiness_and_comes_back() {
    let plane = PrivateCluster::start().unwrap();
    let state_dir = plane.kubeconfig().parent().unwrap().to_owned();
    let pid: u32 = std::fs::read_to_string(state_dir.join("kube-apiserver.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ns = plane.cluster().namespace("frozen").unwrap();
    let yaml = manifests(ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\n  resources: [deployments, services]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\n",
        db = dir.path().join("dg.db").display(),
        kc = plane.kubeconfig().display(),
        ns = ns.name(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    let deployment = format!("Deployment:{}:nginx-app", ns.name());
    serve
        .wait_for(Duration::from_secs(60), |p| {
            Ok(ready(p)?["status"] == "ready"
                && record(p, &deployment).is_some_and(|r| r["drift_status"] == "none"))
        })
        .unwrap();

    // Freeze the API server: every open connection stays up and silent.
    let frozen = Frozen::stop(pid);
    let frozen_at = Instant::now();
    let mut seen = Value::Null;
    serve
        .wait_for(NOTICE_WITHIN, |p| {
            seen = ready(p)?;
            let kubernetes = &seen["components"]["kubernetes"];
            Ok(seen["status"] == "degraded"
                && kubernetes["status"] == "degraded"
                && kubernetes["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("API server")))
        })
        .unwrap_or_else(|e| panic!("not noticed within {NOTICE_WITHIN:?}: {e:#}\n{seen:#}"));
    let noticed = frozen_at.elapsed();
    eprintln!("frozen API server noticed after {noticed:?}: {seen:#}");
    assert!(noticed <= NOTICE_WITHIN, "{noticed:?}");
    // Stay frozen a little longer: several probes fail, readiness stays degraded.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ready(&serve).unwrap()["status"], "degraded");

    // Thaw, and change something at once: it must be detected, whether the old watch
    // connections resume or the restarted watches list it.
    drop(frozen);
    let thawed_at = Instant::now();
    ns.scale("deployment/nginx-app", 3).unwrap();
    serve
        .wait_for(Duration::from_secs(60), |p| {
            Ok(record(p, &deployment).is_some_and(|r| {
                r["drift_status"] == "active"
                    && r["drift_details"].as_array().is_some_and(|changes| {
                        changes
                            .iter()
                            .any(|c| c["field"] == "spec.replicas" && c["to"] == 3)
                    })
            }))
        })
        .unwrap_or_else(|e| panic!("the change made after SIGCONT was not detected: {e:#}"));
    eprintln!(
        "change after SIGCONT detected after {:?}",
        thawed_at.elapsed()
    );
    serve
        .wait_for(Duration::from_secs(30), |p| {
            seen = ready(p)?;
            Ok(seen["status"] == "ready")
        })
        .unwrap_or_else(|e| panic!("readiness did not come back: {e:#}\n{seen:#}"));
    eprintln!("ready again after {:?}", thawed_at.elapsed());
    assert_eq!(seen["components"]["kubernetes"]["status"], "ok");
    let log = serve.log();
    assert!(log.contains("API server not answering"), "{log}");
    assert!(log.contains("restarting the watches"), "{log}");
}

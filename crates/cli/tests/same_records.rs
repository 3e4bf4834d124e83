//! One evaluation path (issue 15): `check` and `serve` produce the same records for the same
//! repository and cluster — record by record, change by change — on a repository of several
//! kinds with drifts of every shape (changed, added, removed, missing, unmanaged, a Secret).
//! Records are compared as `driftguard_test_support::records::comparable` makes them (Secret
//! digests masked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use driftguard_test_support::cluster::{PatchType, TestCluster};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::records::{by_id, run_check_json};
use driftguard_test_support::serve::ServeProcess;
use serde_json::json;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn manifests(ns: &str) -> String {
    let nginx = std::fs::read_to_string(
        driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
    )
    .unwrap()
    .replace("namespace: driftguard", &format!("namespace: {ns}"));
    format!(
        "{nginx}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: {ns}\ntype: Opaque\nstringData:\n  password: s3cret-one\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gone\n  namespace: {ns}\ndata:\n  a: \"1\"\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n  namespace: {ns}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n"
    )
}

#[test]
fn cluster_check_and_serve_produce_the_same_records() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("same").unwrap();
    let name = ns.name().to_owned();
    let yaml = manifests(&name);
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("app.yaml", &yaml)]).unwrap();

    // Drifts of every shape.
    ns.scale("deployment/nginx-app", 4).unwrap();
    ns.set_env("deployment/nginx-app", &[("EXTRA", "1")])
        .unwrap();
    ns.label("service/nginx-service", "hotfix=yes").unwrap();
    ns.delete("configmap/gone").unwrap();
    ns.kubectl(&["create", "configmap", "by-hand", "--from-literal=a=b"])
        .unwrap();
    ns.patch(
        "secret/creds",
        PatchType::Merge,
        r#"{"stringData":{"password":"s3cret-two"}}"#,
        None,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let resources = "[deployments, services, configmaps, secrets, roles.rbac.authorization.k8s.io]";
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{name}]\n  resources: {resources}\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\ndrift_detection:\n  report_unmanaged: true\n",
        db = dir.path().join("dg.db").display(),
        kc = cluster.kubeconfig().display(),
        url = repo.url(),
        wd = dir.path().join("git").display(),
    );
    let config_path = dir.path().join("driftguard.yaml");
    std::fs::write(&config_path, &config).unwrap();

    let (_, doc) = run_check_json(binary(), [OsStr::new("--config"), config_path.as_os_str()]);
    assert_eq!(doc["errors"], json!([]), "{doc:#}");
    let from_check = by_id(doc["drift_records"].as_array().unwrap());

    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    let mut from_serve = BTreeMap::new();
    // Ready, and the startup analysis has written every record; the comparison below shows
    // the difference when they never agree.
    let _ = serve.wait_for(Duration::from_secs(60), |p| {
        let ready = p.get_json("/ready")?;
        let page = p.get_json("/api/v1/drift-records?limit=1000")?;
        from_serve = by_id(page["drift_records"].as_array().unwrap_or(&Vec::new()));
        Ok(ready["status"] == "ready" && from_serve == from_check)
    });

    assert!(
        from_check.len() >= 7,
        "every resource is a record: {from_check:#?}"
    );
    for (id, record) in &from_check {
        assert_eq!(
            Some(record),
            from_serve.get(id),
            "{id}: check (left) and serve (right) disagree"
        );
    }
    assert_eq!(
        from_check.keys().collect::<Vec<_>>(),
        from_serve.keys().collect::<Vec<_>>()
    );
    // The drifts made above are all there, so the comparison is not between two empty views.
    let status = |id: &str| from_check[id]["drift_status"].clone();
    assert_eq!(status(&format!("Deployment:{name}:nginx-app")), "active");
    assert_eq!(status(&format!("ConfigMap:{name}:gone")), "active");
    assert_eq!(status(&format!("ConfigMap:{name}:by-hand")), "active");
    assert_eq!(status(&format!("Secret:{name}:creds")), "active");
    // Both read each changed field's line from the repository (check from its one-shot clone,
    // serve from its clone): the line of `replicas:`, and of the Secret's `stringData` key.
    let line_of = |text: &str| yaml.lines().position(|l| l.starts_with(text)).unwrap() + 1;
    let change_line = |id: &str, field: &str| {
        from_check[id]["drift_details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["field"] == field)
            .map(|c| c["source_line"].clone())
    };
    assert_eq!(
        change_line(&format!("Deployment:{name}:nginx-app"), "spec.replicas"),
        Some(json!(line_of("  replicas:")))
    );
    assert_eq!(
        change_line(&format!("Secret:{name}:creds"), "data.password"),
        Some(json!(line_of("  password: s3cret-one")))
    );
}

//! Smoke tests of the real peers: the local control plane, the MongoDB peer, Git.
//!
//! `cluster_*` tests need `DRIFTGUARD_TEST_KUBECONFIG`, `mongo_*` tests
//! `DRIFTGUARD_TEST_MONGODB_URI`; `scripts/test.sh` checks that both kinds ran and passed.

use anyhow::{Context, Result, ensure};
use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::mongo::TestMongo;
use driftguard_test_support::repo_root;
use mongodb::bson::{Document, doc};

/// The seed README's nginx Deployment, from `examples/manifests/nginx.yaml`, without its
/// hard-coded namespace.
fn seed_deployment() -> Result<String> {
    let all = std::fs::read_to_string(repo_root().join("examples/manifests/nginx.yaml"))
        .context("examples/manifests/nginx.yaml")?;
    let deployment = all
        .split("\n---")
        .find(|doc| doc.contains("kind: Deployment"))
        .context("no Deployment in examples/manifests/nginx.yaml")?;
    Ok(deployment.replace("  namespace: driftguard\n", ""))
}

#[test]
fn cluster_smoke_apiserver_is_real() -> Result<()> {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("smoke")?;
    ns.apply_yaml(&seed_deployment()?)?;

    let live = ns.get_json("deployment/nginx-app")?;
    assert_eq!(live["metadata"]["namespace"], ns.name());
    assert_eq!(live["spec"]["replicas"], 2);
    // Fields only a real API server adds.
    assert_eq!(
        live["spec"]["strategy"]["type"], "RollingUpdate",
        "{live:#}"
    );
    assert_eq!(live["spec"]["revisionHistoryLimit"], 10, "{live:#}");
    let container = &live["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "IfNotPresent", "{live:#}");
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .context("no metadata.managedFields")?
        .iter()
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"kubectl-client-side-apply"),
        "{managers:?}"
    );

    // A change made outside Git shows up with its own field manager.
    ns.set_env("deployment/nginx-app", &[("NEWVAR", "x")])?;
    ns.scale("deployment/nginx-app", 3)?;
    let live = ns.get_json("deployment/nginx-app")?;
    assert_eq!(live["spec"]["replicas"], 3);
    let managers = live["metadata"]["managedFields"].to_string();
    assert!(managers.contains("kubectl-set"), "{managers}");
    Ok(())
}

#[test]
fn cluster_smoke_kubectl_errors_carry_stderr() -> Result<()> {
    let ns = TestCluster::shared().namespace("smoke-err")?;
    let error = match ns.get_json("deployment/does-not-exist") {
        Ok(value) => anyhow::bail!("expected an error, got {value}"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("NotFound") || error.contains("not found"),
        "{error}"
    );
    ensure!(!ns.exists("configmap/nothing")?);
    Ok(())
}

#[tokio::test]
async fn mongo_smoke_write_read() -> Result<()> {
    let mongo = TestMongo::shared();
    let client = mongo.client().await?;
    let db = client.database(&mongo.fresh_database_name());
    let records = db.collection::<Document>("drift_records");

    records
        .insert_one(doc! { "resource_id": "Deployment:driftguard:nginx-app", "status": "active" })
        .await?;
    let found = records
        .find_one(doc! { "resource_id": "Deployment:driftguard:nginx-app" })
        .await?
        .context("the inserted document was not found")?;
    assert_eq!(found.get_str("status")?, "active");
    assert_eq!(records.count_documents(doc! {}).await?, 1);
    db.drop().await?;
    Ok(())
}

#[test]
fn git_smoke_commit_and_daemon() -> Result<()> {
    let repo = TestRepo::with_files(&[("apps/nginx.yaml", "kind: ConfigMap\n")])?;
    let first = repo.head()?;
    repo.write("apps/extra.yaml", "kind: Secret\n")?;
    let second = repo.commit("add a secret")?;
    assert_ne!(first, second);

    // The remote has what was pushed, over file:// and git://.
    for url in [repo.url(), repo.serve_git_daemon()?] {
        let out = repo.git(&["ls-remote", &url, "refs/heads/main"])?;
        assert!(out.starts_with(&second), "{url}: {out}");
    }

    repo.force_push_reset(&first)?;
    let out = repo.git(&["ls-remote", &repo.url(), "refs/heads/main"])?;
    assert!(out.starts_with(&first), "{out}");

    repo.create_branch("feature")?;
    repo.checkout("main")?;
    repo.delete_branch("feature")?;
    let out = repo.git(&["ls-remote", &repo.url()])?;
    assert!(!out.contains("feature"), "{out}");
    Ok(())
}

#[test]
fn cluster_private_apiserver_stops_and_restarts() -> Result<()> {
    let private = driftguard_test_support::cluster::PrivateCluster::start()?;
    let ns = private.cluster().namespace("private")?;
    ns.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  a: \"1\"\n")?;

    private.stop_apiserver()?;
    ensure!(
        ns.get_json("configmap/kept").is_err(),
        "the API server still answers after stop_apiserver"
    );
    private.start_apiserver()?;
    // etcd kept the object across the restart.
    assert_eq!(ns.get_json("configmap/kept")?["data"]["a"], "1");
    Ok(())
}

#[tokio::test]
async fn mongo_private_stops_and_resumes() -> Result<()> {
    let private = driftguard_test_support::mongo::PrivateMongo::start()?;
    let db_name = private.mongo().fresh_database_name();
    {
        let client = private.mongo().client().await?;
        let coll = client.database(&db_name).collection::<Document>("c");
        coll.insert_one(doc! { "k": 1 }).await?;
    }
    private.stop()?;
    private.resume()?;
    let client = private.mongo().client().await?;
    let coll = client.database(&db_name).collection::<Document>("c");
    assert_eq!(coll.count_documents(doc! { "k": 1 }).await?, 1);
    Ok(())
}

//! The drift engine against the real control plane (`DRIFTGUARD_TEST_KUBECONFIG`).
//!
//! * `cluster_corpus_*`: every real-world manifest of `../shared/corpus` put into the cluster in
//!   each ordinary way — client-side `kubectl apply`, `kubectl create`, `kubectl apply
//!   --server-side`, and apply followed by a `kubectl get -o json | kubectl replace -f -` round
//!   trip (one test per mode, in names of its own) — then checked: one managed `none` record per
//!   document, no drift.
//! * `cluster_drift_*`: each change a user makes with kubectl yields the change the contract
//!   (§2–§3) describes — field, op, type, severity and manager written here by hand.
//!
//! Every test works in namespaces of its own; the tests fail (never skip) without a plane.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use driftguard_config::Config;
use driftguard_core::{DriftRecord, SecretHasher};
use driftguard_server::oneshot::{self, CheckOutcome};
use driftguard_test_support::cluster::{PatchType, TestCluster, TestNamespace};
use driftguard_test_support::corpus::{
    self, Batch, CorpusFile, NO_NAMESPACE, ReadFile, classify_corpus, clean_up, pack,
    parsed_objects, rewrite, run_kubectl,
};
use driftguard_test_support::{corpus_dir, unique_name};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn config_for(
    cluster: &TestCluster,
    repo: &Path,
    namespaces: &[String],
    default_namespace: &str,
) -> Config {
    let mut config = Config::default();
    config.git.repository_url = repo.display().to_string();
    config.kubernetes.config_path = cluster.kubeconfig().display().to_string();
    config.kubernetes.namespaces = namespaces.to_vec();
    config.kubernetes.default_namespace = default_namespace.to_owned();
    config
}

fn describe(record: &DriftRecord) -> String {
    let changes: Vec<Value> = record
        .drift_details
        .iter()
        .map(|c| serde_json::to_value(c).expect("a change serialises"))
        .collect();
    format!(
        "{} ({}) status={:?} managed={} changes={}",
        record.resource_id,
        record.source_path.clone().unwrap_or_default(),
        record.drift_status,
        record.managed,
        serde_json::to_string(&changes).unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------------------------
// Corpus: zero false positives
// ---------------------------------------------------------------------------------------------

/// What the project's own Git reader reads in each corpus file (object names).
fn git_reader(corpus: &Path) -> impl Fn(&str) -> Option<ReadFile> {
    let options = driftguard_git::ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        NO_NAMESPACE,
        SecretHasher::new(b"corpus-classification".to_vec()),
    )
    .expect("read options");
    let snapshot = driftguard_git::load_local(corpus, &options, None).expect("corpus loads");
    move |file| {
        let entry = snapshot.files.get(file)?;
        Some(ReadFile {
            keys: (entry.objects.iter())
                .map(|o| {
                    (
                        o.key.kind.clone(),
                        o.key.namespace.clone(),
                        o.key.name.clone(),
                    )
                })
                .collect(),
            error: (entry.error.as_ref()).map(|e| format!("line {:?}: {}", e.line, e.message)),
        })
    }
}

/// Runs `jobs` on the pool; returns the failures (`what: error`).
fn run_jobs<T: Send>(
    jobs: Vec<(String, T)>,
    work: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    corpus::run_jobs(jobs, work)
        .into_iter()
        .filter_map(|(what, result)| result.err().map(|error| format!("{what}: {error}")))
        .collect()
}

/// Runs kubectl `jobs` (argument lists) on the pool; returns the failures (`what: error`).
fn run_pool(jobs: Vec<(String, Vec<String>)>, cluster: &TestCluster) -> Vec<String> {
    run_kubectl(cluster, jobs)
        .into_iter()
        .map(|(what, error)| format!("{what}: {error}"))
        .collect()
}

/// How a corpus test puts the files into the cluster: the ordinary ways objects get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `kubectl apply` (client-side; manager `kubectl-client-side-apply`).
    Apply,
    /// `kubectl create -f` (manager `kubectl-create`, which then owns every stored field, the
    /// server's defaults included).
    Create,
    /// `kubectl apply --server-side` (manager `kubectl`).
    ServerSide,
    /// `kubectl apply`, then every object read back and written back unchanged:
    /// `kubectl get -o json | kubectl replace -f -` (manager `kubectl-replace`).
    Replace,
}

impl Mode {
    /// One letter in every name the mode creates (namespaces and cluster-scoped objects), so
    /// that modes running at the same time never collide.
    fn letter(self) -> char {
        match self {
            Mode::Apply => 'a',
            Mode::Create => 'c',
            Mode::ServerSide => 's',
            Mode::Replace => 'r',
        }
    }

    /// The kubectl command that puts a file into the cluster.
    fn verb(self) -> &'static [&'static str] {
        match self {
            Mode::Apply | Mode::Replace => &["apply"],
            Mode::Create => &["create"],
            Mode::ServerSide => &["apply", "--server-side"],
        }
    }
}

/// v1.20's server-side apply refuses a Service or container port without `protocol`: "failed to
/// create typed patch object: .spec.ports: element 0: associative list with keys has an element
/// that omits key field \"protocol\" (and doesn't have default value)".
const PORTS_WITHOUT_PROTOCOL: &str = "omits key field \"protocol\"";

/// v1.20's server-side apply refuses a numeric quantity (`cpu: 0.15`): "….resources.requests.cpu:
/// expected string, got &value.valueUnstructured{Value:0.15}".
const NUMERIC_QUANTITY: &str = "expected string";

/// Files v1.20's server-side apply refuses although client-side apply and create accept them,
/// with (part of) the server's reason. `cluster_corpus_server_side_no_false_positives` checks
/// every other file, and fails on a refusal not listed here or for another reason.
const SERVER_SIDE_REFUSED: &[(&str, &str)] = &[
    (
        "argocd-example-apps/guestbook__guestbook-ui-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/kustomize-guestbook__guestbook-ui-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__carts-db-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__carts-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__catalogue-db-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__catalogue-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__front-end-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__orders-db-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__orders-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__payment-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__queue-master-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__rabbitmq-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__session-db-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__shipping-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__user-db-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "argocd-example-apps/sock-shop__base__user-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/AI__model-serving-tensorflow__service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/AI__vllm-deployment__hpa__gpu-dcgm-exporter-service-gke.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__cluster-dns__dns-backend-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__cockroachdb__cockroachdb-statefulset.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__cpu-manager__exclusive-1.yaml",
        NUMERIC_QUANTITY,
    ),
    (
        "k8s-examples/_archived__javaee__mysql-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__newrelic__newrelic-daemonset.yaml",
        NUMERIC_QUANTITY,
    ),
    (
        "k8s-examples/_archived__nodesjs-mongodb__mongo-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__openshift-origin__openshift-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__selenium__selenium-hub-svc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__spark__spark-gluster__spark-master-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__spark__spark-master-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__spark__spark-ui-proxy-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__spark__zeppelin-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__hazelcast__hazelcast-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__minio__minio-distributed-headless-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__mysql-galera__pxc-cluster-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__mysql-galera__pxc-node1.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__redis__redis-sentinel-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__rethinkdb__admin-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__rethinkdb__driver-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__vitess__guestbook-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__vitess__vtctld-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__storage__vitess__vtgate-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__volumes__flocker__flocker-pod-with-rc.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__volumes__glusterfs__glusterfs-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__volumes__nfs__nfs-server-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__volumes__nfs__nfs-web-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/_archived__volumes__vsphere__simple-statefulset.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/databases__cassandra__cassandra-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/databases__mysql-cinder-pd__mysql-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/databases__mysql-cinder-pd__mysql.yaml",
        NUMERIC_QUANTITY,
    ),
    (
        "k8s-examples/web__guestbook-go__guestbook-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook-go__redis-master-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook-go__redis-replica-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook__all-in-one__guestbook-all-in-one.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook__frontend-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook__redis-master-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-examples/web__guestbook__redis-replica-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__job__rabbitmq__rabbitmq-service.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__mysql__mysql-services.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__nginx-app.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__php-apache.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__web__web.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__wordpress__mysql-deployment.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
    (
        "k8s-website/content__en__examples__application__wordpress__wordpress-deployment.yaml",
        PORTS_WITHOUT_PROTOCOL,
    ),
];

fn apply_job(mode: Mode, batch: &Batch, file: &CorpusFile) -> (String, Vec<String>) {
    let path = batch.dir.join(&file.file).display().to_string();
    // Every file already passed kubectl's schema validation against this server version (see
    // the corpus README); skipping it saves downloading the OpenAPI document on every call.
    let mut args: Vec<String> = mode.verb().iter().map(|s| (*s).to_owned()).collect();
    args.push("--validate=false".to_owned());
    if file.plain {
        args.extend(["-n".to_owned(), batch.namespace.clone()]);
    }
    args.extend(["-f".to_owned(), path]);
    (file.file.clone(), args)
}

/// `kubectl get -f <file> -o json | kubectl replace -f -` for every file not refused: each object
/// read back and written back unchanged, as a person does it.
fn replace_files(
    cluster: &TestCluster,
    batches: &[&Batch],
    refused: &BTreeMap<String, String>,
) -> Vec<String> {
    let jobs: Vec<(String, Vec<String>)> = batches
        .iter()
        .flat_map(|batch| {
            batch
                .files
                .iter()
                .filter(|f| !refused.contains_key(&f.file))
                .map(|file| {
                    let path = batch.dir.join(&file.file).display().to_string();
                    let mut args = vec!["get".to_owned(), "-o".to_owned(), "json".to_owned()];
                    if file.plain {
                        args.extend(["-n".to_owned(), batch.namespace.clone()]);
                    }
                    args.extend(["-f".to_owned(), path]);
                    (file.file.clone(), args)
                })
        })
        .collect();
    run_jobs(jobs, |get| {
        let get: Vec<&str> = get.iter().map(String::as_str).collect();
        let live = cluster
            .kubectl(&get)
            .map_err(|error| format!("kubectl get: {error:#}"))?;
        let out = cluster
            .kubectl_with_stdin(&["replace", "--validate=false", "-f", "-"], &live)
            .map_err(|error| format!("kubectl replace: {error:#}"))?;
        if out.contains(" replaced") {
            Ok(())
        } else {
            Err(format!("kubectl replace replaced nothing: {out}"))
        }
    })
}

/// Removes what the corpus test created that would outlive it and bother others: Services
/// (cluster IPs and node ports are cluster-wide) and cluster-scoped objects (a PersistentVolume
/// keeps its protection finalizer without a controller-manager, so it is released by hand).
struct CorpusCleanup<'a> {
    cluster: &'a TestCluster,
    batches: Vec<(BTreeSet<String>, Vec<String>)>,
}

impl CorpusCleanup<'_> {
    fn clean(cluster: &TestCluster, namespaces: &BTreeSet<String>, cluster_objects: &[String]) {
        clean_up(cluster, &[(namespaces.clone(), cluster_objects.to_vec())]);
    }
}

impl Drop for CorpusCleanup<'_> {
    fn drop(&mut self) {
        clean_up(self.cluster, &self.batches);
    }
}

/// Applies one batch's namespaces and the files that define Namespaces, each file on its own.
fn apply_batch(cluster: &TestCluster, mode: Mode, batch: &Batch) -> Vec<String> {
    let mut failures = Vec::new();
    for ns in batch.namespaces.difference(&batch.defined) {
        if let Err(error) = cluster.kubectl(&["create", "namespace", ns]) {
            failures.push(format!("namespace {ns}: {error:#}"));
        }
    }
    let first: Vec<_> = batch
        .files
        .iter()
        .filter(|f| f.defines_namespace)
        .map(|f| apply_job(mode, batch, f))
        .collect();
    failures.extend(run_pool(first, cluster));
    failures
}

/// A fixed node port is one per cluster, and a Service of another test (or of another mode's
/// batches, still in place) may have been given it at random. Such a failure is retried for a
/// while (the holder's test may be cleaning up); if the port stays taken, the failure names the
/// holder, and [`sort_failures`] takes the file out of the check as refused.
fn retry_taken_node_ports(
    cluster: &TestCluster,
    mode: Mode,
    batch: &Batch,
    failures: Vec<String>,
) -> Vec<String> {
    const TAKEN: &str = "provided port is already allocated";
    let (taken, mut out): (Vec<String>, Vec<String>) =
        failures.into_iter().partition(|f| f.contains(TAKEN));
    for failure in taken {
        let file = failure.split_once(": ").map_or("", |(f, _)| f);
        let Some(corpus_file) = batch.files.iter().find(|f| f.file == file) else {
            out.push(failure);
            continue;
        };
        let mut last = failure.clone();
        for _ in 0..15 {
            std::thread::sleep(std::time::Duration::from_secs(2));
            match run_pool(vec![apply_job(mode, batch, corpus_file)], cluster).pop() {
                None => {
                    last.clear();
                    break;
                }
                Some(again) => last = again,
            }
        }
        if last.is_empty() {
            eprintln!("{file}: its node port was free again after a retry");
            continue;
        }
        let port = last
            .split("Invalid value: ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok());
        let holders: Vec<String> = cluster
            .kubectl(&["get", "services", "--all-namespaces", "-o", "json"])
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|svc| {
                svc["spec"]["ports"]
                    .as_array()
                    .is_some_and(|ports| ports.iter().any(|p| p["nodePort"].as_u64() == port))
            })
            .map(|svc| {
                format!(
                    "{}/{}",
                    svc["metadata"]["namespace"].as_str().unwrap_or(""),
                    svc["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        out.push(format!(
            "{file}: node port {port:?} {TAKEN} by another test's Service {holders:?} for 30 s: {last}"
        ));
    }
    out
}

/// The server's words in a kubectl failure, on one line.
fn server_reason(failure: &str) -> String {
    let text = failure.split_once("):\n").map_or(failure, |(_, rest)| rest);
    let text = text.split("\nstdout:").next().unwrap_or(text);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        format!("{}…", &line[..line.floor_char_boundary(400)])
    } else {
        line
    }
}

/// Splits failures into files the server refuses in this mode (taken out of the check: removed
/// from the batch's repository, and reported loudly) and problems:
/// - a privileged container refused by a plane started without `--allow-privileged`, any mode;
/// - a fixed node port another test's Service holds (see [`retry_taken_node_ports`]), any mode;
/// - in [`Mode::ServerSide`], any refusal of a file (checked against [`SERVER_SIDE_REFUSED`]
///   by the caller).
fn sort_failures(
    mode: Mode,
    batches: &[&Batch],
    failures: Vec<String>,
    refused: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    for failure in failures {
        let (file, error) = failure.split_once(": ").unwrap_or(("", failure.as_str()));
        let is_file = batches
            .iter()
            .any(|b| b.files.iter().any(|f| f.file == file));
        let privileged = error.contains("privileged: Forbidden: disallowed by cluster policy");
        // After `retry_taken_node_ports`: the port is held outside this test.
        let port_held = error.contains("by another test's Service");
        if is_file && (privileged || port_held || mode == Mode::ServerSide) {
            for batch in batches {
                if batch.files.iter().any(|f| f.file == file) {
                    let _ = std::fs::remove_file(batch.dir.join(file));
                }
            }
            let reason = if port_held {
                // The holder first: the server's words follow.
                let (held, server) = error.split_once(" for 30 s: ").unwrap_or((error, ""));
                format!("{held}: {}", server_reason(server))
            } else {
                server_reason(error)
            };
            refused.insert(file.to_owned(), reason);
        } else {
            problems.push(format!("kubectl {:?} failed: {failure}", mode.verb()));
        }
    }
}

/// One `check` over a batch: every document of every file has a managed `none` record.
async fn check_batch(
    cluster: &TestCluster,
    batch: &Batch,
    refused: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> usize {
    let namespaces: Vec<String> = batch.namespaces.iter().cloned().collect();
    let config = config_for(cluster, &batch.dir, &namespaces, &batch.namespace);
    let outcome = oneshot::check(&config).await;
    for error in &outcome.errors {
        problems.push(format!(
            "batch {}: check error {}: {}",
            batch.index, error.source, error.message
        ));
    }
    let mut by_file: BTreeMap<&str, Vec<&DriftRecord>> = BTreeMap::new();
    for record in &outcome.records {
        let source = record.source_path.as_deref().unwrap_or("");
        let file = source.rsplit_once('#').map_or(source, |(f, _)| f);
        by_file.entry(file).or_default().push(record);
        if !record.managed {
            problems.push(format!("unexpected unmanaged record: {}", describe(record)));
        } else if record.drift_detected || !record.drift_details.is_empty() {
            problems.push(format!("FALSE POSITIVE: {}", describe(record)));
        }
    }
    for file in batch
        .files
        .iter()
        .filter(|f| !refused.contains_key(&f.file))
    {
        let found = by_file.get(file.file.as_str()).map_or(0, Vec::len);
        if found != file.docs {
            problems.push(format!(
                "{}: {found} records, expected one per document ({})",
                file.file, file.docs
            ));
        }
    }
    outcome.records.len()
}

/// Default classes (an IngressClass or StorageClass marked default) change what admission
/// writes into every Ingress or PersistentVolumeClaim created meanwhile, in any namespace. The
/// modes run at the same time (each test is its own process), so a mode holds this file lock
/// shared while it creates its ordinary batches, and exclusively while a default class exists.
fn default_class_lock() -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("driftguard-corpus-default-class.lock"))
        .expect("the default-class lock file")
}

/// Puts the whole corpus into the cluster the way `mode` says, then checks every batch: one
/// managed `none` record per document, no drift.
async fn corpus_without_false_positives(mode: Mode) {
    let cluster = TestCluster::shared();
    let Some(corpus) = corpus_dir() else { return };
    let started = Instant::now();
    let run = format!("{}{}", mode.letter(), &unique_name("r")[2..7]);
    let mut reader_problems = Vec::new();
    let files = classify_corpus(&corpus, git_reader(&corpus), &mut reader_problems);
    let total_docs: usize = files.iter().map(|f| f.docs).sum();
    assert!(files.len() >= 295, "the corpus lost files: {}", files.len());
    let mut batches = pack(files, &run, "dgc");
    let workdir = tempfile::Builder::new()
        .prefix("driftguard-corpus-")
        .tempdir()
        .expect("temp dir");

    // Lay out each batch as a repository: plain files byte for byte, the others rewritten.
    for batch in &mut batches {
        batch.dir = workdir.path().join(format!("b{}", batch.index));
        batch.namespaces.insert(batch.namespace.clone());
        let files = batch.files.clone();
        for file in &files {
            let target = batch.dir.join(&file.file);
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            let source = corpus.join(&file.file);
            if file.plain {
                std::fs::copy(&source, &target).expect("copy a corpus file");
            } else {
                let objects =
                    parsed_objects(&cluster, &source).unwrap_or_else(|error| panic!("{error}"));
                assert_eq!(objects.len(), file.docs, "kubectl read {}", file.file);
                let text = rewrite(batch, objects);
                std::fs::write(&target, text).expect("write a rewritten file");
            }
        }
    }
    let mut cleanup = CorpusCleanup {
        cluster: &cluster,
        batches: Vec::new(),
    };
    let (late, normal): (Vec<&Batch>, Vec<&Batch>) =
        batches.iter().partition(|b| b.files.iter().any(|f| f.late));

    // Apply: namespaces and Namespace documents per batch, then every other file on a pool.
    let apply_started = Instant::now();
    let lock = default_class_lock();
    lock.lock_shared().expect("the default-class lock");
    let mut failures = Vec::new();
    for batch in &normal {
        cleanup
            .batches
            .push((batch.namespaces.clone(), batch.cluster_objects.clone()));
        failures.extend(apply_batch(&cluster, mode, batch));
    }
    let rest: Vec<_> = normal
        .iter()
        .flat_map(|b| {
            b.files
                .iter()
                .filter(|f| !f.defines_namespace)
                .map(|f| apply_job(mode, b, f))
        })
        .collect();
    failures.extend(run_pool(rest, &cluster));
    lock.unlock().expect("the default-class lock");
    let apply_time = apply_started.elapsed();
    let mut refused = BTreeMap::new();
    let mut problems = Vec::new();
    sort_failures(mode, &normal, failures, &mut refused, &mut problems);

    let replace_started = Instant::now();
    if mode == Mode::Replace {
        for failure in replace_files(&cluster, &normal, &refused) {
            problems.push(format!("round trip failed: {failure}"));
        }
    }
    let replace_time = replace_started.elapsed();

    // Check: one run per batch, watching every namespace the batch used.
    let check_started = Instant::now();
    let mut records = 0;
    for batch in &normal {
        records += check_batch(&cluster, batch, &refused, &mut problems).await;
    }
    let check_time = check_started.elapsed();
    // Checked: the batches' Services go now, so none of the node ports the server gave them at
    // random is still held when a late file asks for its fixed one (and the guard has nothing
    // left to clean for them).
    clean_up(&cluster, &std::mem::take(&mut cleanup.batches));

    // Files that declare a default class: applied, checked and removed on their own, last, while
    // no other mode creates objects.
    for batch in &late {
        lock.lock().expect("the default-class lock");
        let mut failures = apply_batch(&cluster, mode, batch);
        failures.extend(run_pool(
            batch
                .files
                .iter()
                .filter(|f| !f.defines_namespace)
                .map(|f| apply_job(mode, batch, f))
                .collect(),
            &cluster,
        ));
        let failures = retry_taken_node_ports(&cluster, mode, batch, failures);
        sort_failures(mode, &[*batch], failures, &mut refused, &mut problems);
        if mode == Mode::Replace {
            for failure in replace_files(&cluster, &[*batch], &refused) {
                problems.push(format!("round trip failed: {failure}"));
            }
        }
        records += check_batch(&cluster, batch, &refused, &mut problems).await;
        CorpusCleanup::clean(&cluster, &batch.namespaces, &batch.cluster_objects);
        lock.unlock().expect("the default-class lock");
    }
    if !refused.is_empty() {
        eprintln!(
            "\n!!! {} corpus file(s) NOT CHECKED in mode {mode:?}: the server refused them:\n{}\n",
            refused.len(),
            refused
                .iter()
                .map(|(file, reason)| format!("!!! {file}: {reason}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for (file, reason) in &refused {
        let privileged = reason.contains("privileged: Forbidden: disallowed by cluster policy")
            || reason.contains("by another test's Service");
        let listed = mode == Mode::ServerSide
            && SERVER_SIDE_REFUSED
                .iter()
                .any(|(f, why)| f == file && reason.contains(why));
        if !privileged && !listed {
            problems.push(format!(
                "{file}: refused in mode {mode:?} and not listed as refused: {reason}"
            ));
        }
    }
    let expected_docs = total_docs
        - batches
            .iter()
            .flat_map(|b| &b.files)
            .filter(|f| refused.contains_key(&f.file))
            .map(|f| f.docs)
            .sum::<usize>();
    // Files the Git reader cannot read are the subject of `cluster_corpus_every_file_parses`.
    if !reader_problems.is_empty() {
        eprintln!(
            "!!! {} corpus file(s) skipped here, the Git reader refuses them:\n!!! {}",
            reader_problems.len(),
            reader_problems.join("\n!!! ")
        );
    }
    eprintln!(
        "corpus {mode:?}: {} batches, {records} records for {total_docs} documents; apply \
         {:.1?}, round trip {:.1?}, checks {:.1?}, total {:.1?}",
        batches.len(),
        apply_time,
        replace_time,
        check_time,
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) on the real corpus in mode {mode:?}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(records, expected_docs, "one record per corpus document");
}

/// The corpus applied with client-side `kubectl apply`: no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_corpus_apply_no_false_positives() {
    corpus_without_false_positives(Mode::Apply).await;
}

/// The corpus created with `kubectl create -f` (its manager owns every stored field, the
/// server's defaults included): no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_corpus_create_no_false_positives() {
    corpus_without_false_positives(Mode::Create).await;
}

/// The corpus applied with `kubectl apply --server-side` (manager `kubectl`): no drift.
///
/// Files v1.20 refuses in this mode are not checked (they are printed, with the server's
/// reason); every refusal must be one of [`SERVER_SIDE_REFUSED`], for the reason given there.
/// Measured on the v1.20.2 plane: 62 of the corpus's files.
///
/// Ports without `protocol` (59 files):
/// - `argocd-example-apps/guestbook__guestbook-ui-svc.yaml`
/// - `argocd-example-apps/kustomize-guestbook__guestbook-ui-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__carts-db-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__carts-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__catalogue-db-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__catalogue-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__front-end-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__orders-db-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__orders-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__payment-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__queue-master-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__rabbitmq-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__session-db-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__shipping-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__user-db-svc.yaml`
/// - `argocd-example-apps/sock-shop__base__user-svc.yaml`
/// - `k8s-examples/AI__model-serving-tensorflow__service.yaml`
/// - `k8s-examples/AI__vllm-deployment__hpa__gpu-dcgm-exporter-service-gke.yaml`
/// - `k8s-examples/_archived__cluster-dns__dns-backend-service.yaml`
/// - `k8s-examples/_archived__cockroachdb__cockroachdb-statefulset.yaml`
/// - `k8s-examples/_archived__javaee__mysql-service.yaml`
/// - `k8s-examples/_archived__nodesjs-mongodb__mongo-service.yaml`
/// - `k8s-examples/_archived__openshift-origin__openshift-service.yaml`
/// - `k8s-examples/_archived__selenium__selenium-hub-svc.yaml`
/// - `k8s-examples/_archived__spark__spark-gluster__spark-master-service.yaml`
/// - `k8s-examples/_archived__spark__spark-master-service.yaml`
/// - `k8s-examples/_archived__spark__spark-ui-proxy-service.yaml`
/// - `k8s-examples/_archived__spark__zeppelin-service.yaml`
/// - `k8s-examples/_archived__storage__hazelcast__hazelcast-service.yaml`
/// - `k8s-examples/_archived__storage__minio__minio-distributed-headless-service.yaml`
/// - `k8s-examples/_archived__storage__mysql-galera__pxc-cluster-service.yaml`
/// - `k8s-examples/_archived__storage__mysql-galera__pxc-node1.yaml`
/// - `k8s-examples/_archived__storage__redis__redis-sentinel-service.yaml`
/// - `k8s-examples/_archived__storage__rethinkdb__admin-service.yaml`
/// - `k8s-examples/_archived__storage__rethinkdb__driver-service.yaml`
/// - `k8s-examples/_archived__storage__vitess__guestbook-service.yaml`
/// - `k8s-examples/_archived__storage__vitess__vtctld-service.yaml`
/// - `k8s-examples/_archived__storage__vitess__vtgate-service.yaml`
/// - `k8s-examples/_archived__volumes__flocker__flocker-pod-with-rc.yaml`
/// - `k8s-examples/_archived__volumes__glusterfs__glusterfs-service.yaml`
/// - `k8s-examples/_archived__volumes__nfs__nfs-server-service.yaml`
/// - `k8s-examples/_archived__volumes__nfs__nfs-web-service.yaml`
/// - `k8s-examples/_archived__volumes__vsphere__simple-statefulset.yaml`
/// - `k8s-examples/databases__cassandra__cassandra-service.yaml`
/// - `k8s-examples/databases__mysql-cinder-pd__mysql-service.yaml`
/// - `k8s-examples/web__guestbook-go__guestbook-service.yaml`
/// - `k8s-examples/web__guestbook-go__redis-master-service.yaml`
/// - `k8s-examples/web__guestbook-go__redis-replica-service.yaml`
/// - `k8s-examples/web__guestbook__all-in-one__guestbook-all-in-one.yaml`
/// - `k8s-examples/web__guestbook__frontend-service.yaml`
/// - `k8s-examples/web__guestbook__redis-master-service.yaml`
/// - `k8s-examples/web__guestbook__redis-replica-service.yaml`
/// - `k8s-website/content__en__examples__application__job__rabbitmq__rabbitmq-service.yaml`
/// - `k8s-website/content__en__examples__application__mysql__mysql-services.yaml`
/// - `k8s-website/content__en__examples__application__nginx-app.yaml`
/// - `k8s-website/content__en__examples__application__php-apache.yaml`
/// - `k8s-website/content__en__examples__application__web__web.yaml`
/// - `k8s-website/content__en__examples__application__wordpress__mysql-deployment.yaml`
/// - `k8s-website/content__en__examples__application__wordpress__wordpress-deployment.yaml`
///
/// Numeric `cpu` quantities (3 files; `_archived__storage__mysql-galera__pxc-node1.yaml`,
/// listed above, has both):
/// - `k8s-examples/_archived__cpu-manager__exclusive-1.yaml`
/// - `k8s-examples/_archived__newrelic__newrelic-daemonset.yaml`
/// - `k8s-examples/databases__mysql-cinder-pd__mysql.yaml`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_corpus_server_side_no_false_positives() {
    corpus_without_false_positives(Mode::ServerSide).await;
}

/// The corpus applied with `kubectl apply`, then each object round-tripped unchanged through
/// `kubectl get -o json | kubectl replace -f -`: no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_corpus_replace_no_false_positives() {
    corpus_without_false_positives(Mode::Replace).await;
}

/// Every document kubectl accepted is read by the Git reader too — files with duplicate mapping
/// keys included. kubectl silently keeps the last of two `selector:` keys, and so does the reader
/// (issue 13; issue 4 had made them parse errors that dropped the whole file): each object
/// concerned carries a `duplicate-key` warning naming the file, the line and the key's path.
#[test]
fn cluster_corpus_every_file_parses() {
    let _ = TestCluster::shared();
    let Some(corpus) = corpus_dir() else { return };
    let mut reader_problems = Vec::new();
    let files = classify_corpus(&corpus, git_reader(&corpus), &mut reader_problems);
    assert!(files.len() >= 295, "the corpus lost files: {}", files.len());
    assert!(
        reader_problems.is_empty(),
        "{} corpus file(s) the Git reader refuses although kubectl applies them:\n{}",
        reader_problems.len(),
        reader_problems.join("\n")
    );
    // The five known files with duplicate keys are read, with a warning on their objects.
    let options = driftguard_git::ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        SecretHasher::new(b"corpus-duplicates".to_vec()),
    )
    .expect("read options");
    let snapshot = driftguard_git::load_local(&corpus, &options, None).expect("corpus loads");
    let mut duplicates = BTreeSet::new();
    for (path, entry) in &snapshot.files {
        for object in &entry.objects {
            for warning in &object.warnings {
                assert_eq!(
                    warning.code,
                    driftguard_core::warning::DUPLICATE_KEY,
                    "{path}: {warning:?}"
                );
                assert!(
                    warning.message.contains(&format!("{path} line ")) && !warning.field.is_root(),
                    "{path}: {warning:?}"
                );
                duplicates.insert(path.clone());
            }
        }
    }
    assert_eq!(duplicates.len(), 5, "{duplicates:#?}");
}

// ---------------------------------------------------------------------------------------------
// Real drift: each change a user makes, as the contract describes it
// ---------------------------------------------------------------------------------------------

/// What the tests add to the seed manifests: a Secret and a Deployment with a volume and a pod
/// security context.
const EXTRA: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: app-secret
type: Opaque
stringData:
  password: s3cret-value
  user: admin
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  replicas: 1
  selector:
    matchLabels:
      app: worker
  template:
    metadata:
      labels:
        app: worker
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
      containers:
      - name: worker
        image: busybox:1.36
        command: ["sleep", "3600"]
        volumeMounts:
        - name: scratch
          mountPath: /scratch
      volumes:
      - name: scratch
        emptyDir: {}
"#;

/// The seed manifests (`examples/manifests/nginx.yaml`, its hard-coded namespace removed so
/// that they land in the test's namespace) plus [`EXTRA`], applied with `kubectl apply` and
/// checked once: no drift right after the apply.
struct Seed {
    cluster: TestCluster,
    ns: TestNamespace,
    repo: tempfile::TempDir,
    nginx: String,
}

impl Seed {
    async fn new(prefix: &str) -> Seed {
        let cluster = TestCluster::shared();
        let ns = cluster.namespace(prefix).expect("a fresh namespace");
        let original = std::fs::read_to_string(
            driftguard_test_support::repo_root().join("examples/manifests/nginx.yaml"),
        )
        .expect("examples/manifests/nginx.yaml");
        let nginx: String = original
            .lines()
            .filter(|l| l.trim() != "namespace: driftguard")
            .map(|l| format!("{l}\n"))
            .collect();
        let repo = tempfile::Builder::new()
            .prefix("driftguard-drift-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(repo.path().join("nginx.yaml"), &nginx).expect("write nginx.yaml");
        std::fs::write(repo.path().join("extra.yaml"), EXTRA).expect("write extra.yaml");
        ns.apply_yaml(&nginx).expect("apply nginx.yaml");
        ns.apply_yaml(EXTRA).expect("apply extra.yaml");
        let seed = Seed {
            cluster,
            ns,
            repo,
            nginx,
        };
        let outcome = seed.check(Vec::new()).await;
        assert!(
            outcome.errors.is_empty(),
            "check errors: {:?}",
            outcome.errors
        );
        assert_eq!(outcome.records.len(), 5, "five managed resources");
        for record in &outcome.records {
            assert!(
                !record.drift_detected,
                "drift right after apply: {}",
                describe(record)
            );
        }
        seed
    }

    fn id(&self, kind: &str, name: &str) -> String {
        format!("{kind}:{}:{name}", self.ns.name())
    }

    async fn check(&self, ignore: Vec<driftguard_config::IgnoreRuleConfig>) -> CheckOutcome {
        let mut config = config_for(
            &self.cluster,
            self.repo.path(),
            &[self.ns.name().to_owned()],
            self.ns.name(),
        );
        config.drift_detection.ignore = ignore;
        oneshot::check(&config).await
    }

    /// Checks and asserts the changes of one resource (only the keys each expectation names are
    /// compared), and that every other resource has no drift.
    async fn expect(&self, kind: &str, name: &str, expected: Value) -> DriftRecord {
        let outcome = self.check(Vec::new()).await;
        expect_in(&outcome, &self.id(kind, name), expected)
    }
}

impl Drop for Seed {
    /// Cluster IPs are a cluster-wide, small range (a /24 here): give the Service's back.
    fn drop(&mut self) {
        let _ = self
            .ns
            .kubectl(&["delete", "services", "--all", "--wait=false"]);
    }
}

fn expect_in(outcome: &CheckOutcome, id: &str, expected: Value) -> DriftRecord {
    assert!(
        outcome.errors.is_empty(),
        "check errors: {:?}",
        outcome.errors
    );
    for record in &outcome.records {
        if record.resource_id != id {
            assert!(
                !record.drift_detected,
                "unexpected drift: {}",
                describe(record)
            );
        }
    }
    let record = outcome
        .records
        .iter()
        .find(|r| r.resource_id == id)
        .unwrap_or_else(|| panic!("no record for {id}"))
        .clone();
    let expected = expected.as_array().expect("a list of changes").clone();
    let actual: Vec<Value> = record
        .drift_details
        .iter()
        .map(|c| serde_json::to_value(c).expect("a change serialises"))
        .collect();
    let shown = || describe(&record);
    assert_eq!(actual.len(), expected.len(), "changes of {}", shown());
    for (want, got) in expected.iter().zip(&actual) {
        for (key, value) in want.as_object().expect("an expectation object") {
            assert_eq!(
                got.get(key).unwrap_or(&Value::Null),
                value,
                "`{key}` of a change of {}",
                shown()
            );
        }
    }
    if expected.is_empty() {
        assert!(!record.drift_detected, "{}", shown());
        assert_eq!(format!("{:?}", record.drift_status), "None");
    } else {
        assert!(record.drift_detected, "{}", shown());
    }
    record
}

const NGINX: &str = "spec.template.spec.containers[name=nginx]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_scale_medium_then_high_without_manager() {
    let seed = Seed::new("dg-drift-scale").await;
    seed.ns.scale("deployment/nginx-app", 3).expect("scale");
    let record = seed
        .expect(
            "Deployment",
            "nginx-app",
            json!([{"field": "spec.replicas", "op": "changed", "from": 2, "to": 3,
                    "type": "Scaling", "severity": "medium", "manager": null}]),
        )
        .await;
    assert_eq!(
        record.severity.map(|s| format!("{s:?}")),
        Some("Medium".into())
    );
    seed.ns.scale("deployment/nginx-app", 4).expect("scale");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": "spec.replicas", "op": "changed", "from": 2, "to": 4,
                "type": "Scaling", "severity": "high", "manager": null}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_set_image() {
    let seed = Seed::new("dg-drift-image").await;
    seed.ns
        .set_image("deployment/nginx-app", "nginx", "nginx:1.25")
        .expect("set image");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": format!("{NGINX}.image"), "op": "changed", "from": "nginx:1.23",
                "to": "nginx:1.25", "type": "VersionChange", "severity": "high",
                "manager": "kubectl-set"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_set_env_change_and_add() {
    let seed = Seed::new("dg-drift-env").await;
    seed.ns
        .set_env("deployment/nginx-app", &[("LOG_LEVEL", "debug")])
        .expect("set env");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": format!("{NGINX}.env[name=LOG_LEVEL].value"), "op": "changed",
                "from": "info", "to": "debug", "type": "ConfigurationChange",
                "severity": "medium", "manager": "kubectl-set"}]),
    )
    .await;
    seed.ns
        .set_env("deployment/nginx-app", &[("NEWVAR", "x")])
        .expect("set env");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([
            {"field": format!("{NGINX}.env[name=LOG_LEVEL].value"), "op": "changed",
             "type": "ConfigurationChange", "manager": "kubectl-set"},
            {"field": format!("{NGINX}.env[name=NEWVAR]"), "op": "added", "from": null,
             "to": {"name": "NEWVAR", "value": "x"}, "type": "ConfigurationChange",
             "severity": "medium", "manager": "kubectl-set"},
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_resource_patch() {
    let seed = Seed::new("dg-drift-resources").await;
    seed.ns
        .patch(
            "deployment/nginx-app",
            PatchType::Strategic,
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","resources":{"limits":{"memory":"256Mi"}}}]}}}}"#,
            None,
        )
        .expect("patch");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": format!("{NGINX}.resources.limits.memory"), "op": "changed",
                "from": "128Mi", "to": "256Mi", "type": "ResourceChange",
                "severity": "medium", "manager": "kubectl-patch"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_labels_add_change_remove() {
    let seed = Seed::new("dg-drift-labels").await;
    seed.ns
        .label("deployment/nginx-app", "team=ops")
        .expect("label");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": "metadata.labels.team", "op": "added", "from": null, "to": "ops",
                "type": "LabelChange", "severity": "low", "manager": "kubectl-label"}]),
    )
    .await;
    seed.ns
        .label("deployment/nginx-app", "team-")
        .expect("label");
    seed.ns
        .label("deployment/nginx-app", "environment=prod")
        .expect("label");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": "metadata.labels.environment", "op": "changed", "from": "test",
                "to": "prod", "type": "LabelChange", "severity": "low",
                "manager": "kubectl-label"}]),
    )
    .await;
    seed.ns
        .label("deployment/nginx-app", "environment-")
        .expect("label");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": "metadata.labels.environment", "op": "removed", "from": "test",
                "to": null, "type": "LabelChange", "severity": "low", "manager": null}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_label_added_where_git_has_no_labels() {
    let seed = Seed::new("dg-drift-label-new-map").await;
    seed.ns
        .label("configmap/nginx-config", "hotfix=yes")
        .expect("label");
    seed.expect(
        "ConfigMap",
        "nginx-config",
        json!([{"field": "metadata.labels.hotfix", "op": "added", "from": null, "to": "yes",
                "type": "LabelChange", "severity": "low", "manager": "kubectl-label"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_annotation_add() {
    let seed = Seed::new("dg-drift-annotation").await;
    seed.ns
        .annotate("service/nginx-service", "example.com/owner=ops")
        .expect("annotate");
    seed.expect(
        "Service",
        "nginx-service",
        json!([{"field": "metadata.annotations[\"example.com/owner\"]", "op": "added",
                "from": null, "to": "ops", "type": "AnnotationChange", "severity": "low",
                "manager": "kubectl-annotate"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_configmap_key_add_and_edit() {
    let seed = Seed::new("dg-drift-configmap").await;
    seed.ns
        .patch(
            "configmap/nginx-config",
            PatchType::Merge,
            r#"{"data":{"retries":"3","version":"1.0.1"}}"#,
            None,
        )
        .expect("patch");
    seed.expect(
        "ConfigMap",
        "nginx-config",
        json!([
            {"field": "data.retries", "op": "added", "from": null, "to": "3",
             "type": "ConfigMapChange", "severity": "medium", "manager": "kubectl-patch"},
            {"field": "data.version", "op": "changed", "from": "1.0.0", "to": "1.0.1",
             "type": "ConfigMapChange", "severity": "medium", "manager": "kubectl-patch"},
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_secret_key_edit_shows_digests_only() {
    let seed = Seed::new("dg-drift-secret").await;
    seed.ns
        .patch(
            "secret/app-secret",
            PatchType::Merge,
            r#"{"stringData":{"password":"another-value"}}"#,
            None,
        )
        .expect("patch");
    let record = seed
        .expect(
            "Secret",
            "app-secret",
            json!([{"field": "data.password", "op": "changed", "type": "SecretChange",
                    "severity": "high", "manager": "kubectl-patch"}]),
        )
        .await;
    let change = &record.drift_details[0];
    for value in [&change.from, &change.to] {
        let text = value.as_ref().and_then(Value::as_str).unwrap_or_default();
        assert!(text.starts_with("hmac-sha256:"), "not a digest: {text}");
    }
    assert_ne!(change.from, change.to);
    let whole = serde_json::to_string(&record).expect("record JSON");
    for secret in [
        "s3cret-value",
        "another-value",
        "czNjcmV0LXZhbHVl",
        "YW5vdGhlci12YWx1ZQ",
    ] {
        assert!(
            !whole.contains(secret),
            "a Secret value leaked into the record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_service_port_change() {
    let seed = Seed::new("dg-drift-port").await;
    seed.ns
        .patch(
            "service/nginx-service",
            PatchType::Json,
            r#"[{"op":"replace","path":"/spec/ports/0/targetPort","value":8080}]"#,
            None,
        )
        .expect("patch");
    seed.expect(
        "Service",
        "nginx-service",
        json!([{"field": "spec.ports[port=80,protocol=TCP].targetPort", "op": "changed",
                "from": 80, "to": 8080, "type": "PortChange", "severity": "medium",
                "manager": "kubectl-patch"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_volume_add_and_security_context() {
    let seed = Seed::new("dg-drift-volume").await;
    seed.ns
        .patch(
            "deployment/worker",
            PatchType::Strategic,
            r#"{"spec":{"template":{"spec":{"volumes":[{"name":"cache","emptyDir":{}}]}}}}"#,
            None,
        )
        .expect("patch");
    seed.expect(
        "Deployment",
        "worker",
        json!([{"field": "spec.template.spec.volumes[name=cache]", "op": "added",
                "from": null, "to": {"name": "cache", "emptyDir": {}},
                "type": "VolumeChange", "severity": "medium", "manager": "kubectl-patch"}]),
    )
    .await;
    seed.ns
        .patch(
            "deployment/worker",
            PatchType::Strategic,
            r#"{"spec":{"template":{"spec":{"securityContext":{"runAsUser":0}}}}}"#,
            None,
        )
        .expect("patch");
    seed.expect(
        "Deployment",
        "worker",
        json!([
            {"field": "spec.template.spec.securityContext.runAsUser", "op": "changed",
             "from": 1000, "to": 0, "type": "SecurityChange", "severity": "high",
             "manager": "kubectl-patch"},
            {"field": "spec.template.spec.volumes[name=cache]", "op": "added",
             "type": "VolumeChange", "manager": "kubectl-patch"},
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_apply_of_edited_manifest_adds_env() {
    let seed = Seed::new("dg-drift-apply-edited").await;
    let edited = seed.nginx.replace(
        "        - name: LOG_LEVEL\n          value: \"info\"\n",
        "        - name: LOG_LEVEL\n          value: \"info\"\n        - name: EXTRA\n          value: \"1\"\n",
    );
    assert_ne!(edited, seed.nginx, "the edit applies");
    seed.ns.apply_yaml(&edited).expect("apply the edited copy");
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": format!("{NGINX}.env[name=EXTRA]"), "op": "added", "from": null,
                "to": {"name": "EXTRA", "value": "1"}, "type": "ConfigurationChange",
                "severity": "medium", "manager": "kubectl-client-side-apply"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_replace_of_edited_object() {
    let seed = Seed::new("dg-drift-replace").await;
    let mut live = seed.ns.get_json("configmap/nginx-config").expect("get");
    live["data"]["version"] = json!("2.0.0");
    if let Some(meta) = live["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    seed.ns
        .replace_yaml(&serde_json::to_string(&live).expect("JSON"))
        .expect("replace");
    seed.expect(
        "ConfigMap",
        "nginx-config",
        json!([{"field": "data.version", "op": "changed", "from": "1.0.0", "to": "2.0.0",
                "type": "ConfigMapChange", "severity": "medium",
                "manager": "kubectl-replace"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_deleted_resource_is_missing() {
    let seed = Seed::new("dg-drift-delete").await;
    seed.ns.delete("configmap/nginx-config").expect("delete");
    let record = seed
        .expect(
            "ConfigMap",
            "nginx-config",
            json!([{"field": "", "op": "removed", "from": null, "to": null,
                    "type": "MissingResource", "severity": "high", "manager": null}]),
        )
        .await;
    assert!(record.managed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_ignore_replicas_by_manager() {
    let seed = Seed::new("dg-drift-ignore").await;
    seed.ns
        .patch(
            "deployment/nginx-app",
            PatchType::Merge,
            r#"{"spec":{"replicas":5}}"#,
            Some("horizontal-pod-autoscaler"),
        )
        .expect("patch as the HPA");
    // Without a rule: the change, attributed to the HPA (v1.20 records the manager of a patch
    // through the main resource).
    seed.expect(
        "Deployment",
        "nginx-app",
        json!([{"field": "spec.replicas", "op": "changed", "from": 2, "to": 5,
                "type": "Scaling", "severity": "high",
                "manager": "horizontal-pod-autoscaler"}]),
    )
    .await;
    let rule = driftguard_config::IgnoreRuleConfig {
        paths: vec!["spec.replicas".into()],
        managers: vec!["horizontal-pod-autoscaler".into()],
        ..Default::default()
    };
    let outcome = seed.check(vec![rule.clone()]).await;
    expect_in(&outcome, &seed.id("Deployment", "nginx-app"), json!([]));
    // Another manager writing the same path is not covered by the rule.
    seed.ns
        .patch(
            "deployment/nginx-app",
            PatchType::Merge,
            r#"{"spec":{"replicas":3}}"#,
            Some("ops-person"),
        )
        .expect("patch as a person");
    let outcome = seed.check(vec![rule]).await;
    expect_in(
        &outcome,
        &seed.id("Deployment", "nginx-app"),
        json!([{"field": "spec.replicas", "op": "changed", "from": 2, "to": 3,
                "type": "Scaling", "severity": "medium", "manager": "ops-person"}]),
    );
}

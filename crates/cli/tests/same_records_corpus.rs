//! One evaluation path (issue 15) on the real corpus: `check` and `serve` produce the same
//! records for the same repository and cluster, on every licence-clean manifest of `corpus/`
//! (applied with client-side `kubectl apply`), with a few drifts made by hand on top.
//!
//! The corpus holds the same names many times over (several `nginx` Deployments, …), so its
//! files are packed into batches whose identities do not collide, each batch in namespaces of its
//! own (as `crates/server/tests/engine_cluster.rs` does). All batches go into one Git repository
//! (`b<index>/<corpus path>`) watched by one `check` and one `serve`: the first batch's files
//! that name no namespace stay byte for byte (they take `kubernetes.default_namespace`), every
//! other file is rewritten with explicit namespaces and per-batch names for cluster-scoped
//! objects. Files that declare a default class or a fixed node port are left out: they act on
//! the whole cluster, and the corpus tests of `driftguard-server` apply them alone, under a lock.
//!
//! Before either command runs, a Deployment gets an env var (and is scaled), a ConfigMap value
//! is changed, a Service deleted and a ConfigMap created by hand, so drifted records (changed,
//! missing, unmanaged) are compared too, not only `none`. `serve` is read once its first
//! (startup) analysis has finished; on a mismatch the message shows the first differences, the
//! startup run's log line, and what is left after one more full analysis (`POST
//! /api/v1/analyze`), to tell a record `serve` never makes from one it makes late.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use driftguard_core::SecretHasher;
use driftguard_test_support::cluster::{PatchType, TestCluster};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use driftguard_test_support::{corpus_dir, unique_name};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

/// Kinds the corpus holds that are cluster-scoped.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodSecurityPolicy",
    "IngressClass",
];

/// Parallel kubectl calls.
const POOL: usize = 4;

/// How many mismatches the assertion message shows in full.
const SHOWN: usize = 5;

/// (kind, hard-coded namespace or "", name).
type Identity = (String, String, String);

#[derive(Debug, Clone)]
struct CorpusFile {
    /// Path relative to the corpus root.
    file: String,
    docs: usize,
    /// Every document is namespaced and names no namespace.
    plain: bool,
    /// Holds a ResourceQuota or LimitRange: alone in its batch.
    isolated: bool,
    /// Declares a default class or a fixed node port: left out (see the module comment).
    late: bool,
    ids: Vec<Identity>,
    defines_namespace: bool,
}

#[derive(Debug, Default)]
struct Batch {
    index: usize,
    tag: String,
    files: Vec<CorpusFile>,
    namespace: String,
    namespaces: BTreeSet<String>,
    defined: BTreeSet<String>,
    cluster_objects: Vec<String>,
}

impl Batch {
    /// Where the batch's files live in the repository.
    fn repo_path(&self, file: &CorpusFile) -> String {
        format!("b{}/{}", self.index, file.file)
    }

    /// Whether `file` keeps its bytes (and is applied with `-n <batch namespace>`).
    fn verbatim(&self, file: &CorpusFile) -> bool {
        self.index == 0 && file.plain
    }
}

fn map_name(name: &str, tag: &str, max: usize) -> String {
    let keep = max.saturating_sub(tag.len() + 1);
    let base: String = name.chars().take(keep).collect();
    format!("{}-{tag}", base.trim_end_matches(['-', '.']))
}

/// Reads `corpus/index.json` and each file with the project's Git reader (object names).
fn classify_corpus(corpus: &Path) -> Vec<CorpusFile> {
    const MARKER: &str = "dgc-no-namespace-marker";
    let options = driftguard_git::ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        MARKER,
        SecretHasher::new(b"corpus-classification".to_vec()),
    )
    .expect("read options");
    let snapshot = driftguard_git::load_local(corpus, &options, None).expect("corpus loads");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("index.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for f in index["files"].as_array().expect("index.json has files") {
        let file = f["file"].as_str().unwrap().to_owned();
        let docs = usize::try_from(f["docs"].as_u64().unwrap()).unwrap();
        let kinds: Vec<&str> = f["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let entry = snapshot
            .files
            .get(&file)
            .unwrap_or_else(|| panic!("the Git reader did not read corpus file {file}"));
        assert_eq!(
            entry.objects.len(),
            docs,
            "the Git reader's documents in {file}: {:?}",
            entry.error.as_ref().map(|e| &e.message)
        );
        let text = std::fs::read_to_string(corpus.join(&file)).unwrap();
        let mut plain = true;
        let mut ids = Vec::new();
        for object in &entry.objects {
            let key = &object.key;
            if CLUSTER_SCOPED.contains(&key.kind.as_str()) || key.namespace != MARKER {
                plain = false;
            }
            let ns = if key.namespace == MARKER {
                String::new()
            } else {
                key.namespace.clone()
            };
            ids.push((key.kind.clone(), ns, key.name.clone()));
        }
        out.push(CorpusFile {
            file,
            docs,
            plain,
            isolated: kinds
                .iter()
                .any(|k| *k == "ResourceQuota" || *k == "LimitRange"),
            late: text.contains("is-default-class")
                || text
                    .lines()
                    .any(|l| l.trim_start().starts_with("nodePort:")),
            defines_namespace: kinds.contains(&"Namespace"),
            ids,
        });
    }
    out
}

/// Greedy packing: a file joins the first batch where none of its identities is taken.
fn pack(files: Vec<CorpusFile>, run: &str) -> Vec<Batch> {
    let mut batches: Vec<(Batch, BTreeSet<Identity>)> = Vec::new();
    for file in files {
        let ids: BTreeSet<_> = file.ids.iter().cloned().collect();
        let slot = if file.isolated {
            None
        } else {
            batches.iter().position(|(b, taken)| {
                !b.files.first().is_some_and(|f| f.isolated) && taken.is_disjoint(&ids)
            })
        };
        let slot = slot.unwrap_or_else(|| {
            batches.push((Batch::default(), BTreeSet::new()));
            batches.len() - 1
        });
        batches[slot].1.extend(ids);
        batches[slot].0.files.push(file);
    }
    let mut out: Vec<Batch> = batches.into_iter().map(|(b, _)| b).collect();
    for (index, batch) in out.iter_mut().enumerate() {
        batch.index = index;
        batch.tag = format!("{run}b{index}");
        batch.namespace = format!("dgs-{run}-b{index}");
        batch.namespaces.insert(batch.namespace.clone());
    }
    out
}

/// The file's objects as kubectl parses them.
fn parsed_objects(cluster: &TestCluster, path: &Path) -> Result<Vec<Value>, String> {
    let out = cluster
        .kubectl(&[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "--validate=false",
            "-f",
            path.to_str().expect("utf-8 path"),
        ])
        .map_err(|e| format!("kubectl could not parse {}: {e:#}", path.display()))?;
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let value = value.map_err(|e| e.to_string())?;
        if value["kind"] == "List" && value.get("items").is_some() {
            objects.extend(value["items"].as_array().cloned().unwrap_or_default());
        } else {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// Explicit namespaces (the batch's), and per-batch names for hard-coded namespaces and
/// cluster-scoped objects; the rest of each object is what kubectl read from the file.
fn rewrite(batch: &mut Batch, objects: Vec<Value>) -> String {
    let mut docs = Vec::new();
    for mut object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("an object has metadata");
        meta.remove("creationTimestamp");
        let name = meta["name"].as_str().unwrap_or_default().to_owned();
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            let new = if kind == "Namespace" {
                let mapped = map_name(&name, &batch.tag, 63);
                batch.defined.insert(mapped.clone());
                batch.namespaces.insert(mapped.clone());
                mapped
            } else {
                map_name(&name, &batch.tag, 253)
            };
            meta.insert("name".into(), Value::String(new.clone()));
            batch
                .cluster_objects
                .push(format!("{}/{new}", kind.to_lowercase()));
        } else {
            let namespace = match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() => map_name(ns, &batch.tag, 63),
                _ => batch.namespace.clone(),
            };
            batch.namespaces.insert(namespace.clone());
            meta.insert("namespace".into(), Value::String(namespace));
        }
        if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
            for subject in subjects {
                if let Some(ns) = subject.get("namespace").and_then(Value::as_str) {
                    subject["namespace"] = Value::String(map_name(ns, &batch.tag, 63));
                }
            }
        }
        if let Some(ns) = object
            .pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str)
        {
            let mapped = map_name(ns, &batch.tag, 63);
            object["spec"]["claimRef"]["namespace"] = Value::String(mapped);
        }
        docs.push(serde_json::to_string_pretty(&object).expect("JSON"));
    }
    format!("---\n{}\n", docs.join("\n---\n"))
}

/// Runs `jobs` on a small pool of threads; returns (what, result) in any order.
fn run_jobs<T: Send, R: Send>(
    jobs: Vec<(String, T)>,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<(String, R)> {
    let queue = Mutex::new(jobs.into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..POOL {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((what, job)) = next else { break };
                    let result = work(&job);
                    results.lock().expect("results").push((what, result));
                }
            });
        }
    });
    results.into_inner().expect("results")
}

/// kubectl `jobs` on the pool; returns the failures as (what, error).
fn run_kubectl(cluster: &TestCluster, jobs: Vec<(String, Vec<String>)>) -> Vec<(String, String)> {
    run_jobs(jobs, |args| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster
            .kubectl(&args)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    })
    .into_iter()
    .filter_map(|(what, r)| r.err().map(|e| (what, e)))
    .collect()
}

/// Removes what outlives the namespaces (Services hold cluster IPs; cluster-scoped objects),
/// then the namespaces.
struct Cleanup<'a> {
    cluster: &'a TestCluster,
    namespaces: BTreeSet<String>,
    cluster_objects: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let job = |args: &[&str]| {
            (
                args.join(" "),
                args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
            )
        };
        let services = self
            .namespaces
            .iter()
            .map(|ns| {
                job(&[
                    "delete",
                    "services",
                    "--all",
                    "-n",
                    ns,
                    "--wait=false",
                    "--ignore-not-found",
                ])
            })
            .collect();
        let _ = run_kubectl(self.cluster, services);
        if !self.cluster_objects.is_empty() {
            let mut args = vec!["delete", "--wait=false", "--ignore-not-found"];
            args.extend(self.cluster_objects.iter().map(String::as_str));
            let _ = self.cluster.kubectl(&args);
            let releases = self
                .cluster_objects
                .iter()
                .filter(|o| o.starts_with("persistentvolume/"))
                .map(|o| {
                    job(&[
                        "patch",
                        o,
                        "--type",
                        "merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ])
                })
                .collect();
            let _ = run_kubectl(self.cluster, releases);
        }
        let namespaces = self
            .namespaces
            .iter()
            .map(|ns| job(&["delete", "namespace", ns, "--wait=false"]))
            .collect();
        let _ = run_kubectl(self.cluster, namespaces);
    }
}

/// What must agree between the two commands (as in `same_records.rs`): Secret digests are keyed
/// per installation (`check` draws a fresh key per run), so digest values and Secret hashes are
/// left out; everything else is compared as it is.
fn comparable(record: &Value) -> Value {
    let secret = record["kind"] == "Secret";
    let details: Vec<Value> = record["drift_details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            for side in ["from", "to"] {
                if c[side]
                    .as_str()
                    .is_some_and(|v| v.starts_with("hmac-sha256:"))
                {
                    c[side] = json!("<digest>");
                }
            }
            c
        })
        .collect();
    json!({
        "api_version": record["api_version"],
        "drift_detected": record["drift_detected"],
        "drift_status": record["drift_status"],
        "drift_type": record["drift_type"],
        "severity": record["severity"],
        "drift_details": details,
        "warnings": record["warnings"],
        "managed": record["managed"],
        "source_path": record["source_path"],
        "git_commit": record["git_commit"],
        "live_hash": if secret { Value::Null } else { record["live_hash"].clone() },
        "last_known_good_hash": if secret { Value::Null } else { record["last_known_good_hash"].clone() },
    })
}

fn by_id(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| (r["resource_id"].as_str().unwrap().to_owned(), comparable(r)))
        .collect()
}

/// The fields where `a` and `b` differ, one line each (change lists shown by their paths
/// first, then in full).
fn field_diff(a: &Value, b: &Value) -> String {
    let mut lines = Vec::new();
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return format!("check: {a}\nserve: {b}");
    };
    for (field, left) in a {
        let right = &b[field.as_str()];
        if left == right {
            continue;
        }
        if field == "drift_details" {
            let paths = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                format!(
                                    "{} {}",
                                    c["op"].as_str().unwrap_or("?"),
                                    c["field"]
                                        .as_str()
                                        .or_else(|| c["path"].as_str())
                                        .unwrap_or("?")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            lines.push(format!(
                "    change paths: check {:?} / serve {:?}",
                paths(left),
                paths(right)
            ));
        }
        lines.push(format!("    {field}: check {left} / serve {right}"));
    }
    lines.join("\n")
}

/// A readable account of how the two record sets differ (empty when they agree).
fn mismatches(check: &BTreeMap<String, Value>, serve: &BTreeMap<String, Value>) -> String {
    let only_check: Vec<&String> = check.keys().filter(|k| !serve.contains_key(*k)).collect();
    let only_serve: Vec<&String> = serve.keys().filter(|k| !check.contains_key(*k)).collect();
    let differing: Vec<&String> = check
        .iter()
        .filter(|(k, v)| serve.get(*k).is_some_and(|s| s != *v))
        .map(|(k, _)| k)
        .collect();
    if only_check.is_empty() && only_serve.is_empty() && differing.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "check has {} records, serve {}; {} only from check, {} only from serve, {} differ\n",
        check.len(),
        serve.len(),
        only_check.len(),
        only_serve.len(),
        differing.len()
    );
    for id in only_check.iter().take(SHOWN) {
        out.push_str(&format!(
            "  only from check: {id} ({})\n",
            check[*id]["drift_status"]
        ));
    }
    for id in only_serve.iter().take(SHOWN) {
        out.push_str(&format!(
            "  only from serve: {id} ({})\n",
            serve[*id]["drift_status"]
        ));
    }
    for id in differing.iter().take(SHOWN) {
        out.push_str(&format!(
            "  {id}:\n{}\n",
            field_diff(&check[*id], &serve[*id])
        ));
    }
    out
}

/// The live objects of `plural` in `namespace` (`kubectl get -o json`).
fn live(cluster: &TestCluster, plural: &str, namespace: &str) -> Vec<Value> {
    let out = cluster
        .kubectl(&["get", plural, "-n", namespace, "-o", "json"])
        .unwrap();
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The first object of `plural` in `namespaces` that `pick` accepts: (namespace, name, pick's
/// answer).
fn find_live<T>(
    cluster: &TestCluster,
    plural: &str,
    namespaces: &[String],
    pick: impl Fn(&Value) -> Option<T>,
) -> (String, String, T) {
    namespaces
        .iter()
        .find_map(|ns| {
            live(cluster, plural, ns).iter().find_map(|o| {
                let name = o["metadata"]["name"].as_str()?.to_owned();
                Some((ns.clone(), name, pick(o)?))
            })
        })
        .unwrap_or_else(|| panic!("no {plural} to change in {namespaces:?}"))
}

/// Triggers a full analysis (`POST /api/v1/analyze`), waits for it to end, and returns serve's
/// records once they match `expected` or 30 s have passed.
fn analyze_now(
    serve: &mut ServeProcess,
    expected: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let (status, body) = serve.post("/api/v1/analyze", None).unwrap();
    assert_eq!(status, 202, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let path = format!("/api/v1/analysis/{}", run["run_id"].as_str().unwrap());
    serve
        .wait_for(Duration::from_secs(60), |p| {
            let run = p.get_json(&path)?;
            Ok(run["status"] == "completed" || run["status"] == "failed")
        })
        .unwrap();
    let mut records = BTreeMap::new();
    let _ = serve.wait_for(Duration::from_secs(30), |p| {
        let page = p.get_json("/api/v1/drift-records?limit=10000")?;
        records = by_id(page["drift_records"].as_array().unwrap_or(&Vec::new()));
        Ok(&records == expected)
    });
    records
}

/// Which resource types the configuration names in `kubernetes.resources`.
#[derive(Debug, Clone, Copy)]
enum Resources {
    /// None: the defaults (Deployments, Services, ConfigMaps, Secrets), as a user starts.
    Defaults,
    /// Every kind the corpus holds (from `corpus/index.json`).
    EveryCorpusKind,
}

/// The kinds `corpus/index.json` lists.
fn corpus_kinds(corpus: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("index.json")).unwrap()).unwrap();
    let kinds: BTreeSet<String> = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["kinds"].as_array().cloned().unwrap_or_default())
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    kinds.into_iter().collect()
}

/// With the default resource types: `check` also evaluates every kind the repository holds,
/// so `serve` must too.
#[test]
fn cluster_corpus_check_and_serve_give_the_same_records() {
    same_records_on_the_corpus(Resources::Defaults);
}

/// With every kind of the corpus named in `kubernetes.resources`: both watch/list the same
/// kinds, so every record of the corpus is compared field by field.
#[test]
fn cluster_corpus_every_kind_configured_check_and_serve_give_the_same_records() {
    same_records_on_the_corpus(Resources::EveryCorpusKind);
}

fn same_records_on_the_corpus(resources: Resources) {
    let started = Instant::now();
    let cluster = TestCluster::shared();
    let Some(corpus) = corpus_dir() else { return };
    let run = format!("h{}", &unique_name("r")[2..7]);
    let files = classify_corpus(&corpus);
    assert!(files.len() >= 295, "the corpus lost files: {}", files.len());
    let (late, files): (Vec<CorpusFile>, Vec<CorpusFile>) = files.into_iter().partition(|f| f.late);
    let mut batches = pack(files, &run);
    let repo = TestRepo::new().unwrap();

    // Lay out every batch in the repository's working clone.
    let parse_jobs: Vec<(String, (usize, usize))> = batches
        .iter()
        .flat_map(|b| {
            b.files
                .iter()
                .enumerate()
                .filter(|(_, f)| !b.verbatim(f))
                .map(|(i, f)| (f.file.clone(), (b.index, i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let parsed = run_jobs(parse_jobs, |(b, i)| {
        parsed_objects(&cluster, &corpus.join(&batches[*b].files[*i].file)).map(|o| (*b, *i, o))
    });
    for (file, result) in parsed {
        let (b, i, objects) = result.unwrap_or_else(|e| panic!("{file}: {e}"));
        let batch = &mut batches[b];
        assert_eq!(objects.len(), batch.files[i].docs, "kubectl read {file}");
        let text = rewrite(batch, objects);
        let path = batch.repo_path(&batch.files[i]);
        repo.write(&path, &text).unwrap();
    }
    for file in batches[0].files.iter().filter(|f| batches[0].verbatim(f)) {
        let text = std::fs::read_to_string(corpus.join(&file.file)).unwrap();
        repo.write(&batches[0].repo_path(file), &text).unwrap();
    }

    let mut cleanup = Cleanup {
        cluster: &cluster,
        namespaces: BTreeSet::new(),
        cluster_objects: Vec::new(),
    };
    for batch in &batches {
        cleanup.namespaces.extend(batch.namespaces.iter().cloned());
        cleanup
            .cluster_objects
            .extend(batch.cluster_objects.iter().cloned());
    }

    // Apply (client-side): namespaces, then the files that define Namespaces, then the rest.
    let apply_started = Instant::now();
    let mut failures = Vec::new();
    let creates = batches
        .iter()
        .flat_map(|b| b.namespaces.difference(&b.defined))
        .map(|ns| {
            (
                format!("namespace {ns}"),
                vec!["create".to_owned(), "namespace".to_owned(), ns.clone()],
            )
        })
        .collect();
    failures.extend(run_kubectl(&cluster, creates));
    let apply_job = |batch: &Batch, file: &CorpusFile| {
        let path = repo.work_path().join(batch.repo_path(file));
        let mut args = vec!["apply".to_owned(), "--validate=false".to_owned()];
        if batch.verbatim(file) {
            args.extend(["-n".to_owned(), batch.namespace.clone()]);
        }
        args.extend(["-f".to_owned(), path.display().to_string()]);
        (batch.repo_path(file), args)
    };
    for first in [true, false] {
        let jobs = batches
            .iter()
            .flat_map(|b| {
                b.files
                    .iter()
                    .filter(|f| f.defines_namespace == first)
                    .map(|f| apply_job(b, f))
                    .collect::<Vec<_>>()
            })
            .collect();
        failures.extend(run_kubectl(&cluster, jobs));
    }
    let apply_time = apply_started.elapsed();
    // A plane without `--allow-privileged` refuses privileged containers: such files leave the
    // repository (and are listed); any other failure is a test failure.
    let mut refused = Vec::new();
    let mut problems = Vec::new();
    for (path, error) in failures {
        if error.contains("privileged: Forbidden: disallowed by cluster policy") {
            repo.remove(&path).unwrap();
            refused.push(path);
        } else {
            problems.push(format!("{path}: {error}"));
        }
    }
    assert!(
        problems.is_empty(),
        "kubectl apply failed:\n{}",
        problems.join("\n")
    );
    let commit = repo.commit("the corpus").unwrap();

    // Drifts made by hand: a Deployment scaled, a ConfigMap value changed, a Service deleted
    // (missing), a ConfigMap made by hand (unmanaged).
    let ns0 = batches[0].namespace.clone();
    let namespaces: Vec<String> = cleanup.namespaces.iter().cloned().collect();
    let mut search = vec![ns0.clone()];
    search.extend(namespaces.iter().filter(|n| **n != ns0).cloned());
    // A Deployment no HorizontalPodAutoscaler scales (replicas an HPA owns are not drift).
    let scaled: BTreeSet<(String, String)> = search
        .iter()
        .flat_map(|ns| live(&cluster, "horizontalpodautoscalers", ns))
        .filter_map(|h| {
            Some((
                h["metadata"]["namespace"].as_str()?.to_owned(),
                h["spec"]["scaleTargetRef"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let (dep_ns, deployment, replicas) = find_live(&cluster, "deployments", &search, |o| {
        let id = (
            o["metadata"]["namespace"].as_str()?.to_owned(),
            o["metadata"]["name"].as_str()?.to_owned(),
        );
        o["spec"]["replicas"]
            .as_u64()
            .filter(|_| !scaled.contains(&id))
    });
    cluster
        .kubectl(&[
            "scale",
            "-n",
            &dep_ns,
            &format!("deployment/{deployment}"),
            &format!("--replicas={}", replicas + 3),
        ])
        .unwrap();
    cluster
        .kubectl(&[
            "set",
            "env",
            "-n",
            &dep_ns,
            &format!("deployment/{deployment}"),
            "DG_BY_HAND=1",
        ])
        .unwrap();
    let (cm_ns, configmap, key) = find_live(&cluster, "configmaps", &search, |o| {
        (o["metadata"]["name"] != "kube-root-ca.crt" && o["immutable"] != true)
            .then(|| o["data"].as_object()?.keys().next().cloned())
            .flatten()
    });
    let patch = json!({ "data": { key.as_str(): "changed by hand" } }).to_string();
    cluster
        .kubectl(&[
            "patch",
            "-n",
            &cm_ns,
            &format!("configmap/{configmap}"),
            "--type",
            PatchType::Merge.as_str(),
            "-p",
            &patch,
        ])
        .unwrap();
    let (svc_ns, service, ()) = find_live(&cluster, "services", &search, |_| Some(()));
    cluster
        .kubectl(&["delete", "-n", &svc_ns, &format!("service/{service}")])
        .unwrap();
    cluster
        .kubectl(&[
            "create",
            "configmap",
            "-n",
            &ns0,
            "dg-by-hand",
            "--from-literal=a=b",
        ])
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  \
         namespaces: [{ns}]\n  default_namespace: {ns0}\n{resources}git:\n  repository_url: \"{url}\"\n  \
         default_branch: main\n  workdir: {wd}\ndrift_detection:\n  report_unmanaged: true\n",
        db = dir.path().join("dg.db").display(),
        kc = cluster.kubeconfig().display(),
        ns = namespaces.join(", "),
        url = repo.url(),
        wd = dir.path().join("git").display(),
        resources = match resources {
            Resources::Defaults => String::new(),
            Resources::EveryCorpusKind =>
                format!("  resources: [{}]\n", corpus_kinds(&corpus).join(", ")),
        },
    );
    let config_path = dir.path().join("driftguard.yaml");
    std::fs::write(&config_path, &config).unwrap();

    let check_started = Instant::now();
    let out = Command::new(binary())
        .args(["check", "-o", "json", "--config"])
        .arg(&config_path)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let check_time = check_started.elapsed();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(doc["errors"], json!([]), "check reported errors");
    let from_check = by_id(doc["drift_records"].as_array().unwrap());

    // serve: ready, then its first (startup) analysis finished, then its records.
    let serve_started = Instant::now();
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    let mut ready = Value::Null;
    serve
        .wait_for(Duration::from_secs(120), |p| {
            ready = p.get_json("/ready").unwrap_or(Value::Null);
            let (_, metrics) = p.get("/metrics")?;
            let runs: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("driftguard_analysis_runs_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            Ok(ready["status"] == "ready" && runs >= 1.0)
        })
        .unwrap_or_else(|e| panic!("serve never finished its first analysis: {e:#}\n{ready:#}"));
    let first_analysis = serve_started.elapsed();
    // The records the first analysis wrote reach the store through its write queue: read them
    // until they match check's (or 20 s pass, and the comparison below shows the difference),
    // noting how many there were as they arrived.
    let mut from_serve = BTreeMap::new();
    let mut arrivals: Vec<(Duration, usize)> = Vec::new();
    let _ = serve.wait_for(Duration::from_secs(20), |p| {
        let page = p.get_json("/api/v1/drift-records?limit=10000")?;
        from_serve = by_id(page["drift_records"].as_array().unwrap_or(&Vec::new()));
        if arrivals.last().is_none_or(|(_, n)| *n != from_serve.len()) {
            arrivals.push((serve_started.elapsed(), from_serve.len()));
        }
        Ok(from_serve == from_check)
    });
    let serve_time = serve_started.elapsed();

    let managed_docs: usize = batches
        .iter()
        .flat_map(|b| b.files.iter().map(move |f| (b.repo_path(f), f.docs)))
        .filter(|(path, _)| !refused.contains(path))
        .map(|(_, docs)| docs)
        .sum();
    let status_count = |records: &BTreeMap<String, Value>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in records.values() {
            *counts.entry(r["drift_status"].to_string()).or_default() += 1;
        }
        counts
    };
    eprintln!(
        "corpus check vs serve: {} batches, {} namespaces, {} files left out (default class or \
         node port), {} refused ({refused:?}); commit {commit}; {} records from check {:?}, \
         {} from serve {:?}; apply {apply_time:.1?}, check {check_time:.1?}, serve \
         {serve_time:.1?} (first analysis done after {first_analysis:.1?}; serve's record \
         count as it grew: {arrivals:.1?}), total {:.1?}",
        batches.len(),
        namespaces.len(),
        late.len(),
        refused.len(),
        from_check.len(),
        status_count(&from_check),
        from_serve.len(),
        status_count(&from_serve),
        started.elapsed()
    );

    for id in [
        format!("Deployment:{dep_ns}:{deployment}"),
        format!("ConfigMap:{cm_ns}:{configmap}"),
        format!("Service:{svc_ns}:{service}"),
        format!("ConfigMap:{ns0}:dg-by-hand"),
    ] {
        eprintln!(
            "check {id}: {}",
            from_check.get(&id).unwrap_or(&Value::Null)
        );
    }
    let diff = mismatches(&from_check, &from_serve);
    if !diff.is_empty() {
        // Evidence for the report: the startup run's line, and whether a full analysis asked for
        // now (every watch listed) closes the gap.
        let log = serve.log();
        let startup = log
            .lines()
            .find(|l| l.contains("analysis completed") && l.contains("\"startup\""))
            .unwrap_or("(no startup analysis in the log)")
            .to_owned();
        let after = analyze_now(&mut serve, &from_check);
        let after = match mismatches(&from_check, &after) {
            d if d.is_empty() => "none: they agree after it".to_owned(),
            d => d,
        };
        panic!(
            "check and serve disagree on the corpus after serve's first analysis:\n{diff}\n\
             serve's startup run: {startup}\n\
             differences left after a full analysis triggered once serve is ready \
             (POST /api/v1/analyze): {after}"
        );
    }
    serve.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        from_check.len() >= managed_docs,
        "every corpus document is a record: {} records for {managed_docs} documents",
        from_check.len()
    );
    // The drifts made above are there, so the comparison covers drifted records too.
    let status = |kind: &str, ns: &str, name: &str| {
        let id = format!("{kind}:{ns}:{name}");
        from_check
            .get(&id)
            .map(|r| r["drift_status"].clone())
            .unwrap_or_else(|| panic!("no record {id}"))
    };
    assert_eq!(status("Deployment", &dep_ns, &deployment), "active");
    assert_eq!(status("ConfigMap", &cm_ns, &configmap), "active");
    assert_eq!(status("Service", &svc_ns, &service), "active");
    assert_eq!(status("ConfigMap", &ns0, "dg-by-hand"), "active");
    drop(cleanup);
}

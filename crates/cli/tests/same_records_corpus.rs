//! One evaluation path (issue 15) on the real corpus: `check` and `serve` produce the same
//! records for the same repository and cluster, on every licence-clean manifest of `corpus/`
//! (applied with client-side `kubectl apply`), with a few drifts made by hand on top.
//!
//! The corpus holds the same names many times over (several `nginx` Deployments, …), so its
//! files are packed into batches whose identities do not collide, each batch in namespaces of its
//! own (`driftguard_test_support::corpus`, shared with `crates/server/tests/engine_cluster.rs`). All batches go into one Git repository
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
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use driftguard_core::SecretHasher;
use driftguard_test_support::cluster::{PatchType, TestCluster};
use driftguard_test_support::corpus::{
    Batch, CorpusFile, NO_NAMESPACE, ReadFile, classify_corpus, clean_up, corpus_kinds, pack,
    parsed_objects, rewrite, run_jobs, run_kubectl,
};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::records::{by_id, run_check_json};
use driftguard_test_support::serve::ServeProcess;
use driftguard_test_support::{corpus_dir, unique_name};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

/// What the project's Git reader reads in each corpus file (object names).
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

/// How many mismatches the assertion message shows in full.
const SHOWN: usize = 5;

/// Removes what outlives the namespaces (Services hold cluster IPs; cluster-scoped objects),
/// then the namespaces.
struct Cleanup<'a> {
    cluster: &'a TestCluster,
    namespaces: BTreeSet<String>,
    cluster_objects: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let batch = (
            std::mem::take(&mut self.namespaces),
            std::mem::take(&mut self.cluster_objects),
        );
        clean_up(self.cluster, &[batch]);
    }
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
    let mut reader_problems = Vec::new();
    let files = classify_corpus(&corpus, git_reader(&corpus), &mut reader_problems);
    assert!(
        reader_problems.is_empty(),
        "the Git reader's documents differ from the corpus index:\n{}",
        reader_problems.join("\n")
    );
    assert!(files.len() >= 295, "the corpus lost files: {}", files.len());
    let (late, files): (Vec<CorpusFile>, Vec<CorpusFile>) = files.into_iter().partition(|f| f.late);
    let mut batches = pack(files, &run, "dgs");
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
    let (_, doc) = run_check_json(binary(), [OsStr::new("--config"), config_path.as_os_str()]);
    let check_time = check_started.elapsed();
    assert_eq!(doc["errors"], json!([]), "check reported errors");
    let from_check = by_id(doc["drift_records"].as_array().unwrap());

    // serve: ready, then its first (startup) analysis finished, then its records.
    let serve_started = Instant::now();
    let mut serve = ServeProcess::start(binary(), &config, &[]).unwrap();
    let mut ready = Value::Null;
    serve
        // Generous: serve watches every corpus kind in 29 namespaces, on a loaded 2-core CI.
        .wait_for(Duration::from_secs(300), |p| {
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

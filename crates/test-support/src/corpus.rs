//! The real-world manifest corpus kept in the repository (`corpus/`), and what the corpus tests
//! of several crates share to put it into one cluster: the corpus holds the same names many
//! times over (several `nginx` Deployments, …), so its files are classified ([`classify_corpus`]),
//! packed into batches whose identities do not collide ([`pack`]), and rewritten into namespaces
//! and cluster-scoped names of each batch's own ([`rewrite`]); kubectl runs on a small pool
//! ([`run_kubectl`]) and [`clean_up`] removes what the batches created.
//!
//! Test helpers: they panic on a broken corpus or fixture.

#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::cluster::TestCluster;

/// The corpus directory: `DRIFTGUARD_CORPUS_DIR` when set (e.g. a larger corpus kept elsewhere),
/// else `<repo>/corpus` — the licence-clean copy in the repository (see `corpus/ATTRIBUTION.md`),
/// so a clone alone runs every corpus test.
///
/// Always `Some`: a corpus that is missing panics, under CI or not, since a corpus test that
/// does not run must never pass. (The `Option` stays so that callers read
/// `let Some(corpus) = corpus_dir() else { return };`.)
///
/// ```no_run
/// let Some(corpus) = driftguard_test_support::corpus_dir() else { return };
/// assert!(corpus.join("index.json").is_file());
/// ```
pub fn corpus_dir() -> Option<PathBuf> {
    let (dir, origin) = match std::env::var_os("DRIFTGUARD_CORPUS_DIR") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), "DRIFTGUARD_CORPUS_DIR"),
        _ => (crate::repo_root().join("corpus"), "the repository"),
    };
    assert!(
        dir.join("index.json").is_file(),
        "the manifest corpus is missing: no index.json in {} (from {origin}); the repository \
         keeps it under corpus/ — restore it (git checkout -- corpus) or fix DRIFTGUARD_CORPUS_DIR",
        dir.display()
    );
    Some(dir)
}

// ---------------------------------------------------------------------------------------------
// Packing the corpus into batches whose names do not collide
// ---------------------------------------------------------------------------------------------

/// Kinds the corpus holds that are cluster-scoped.
pub const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodSecurityPolicy",
    "IngressClass",
];

/// The namespace a caller's reader is told to give objects that name none, so that
/// [`classify_corpus`] tells them apart from objects with a hard-coded namespace.
pub const NO_NAMESPACE: &str = "dgc-no-namespace-marker";

/// Parallel kubectl calls in [`run_jobs`] (the CI runners have 2 cores; kubectl mostly waits on
/// the server).
pub const POOL: usize = 4;

/// A collision identity: (kind, hard-coded namespace or "", name).
pub type Identity = (String, String, String);

/// What a reader (the project's Git reader, in the callers) made of one corpus file.
#[derive(Debug, Clone, Default)]
pub struct ReadFile {
    /// Each object's (kind, namespace, name); the namespace is [`NO_NAMESPACE`] for an object
    /// that names none.
    pub keys: Vec<(String, String, String)>,
    /// The reader's error on the file, if any (shown when it found too few documents).
    pub error: Option<String>,
}

/// One file of the corpus, as [`classify_corpus`] sees it.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    /// Path relative to the corpus root, e.g. `k8s-examples/foo.yaml`.
    pub file: String,
    /// Documents in the file (from `index.json`).
    pub docs: usize,
    /// Every document is namespaced and names no namespace: the file can be applied as stored
    /// with `kubectl apply -n <batch namespace>`. Otherwise it is rewritten (see [`rewrite`]).
    pub plain: bool,
    /// Holds a ResourceQuota or LimitRange: alone in its batch (they act on other objects).
    pub isolated: bool,
    /// Declares a default class (admission would default other objects) or a fixed node port
    /// (one per cluster): acts on the whole cluster, so [`pack`] gives it a batch of its own and
    /// callers apply it alone (or leave it out).
    pub late: bool,
    /// Collision identities of its objects.
    pub ids: Vec<Identity>,
    /// Defines a Namespace object.
    pub defines_namespace: bool,
}

/// A set of corpus files whose identities do not collide, put into namespaces of its own.
#[derive(Debug, Default)]
pub struct Batch {
    /// Position among the batches.
    pub index: usize,
    /// Suffix of every name the batch maps (`<run>b<index>`).
    pub tag: String,
    /// Its files.
    pub files: Vec<CorpusFile>,
    /// Where a caller lays the batch out on disk, if it does (empty otherwise).
    pub dir: PathBuf,
    /// The namespace of objects that name none.
    pub namespace: String,
    /// Every namespace its objects live in (the batch namespace and mapped hard-coded ones).
    pub namespaces: BTreeSet<String>,
    /// Namespaces created by Namespace documents of the batch.
    pub defined: BTreeSet<String>,
    /// `kind/name` of the cluster-scoped objects it creates (for the clean-up).
    pub cluster_objects: Vec<String>,
}

impl Batch {
    /// The batch's name for the hard-coded namespace `namespace`.
    pub fn map_ns(&self, namespace: &str) -> String {
        map_name(namespace, &self.tag, 63)
    }

    /// Where `file` lives when every batch shares one repository: `b<index>/<corpus path>`.
    pub fn repo_path(&self, file: &CorpusFile) -> String {
        format!("b{}/{}", self.index, file.file)
    }

    /// Whether `file` keeps its bytes in a repository shared by every batch (applied with
    /// `-n <batch namespace>`): only the first batch's plain files do, the namespace they take
    /// being `kubernetes.default_namespace`.
    pub fn verbatim(&self, file: &CorpusFile) -> bool {
        self.index == 0 && file.plain
    }
}

/// `name` with `-<tag>` appended, cut so that the whole fits in `max` characters.
pub fn map_name(name: &str, tag: &str, max: usize) -> String {
    let keep = max.saturating_sub(tag.len() + 1);
    let base: String = name.chars().take(keep).collect();
    format!("{}-{tag}", base.trim_end_matches(['-', '.']))
}

/// `corpus/index.json`: (file, documents, kinds) for each file.
pub fn read_index(corpus: &Path) -> Vec<(String, usize, Vec<String>)> {
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("index.json")).expect("corpus index.json"),
    )
    .expect("index.json is JSON");
    index["files"]
        .as_array()
        .expect("index.json has files")
        .iter()
        .map(|f| {
            (
                f["file"].as_str().expect("file").to_owned(),
                usize::try_from(f["docs"].as_u64().expect("docs")).expect("docs fits"),
                f["kinds"]
                    .as_array()
                    .expect("kinds")
                    .iter()
                    .map(|k| k.as_str().expect("kind").to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The kinds `corpus/index.json` lists, sorted, each once.
pub fn corpus_kinds(corpus: &Path) -> Vec<String> {
    let kinds: BTreeSet<String> = read_index(corpus)
        .into_iter()
        .flat_map(|(_, _, kinds)| kinds)
        .collect();
    kinds.into_iter().collect()
}

/// Classifies every file of `index.json` from what `read` (the caller's reader, given the path
/// relative to the corpus root) found in it: object identities, plain or not, isolated, late.
///
/// A file where the reader found another number of documents than the index lists is left out
/// and described in `reader_problems` (callers that allow none assert it stays empty).
///
/// # Panics
///
/// When `read` knows nothing of a file of the index.
pub fn classify_corpus(
    corpus: &Path,
    read: impl Fn(&str) -> Option<ReadFile>,
    reader_problems: &mut Vec<String>,
) -> Vec<CorpusFile> {
    let mut out = Vec::new();
    for (file, docs, kinds) in read_index(corpus) {
        let entry =
            read(&file).unwrap_or_else(|| panic!("the Git reader did not read corpus file {file}"));
        if entry.keys.len() != docs {
            reader_problems.push(format!(
                "the Git reader found {} of {docs} documents in {file}: {:?}",
                entry.keys.len(),
                entry.error
            ));
            continue;
        }
        let text = std::fs::read_to_string(corpus.join(&file)).expect("corpus file");
        let mut plain = true;
        let mut ids = Vec::new();
        for (kind, namespace, name) in entry.keys {
            if CLUSTER_SCOPED.contains(&kind.as_str()) || namespace != NO_NAMESPACE {
                plain = false;
            }
            let ns = if namespace == NO_NAMESPACE {
                String::new()
            } else {
                namespace
            };
            ids.push((kind, ns, name));
        }
        out.push(CorpusFile {
            file,
            docs,
            plain,
            isolated: kinds
                .iter()
                .any(|k| k == "ResourceQuota" || k == "LimitRange"),
            late: text.contains("is-default-class")
                || text
                    .lines()
                    .any(|l| l.trim_start().starts_with("nodePort:")),
            defines_namespace: kinds.iter().any(|k| k == "Namespace"),
            ids,
        });
    }
    out
}

/// Greedy packing: a file joins the first batch where none of its identities is taken; an
/// isolated file gets a batch of its own, and so does each late file (after all the others).
/// Batch `i` gets the tag `<run>b<i>` and the namespace `<prefix>-<run>-b<i>`, which is also
/// the first of its `namespaces`.
pub fn pack(files: Vec<CorpusFile>, run: &str, prefix: &str) -> Vec<Batch> {
    let mut batches: Vec<(Batch, BTreeSet<Identity>)> = Vec::new();
    let mut late = Vec::new();
    for file in files {
        if file.late {
            late.push(file);
            continue;
        }
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
    for file in late {
        out.push(Batch {
            files: vec![file],
            ..Batch::default()
        });
    }
    for (index, batch) in out.iter_mut().enumerate() {
        batch.index = index;
        batch.tag = format!("{run}b{index}");
        batch.namespace = format!("{prefix}-{run}-b{index}");
        batch.namespaces.insert(batch.namespace.clone());
    }
    out
}

/// The file's objects as kubectl parses them (`kubectl create --dry-run=client -o json`), a
/// `kind: List` unpacked.
pub fn parsed_objects(cluster: &TestCluster, path: &Path) -> Result<Vec<Value>, String> {
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
    // One JSON object per document, one after the other.
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let value = value.map_err(|e| format!("kubectl printed no JSON: {e}"))?;
        if value["kind"] == "List" && value.get("items").is_some() {
            objects.extend(value["items"].as_array().cloned().unwrap_or_default());
        } else {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// Gives a file's hard-coded namespaces and cluster-scoped names this batch's fresh names, and
/// every namespaced object an explicit namespace (so one `kubectl apply -f` puts each where it
/// belongs); records them in the batch. Only names change; the rest of each object is what
/// kubectl read from the file. Returns the documents as YAML-compatible JSON, `---` separated.
pub fn rewrite(batch: &mut Batch, objects: Vec<Value>) -> String {
    let mut docs = Vec::new();
    for mut object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("an object has metadata");
        // `kubectl create --dry-run` adds this; the file never had it.
        meta.remove("creationTimestamp");
        let name = meta["name"].as_str().unwrap_or_default().to_owned();
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            let new = if kind == "Namespace" {
                let mapped = batch.map_ns(&name);
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
                Some(ns) if !ns.is_empty() => batch.map_ns(ns),
                _ => batch.namespace.clone(),
            };
            batch.namespaces.insert(namespace.clone());
            meta.insert("namespace".into(), Value::String(namespace));
        }
        if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
            for subject in subjects {
                if let Some(ns) = subject.get("namespace").and_then(Value::as_str) {
                    let mapped = batch.map_ns(ns);
                    subject["namespace"] = Value::String(mapped);
                }
            }
        }
        if let Some(ns) = object
            .pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str)
        {
            let mapped = batch.map_ns(ns);
            object["spec"]["claimRef"]["namespace"] = Value::String(mapped);
        }
        docs.push(serde_json::to_string_pretty(&object).expect("JSON"));
    }
    // A leading `---` keeps kubectl from reading the file as one JSON document.
    format!("---\n{}\n", docs.join("\n---\n"))
}

/// Runs `jobs` (a description and an input each) on [`POOL`] threads; returns (description,
/// result) for every job, in any order.
pub fn run_jobs<T: Send, R: Send>(
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

/// kubectl `jobs` (a description and an argument list each) on the pool; returns the failures
/// as (description, error).
pub fn run_kubectl(
    cluster: &TestCluster,
    jobs: Vec<(String, Vec<String>)>,
) -> Vec<(String, String)> {
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

/// Removes what corpus batches created that would outlive them and bother others, each step on
/// the pool (one kubectl call at a time took ~40 s): the Services of every namespace (cluster
/// IPs and node ports are cluster-wide), then the cluster-scoped objects (one `kubectl delete`
/// per entry; a PersistentVolume keeps its protection finalizer without a controller-manager,
/// so it is released by hand), then the namespaces. Each entry of `batches` is (namespaces,
/// cluster-scoped `kind/name`s). Failures are ignored, except that Services are checked gone
/// (retried for a while).
pub fn clean_up(cluster: &TestCluster, batches: &[(BTreeSet<String>, Vec<String>)]) {
    let job = |args: &[&str]| {
        (
            args.join(" "),
            args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
        )
    };
    // Node ports are cluster-wide: a Service that outlives its batch (a delete that failed or
    // timed out on a loaded machine) makes the next batch holding the same port fail — another
    // mode of the corpus test. So the deletion is checked, and retried for up to ~10 s.
    let mut left: Vec<&String> = batches
        .iter()
        .flat_map(|(namespaces, _)| namespaces)
        .collect();
    for _ in 0..20 {
        let deletes = left
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
        let _ = run_kubectl(cluster, deletes);
        left.retain(|ns| {
            cluster
                .kubectl(&["get", "services", "-n", ns, "-o", "name"])
                .map_or(true, |out| !out.trim().is_empty())
        });
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut objects = Vec::new();
    let mut releases = Vec::new();
    for (_, cluster_objects) in batches.iter().filter(|(_, o)| !o.is_empty()) {
        let mut args = vec!["delete", "--wait=false", "--ignore-not-found"];
        args.extend(cluster_objects.iter().map(String::as_str));
        objects.push(job(&args));
        for object in cluster_objects {
            if object.starts_with("persistentvolume/") {
                releases.push(job(&[
                    "patch",
                    object,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]));
            }
        }
    }
    let _ = run_kubectl(cluster, objects);
    let _ = run_kubectl(cluster, releases);
    let namespaces = batches
        .iter()
        .flat_map(|(namespaces, _)| namespaces)
        .map(|ns| job(&["delete", "namespace", ns, "--wait=false"]))
        .collect();
    let _ = run_kubectl(cluster, namespaces);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, ids: &[(&str, &str, &str)], isolated: bool, late: bool) -> CorpusFile {
        CorpusFile {
            file: name.to_owned(),
            docs: ids.len(),
            plain: true,
            isolated,
            late,
            ids: ids
                .iter()
                .map(|(k, n, m)| ((*k).to_owned(), (*n).to_owned(), (*m).to_owned()))
                .collect(),
            defines_namespace: false,
        }
    }

    #[test]
    fn pack_keeps_names_apart_and_late_files_alone() {
        let files = vec![
            file("a.yaml", &[("Deployment", "", "nginx")], false, false),
            file("b.yaml", &[("Deployment", "", "nginx")], false, false),
            file("c.yaml", &[("Service", "", "nginx")], false, false),
            file("q.yaml", &[("ResourceQuota", "", "q")], true, false),
            file("l.yaml", &[("IngressClass", "", "x")], false, true),
        ];
        let batches = pack(files, "r1", "dgt");
        let names: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| b.files.iter().map(|f| f.file.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["a.yaml", "c.yaml"],
                vec!["b.yaml"],
                vec!["q.yaml"],
                vec!["l.yaml"]
            ]
        );
        assert_eq!(batches[1].namespace, "dgt-r1-b1");
        assert!(batches[1].namespaces.contains("dgt-r1-b1"));
        assert_eq!(batches[3].tag, "r1b3");
    }

    #[test]
    fn map_name_fits() {
        assert_eq!(map_name("default", "r1b0", 63), "default-r1b0");
        let long = "x".repeat(80);
        assert_eq!(map_name(&long, "r1b0", 63).len(), 63);
    }
}

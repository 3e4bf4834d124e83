//! Helm charts as desired state (contract §9), as a black box against the real control plane and
//! the pinned Helm: the five real charts of `testdata/charts` rendered with `helm template` and
//! applied with kubectl show no drift in `check` and `serve`; drift made with kubectl on a
//! chart's objects is found with the template as its source; a chart with a random Secret is not
//! drift (a `non-deterministic` warning), and a values commit is picked up by `serve`.
//!
//! The ingress-nginx and gatekeeper webhook configurations have `failurePolicy: Fail`: they are
//! never applied to the shared API server (their releases disable them with inline values).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftguard_test_support::cluster::{PatchType, TestCluster, TestNamespace};
use driftguard_test_support::copy_dir;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::records::run_check_json;
use driftguard_test_support::serve::ServeProcess;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(120);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

/// Every kind the five charts render (and the HPA of podinfo's values-prod.yaml).
const RESOURCES: &str = "[deployments, statefulsets, services, configmaps, secrets, serviceaccounts, \
    resourcequotas, roles.rbac.authorization.k8s.io, rolebindings.rbac.authorization.k8s.io, \
    clusterroles.rbac.authorization.k8s.io, clusterrolebindings.rbac.authorization.k8s.io, \
    ingressclasses.networking.k8s.io, poddisruptionbudgets.policy, podsecuritypolicies.policy, \
    customresourcedefinitions.apiextensions.k8s.io, horizontalpodautoscalers.autoscaling]";

/// Kinds without a namespace, among what the charts render.
const CLUSTER_SCOPED: &[&str] = &[
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PodSecurityPolicy",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "Namespace",
];

/// One release: what both the test's own render and DriftGuard's configuration are made of.
struct Chart {
    release: &'static str,
    /// Directory name under `testdata/charts` and under `charts/` in the test repository.
    dir: &'static str,
    namespace: String,
    /// Repository paths.
    values_files: Vec<String>,
    /// Inline values (JSON, which is YAML).
    values: Value,
}

impl Chart {
    fn chart_path(&self) -> String {
        format!("charts/{}", self.dir)
    }

    fn release_yaml(&self) -> String {
        let files: Vec<String> = self
            .values_files
            .iter()
            .map(|f| json!(f).to_string())
            .collect();
        format!(
            "  - name: {}\n    chart: {}\n    namespace: {}\n    values_files: [{}]\n    values: {}\n",
            self.release,
            self.chart_path(),
            self.namespace,
            files.join(", "),
            self.values
        )
    }
}

/// An object of a render: its document text and parsed value.
#[derive(Debug, Clone)]
struct Rendered {
    text: String,
    object: Value,
}

impl Rendered {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    fn is_hook(&self) -> bool {
        self.object["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.contains_key("helm.sh/hook"))
    }
}

fn helm() -> PathBuf {
    driftguard_test_support::helm_binary()
}

/// The API server's version (`v1.20.2`), what DriftGuard gives Helm as `--kube-version`.
fn kube_version(cluster: &TestCluster) -> String {
    let out = cluster.kubectl(&["get", "--raw", "/version"]).unwrap();
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["gitVersion"].as_str().unwrap().to_owned()
}

/// `helm template <release> <repo>/charts/<dir> --namespace <ns> --kube-version <v>
/// --include-crds [-f values]…`, the way DriftGuard renders the release; its documents, a
/// `kind: List` counted as one document.
fn render(chart: &Chart, repo: &Path, kube_version: &str) -> Vec<Rendered> {
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new(helm());
    command
        .arg("template")
        .arg(chart.release)
        .arg(repo.join(chart.chart_path()))
        .args([
            "--namespace",
            &chart.namespace,
            "--kube-version",
            kube_version,
        ])
        .arg("--include-crds")
        .env("HELM_CACHE_HOME", scratch.path().join("cache"))
        .env("HELM_CONFIG_HOME", scratch.path().join("config"))
        .env("HELM_DATA_HOME", scratch.path().join("data"))
        .env_remove("KUBECONFIG");
    for file in &chart.values_files {
        command.arg("-f").arg(repo.join(file));
    }
    if chart.values.as_object().is_some_and(|m| !m.is_empty()) {
        let inline = scratch.path().join("inline.yaml");
        std::fs::write(&inline, chart.values.to_string()).unwrap();
        command.arg("-f").arg(inline);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "helm template {}: {}",
        chart.release,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            documents.push(std::mem::take(&mut current));
        } else {
            current.push_str(line);
        }
    }
    documents.push(current);
    documents
        .into_iter()
        .filter_map(|text| {
            let docs = driftguard_yaml::parse_documents(&text, &Default::default()).unwrap();
            let object = docs.into_iter().next()?.value;
            object.is_object().then_some(Rendered { text, object })
        })
        .collect()
}

/// The objects a render stands for: `kind: List` documents replaced by their items.
fn objects(rendered: &[Rendered]) -> Vec<Rendered> {
    let mut out = Vec::new();
    for r in rendered {
        if r.kind() == "List" {
            for item in r.object["items"].as_array().unwrap() {
                out.push(Rendered {
                    text: String::new(),
                    object: item.clone(),
                });
            }
        } else {
            out.push(r.clone());
        }
    }
    out
}

/// Applies a render the way `helm install` orders it: CRDs first (waiting until they are
/// Established), then every other non-hook document in the release's namespace.
fn apply(ns: &TestNamespace, rendered: &[Rendered]) {
    let cluster = ns.cluster();
    let crds: Vec<&Rendered> = rendered
        .iter()
        .filter(|r| r.kind() == "CustomResourceDefinition")
        .collect();
    if !crds.is_empty() {
        let text: Vec<&str> = crds.iter().map(|r| r.text.as_str()).collect();
        cluster
            .kubectl_with_stdin(&["apply", "-f", "-"], &text.join("\n---\n"))
            .unwrap();
        for crd in &crds {
            cluster
                .kubectl(&[
                    "wait",
                    "--for",
                    "condition=established",
                    "--timeout=60s",
                    &format!("crd/{}", crd.name()),
                ])
                .unwrap();
        }
    }
    let rest: Vec<&str> = rendered
        .iter()
        .filter(|r| r.kind() != "CustomResourceDefinition" && !r.is_hook())
        .map(|r| r.text.as_str())
        .collect();
    for r in rendered {
        assert!(
            !r.kind().ends_with("WebhookConfiguration") || r.is_hook(),
            "a webhook configuration would be applied to the shared API server: {}",
            r.text
        );
    }
    ns.apply_yaml(&rest.join("\n---\n")).unwrap();
}

/// The configuration `check` and `serve` share.
fn config(
    cluster: &TestCluster,
    repo: &TestRepo,
    charts: &[&Chart],
    dir: &Path,
    namespaces: &[&str],
) -> String {
    let releases: String = charts.iter().map(|c| c.release_yaml()).collect();
    format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{nss}]\n  resources: {RESOURCES}\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\ndrift_detection:\n  enable_periodic: false\nhelm:\n  binary: {helm}\n  releases:\n{releases}",
        db = dir.join("dg.db").display(),
        kc = cluster.kubeconfig().display(),
        nss = namespaces.join(", "),
        url = repo.url(),
        wd = dir.join("git").display(),
        helm = helm().display(),
    )
}

/// `driftguard check -o json --config <file>`: the parsed document and the exit code.
fn check(dir: &Path, config: &str) -> (Value, Option<i32>) {
    let path = dir.join("check.yaml");
    std::fs::write(&path, config).unwrap();
    let (out, doc) = run_check_json(binary(), [OsStr::new("--config"), path.as_os_str()]);
    (doc, out.status.code())
}

fn find<'a>(records: &'a [Value], kind: &str, namespace: &str, name: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["kind"] == kind && r["namespace"] == namespace && r["name"] == name)
}

/// Every rendered non-hook object of `chart` has an in-sync record naming its release and
/// template; returns how many there were. Every violation is listed before failing.
fn assert_in_sync(records: &[Value], chart: &Chart, rendered: &[Rendered], what: &str) -> usize {
    let mut problems = Vec::new();
    let seen = in_sync(records, chart, rendered, &mut problems);
    assert!(
        problems.is_empty(),
        "{what}, release {}:\n{}",
        chart.release,
        problems.join("\n")
    );
    seen
}

/// What [`assert_in_sync`] checks, the violations added to `problems` (prefixed with the
/// release); returns how many objects were checked.
fn in_sync(
    records: &[Value],
    chart: &Chart,
    rendered: &[Rendered],
    out: &mut Vec<String>,
) -> usize {
    let mut seen = 0;
    let mut problems = Vec::new();
    for object in objects(rendered).iter().filter(|o| !o.is_hook()) {
        let namespace = if CLUSTER_SCOPED.contains(&object.kind()) {
            ""
        } else {
            chart.namespace.as_str()
        };
        let Some(record) = find(records, object.kind(), namespace, object.name()) else {
            problems.push(format!(
                "no record of {} {namespace}/{}",
                object.kind(),
                object.name()
            ));
            continue;
        };
        let id = record["resource_id"].as_str().unwrap_or("?");
        if record["drift_status"] != "none" || record["drift_detected"] != false {
            problems.push(format!(
                "{id}: drift_status {} drift_detected {}: {:#}",
                record["drift_status"], record["drift_detected"], record["drift_details"]
            ));
        }
        if record["helm_release"] != chart.release {
            problems.push(format!("{id}: helm_release {}", record["helm_release"]));
        }
        let source = record["source_path"].as_str().unwrap_or("");
        let templates = format!("{}/templates/", chart.chart_path());
        let crds = format!("{}/crds/", chart.chart_path());
        if !(source.starts_with(&templates) || source.starts_with(&crds)) {
            problems.push(format!("{id}: source_path {source}"));
        }
        seen += 1;
    }
    out.extend(
        problems
            .into_iter()
            .map(|p| format!("release {}: {p}", chart.release)),
    );
    seen
}

fn assert_nothing_drifted(records: &[Value], what: &str) {
    let drifted: Vec<&Value> = records
        .iter()
        .filter(|r| r["drift_detected"] != false)
        .collect();
    assert!(drifted.is_empty(), "{what}: drifted records: {drifted:#?}");
}

fn start_serve(config: &str) -> ServeProcess {
    let mut serve = ServeProcess::start(binary(), config, &[]).unwrap();
    serve
        .wait_for(DEADLINE, |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();
    serve
}

fn serve_records(serve: &ServeProcess) -> Vec<Value> {
    serve
        .get_json("/api/v1/drift-records?limit=10000")
        .map(|page| {
            page["drift_records"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

#[test]
fn cluster_helm_charts_applied_give_no_drift() {
    let cluster = TestCluster::shared();
    let version = kube_version(&cluster);
    let repo = TestRepo::new().unwrap();
    let mut charts = Vec::new();
    let mut namespaces = Vec::new();
    for dir in [
        "podinfo",
        "ingress-nginx",
        "traefik",
        "alertmanager",
        "gatekeeper",
    ] {
        copy_dir(
            &driftguard_test_support::charts_dir().join(dir),
            &repo.work_path().join("charts").join(dir),
        );
        let ns = cluster.namespace(&format!("helm-{dir}")).unwrap();
        let values = match dir {
            // failurePolicy Fail webhooks must never reach the shared API server.
            "ingress-nginx" => json!({"controller": {"admissionWebhooks": {"enabled": false}}}),
            "gatekeeper" => json!({"disableValidatingWebhook": true, "disableMutation": true}),
            _ => json!({}),
        };
        charts.push(Chart {
            release: dir,
            dir,
            namespace: ns.name().to_owned(),
            values_files: Vec::new(),
            values,
        });
        namespaces.push(ns);
    }
    repo.commit("five public charts").unwrap();

    let mut renders = Vec::new();
    for (chart, ns) in charts.iter().zip(&namespaces) {
        let rendered = render(chart, &repo.work_path(), &version);
        assert!(
            !rendered
                .iter()
                .any(|r| r.kind().ends_with("WebhookConfiguration")),
            "{}: webhooks are disabled by the inline values",
            chart.release
        );
        apply(ns, &rendered);
        renders.push(rendered);
    }

    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = namespaces.iter().map(TestNamespace::name).collect();
    let chart_refs: Vec<&Chart> = charts.iter().collect();
    let config = config(&cluster, &repo, &chart_refs, dir.path(), &names);

    let (doc, code) = check(dir.path(), &config);
    assert_eq!(doc["errors"], json!([]), "{doc:#}");
    let records = doc["drift_records"].as_array().unwrap();
    let mut expected = 0;
    let mut problems = Vec::new();
    for (chart, rendered) in charts.iter().zip(&renders) {
        expected += in_sync(records, chart, rendered, &mut problems);
    }
    let from_check = std::mem::take(&mut problems);
    assert_nothing_drifted(records, "check");
    assert_eq!(code, Some(0), "no drift exits 0: {doc:#}");
    // 2 podinfo + 9 ingress-nginx + 9 CRDs and 5 traefik + 5 alertmanager + 9 CRDs and 12
    // gatekeeper (no webhooks, no hooks).
    assert_eq!(expected, 51, "objects checked");

    let mut serve = start_serve(&config);
    let mut from_serve = Vec::new();
    let _ = serve.wait_for(DEADLINE, |p| {
        from_serve = serve_records(p);
        Ok(from_serve.len() >= expected)
    });
    for (chart, rendered) in charts.iter().zip(&renders) {
        in_sync(&from_serve, chart, rendered, &mut problems);
    }
    // Every violation of both commands at once, after the other assertions.
    let from_check_and_serve: Vec<String> = from_check
        .iter()
        .map(|p| format!("check: {p}"))
        .chain(problems.iter().map(|p| format!("serve: {p}")))
        .collect();
    assert_nothing_drifted(&from_serve, "serve");
    let head = repo.head().unwrap();
    for record in &from_serve {
        assert_eq!(record["git_commit"], head.as_str(), "{record:#}");
    }
    let ids = |records: &[Value]| -> BTreeSet<String> {
        records
            .iter()
            .map(|r| r["resource_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(records),
        ids(&from_serve),
        "check and serve see the same resources"
    );
    assert!(
        from_check_and_serve.is_empty(),
        "records that are not as rendered:\n{}",
        from_check_and_serve.join("\n")
    );
}

fn change<'a>(record: &'a Value, field: &str) -> &'a Value {
    record["drift_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == field)
        .unwrap_or_else(|| panic!("no change at {field}: {record:#}"))
}

#[test]
fn cluster_helm_injected_drift_is_found() {
    let cluster = TestCluster::shared();
    let version = kube_version(&cluster);
    let ns = cluster.namespace("helm-drift").unwrap();
    let name = ns.name().to_owned();
    let repo = TestRepo::new().unwrap();
    copy_dir(
        &driftguard_test_support::charts_dir().join("podinfo"),
        &repo.work_path().join("charts/podinfo"),
    );
    repo.commit("podinfo").unwrap();
    // values-prod.yaml renders the redis ConfigMap; its HPA is turned off so the Deployment
    // states its replicas (2), which `kubectl scale` then changes.
    let chart = Chart {
        release: "podinfo",
        dir: "podinfo",
        namespace: name.clone(),
        values_files: vec!["charts/podinfo/values-prod.yaml".into()],
        values: json!({"hpa": {"enabled": false}, "replicaCount": 2}),
    };
    let rendered = render(&chart, &repo.work_path(), &version);
    let kinds: BTreeSet<(String, String)> = objects(&rendered)
        .iter()
        .filter(|o| !o.is_hook())
        .map(|o| (o.kind().to_owned(), o.name().to_owned()))
        .collect();
    assert!(
        kinds.contains(&("ConfigMap".into(), "podinfo-redis".into())),
        "{kinds:?}"
    );
    apply(&ns, &rendered);

    let dir = tempfile::tempdir().unwrap();
    let config = config(&cluster, &repo, &[&chart], dir.path(), &[&name]);
    let (doc, code) = check(dir.path(), &config);
    assert_eq!(doc["errors"], json!([]), "{doc:#}");
    let records = doc["drift_records"].as_array().unwrap();
    assert_in_sync(records, &chart, &rendered, "before the drift");
    assert_nothing_drifted(records, "before the drift");
    assert_eq!(code, Some(0));

    ns.scale("deployment/podinfo", 3).unwrap();
    ns.set_image(
        "deployment/podinfo",
        "podinfo",
        "ghcr.io/stefanprodan/podinfo:6.0.0",
    )
    .unwrap();
    ns.label("service/podinfo", "hotfix=yes").unwrap();
    ns.patch(
        "configmap/podinfo-redis",
        PatchType::Merge,
        r#"{"data":{"redis.conf":"maxmemory 1gb\n"}}"#,
        None,
    )
    .unwrap();

    let (doc, code) = check(dir.path(), &config);
    assert_eq!(doc["errors"], json!([]), "{doc:#}");
    assert_eq!(code, Some(1), "drift exits 1: {doc:#}");
    let records = doc["drift_records"].as_array().unwrap();
    let record = |kind: &str, n: &str| {
        let r = find(records, kind, &name, n).unwrap_or_else(|| panic!("no {kind} {n}: {doc:#}"));
        assert_eq!(r["drift_status"], "active", "{r:#}");
        assert_eq!(r["drift_detected"], true, "{r:#}");
        assert_eq!(r["helm_release"], "podinfo", "{r:#}");
        r
    };

    let deployment = record("Deployment", "podinfo");
    assert_eq!(
        deployment["source_path"],
        "charts/podinfo/templates/deployment.yaml#0"
    );
    let replicas = change(deployment, "spec.replicas");
    assert_eq!(replicas["op"], "changed", "{deployment:#}");
    assert_eq!(replicas["from"], 2);
    assert_eq!(replicas["to"], 3);
    assert_eq!(replicas["type"], "Scaling");
    assert_eq!(replicas["severity"], "medium", "2 → 3 is 50 %");
    // v1.20's scale subresource records no manager (contract §2.1).
    assert_eq!(replicas["manager"], Value::Null, "{replicas:#}");
    let image = change(
        deployment,
        "spec.template.spec.containers[name=podinfo].image",
    );
    assert_eq!(image["op"], "changed");
    assert_eq!(image["to"], "ghcr.io/stefanprodan/podinfo:6.0.0");
    assert_eq!(image["type"], "VersionChange");
    assert_eq!(image["severity"], "high");
    assert_eq!(image["manager"], "kubectl-set", "{image:#}");
    assert_eq!(deployment["drift_type"], "VersionChange");
    assert_eq!(deployment["severity"], "high");

    let service = record("Service", "podinfo");
    assert_eq!(
        service["source_path"],
        "charts/podinfo/templates/service.yaml#0"
    );
    let label = change(service, "metadata.labels.hotfix");
    assert_eq!(label["op"], "added");
    assert_eq!(label["to"], "yes");
    assert_eq!(label["type"], "LabelChange");
    assert_eq!(label["severity"], "low");
    assert_eq!(label["manager"], "kubectl-label", "{label:#}");
    assert_eq!(
        service["drift_details"].as_array().unwrap().len(),
        1,
        "{service:#}"
    );

    let config_map = record("ConfigMap", "podinfo-redis");
    assert_eq!(
        config_map["source_path"],
        "charts/podinfo/templates/redis/config.yaml#0"
    );
    let data = change(config_map, "data[\"redis.conf\"]");
    assert_eq!(data["op"], "changed");
    assert_eq!(data["to"], "maxmemory 1gb\n");
    assert_eq!(data["type"], "ConfigMapChange");
    assert_eq!(data["severity"], "medium");
    assert_eq!(data["manager"], "kubectl-patch", "{data:#}");

    // Nothing else drifted.
    let drifted: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["drift_detected"] == true)
        .map(|r| r["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(drifted.len(), 3, "{drifted:?}");
}

const RANDOM_CHART: &[(&str, &str)] = &[
    (
        "Chart.yaml",
        "apiVersion: v2\nname: random\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    ),
    ("values.yaml", "replicaCount: 1\nimage: nginx:1.25\n"),
    (
        "templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-creds\ntype: Opaque\ndata:\n  user: {{ \"admin\" | b64enc }}\n  password: {{ randAlphaNum 16 | b64enc }}\n",
    ),
    (
        "templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}-web}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}-web}\n      annotations:\n        checksum/secret: {{ include (print $.Template.BasePath \"/secret.yaml\") . | sha256sum }}\n    spec:\n      containers:\n      - name: web\n        image: {{ .Values.image }}\n        envFrom:\n        - secretRef:\n            name: {{ .Release.Name }}-creds\n",
    ),
];

fn non_deterministic(record: &Value, field: &str) -> bool {
    record["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w["code"] == "non-deterministic" && w["field"] == field)
    })
}

#[test]
fn cluster_helm_random_secret_is_not_drift() {
    let cluster = TestCluster::shared();
    let version = kube_version(&cluster);
    let ns = cluster.namespace("helm-random").unwrap();
    let name = ns.name().to_owned();
    let repo = TestRepo::new().unwrap();
    for (path, text) in RANDOM_CHART {
        repo.write(&format!("charts/random/{path}"), text).unwrap();
    }
    // A values file of the release (inside the chart directory, which is never read as
    // manifests).
    repo.write("charts/random/env/prod.yaml", "replicaCount: 2\n")
        .unwrap();
    repo.commit("a chart with a random password").unwrap();
    let chart = Chart {
        release: "rnd",
        dir: "random",
        namespace: name.clone(),
        values_files: vec!["charts/random/env/prod.yaml".into()],
        values: json!({}),
    };
    let rendered = render(&chart, &repo.work_path(), &version);
    apply(&ns, &rendered);

    let secret_field = "data.password";
    let checksum_field = "spec.template.metadata.annotations[\"checksum/secret\"]";
    let dir = tempfile::tempdir().unwrap();
    let config = config(&cluster, &repo, &[&chart], dir.path(), &[&name]);
    // Two processes: two more pairs of renders, each with other random passwords.
    for run in ["first check", "second check"] {
        let (doc, code) = check(dir.path(), &config);
        assert_eq!(doc["errors"], json!([]), "{run}: {doc:#}");
        let records = doc["drift_records"].as_array().unwrap();
        assert_eq!(
            assert_in_sync(records, &chart, &rendered, run),
            2,
            "{run}: {doc:#}"
        );
        assert_nothing_drifted(records, run);
        assert_eq!(code, Some(0), "{run}: warnings alone exit 0: {doc:#}");
        let secret = find(records, "Secret", &name, "rnd-creds").unwrap();
        assert!(non_deterministic(secret, secret_field), "{run}: {secret:#}");
        assert_eq!(
            secret["source_path"],
            "charts/random/templates/secret.yaml#0"
        );
        let deployment = find(records, "Deployment", &name, "rnd-web").unwrap();
        assert!(
            non_deterministic(deployment, checksum_field),
            "{run}: {deployment:#}"
        );
    }

    let mut serve = start_serve(&config);
    let mut records = Vec::new();
    serve
        .wait_for(DEADLINE, |p| {
            records = serve_records(p);
            Ok(records.len() >= 2)
        })
        .unwrap();
    assert_in_sync(&records, &chart, &rendered, "serve");
    assert_nothing_drifted(&records, "serve");
    let secret = find(&records, "Secret", &name, "rnd-creds").unwrap();
    assert!(non_deterministic(secret, secret_field), "serve: {secret:#}");

    // A values commit: Git now wants 4 replicas, the cluster still runs 2.
    repo.write("charts/random/env/prod.yaml", "replicaCount: 4\n")
        .unwrap();
    let commit = repo.commit("scale rnd to 4").unwrap();
    let id = format!("Deployment:{name}:rnd-web");
    let mut deployment = Value::Null;
    serve
        .wait_for(DEADLINE, |p| {
            let (status, body) = p.get(&format!("/api/v1/drift-records/{id}"))?;
            if status != 200 {
                return Ok(false);
            }
            deployment = serde_json::from_str(&body)?;
            Ok(deployment["git_commit"] == commit.as_str()
                && deployment["drift_status"] == "active")
        })
        .unwrap_or_else(|e| panic!("{e:#}\nlast record: {deployment:#}"));
    let replicas = change(&deployment, "spec.replicas");
    assert_eq!(replicas["op"], "changed", "{deployment:#}");
    assert_eq!(replicas["from"], 4, "the new desired value");
    assert_eq!(replicas["to"], 2, "the live value");
    assert_eq!(replicas["type"], "Scaling");
    assert_eq!(replicas["severity"], "medium", "4 → 2 is 50 %");
    assert_eq!(
        deployment["drift_details"].as_array().unwrap().len(),
        1,
        "only the replicas: {deployment:#}"
    );
    assert_eq!(deployment["helm_release"], "rnd");
    assert!(
        non_deterministic(&deployment, checksum_field),
        "{deployment:#}"
    );
    // The Secret is still in sync after the new commit's render (its random password is still
    // left out). Its record keeps the commit it was last written at: serve rewrites a record
    // only when its verdict changes, as for any unchanged manifest.
    let records = serve_records(&serve);
    let secret = find(&records, "Secret", &name, "rnd-creds").unwrap();
    assert_eq!(secret["drift_status"], "none", "{secret:#}");
    assert_eq!(secret["drift_detected"], false, "{secret:#}");
    assert!(non_deterministic(secret, secret_field), "{secret:#}");
}

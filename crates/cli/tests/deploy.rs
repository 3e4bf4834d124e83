//! The installation files (`deploy/`) and the monitoring files (`deploy/monitoring/`), checked
//! for real:
//!
//! - every Kustomize overlay renders with `kubectl kustomize`, holds least-privilege RBAC and a
//!   hardened Deployment, and is accepted by the local kube-apiserver (server-side dry-run, then a
//!   real apply) — `cluster_deploy_*`;
//! - `promtool check rules` accepts the alert rules, and every metric the rules and the Grafana
//!   dashboard use is served by a live `driftguard serve` on `/metrics`;
//! - `driftguard serve` running as the ServiceAccount of the manifests (a TokenRequest token) can
//!   watch the default resources and cannot write.
//!
//! Tests named `cluster_deploy_*` need the local control plane (`DRIFTGUARD_TEST_KUBECONFIG`) and
//! fail, never skip, without it. The overlays use fixed names (namespace `driftguard`, ClusterRole
//! `driftguard-reader`); to stay re-runnable next to other tests, every apply goes through a
//! wrapper kustomization that moves the objects into a fresh namespace and gives every name a
//! unique suffix (Kustomize rewrites the references too). Namespaces are never deleted: without a
//! controller-manager they would stay `Terminating` forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use driftguard_test_support::cluster::TestCluster;
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::serve::ServeProcess;
use driftguard_test_support::{repo_root, unique_name};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);

/// Every overlay under deploy/overlays (a directory holding a kustomization.yaml).
const OVERLAYS: &[&str] = &[
    "sqlite",
    "mongodb",
    "external/watched-cluster",
    "external/runner",
];

/// The example Secrets the overlays reference (never part of an overlay).
const EXAMPLE_SECRETS: &[&str] = &[
    "credentials.example.yaml",
    "mongodb.example.yaml",
    "kubeconfig.example.yaml",
];

/// What the ClusterRole may grant: the base configuration's `kubernetes.resources`, read-only.
/// Secrets only through the opt-in component `deploy/components/secrets`.
fn expected_rules() -> BTreeSet<(String, String, Vec<String>)> {
    let verbs = vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()];
    [
        ("apps", "deployments"),
        ("", "services"),
        ("", "configmaps"),
    ]
    .into_iter()
    .map(|(g, r)| (g.to_owned(), r.to_owned(), verbs.clone()))
    .collect()
}

/// The egress ports the NetworkPolicy opens: DNS, the API server, Git, MongoDB, Alertmanager.
const EGRESS_PORTS: &[(&str, i64)] = &[
    ("UDP", 53),
    ("TCP", 53),
    ("TCP", 443),
    ("TCP", 6443),
    ("TCP", 22),
    ("TCP", 9418),
    ("TCP", 27017),
    ("TCP", 9093),
];

// --- helpers ---------------------------------------------------------------------------------

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// Runs a command; returns (success, stdout, stderr).
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl kustomize DIR`.
fn render(dir: &Path) -> String {
    let (ok, out, err) = run("kubectl", &["kustomize", dir.to_str().unwrap()], None);
    assert!(ok, "kubectl kustomize {} failed:\n{err}", dir.display());
    out
}

/// Every object of a YAML stream.
fn parse(yaml: &str) -> Vec<Value> {
    let limits = driftguard_git::manifest::Limits::default();
    driftguard_git::manifest::parse_documents(yaml, &limits)
        .unwrap_or_else(|e| panic!("not YAML: {e:?}\n{yaml}"))
        .into_iter()
        .map(|d| d.value)
        .filter(|v| v.is_object())
        .collect()
}

fn parse_file(path: &Path) -> Vec<Value> {
    parse(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind_of(o) == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str, overlay: &str) -> &'a Value {
    let found = find(objects, kind);
    assert_eq!(
        found.len(),
        1,
        "{overlay}: expected one {kind}, found {}",
        found.len()
    );
    found[0]
}

/// The relative path from `from` (a directory) to `to`, both absolute: Kustomize refuses
/// absolute paths in `resources`.
fn relative(from: &Path, to: &Path) -> String {
    let from = from.canonicalize().unwrap();
    let to = to.canonicalize().unwrap();
    let ups = from
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut rel = "../".repeat(ups);
    rel.push_str(to.to_str().unwrap().trim_start_matches('/'));
    rel
}

/// Renders `overlay` (plus `components` and the example Secrets) moved into `namespace`, every
/// name suffixed with `-suffix`.
fn render_unique(overlay: &str, components: &[&str], namespace: &str, suffix: &str) -> String {
    let wrapper = tempfile::tempdir().unwrap();
    let mut resources = vec![relative(
        wrapper.path(),
        &deploy_dir().join("overlays").join(overlay),
    )];
    for secret in EXAMPLE_SECRETS {
        std::fs::copy(
            deploy_dir().join("secrets").join(secret),
            wrapper.path().join(secret),
        )
        .unwrap();
        resources.push((*secret).to_owned());
    }
    let components: Vec<String> = components
        .iter()
        .map(|c| relative(wrapper.path(), &deploy_dir().join("components").join(c)))
        .collect();
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("  - {i}\n"))
            .collect::<String>()
    };
    let mut kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\nnameSuffix: \"-{suffix}\"\nresources:\n{}",
        list(&resources)
    );
    if !components.is_empty() {
        kustomization.push_str(&format!("components:\n{}", list(&components)));
    }
    std::fs::write(wrapper.path().join("kustomization.yaml"), kustomization).unwrap();
    render(wrapper.path())
}

fn short_suffix() -> String {
    let name = unique_name("x");
    name[name.len() - 8..].to_owned()
}

/// `driftguard.yaml` of the rendered ConfigMap.
fn config_of(objects: &[Value], overlay: &str) -> String {
    let cm = one(objects, "ConfigMap", overlay);
    cm["data"]["driftguard.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("{overlay}: ConfigMap without driftguard.yaml"))
        .to_owned()
}

/// The configuration file loads (unknown keys are errors) and returns the configuration.
fn load_config(text: &str, env: &[(&str, &str)]) -> driftguard_config::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driftguard.yaml");
    std::fs::write(&path, text).unwrap();
    let options = driftguard_config::LoadOptions {
        file: Some(path),
        search_dir: None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    };
    match driftguard_config::load(&options) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("the shipped configuration does not load: {e}\n{text}"),
    }
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .map(|vars| {
            vars.iter()
                .map(|v| (v["name"].as_str().unwrap_or("").to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn mounts_of(container: &Value) -> BTreeMap<String, String> {
    container["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    (
                        m["mountPath"].as_str().unwrap_or("").to_owned(),
                        m["name"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(role: &Value) -> BTreeSet<(String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule {rule}"
        );
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        let mut verbs = strings("verbs");
        verbs.sort();
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                assert!(
                    !group.contains('*') && !resource.contains('*'),
                    "wildcard in {rule}"
                );
                out.insert((group.clone(), resource, verbs.clone()));
            }
        }
    }
    out
}

/// Names of the `driftguard_*` series an expression text uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("driftguard_") {
        let start = i + pos;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Every PromQL expression of the dashboard (targets and template queries).
fn dashboard_exprs() -> Vec<String> {
    let path = deploy_dir().join("monitoring/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if (k == "expr" || k == "definition") && v.is_string() {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut out);
    out
}

/// Every `expr` of the alert rules file.
fn alert_exprs() -> Vec<String> {
    let doc = parse_file(&deploy_dir().join("monitoring/alerts.yaml"));
    let mut out = Vec::new();
    for group in doc[0]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            out.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    out
}

/// The sample names of a Prometheus text exposition.
fn exposed_samples(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn apply(cluster: &TestCluster, yaml: &str, dry_run: bool) -> String {
    let mut args = vec!["apply", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    cluster
        .kubectl_with_stdin(&args, yaml)
        .unwrap_or_else(|e| panic!("kubectl {} failed: {e:#}", args.join(" ")))
}

/// `metadata.name`s of the manifest objects, as kubectl prints them (`kind.group/name`).
fn applied_count(output: &str) -> usize {
    output.lines().filter(|l| !l.trim().is_empty()).count()
}

// --- deploy_*: no cluster needed ------------------------------------------------------------

#[test]
fn deploy_every_overlay_directory_is_tested() {
    let root = deploy_dir().join("overlays");
    let mut found = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let rel = dir.strip_prefix(&root).unwrap();
                found.insert(rel.to_str().unwrap().to_owned());
            }
        }
    }
    let expected: BTreeSet<String> = OVERLAYS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        found, expected,
        "deploy/overlays changed: update OVERLAYS in this test"
    );
    // The colleague's RBAC files keep their names (README and docs point at them).
    for file in [
        "rbac/kustomization.yaml",
        "rbac/serviceaccount.yaml",
        "rbac/clusterrole.yaml",
        "rbac/clusterrolebinding.yaml",
        "rbac/namespaced/kustomization.yaml",
        "rbac/namespaced/role.yaml",
        "rbac/namespaced/rolebinding.yaml",
    ] {
        assert!(
            deploy_dir().join(file).is_file(),
            "deploy/{file} is missing"
        );
    }
}

#[test]
fn deploy_overlays_render_least_privilege_hardened_objects() {
    for overlay in OVERLAYS {
        let objects = parse(&render(&deploy_dir().join("overlays").join(overlay)));
        assert!(!objects.is_empty(), "{overlay} renders nothing");
        // Everything lives in the `driftguard` namespace.
        let ns = one(&objects, "Namespace", overlay);
        assert_eq!(name_of(ns), "driftguard");
        for o in &objects {
            let cluster_scoped = matches!(
                kind_of(o),
                "Namespace" | "ClusterRole" | "ClusterRoleBinding"
            );
            let namespace = o["metadata"]["namespace"].as_str();
            if cluster_scoped {
                assert_eq!(namespace, None, "{overlay}: {} {}", kind_of(o), name_of(o));
            } else {
                assert_eq!(
                    namespace,
                    Some("driftguard"),
                    "{overlay}: {} {}",
                    kind_of(o),
                    name_of(o)
                );
            }
            assert!(
                !matches!(kind_of(o), "Role" | "RoleBinding")
                    || o["metadata"]["namespace"] == "driftguard",
                "{overlay}: unexpected {}",
                kind_of(o)
            );
        }
        let sa = one(&objects, "ServiceAccount", overlay);
        assert_eq!(name_of(sa), "driftguard");

        let roles = find(&objects, "ClusterRole");
        let bindings = find(&objects, "ClusterRoleBinding");
        let runs_here = !find(&objects, "Deployment").is_empty();
        let needs_rbac = *overlay != "external/runner";
        if needs_rbac {
            assert_eq!(roles.len(), 1, "{overlay}: one ClusterRole");
            assert_eq!(
                rules_of(roles[0]),
                expected_rules(),
                "{overlay}: get/list/watch on the default resources, nothing else"
            );
            assert_eq!(bindings.len(), 1, "{overlay}: one ClusterRoleBinding");
            let b = bindings[0];
            assert_eq!(b["roleRef"]["name"], roles[0]["metadata"]["name"]);
            assert_eq!(b["roleRef"]["kind"], "ClusterRole");
            let subjects = b["subjects"].as_array().unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], "driftguard");
            assert_eq!(subjects[0]["namespace"], "driftguard");
        } else {
            assert!(
                roles.is_empty() && bindings.is_empty(),
                "{overlay} needs no RBAC where it runs"
            );
        }

        if *overlay == "external/watched-cluster" {
            assert!(!runs_here, "{overlay}: no workload in the watched cluster");
            let token = one(&objects, "Secret", overlay);
            assert_eq!(token["type"], "kubernetes.io/service-account-token");
            assert_eq!(
                token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
                "driftguard"
            );
            continue;
        }

        // The workload.
        let deployment = one(&objects, "Deployment", overlay);
        let spec = &deployment["spec"]["template"]["spec"];
        // MongoDB runs three replicas with leader election (issue 19); SQLite stays one.
        let replicas = if *overlay == "mongodb" { 3 } else { 1 };
        assert_eq!(deployment["spec"]["replicas"], replicas, "{overlay}");
        assert_eq!(spec["serviceAccountName"], "driftguard");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["runAsUser"], 65532);
        let c = container(deployment);
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}");
        assert_eq!(sc["runAsNonRoot"], true, "{overlay}");
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        for key in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    c["resources"][key][res].is_string(),
                    "{overlay}: resources.{key}.{res}"
                );
            }
        }
        assert_eq!(c["ports"][0]["name"], "http");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        let service = one(&objects, "Service", overlay);
        assert_eq!(service["spec"]["ports"][0]["name"], "http");
        assert_eq!(service["spec"]["ports"][0]["port"], 8080);
        let selector = service["spec"]["selector"].as_object().unwrap();
        for (k, v) in selector {
            assert_eq!(
                &deployment["spec"]["template"]["metadata"]["labels"][k], v,
                "{overlay}: the Service selects the pods"
            );
        }

        // The configuration loads and matches the volumes.
        let config = load_config(&config_of(&objects, overlay), &[]);
        assert_eq!(config.server.address, "0.0.0.0");
        assert_eq!(config.server.port, 8080);
        assert!(config.database.path.starts_with("/var/lib/driftguard/"));
        assert!(config.git.workdir.starts_with("/var/lib/driftguard/"));
        assert_eq!(
            config.kubernetes.resources,
            ["deployments", "services", "configmaps"],
            "{overlay}: the watched resources are exactly what the ClusterRole grants"
        );
        let mounts = mounts_of(c);
        assert_eq!(
            mounts.get("/var/lib/driftguard").map(String::as_str),
            Some("data")
        );
        assert_eq!(
            mounts.get("/etc/driftguard").map(String::as_str),
            Some("config")
        );
        assert_eq!(mounts.get("/tmp").map(String::as_str), Some("tmp"));
        let cm_name = one(&objects, "ConfigMap", overlay)["metadata"]["name"].clone();
        let volumes = spec["volumes"].as_array().unwrap();
        let volume = |name: &str| {
            volumes
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{overlay}: no volume {name}"))
        };
        assert_eq!(volume("config")["configMap"]["name"], cm_name);

        let env = env_of(c);
        let secret_ref = |var: &str| -> (String, String) {
            let r = &env
                .get(var)
                .unwrap_or_else(|| panic!("{overlay}: no {var}"))["valueFrom"]["secretKeyRef"];
            (
                r["name"].as_str().unwrap().to_owned(),
                r["key"].as_str().unwrap().to_owned(),
            )
        };
        assert_eq!(
            secret_ref("DRIFTGUARD_GIT_TOKEN"),
            ("driftguard-credentials".to_owned(), "git-token".to_owned())
        );
        assert_eq!(
            secret_ref("DRIFTGUARD_SERVER__AUTH_TOKEN"),
            ("driftguard-credentials".to_owned(), "auth-token".to_owned())
        );
        // The pod listens on 0.0.0.0, which serve refuses without a token: the token is required.
        assert_eq!(
            env["DRIFTGUARD_SERVER__AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"], false,
            "{overlay}: the API token is required"
        );
        let with_token = load_config(
            &config_of(&objects, overlay),
            &[("DRIFTGUARD_SERVER__AUTH_TOKEN", "t0ken")],
        );
        assert_eq!(
            with_token.server.exposure(),
            Ok(driftguard_config::Exposure::Authenticated)
        );
        assert!(
            config.server.exposure().is_err(),
            "{overlay}: without the token serve refuses to start"
        );
        assert!(!config.server.allow_unauthenticated);

        // The NetworkPolicy: ingress to the http port only; egress to DNS, the API server, Git
        // and MongoDB only.
        let policy = one(&objects, "NetworkPolicy", overlay);
        let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        let selector = policy["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .unwrap();
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{overlay}: the policy selects the pod"
            );
        }
        assert_eq!(
            policy["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        let ingress = policy["spec"]["ingress"].as_array().unwrap();
        assert_eq!(ingress.len(), 1, "{overlay}: one ingress rule");
        assert_eq!(
            ingress[0]["ports"],
            serde_json::json!([{ "port": "http", "protocol": "TCP" }])
        );
        let egress: BTreeSet<(String, i64)> = policy["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|rule| assert!(rule.get("to").is_none(), "{overlay}: ports, not peers"))
            .flat_map(|rule| rule["ports"].as_array().unwrap().iter())
            .map(|p| {
                (
                    p["protocol"].as_str().unwrap().to_owned(),
                    p["port"].as_i64().unwrap(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, i64)> = EGRESS_PORTS
            .iter()
            .map(|(proto, port)| ((*proto).to_owned(), *port))
            .collect();
        assert_eq!(egress, expected, "{overlay}: egress ports");
        for o in &objects {
            assert_ne!(
                kind_of(o),
                "Secret",
                "{overlay}: Secrets are never generated"
            );
        }
        match *overlay {
            "sqlite" | "external/runner" => {
                let pvc = one(&objects, "PersistentVolumeClaim", overlay);
                assert_eq!(
                    volume("data")["persistentVolumeClaim"]["claimName"],
                    pvc["metadata"]["name"]
                );
                assert!(volume("data").get("emptyDir").is_none());
                assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
            }
            "mongodb" => {
                assert_eq!(
                    secret_ref("DRIFTGUARD_DATABASE__URI"),
                    ("driftguard-mongodb".to_owned(), "uri".to_owned())
                );
                assert_eq!(env["DRIFTGUARD_DATABASE__DRIVER"]["value"], "mongodb");
                let with_env = load_config(
                    &config_of(&objects, overlay),
                    &[
                        ("DRIFTGUARD_DATABASE__DRIVER", "mongodb"),
                        ("DRIFTGUARD_DATABASE__URI", "mongodb://db.example:27017/"),
                    ],
                );
                assert_eq!(
                    with_env.database.uri.as_deref(),
                    Some("mongodb://db.example:27017/")
                );
                leader_election_objects(&objects, deployment, &env);
            }
            other => panic!("unexpected overlay {other}"),
        }
        if *overlay == "external/runner" {
            assert_eq!(spec["automountServiceAccountToken"], false);
            let path = env["DRIFTGUARD_KUBERNETES__CONFIG_PATH"]["value"]
                .as_str()
                .unwrap()
                .to_owned();
            let dir = Path::new(&path).parent().unwrap().to_str().unwrap();
            assert_eq!(mounts.get(dir).map(String::as_str), Some("kubeconfig"));
            assert_eq!(
                volume("kubeconfig")["secret"]["secretName"],
                "driftguard-kubeconfig"
            );
            assert!(path.ends_with("/config"), "the Secret key is `config`");
        }
    }
}

/// The MongoDB overlay's replicas: leader election on, rolled one at a time, spread over
/// nodes, a disruption budget, and a Role for the Lease in its own namespace only.
fn leader_election_objects(objects: &[Value], deployment: &Value, env: &BTreeMap<String, Value>) {
    assert_eq!(env["DRIFTGUARD_LEADER_ELECTION__ENABLED"]["value"], "true");
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate", "{strategy}");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 1);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let anti = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    for (k, v) in anti["labelSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "anti-affinity selects the pods");
    }
    let pdb = one(objects, "PodDisruptionBudget", "mongodb");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the budget selects the pods");
    }
    let role = one(objects, "Role", "mongodb");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{role}");
    assert_eq!(
        rules[0]["apiGroups"],
        serde_json::json!(["coordination.k8s.io"])
    );
    assert_eq!(rules[0]["resources"], serde_json::json!(["leases"]));
    let verbs: BTreeSet<&str> = rules[0]["verbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        verbs,
        ["create", "get", "list", "update", "watch"]
            .into_iter()
            .collect(),
        "no delete, no patch"
    );
    let binding = one(objects, "RoleBinding", "mongodb");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "driftguard");
    // The configuration the pods run with loads, election on, with the shared store.
    let config = load_config(
        &config_of(objects, "mongodb"),
        &[
            ("DRIFTGUARD_DATABASE__DRIVER", "mongodb"),
            ("DRIFTGUARD_DATABASE__URI", "mongodb://db.example:27017/"),
            ("DRIFTGUARD_LEADER_ELECTION__ENABLED", "true"),
        ],
    );
    assert!(config.leader_election.enabled);
}

#[test]
fn deploy_secrets_component_adds_the_rule_and_the_resource() {
    let verbs = vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()];
    let mut with_secrets = expected_rules();
    with_secrets.insert((String::new(), "secrets".to_owned(), verbs));
    for overlay in ["sqlite", "mongodb", "external/watched-cluster"] {
        let objects = parse(&render_unique(overlay, &["secrets"], "driftguard", "s"));
        let role = one(&objects, "ClusterRole", overlay);
        assert_eq!(rules_of(role), with_secrets, "{overlay}");
        let Some(deployment) = find(&objects, "Deployment").first().copied() else {
            continue;
        };
        let env = env_of(container(deployment));
        let resources = env["DRIFTGUARD_KUBERNETES__RESOURCES"]["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let config = load_config(
            &config_of(&objects, overlay),
            &[("DRIFTGUARD_KUBERNETES__RESOURCES", &resources)],
        );
        assert_eq!(
            config.kubernetes.resources,
            ["deployments", "services", "configmaps", "secrets"],
            "{overlay}: the watched resources are exactly what the ClusterRole grants"
        );
    }
}

#[test]
fn deploy_example_secrets_are_placeholders() {
    for file in EXAMPLE_SECRETS {
        let text = std::fs::read_to_string(deploy_dir().join("secrets").join(file)).unwrap();
        assert!(text.contains("EXAMPLE"), "{file} says it is an example");
        let objects = parse(&text);
        assert_eq!(objects.len(), 1);
        let data = objects[0]["stringData"].as_object().unwrap();
        for (key, value) in data {
            assert!(
                value.as_str().unwrap().contains("REPLACE_ME"),
                "{file}: {key} is a placeholder"
            );
        }
    }
}

#[test]
fn deploy_alert_rules_pass_promtool() {
    let rules = deploy_dir().join("monitoring/alerts.yaml");
    let promtool = ["/usr/bin/promtool", "promtool"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .unwrap_or_else(|| {
            panic!("promtool is not installed: install Debian's `prometheus` package (scripts/test.sh does)")
        });
    let (ok, out, err) = run(promtool, &["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules failed:\n{out}\n{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    // The alerts the issue asks for exist.
    let text = std::fs::read_to_string(&rules).unwrap();
    for alert in [
        "DriftGuardHighSeverityDriftActive",
        "DriftGuardGitSyncFailing",
        "DriftGuardAnalysisFailing",
        "DriftGuardStoreUnavailable",
        "DriftGuardWatchFailing",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

#[test]
fn deploy_prometheus_rule_matches_the_alert_rules() {
    let file = parse_file(&deploy_dir().join("monitoring/alerts.yaml"));
    let wrapped = parse(&render(&deploy_dir().join("components/prometheusrule")));
    let rule = one(&wrapped, "PrometheusRule", "components/prometheusrule");
    assert_eq!(
        rule["spec"]["groups"], file[0]["groups"],
        "deploy/components/prometheusrule/prometheusrule.yaml must carry exactly the groups of deploy/monitoring/alerts.yaml"
    );
}

#[test]
fn deploy_dashboard_is_well_formed() {
    let path = deploy_dir().join("monitoring/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "driftguard");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{expr}");
        }
    }
    // The panels the issue asks for.
    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    for name in [
        "driftguard_drift_records",
        "driftguard_detections_total",
        "driftguard_resolutions_total",
        "driftguard_detection_latency_seconds_bucket",
        "driftguard_analysis_duration_seconds_bucket",
        "driftguard_git_syncs_total",
        "driftguard_git_last_success_timestamp_seconds",
        "driftguard_watched_objects",
        "driftguard_watch_failing",
        "driftguard_http_requests_total",
        "driftguard_http_request_duration_seconds_bucket",
        "driftguard_store_operations_total",
        "driftguard_store_pending_writes",
    ] {
        assert!(used.contains(name), "the dashboard does not use {name}");
    }
}

// --- cluster_deploy_*: the local control plane ----------------------------------------------

/// Minimal CRDs for the Prometheus Operator kinds of the optional components, so they can be
/// applied here (the real CRDs come with the operator).
fn ensure_monitoring_crds(cluster: &TestCluster) {
    let crd = |plural: &str, kind: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.monitoring.coreos.com\nspec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names:\n    plural: {plural}\n    kind: {kind}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n"
        )
    };
    let yaml = format!(
        "{}---\n{}",
        crd("servicemonitors", "ServiceMonitor"),
        crd("prometheusrules", "PrometheusRule")
    );
    apply(cluster, &yaml, false);
    for plural in ["servicemonitors", "prometheusrules"] {
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{plural}.monitoring.coreos.com"),
            ])
            .unwrap();
    }
}

#[test]
fn cluster_deploy_every_overlay_is_accepted_by_the_api_server() {
    let cluster = TestCluster::shared();
    ensure_monitoring_crds(&cluster);
    let mut cases: Vec<(&str, Vec<&str>)> = OVERLAYS.iter().map(|o| (*o, vec![])).collect();
    // The optional Prometheus Operator components, on top of the default installation.
    cases.push(("sqlite", vec!["servicemonitor", "prometheusrule"]));
    // The opt-in Secrets component, where DriftGuard runs and where it only has its RBAC.
    cases.push(("mongodb", vec!["secrets"]));
    cases.push(("external/watched-cluster", vec!["secrets"]));
    for (overlay, components) in cases {
        let suffix = short_suffix();
        let namespace = unique_name(&format!("dgdeploy-{}", overlay.replace('/', "-")));
        let mut yaml = render_unique(overlay, &components, &namespace, &suffix);
        // policy/v1 PodDisruptionBudgets are served from Kubernetes 1.21 (and policy/v1beta1
        // is gone in 1.25), so the overlay ships v1; the v1.20 test server checks the same
        // object under v1beta1, whose schema for maxUnavailable + selector is the same.
        if !cluster
            .kubectl(&["api-versions"])
            .unwrap()
            .lines()
            .any(|l| l.trim() == "policy/v1")
        {
            yaml = yaml.replace(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget",
                "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget",
            );
        }
        let objects = parse(&yaml);
        // Moved and renamed: nothing may keep a fixed name a parallel run would share.
        for o in &objects {
            let name = name_of(o);
            assert!(
                name == namespace || name.contains(&suffix),
                "{overlay}: {} {name} was not renamed",
                kind_of(o)
            );
        }
        // The namespace must exist for a server-side dry-run of the objects inside it.
        cluster
            .kubectl(&["create", "namespace", &namespace])
            .unwrap();
        let dry = apply(&cluster, &yaml, true);
        assert_eq!(
            applied_count(&dry),
            objects.len(),
            "{overlay}: every object accepted by the dry-run:\n{dry}"
        );
        let real = apply(&cluster, &yaml, false);
        assert_eq!(applied_count(&real), objects.len(), "{overlay}:\n{real}");
        // Idempotent: a second apply changes nothing (client-side apply always reports the
        // example Secrets, written with `stringData`, as "configured").
        let again = apply(&cluster, &yaml, false);
        assert!(
            again
                .lines()
                .all(|l| l.ends_with(" unchanged") || l.starts_with("secret/")),
            "{overlay}: a second apply changed something:\n{again}"
        );
        // Everything is there.
        let (ok, got, err) = run(
            "kubectl",
            &[
                "--kubeconfig",
                cluster.kubeconfig().to_str().unwrap(),
                "get",
                "-f",
                "-",
                "-o",
                "name",
            ],
            Some(&yaml),
        );
        assert!(ok, "{overlay}: kubectl get -f failed: {err}");
        assert_eq!(applied_count(&got), objects.len(), "{overlay}:\n{got}");
    }
}

/// The base configuration without its `server:` block (ServeProcess adds a loopback one).
fn base_config_without_server() -> String {
    let text = std::fs::read_to_string(deploy_dir().join("base/driftguard.yaml")).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("server:") {
            skipping = true;
            continue;
        }
        if skipping && (line.starts_with(' ') || line.trim().is_empty()) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn nginx_manifests(namespace: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples/manifests/nginx.yaml"))
        .unwrap()
        .replace("namespace: driftguard", &format!("namespace: {namespace}"))
}

/// `driftguard serve` on the shipped base configuration, with the environment the manifests would
/// give it replaced by test values.
fn serve_base_config(
    kubeconfig: &Path,
    repo: &TestRepo,
    namespaces: &str,
    dir: &Path,
) -> ServeProcess {
    let db = dir.join("driftguard.db");
    let workdir = dir.join("git");
    let env = [
        ("DRIFTGUARD_GIT__REPOSITORY_URL", repo.url()),
        ("DRIFTGUARD_GIT__POLL_INTERVAL", "2s".to_owned()),
        (
            "DRIFTGUARD_GIT__WORKDIR",
            workdir.to_str().unwrap().to_owned(),
        ),
        ("DRIFTGUARD_DATABASE__PATH", db.to_str().unwrap().to_owned()),
        (
            "DRIFTGUARD_KUBERNETES__CONFIG_PATH",
            kubeconfig.to_str().unwrap().to_owned(),
        ),
        ("DRIFTGUARD_KUBERNETES__NAMESPACES", namespaces.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut serve = ServeProcess::start(binary(), &base_config_without_server(), &env).unwrap();
    serve
        .wait_for(DEADLINE, |p| Ok(p.get("/ready")?.0 == 200))
        .unwrap();
    serve
}

fn wait_active(serve: &mut ServeProcess, resource_id: &str) {
    let path = format!("/api/v1/drift-records/{resource_id}");
    serve
        .wait_for(DEADLINE, |p| {
            let (status, body) = p.get(&path)?;
            Ok(status == 200 && serde_json::from_str::<Value>(&body)?["drift_status"] == "active")
        })
        .unwrap();
}

#[test]
fn cluster_deploy_dashboard_and_alert_metrics_are_served() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("dgdeploy-metrics").unwrap();
    let manifests = nginx_manifests(ns.name());
    ns.apply_yaml(&manifests).unwrap();
    let repo = TestRepo::with_files(&[("nginx.yaml", &manifests)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_base_config(cluster.kubeconfig(), &repo, ns.name(), dir.path());

    // Events that create the label families which only exist after first use: a detection
    // (records, latency), API calls (HTTP), an analysis run.
    ns.scale("deployment/nginx-app", 5).unwrap();
    wait_active(&mut serve, &format!("Deployment:{}:nginx-app", ns.name()));
    let (status, _) = serve.post("/api/v1/analyze", None).unwrap();
    assert_eq!(status, 202);
    serve.get("/api/v1/statistics").unwrap();

    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .chain(alert_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(used.len() >= 15, "too few metrics found: {used:?}");
    let mut missing = BTreeSet::new();
    serve
        .wait_for(DEADLINE, |p| {
            let (status, body) = p.get("/metrics")?;
            anyhow::ensure!(status == 200, "/metrics answered {status}");
            let exposed = exposed_samples(&body);
            missing = used.difference(&exposed).cloned().collect();
            Ok(missing.is_empty())
        })
        .unwrap_or_else(|e| {
            panic!("metrics used by the dashboard/alerts but not served: {missing:?}\n{e:#}")
        });
}

#[test]
fn cluster_deploy_service_account_can_watch_but_not_write() {
    let cluster = TestCluster::shared();
    // The RBAC part of the manifests (what the external setup applies in the watched cluster),
    // moved to a fresh namespace with unique names.
    let suffix = short_suffix();
    let namespace = unique_name("dgdeploy-rbac");
    let yaml = render_unique("external/watched-cluster", &[], &namespace, &suffix);
    cluster
        .kubectl(&["create", "namespace", &namespace])
        .unwrap();
    apply(&cluster, &yaml, false);
    let sa = format!("driftguard-{suffix}");

    // A token for the ServiceAccount through the TokenRequest API (no token controller here).
    let token = cluster
        .kubectl(&["-n", &namespace, "create", "token", &sa, "--duration=1h"])
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.split('.').count() == 3, "not a JWT: {token}");
    let server = cluster
        .kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sa.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: plane\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: driftguard\n  user:\n    token: {token}\ncontexts:\n- name: driftguard\n  context:\n    cluster: plane\n    user: driftguard\ncurrent-context: driftguard\n"
        ),
    )
    .unwrap();
    let kc = kubeconfig.to_str().unwrap();

    // The watched application, applied by the admin.
    let app = cluster.namespace("dgdeploy-rbac-app").unwrap();
    let manifests = nginx_manifests(app.name());
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secret\n  namespace: {}\nstringData:\n  password: not-a-real-one\n",
        app.name()
    );
    let manifests = format!("{manifests}\n{secret}");
    app.apply_yaml(&manifests).unwrap();

    // What the ServiceAccount may and may not do.
    let can_i = |verb: &str, resource: &str| -> String {
        let (_, out, err) = run(
            "kubectl",
            &[
                "--kubeconfig",
                kc,
                "-n",
                app.name(),
                "auth",
                "can-i",
                verb,
                resource,
            ],
            None,
        );
        let answer = out.trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "can-i {verb} {resource}: {out}{err}"
        );
        answer
    };
    for resource in ["deployments.apps", "services", "configmaps"] {
        for verb in ["get", "list", "watch"] {
            assert_eq!(can_i(verb, resource), "yes", "{verb} {resource}");
        }
        for verb in ["create", "update", "patch", "delete"] {
            assert_eq!(can_i(verb, resource), "no", "{verb} {resource}");
        }
    }
    // Secrets only through the opt-in component.
    for verb in ["get", "list", "watch", "create"] {
        assert_eq!(can_i(verb, "secrets"), "no", "{verb} secrets");
    }
    for resource in [
        "pods",
        "namespaces",
        "deployments.apps/scale",
        "clusterroles.rbac.authorization.k8s.io",
    ] {
        assert_eq!(can_i("create", resource), "no", "create {resource}");
    }
    assert_eq!(can_i("list", "pods"), "no");
    let (ok, _, err) = run(
        "kubectl",
        &[
            "--kubeconfig",
            kc,
            "-n",
            app.name(),
            "scale",
            "deployment/nginx-app",
            "--replicas=3",
        ],
        None,
    );
    assert!(
        !ok && err.contains("Forbidden"),
        "a write must be forbidden: {err}"
    );

    // DriftGuard as that ServiceAccount, watching every namespace (the base configuration).
    let repo = TestRepo::with_files(&[("app.yaml", &manifests)]).unwrap();
    let mut serve = serve_base_config(&kubeconfig, &repo, "", dir.path());
    let ready = serve.get_json("/ready").unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let watches: Vec<(&String, &Value)> = ready["components"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("watch/"))
        .collect();
    assert_eq!(watches.len(), 3, "one watch per default resource: {ready}");
    for (name, component) in watches {
        assert_eq!(component["status"], "ok", "{name}: {component}");
    }
    // It really reads: a change made by the admin is detected.
    app.scale("deployment/nginx-app", 5).unwrap();
    wait_active(&mut serve, &format!("Deployment:{}:nginx-app", app.name()));
    let metrics = serve.get("/metrics").unwrap().1;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("driftguard_watch_failing{"))
    {
        assert!(line.ends_with(" 0"), "a watch fails: {line}");
    }
}

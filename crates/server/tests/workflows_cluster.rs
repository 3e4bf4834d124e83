//! Everyday workflows against the real control plane (`DRIFTGUARD_TEST_KUBECONFIG`): objects that
//! reach the cluster by ways other than client-side `kubectl apply` — `kubectl create`, a
//! `kubectl get -o json | kubectl replace -f -` round trip, server-side apply by another manager,
//! an operator's POST, Helm 3's create-then-patch — and manifests the server rewrites or reads
//! differently (the `serviceAccount` alias, YAML 1.1 octal, quantities outside `resources`).
//!
//! Each `cluster_workflow_*` test works in a namespace of its own. An unchanged object must give
//! no drift whoever wrote it, and the one real change must still be found and attributed to its
//! manager. Failures list every unexpected change as `FALSE POSITIVE: <record>`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use driftguard_config::Config;
use driftguard_core::DriftRecord;
use driftguard_server::oneshot::{self, CheckOutcome};
use driftguard_test_support::cluster::{PatchType, TestCluster, TestNamespace};
use serde_json::{Value, json};

/// An ordinary application as it is kept in Git: a ConfigMap, a Secret mounted as a volume, a
/// Deployment with a probe, resources and an environment variable from the ConfigMap, and a
/// Service in front of it.
const WEB: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels:
    app: web
data:
  APP_MODE: production
  app.properties: |
    cache.size=64
    log.level=info
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  labels:
    app: web
type: Opaque
stringData:
  api-token: not-a-real-token
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.23
        ports:
        - name: http
          containerPort: 8080
        env:
        - name: APP_MODE
          valueFrom:
            configMapKeyRef:
              name: web-config
              key: APP_MODE
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          initialDelaySeconds: 5
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
        volumeMounts:
        - name: secrets
          mountPath: /etc/web
          readOnly: true
      volumes:
      - name: secrets
        secret:
          secretName: web-secret
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
"#;

/// The kubectl names of [`WEB`]'s objects.
const WEB_OBJECTS: &[&str] = &[
    "configmap/web-config",
    "secret/web-secret",
    "deployment/web",
    "service/web",
];

const CONTAINER: &str = "spec.template.spec.containers[name=web]";

/// A namespace of its own and a repository holding the Git side.
struct Workflow {
    cluster: TestCluster,
    ns: TestNamespace,
    repo: tempfile::TempDir,
}

impl Workflow {
    /// A fresh namespace, and a repository with `manifest` as `app.yaml`.
    fn new(prefix: &str, manifest: &str) -> Workflow {
        let cluster = TestCluster::shared();
        let ns = cluster.namespace(prefix).expect("a fresh namespace");
        let repo = tempfile::Builder::new()
            .prefix("driftguard-workflow-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(repo.path().join("app.yaml"), manifest).expect("write app.yaml");
        Workflow { cluster, ns, repo }
    }

    fn id(&self, kind: &str, name: &str) -> String {
        format!("{kind}:{}:{name}", self.ns.name())
    }

    async fn check(&self) -> CheckOutcome {
        let mut config = Config::default();
        config.git.repository_url = self.repo.path().display().to_string();
        config.kubernetes.config_path = self.cluster.kubeconfig().display().to_string();
        config.kubernetes.namespaces = vec![self.ns.name().to_owned()];
        config.kubernetes.default_namespace = self.ns.name().to_owned();
        oneshot::check(&config).await
    }

    /// `kubectl get <object> -o json | kubectl replace -f -` for each object, nothing edited.
    fn round_trip(&self, objects: &[&str]) {
        for object in objects {
            let live = self
                .ns
                .kubectl(&["get", object, "-o", "json"])
                .expect("kubectl get -o json");
            let out = self
                .ns
                .kubectl_with_stdin(&["replace", "-f", "-"], &live)
                .expect("kubectl replace -f -");
            assert!(out.contains("replaced"), "kubectl replace said: {out}");
        }
    }

    /// `kubectl apply --server-side --force-conflicts --field-manager <manager>` of `yaml`.
    fn server_side_apply(&self, yaml: &str, manager: &str) {
        self.ns
            .kubectl_with_stdin(
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager",
                    manager,
                    "-f",
                    "-",
                ],
                yaml,
            )
            .expect("kubectl apply --server-side");
    }

    /// Each document of `yaml` as kubectl reads it, POSTed with `?fieldManager=<manager>` (what
    /// an operator or Helm 3 does through the API).
    fn create_through_api(&self, yaml: &str, manager: &str) {
        let out = self
            .ns
            .kubectl_with_stdin(
                &["create", "--dry-run=client", "-o", "json", "-f", "-"],
                yaml,
            )
            .expect("kubectl reads the manifest");
        let mut objects = Vec::new();
        for value in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
            let value = value.expect("kubectl printed JSON");
            if value["kind"] == "List" {
                objects.extend(value["items"].as_array().cloned().unwrap_or_default());
            } else {
                objects.push(value);
            }
        }
        assert_eq!(objects.len(), yaml.matches("\nkind: ").count(), "{out}");
        for mut object in objects {
            if let Some(meta) = object["metadata"].as_object_mut() {
                meta.remove("creationTimestamp");
            }
            let plural = match object["kind"].as_str().expect("a kind") {
                "ConfigMap" => "configmaps",
                "Secret" => "secrets",
                "Deployment" => "deployments",
                "Service" => "services",
                other => panic!("no plural known for {other}"),
            };
            let stored = self
                .ns
                .create_raw(plural, &object, manager)
                .expect("POST ?fieldManager=");
            let managers: Vec<&str> = stored["metadata"]["managedFields"]
                .as_array()
                .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(managers, [manager], "managers of a POSTed {plural}");
        }
    }
}

impl Drop for Workflow {
    /// Cluster IPs and node ports are cluster-wide: give the Services' back.
    fn drop(&mut self) {
        let _ = self
            .ns
            .kubectl(&["delete", "services", "--all", "--wait=false"]);
    }
}

fn describe(record: &DriftRecord, changes: &[&Value]) -> String {
    format!(
        "{} ({}) status={:?} managed={} changes={}",
        record.resource_id,
        record.source_path.clone().unwrap_or_default(),
        record.drift_status,
        record.managed,
        serde_json::to_string(changes).unwrap_or_default()
    )
}

fn changes_of(record: &DriftRecord) -> Vec<Value> {
    record
        .drift_details
        .iter()
        .map(|c| serde_json::to_value(c).expect("a change serialises"))
        .collect()
}

/// Whether `change` has every key `expectation` names, with the same value.
fn matches(change: &Value, expectation: &Value) -> bool {
    expectation
        .as_object()
        .expect("an expectation object")
        .iter()
        .all(|(key, value)| change.get(key).unwrap_or(&Value::Null) == value)
}

/// Asserts exactly `records` managed records, and that the record `id` has exactly the changes
/// `expected` (only the keys each expectation names are compared) and every other record none.
/// On failure, every unexpected change is listed as `FALSE POSITIVE: …`.
fn expect_changes(outcome: &CheckOutcome, records: usize, id: Option<&str>, expected: &Value) {
    assert!(
        outcome.errors.is_empty(),
        "check errors: {:?}",
        outcome.errors
    );
    let expected = expected.as_array().expect("a list of changes");
    let mut problems = Vec::new();
    let mut found = false;
    for record in &outcome.records {
        let changes = changes_of(record);
        let wanted: &[Value] = if Some(record.resource_id.as_str()) == id {
            found = true;
            expected
        } else {
            &[]
        };
        let unexpected: Vec<&Value> = changes
            .iter()
            .filter(|c| !wanted.iter().any(|w| matches(c, w)))
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!("FALSE POSITIVE: {}", describe(record, &unexpected)));
        }
        for want in wanted {
            let count = changes.iter().filter(|c| matches(c, want)).count();
            if count != 1 {
                let all: Vec<&Value> = changes.iter().collect();
                problems.push(format!(
                    "expected exactly one change {want} on {}, found {count}: {}",
                    record.resource_id,
                    describe(record, &all)
                ));
            }
        }
        if wanted.is_empty() && record.drift_detected && changes.is_empty() {
            problems.push(format!("drift without changes: {}", describe(record, &[])));
        }
        if !record.managed {
            problems.push(format!(
                "unexpected unmanaged record: {}",
                record.resource_id
            ));
        }
    }
    if let Some(id) = id {
        assert!(found, "no record for {id}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(outcome.records.len(), records, "one record per object");
    for record in &outcome.records {
        let drifted = Some(record.resource_id.as_str()) == id && !expected.is_empty();
        assert_eq!(record.drift_detected, drifted, "{}", record.resource_id);
    }
}

fn expect_no_drift(outcome: &CheckOutcome, records: usize) {
    expect_changes(outcome, records, None, &json!([]));
}

/// `kubectl get -o json | kubectl replace -f -` of every object, nothing edited: the server's
/// defaults, now owned by `kubectl-replace`, are no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_replace_round_trip_no_drift() {
    let wf = Workflow::new("dg-wf-replace", WEB);
    wf.ns.apply_yaml(WEB).expect("kubectl apply");
    wf.round_trip(WEB_OBJECTS);
    expect_no_drift(&wf.check().await, 4);
}

/// `kubectl create -f` of the Git manifest: `kubectl-create` owns every field, defaults
/// included; no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_create_no_drift() {
    let wf = Workflow::new("dg-wf-create", WEB);
    wf.ns
        .kubectl_with_stdin(&["create", "-f", "-"], WEB)
        .expect("kubectl create");
    expect_no_drift(&wf.check().await, 4);
}

/// One server-side apply of a small patch by manager `x` after a client-side apply (kubectl
/// hands `x` the fields the client-side applier owned, server defaults included): with Git's
/// image, no drift; with a new image (in another namespace), exactly that one change, attributed
/// to `x`.
///
/// One apply each: a second apply by `x` of the small patch would make the server drop every
/// field `x` took over and no longer names (a probe without its handler is then refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_server_side_apply_by_another_manager() {
    let patch = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    \
             matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
             app: web\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
        )
    };
    let unchanged = Workflow::new("dg-wf-ssa-same", WEB);
    unchanged.ns.apply_yaml(WEB).expect("kubectl apply");
    unchanged.server_side_apply(&patch("nginx:1.23"), "x");
    let live = unchanged.ns.get_json("deployment/web").expect("get");
    assert!(
        live["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .any(|m| m["manager"] == "x" && m["operation"] == "Apply"),
        "x applied: {}",
        live["metadata"]["managedFields"]
    );
    expect_no_drift(&unchanged.check().await, 4);

    let changed = Workflow::new("dg-wf-ssa-image", WEB);
    changed.ns.apply_yaml(WEB).expect("kubectl apply");
    changed.server_side_apply(&patch("nginx:1.25"), "x");
    expect_changes(
        &changed.check().await,
        4,
        Some(&changed.id("Deployment", "web")),
        &json!([{"field": format!("{CONTAINER}.image"), "op": "changed",
                 "from": "nginx:1.23", "to": "nginx:1.25", "type": "VersionChange",
                 "manager": "x"}]),
    );
}

/// An operator creates the objects through the API (`POST ?fieldManager=my-operator`, every
/// field, defaults included, owned by it): no drift. Then it adds an environment variable: one
/// `added` change, attributed to `my-operator`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_operator_creation_then_env_added() {
    let wf = Workflow::new("dg-wf-operator", WEB);
    wf.create_through_api(WEB, "my-operator");
    expect_no_drift(&wf.check().await, 4);

    wf.ns
        .patch(
            "deployment/web",
            PatchType::Strategic,
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"OPERATOR_ADDED","value":"1"}]}]}}}}"#,
            Some("my-operator"),
        )
        .expect("patch as the operator");
    expect_changes(
        &wf.check().await,
        4,
        Some(&wf.id("Deployment", "web")),
        &json!([{"field": format!("{CONTAINER}.env[name=OPERATOR_ADDED]"), "op": "added",
                 "from": null, "to": {"name": "OPERATOR_ADDED", "value": "1"},
                 "manager": "my-operator"}]),
    );
}

/// Helm 3: the previous release created through the API with manager `helm`, then upgraded to
/// what Git holds now by PATCHes with `fieldManager=helm` (a strategic merge patch of the
/// Deployment's image, a JSON merge patch of the ConfigMap): no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_helm_update_no_drift() {
    let wf = Workflow::new("dg-wf-helm", WEB);
    let previous = WEB
        .replace("image: nginx:1.23", "image: nginx:1.22")
        .replace("APP_MODE: production", "APP_MODE: staging");
    assert_ne!(previous, WEB);
    wf.create_through_api(&previous, "helm");
    wf.ns
        .patch(
            "deployment/web",
            PatchType::Strategic,
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.23"}]}}}}"#,
            Some("helm"),
        )
        .expect("helm's patch of the Deployment");
    wf.ns
        .patch(
            "configmap/web-config",
            PatchType::Merge,
            r#"{"data":{"APP_MODE":"production"}}"#,
            Some("helm"),
        )
        .expect("helm's patch of the ConfigMap");
    let live = wf.ns.get_json("deployment/web").expect("get");
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.23"
    );
    expect_no_drift(&wf.check().await, 4);
}

/// Services without `clusterIP` in Git (a ClusterIP and a NodePort one), created with
/// `kubectl create` and then round-tripped through `kubectl replace`: the allocated
/// `clusterIP`/`clusterIPs`, node port and defaults are no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_service_without_cluster_ip_no_drift() {
    const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector:
    app: api
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: metrics
    port: 9090
---
apiVersion: v1
kind: Service
metadata:
  name: api-nodeport
spec:
  type: NodePort
  selector:
    app: api
  ports:
  - port: 8080
"#;
    let wf = Workflow::new("dg-wf-service", SERVICES);
    wf.ns
        .kubectl_with_stdin(&["create", "-f", "-"], SERVICES)
        .expect("kubectl create");
    let live = wf.ns.get_json("service/api").expect("get");
    assert!(
        live["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty()),
        "the server allocated a cluster IP: {}",
        live["spec"]
    );
    expect_no_drift(&wf.check().await, 2);
    wf.round_trip(&["service/api", "service/api-nodeport"]);
    expect_no_drift(&wf.check().await, 2);
}

/// Git sets the deprecated `serviceAccount` alias to something other than
/// `serviceAccountName`; the server always makes the alias follow the name. No drift, and one
/// `server-rewrites` warning on the record at the alias.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_service_account_alias_warns() {
    let manifest = WEB.replace(
        "    spec:\n      containers:\n",
        "    spec:\n      serviceAccount: a\n      serviceAccountName: b\n      containers:\n",
    );
    assert_ne!(manifest, WEB);
    let wf = Workflow::new("dg-wf-alias", &manifest);
    wf.ns.apply_yaml(&manifest).expect("kubectl apply");
    let live = wf.ns.get_json("deployment/web").expect("get");
    assert_eq!(live["spec"]["template"]["spec"]["serviceAccount"], "b");
    let outcome = wf.check().await;
    expect_no_drift(&outcome, 4);
    let record = outcome
        .records
        .iter()
        .find(|r| r.resource_id == wf.id("Deployment", "web"))
        .expect("the Deployment's record");
    let warnings: Vec<Value> = record
        .warnings
        .iter()
        .map(|w| serde_json::to_value(w).expect("a warning serialises"))
        .collect();
    let alias: Vec<&Value> = warnings
        .iter()
        .filter(|w| w["field"] == "spec.template.spec.serviceAccount")
        .collect();
    assert_eq!(alias.len(), 1, "warnings: {warnings:?}");
    assert_eq!(
        alias[0]["code"], "server-rewrites",
        "warnings: {warnings:?}"
    );
    for other in outcome
        .records
        .iter()
        .filter(|r| r.resource_id != record.resource_id)
    {
        assert!(
            other.warnings.is_empty(),
            "{}: {:?}",
            other.resource_id,
            other.warnings
        );
    }
}

/// `defaultMode: 0755` is YAML 1.1 octal to kubectl (493 is stored): no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_octal_default_mode_no_drift() {
    let manifest = WEB.replace(
        "          secretName: web-secret\n",
        "          secretName: web-secret\n          defaultMode: 0755\n",
    );
    assert_ne!(manifest, WEB);
    let wf = Workflow::new("dg-wf-octal", &manifest);
    wf.ns.apply_yaml(&manifest).expect("kubectl apply");
    let live = wf.ns.get_json("deployment/web").expect("get");
    assert_eq!(
        live["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"],
        493
    );
    expect_no_drift(&wf.check().await, 4);
}

/// An `autoscaling/v2beta2` HPA whose target says `averageValue: 2` (stored as the quantity
/// `"2"`): no drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_workflow_hpa_average_value_no_drift() {
    let manifest = format!(
        "{WEB}---
apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 2
  maxReplicas: 6
  metrics:
  - type: Pods
    pods:
      metric:
        name: requests-per-second
      target:
        type: AverageValue
        averageValue: 2
"
    );
    let wf = Workflow::new("dg-wf-hpa", &manifest);
    wf.ns.apply_yaml(&manifest).expect("kubectl apply");
    let live = wf
        .ns
        .kubectl(&[
            "get",
            "horizontalpodautoscalers.v2beta2.autoscaling/web",
            "-o",
            "json",
        ])
        .expect("get the HPA");
    let live: Value = serde_json::from_str(&live).expect("JSON");
    assert_eq!(
        live["spec"]["metrics"][0]["pods"]["target"]["averageValue"],
        "2"
    );
    expect_no_drift(&wf.check().await, 5);
}

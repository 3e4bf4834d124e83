//! Against the real control plane (`scripts/control-plane.sh up`, DRIFTGUARD_TEST_KUBECONFIG):
//! discovery, watches, scope, permissions, Secret redaction, one-shot reads. Each test works in
//! its own fresh namespace. `cluster_serial_*` tests start a private plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use driftguard_config::KubernetesConfig;
use driftguard_core::ResourceKey;
use driftguard_kube::{
    DiscoveryMethod, DiscoverySnapshot, Error, GroupKind, KindState, LazyDiscovery, LiveEvent,
    LiveWatcher, SharedDiscovery, WatchOptions, WatchScope, get_in_version, list_once,
};
use support::{
    Events, TIMEOUT, TestCrd, TestNamespace, applied, client, deleted, hasher, kubeconfig, kubectl,
    summary, synced,
};

fn configmap(name: &str, value: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\ndata:\n  key: \"{value}\"\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[tokio::test]
async fn cluster_discovery_resolves_names_and_falls_back_from_aggregated() {
    let kc = kubeconfig();
    let client = client(&kc).await;

    // The trap this crate avoids: kube-rs' aggregated discovery "succeeds" on v1.20 with nothing.
    let aggregated = kube::Discovery::new(client.clone()).run_aggregated().await;
    if let Ok(d) = &aggregated {
        assert_eq!(d.groups().count(), 0, "v1.20 has no aggregated discovery");
    }

    let snapshot = DiscoverySnapshot::fetch(&client).await.unwrap();
    assert_eq!(snapshot.method(), DiscoveryMethod::Legacy);
    for (name, group, kind, version) in [
        ("deployments", "apps", "Deployment", "v1"),
        ("deployment", "apps", "Deployment", "v1"),
        ("Deployment", "apps", "Deployment", "v1"),
        ("deploy", "apps", "Deployment", "v1"),
        ("deployments.apps", "apps", "Deployment", "v1"),
        ("svc", "", "Service", "v1"),
        ("cm", "", "ConfigMap", "v1"),
        ("secrets", "", "Secret", "v1"),
        ("events", "", "Event", "v1"),
        ("ingresses", "networking.k8s.io", "Ingress", "v1"),
        ("ingresses.extensions", "extensions", "Ingress", "v1beta1"),
        (
            "crd",
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "v1",
        ),
    ] {
        let k = snapshot
            .resolve(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (k.group.as_str(), k.kind.as_str(), k.version.as_str()),
            (group, kind, version),
            "{name}"
        );
    }
    let err = snapshot.resolve("deploymets").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown resource type `deploymets`; did you mean one of `deployments`, `Deployment`?"
    );
    assert!(matches!(
        snapshot.resolve("tokenreviews"),
        Err(Error::NotWatchable { .. })
    ));
    assert_eq!(snapshot.is_namespaced("apps", "Deployment"), Some(true));
    assert_eq!(snapshot.is_namespaced("", "Namespace"), Some(false));
    assert_eq!(
        snapshot.is_namespaced("rbac.authorization.k8s.io", "ClusterRole"),
        Some(false)
    );
    assert_eq!(snapshot.is_namespaced("nope.example", "Thing"), None);
}

/// What a resolution gave, comparable: the kind, or the error's whole text.
fn outcome(result: Result<driftguard_kube::ResolvedKind, Error>) -> Result<String, String> {
    result
        .map(|k| {
            format!(
                "{}/{} {} {} {}",
                k.group, k.version, k.kind, k.plural, k.namespaced
            )
        })
        .map_err(|e| e.to_string())
}

/// `check`'s discovery reads only the groups an answer can depend on, and every answer is the
/// one full discovery gives: every name form (plural, singular, kind, short name, group- and
/// version-qualified, unknown, unwatchable), a custom resource, scope and kind questions.
#[tokio::test]
async fn cluster_lazy_discovery_answers_as_full_discovery_reading_fewer_group_versions() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let crd = TestCrd::install(&kc, "lazy");
    let g = crd.group.clone();
    // Established CRDs can take a moment to appear in discovery.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while DiscoverySnapshot::fetch(&client)
        .await
        .unwrap()
        .resolve(&crd.resource())
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "{g} never appeared");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut names: Vec<String> = [
        "deployments",
        "deployment",
        "Deployment",
        "deploy",
        "DEPLOYMENTS",
        " deployments ",
        "deployments.apps",
        "deployment.apps",
        "Deployment.apps",
        "deploy.apps",
        "deployments.v1.apps",
        "deployments.v1beta1.apps",
        "services",
        "svc",
        "Service",
        "configmaps",
        "cm",
        "secrets",
        "events",
        "ev",
        "events.events.k8s.io",
        "events.v1beta1.events.k8s.io",
        "ingresses",
        "ing",
        "ingresses.extensions",
        "ingresses.networking.k8s.io",
        "ingresses.v1beta1.networking.k8s.io",
        "crd",
        "crds",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        "sc",
        "storageclasses",
        "csistoragecapacities",
        "pdb",
        "poddisruptionbudgets.policy",
        "hpa",
        "horizontalpodautoscalers.v2beta2.autoscaling",
        "cronjobs",
        "cj",
        "cronjobs.v1beta1.batch",
        "jobs",
        "leases",
        "priorityclasses",
        "pc",
        "networkpolicies",
        "netpol",
        "roles",
        "clusterroles",
        "rolebindings",
        "namespaces",
        "ns",
        "nodes",
        "no",
        "pv",
        "pvc",
        "endpointslices",
        "apiservices",
        "tokenreviews",
        "selfsubjectaccessreviews",
        "deploymets",
        "confgmap",
        "zzzzzzzzzz",
        "nope.example.com",
        "deployments.nope",
        "deployments.v9.apps",
        "pods.v1",
        "",
    ]
    .iter()
    .map(|n| (*n).to_owned())
    .collect();
    names.extend([
        format!("widgets.{g}"),
        format!("widget.{g}"),
        format!("Widget.{g}"),
        format!("wg.{g}"),
        format!("widgets.v1.{g}"),
        format!("widgets.v2.{g}"),
        format!("gadgets.{g}"),
    ]);

    let full = DiscoverySnapshot::fetch(&client).await.unwrap();
    let served = LazyDiscovery::new(client.clone())
        .await
        .unwrap()
        .group_versions_served();
    for name in &names {
        let lazy = LazyDiscovery::new(client.clone()).await.unwrap();
        assert_eq!(lazy.method(), full.method());
        assert_eq!(
            outcome(lazy.resolve(name).await),
            outcome(full.resolve(name)),
            "{name:?}"
        );
        let read = lazy.group_versions_read();
        let found = full.resolve(name).is_ok();
        match name.as_str() {
            // A plural of the core group: that group, and the few looked at meanwhile.
            "services" | "configmaps" | "secrets" | "events" | "namespaces" => {
                assert!(read < served / 2, "{name}: {read} of {served} read")
            }
            // Group-qualified and served: the group named (autoscaling has three versions).
            n if n.contains('.') && found => assert!(read <= 3, "{name}: {read} read"),
            _ => {}
        }
        assert!(read <= served, "{name}: {read} of {served}");
    }

    // What `check` asks by default: fewer group versions than a full discovery reads.
    let lazy = LazyDiscovery::new(client.clone()).await.unwrap();
    let defaults = ["deployments", "services", "configmaps", "secrets"];
    let (kinds, errors) = lazy.resolve_all(&defaults).await;
    let (full_kinds, full_errors) = full.resolve_all(&defaults);
    assert_eq!(kinds, full_kinds);
    assert!(errors.is_empty() && full_errors.is_empty());
    assert!(
        lazy.group_versions_read() < served / 2,
        "{} of {served} group versions read",
        lazy.group_versions_read()
    );

    // Scope and kind questions read the group asked about.
    let lazy = LazyDiscovery::new(client.clone()).await.unwrap();
    for (group, kind) in [
        ("apps", "Deployment"),
        ("", "Namespace"),
        ("", "ConfigMap"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("storage.k8s.io", "CSIStorageCapacity"),
        ("policy", "PodDisruptionBudget"),
        ("extensions", "Ingress"),
        (g.as_str(), "Widget"),
        (g.as_str(), "Gadget"),
        ("apps", "Nope"),
        ("nope.example", "Thing"),
    ] {
        assert_eq!(
            lazy.is_namespaced(group, kind).await,
            full.is_namespaced(group, kind),
            "{group}/{kind}"
        );
        let gk = GroupKind::new(group, kind);
        assert_eq!(lazy.kind(&gk).await, full.kind(&gk), "{group}/{kind}");
    }
    assert!(lazy.group_versions_read() < served / 2);

    // Helm's capabilities are all of discovery, and the same.
    assert_eq!(lazy.capabilities().await, full.capabilities());
    assert_eq!(lazy.group_versions_read(), served);
}

/// `check`'s client offers HTTP/2 and the API server takes it: every request in flight shares
/// one connection (one TLS handshake instead of one per request). `serve`'s stays on HTTP/1.1,
/// a connection per watch.
#[tokio::test]
async fn cluster_multiplexed_client_speaks_http2_and_the_default_http1() {
    use driftguard_kube::{Protocols, connect_with};
    let kc = kubeconfig();
    let cfg = support::k8s_config(&kc);
    for (protocols, version) in [
        (Protocols::Multiplexed, http::Version::HTTP_2),
        (Protocols::Http1, http::Version::HTTP_11),
    ] {
        let client = connect_with(&cfg, protocols).await.unwrap();
        // Several at once, as check sends them; each must be answered in the version offered.
        let answers = futures::future::join_all((0..6).map(|_| {
            let client = client.clone();
            async move {
                let request = http::Request::get("/version").body(Vec::new()).unwrap();
                client.send(request.map(Into::into)).await
            }
        }))
        .await;
        for answer in answers {
            let answer = answer.unwrap();
            assert_eq!(answer.status(), http::StatusCode::OK, "{protocols:?}");
            assert_eq!(answer.version(), version, "{protocols:?}");
        }
    }
}

/// Helm's `.Capabilities` from discovery: the server's version and what it serves, kind-level
/// entries included, and nothing it does not serve.
#[tokio::test]
async fn cluster_discovery_gives_the_clusters_capabilities() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let snapshot = DiscoverySnapshot::fetch(&client).await.unwrap();
    let caps = snapshot
        .capabilities()
        .expect("the server answers /version");
    assert!(caps.kube_version.starts_with("v1.20."), "{caps:?}");
    assert!(!caps.kube_version.contains('+'), "{caps:?}");
    for served in [
        "v1",
        "v1/ConfigMap",
        "apps/v1",
        "apps/v1/Deployment",
        "policy/v1beta1/PodDisruptionBudget",
    ] {
        assert!(
            caps.api_versions.iter().any(|v| v == served),
            "{served}: {caps:?}"
        );
    }
    // v1.20 serves no policy/v1 (Helm's built-in list claims it does).
    assert!(
        !caps
            .api_versions
            .iter()
            .any(|v| v.starts_with("policy/v1/")),
        "{caps:?}"
    );
    assert!(
        caps.api_versions.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
}

#[tokio::test]
async fn cluster_discovery_refresh_picks_up_a_crd_installed_later() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let discovery = SharedDiscovery::new(client).await.unwrap();
    let crd = TestCrd::install(&kc, "later");
    let name = crd.resource();
    assert!(
        matches!(
            discovery.snapshot().resolve(&name),
            Err(Error::UnknownResource { .. })
        ),
        "not known before the refresh"
    );
    // Established CRDs can take a moment to appear in discovery.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let resolved = loop {
        let snapshot = discovery.refresh().await.unwrap();
        if let Ok(k) = snapshot.resolve(&name) {
            break k;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never appeared in discovery"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(resolved.kind, "Widget");
    assert_eq!(resolved.group, crd.group);
    assert!(resolved.namespaced);
    let snapshot = discovery.snapshot();
    assert_eq!(
        snapshot.resolve(&format!("wg.{}", crd.group)).unwrap(),
        resolved
    );
    assert_eq!(
        snapshot.resolve(&format!("Widget.{}", crd.group)).unwrap(),
        resolved
    );
    assert_eq!(snapshot.is_namespaced(&crd.group, "Widget"), Some(true));
}

// ---------------------------------------------------------------------------------------------
// Watches

#[tokio::test]
async fn cluster_watch_reports_create_update_delete_of_every_kind() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let ns = TestNamespace::create(&kc, "events");
    let crd = TestCrd::install(&kc, "events");
    let discovery = SharedDiscovery::new(client.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while discovery.snapshot().resolve(&crd.resource()).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "CRD not discovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
        discovery.refresh().await.unwrap();
    }
    let names = [
        "deployments",
        "services",
        "configmaps",
        "secrets",
        &crd.resource(),
    ];
    let (kinds, errors) = discovery.snapshot().resolve_all(&names);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(kinds.len(), 5);

    let (tx, mut events) = Events::channel();
    let watcher = LiveWatcher::start(
        client,
        &kinds,
        WatchScope::namespaces([ns.name.clone()]),
        hasher(),
        tx,
    );
    events
        .wait_synced(&["Deployment", "Service", "ConfigMap", "Secret", "Widget"])
        .await;
    let summary_ready = watcher.readiness().summary();
    assert!(
        summary_ready.ready && !summary_ready.degraded,
        "{summary_ready:?}"
    );

    let wg_api = format!("{}/v1", crd.group);
    ns.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: web, image: "nginx:1.25"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: web}}
data: {{mode: blue}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web}}
stringData: {{password: first}}
---
apiVersion: {wg_api}
kind: Widget
metadata: {{name: web}}
spec: {{size: 3}}
"#
    ));
    for kind in ["Deployment", "Service", "ConfigMap", "Secret", "Widget"] {
        let event = events
            .wait_for(&format!("{kind} created"), TIMEOUT, |e| {
                applied(e, kind, "web")
            })
            .await;
        let LiveEvent::Applied { object, .. } = event else {
            unreachable!()
        };
        assert_eq!(object.key.namespace, ns.name);
        assert!(object.object.get("status").is_none());
        assert!(
            !object.managed_fields.is_empty(),
            "{kind} keeps managedFields"
        );
    }

    // Updates.
    ns.kubectl(&["scale", "deployment/web", "--replicas=5"]);
    events
        .wait_for("Deployment scaled", TIMEOUT, |e| {
            applied(e, "Deployment", "web")
                && matches!(e, LiveEvent::Applied { object, .. } if object.object["spec"]["replicas"] == 5)
        })
        .await;
    ns.kubectl(&["label", "service/web", "hotfix=yes"]);
    events
        .wait_for("Service labelled", TIMEOUT, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.kind == "Service" && object.object["metadata"]["labels"]["hotfix"] == "yes")
        })
        .await;
    ns.kubectl(&[
        "patch",
        "configmap/web",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"green"}}"#,
    ]);
    events
        .wait_for("ConfigMap patched", TIMEOUT, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.kind == "ConfigMap" && object.object["data"]["mode"] == "green")
        })
        .await;
    let before = watcher
        .cache()
        .get(&ResourceKey::new("", "Secret", &ns.name, "web"))
        .unwrap();
    ns.kubectl(&[
        "patch",
        "secret/web",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"second"}}"#,
    ]);
    let event = events
        .wait_for("Secret patched", TIMEOUT, |e| applied(e, "Secret", "web"))
        .await;
    let LiveEvent::Applied { object, .. } = event else {
        unreachable!()
    };
    assert_ne!(
        object.object["data"]["password"],
        before.object["data"]["password"]
    );
    assert_eq!(
        object.object["data"]["password"],
        hasher().digest(b"second")
    );
    ns.kubectl(&[
        "patch",
        &format!("widgets.{}/web", crd.group),
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    events
        .wait_for("Widget patched", TIMEOUT, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.kind == "Widget" && object.object["spec"]["size"] == 4)
        })
        .await;

    // The cache follows.
    let cache = watcher.cache();
    let dep = cache
        .get(&ResourceKey::new("apps", "Deployment", &ns.name, "web"))
        .unwrap();
    assert_eq!(dep.object["spec"]["replicas"], 5);
    assert_eq!(cache.len(&GroupKind::new(&crd.group, "Widget")), 1);

    // Deletes.
    ns.kubectl(&[
        "delete",
        "deployment/web",
        "service/web",
        "configmap/web",
        "secret/web",
        &format!("widgets.{}/web", crd.group),
    ]);
    for kind in ["Deployment", "Service", "ConfigMap", "Secret", "Widget"] {
        events
            .wait_for(&format!("{kind} deleted"), TIMEOUT, |e| {
                deleted(e, kind, "web")
            })
            .await;
    }
    assert!(cache.is_empty(), "{:?}", cache.lens());
}

/// Deletes a ConfigMap made in the shared plane's kube-system on drop.
struct KubeSystemConfigMap(String, String);

impl Drop for KubeSystemConfigMap {
    fn drop(&mut self) {
        let _ = support::try_kubectl(
            &self.0,
            &["-n", "kube-system", "delete", "configmap", &self.1],
            None,
        );
    }
}

#[tokio::test]
async fn cluster_scope_honours_namespaces_system_namespaces_and_labels() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let cm = discovery.resolve("configmaps").unwrap();
    let watched = TestNamespace::create(&kc, "scope-in");
    let other = TestNamespace::create(&kc, "scope-out");
    let system = TestNamespace::create(&kc, "scope-sys");

    // 1. Listed namespaces: one watch per namespace; other namespaces never arrive.
    let (tx, mut events) = Events::channel();
    let only = LiveWatcher::start(
        client.clone(),
        std::slice::from_ref(&cm),
        WatchScope::namespaces([watched.name.clone()]),
        hasher(),
        tx,
    );
    events
        .wait_for("first list", TIMEOUT, |e| synced(e, "ConfigMap"))
        .await;
    other.apply(&configmap("outside", "x", ""));
    watched.apply(&configmap("inside", "x", ""));
    events
        .wait_for("inside", TIMEOUT, |e| applied(e, "ConfigMap", "inside"))
        .await;
    other.apply(&configmap("outside", "y", ""));
    watched.apply(&configmap("inside", "y", ""));
    events
        .wait_for("inside updated", TIMEOUT, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.name == "inside" && object.object["data"]["key"] == "y")
        })
        .await;
    assert!(
        !events
            .seen
            .iter()
            .any(|e| applied(e, "ConfigMap", "outside")),
        "{:?}",
        events.seen.iter().map(summary).collect::<Vec<_>>()
    );
    assert!(
        only.cache()
            .keys(&cm.group_kind())
            .iter()
            .all(|k| k.namespace == watched.name)
    );
    drop(only);

    // 2. Cluster-wide with system namespaces skipped (built-in and extra): the API server's own
    //    kube-system ConfigMap and the extra namespace's objects never enter the cache.
    let cfg = KubernetesConfig {
        extra_system_namespaces: vec![system.name.clone()],
        ..support::k8s_config(&kc)
    };
    let scope = WatchScope::from_config(&cfg);
    let (tx, mut events) = Events::channel();
    let wide = LiveWatcher::start(
        client.clone(),
        std::slice::from_ref(&cm),
        scope.clone(),
        hasher(),
        tx,
    );
    events
        .wait_for("first list", TIMEOUT, |e| synced(e, "ConfigMap"))
        .await;
    system.apply(&configmap("sys", "x", ""));
    watched.apply(&configmap("after-sys", "x", ""));
    events
        .wait_for("after-sys", TIMEOUT, |e| {
            applied(e, "ConfigMap", "after-sys")
        })
        .await;
    let keys = wide.cache().keys(&cm.group_kind());
    assert!(
        keys.iter().any(|k| k.namespace == other.name),
        "other namespaces are watched"
    );
    for key in &keys {
        assert!(
            ![
                "kube-system",
                "kube-public",
                "kube-node-lease",
                system.name.as_str()
            ]
            .contains(&key.namespace.as_str()),
            "{key} should be skipped"
        );
    }
    assert!(
        !events
            .seen
            .iter()
            .any(|e| support::applied_in(e, &system.name, "sys"))
    );
    // Without skipping, a kube-system ConfigMap is there (the filter, not an empty namespace).
    let in_kube_system = support::unique("dgk-sys");
    kubectl(
        &kc,
        &["-n", "kube-system", "create", "configmap", &in_kube_system],
        None,
    );
    let _cleanup = KubeSystemConfigMap(kc.clone(), in_kube_system.clone());
    let (all, errors) = list_once(
        &client,
        std::slice::from_ref(&cm),
        &WatchScope::all(),
        &hasher(),
    )
    .await;
    assert!(errors.is_empty());
    assert!(
        all.iter()
            .any(|o| o.key.namespace == "kube-system" && o.key.name == in_kube_system)
    );
    let (filtered, _) = list_once(&client, std::slice::from_ref(&cm), &scope, &hasher()).await;
    assert!(
        !filtered
            .iter()
            .any(|o| o.key.namespace == "kube-system" || o.key.namespace == system.name)
    );
    drop(wide);

    // 3. Label selector: only matching objects; losing the label is a deletion from scope.
    let selector = format!("dg-team={}", watched.name);
    let (tx, mut events) = Events::channel();
    let labelled = LiveWatcher::start(
        client.clone(),
        std::slice::from_ref(&cm),
        WatchScope::namespaces([watched.name.clone()]).with_labels(selector.clone()),
        hasher(),
        tx,
    );
    events
        .wait_for("first list", TIMEOUT, |e| synced(e, "ConfigMap"))
        .await;
    watched.apply(&configmap("unlabelled", "x", ""));
    watched.apply(&configmap(
        "labelled",
        "x",
        &format!("dg-team: {}", watched.name),
    ));
    events
        .wait_for("labelled", TIMEOUT, |e| applied(e, "ConfigMap", "labelled"))
        .await;
    assert!(
        !events
            .seen
            .iter()
            .any(|e| applied(e, "ConfigMap", "unlabelled"))
    );
    watched.kubectl(&["label", "configmap/unlabelled", &selector]);
    events
        .wait_for("newly labelled", TIMEOUT, |e| {
            applied(e, "ConfigMap", "unlabelled")
        })
        .await;
    watched.kubectl(&["label", "configmap/labelled", "dg-team-"]);
    events
        .wait_for("label removed", TIMEOUT, |e| {
            deleted(e, "ConfigMap", "labelled")
        })
        .await;
    let keys: Vec<String> = labelled
        .cache()
        .keys(&cm.group_kind())
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(keys, vec!["unlabelled"]);
}

#[tokio::test]
async fn cluster_forbidden_kind_is_reported_while_others_work() {
    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "rbac");
    let user = format!("{}-reader", ns.name);
    // Only ConfigMaps, only in this namespace.
    ns.apply(&format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: cm-reader}}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: cm-reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{user}"}}
"#
    ));
    ns.apply(&configmap("visible", "x", ""));
    let admin = client(&kc).await;
    let discovery = DiscoverySnapshot::fetch(&admin).await.unwrap();
    let (kinds, _) = discovery.resolve_all(&["configmaps", "secrets"]);

    // The admin kubeconfig impersonating the limited user.
    let mut config = driftguard_kube::client_config(&support::k8s_config(&kc))
        .await
        .unwrap();
    config.auth_info.impersonate = Some(user.clone());
    let limited = kube::Client::try_from(config).unwrap();

    let (tx, mut events) = Events::channel();
    let watcher = LiveWatcher::start(
        limited.clone(),
        &kinds,
        WatchScope::namespaces([ns.name.clone()]),
        hasher(),
        tx,
    );
    let forbidden = events
        .wait_for("Secret forbidden", TIMEOUT, |e| {
            matches!(e, LiveEvent::KindStatus { kind, status: KindState::Forbidden(_), .. } if kind.kind == "Secret")
        })
        .await;
    let LiveEvent::KindStatus {
        status: KindState::Forbidden(message),
        namespace,
        ..
    } = forbidden
    else {
        unreachable!()
    };
    assert!(
        message.contains("forbidden") && message.contains(&user),
        "{message}"
    );
    assert_eq!(namespace.as_deref(), Some(ns.name.as_str()));
    events
        .wait_for("ConfigMap listed", TIMEOUT, |e| synced(e, "ConfigMap"))
        .await;
    assert!(
        events
            .seen
            .iter()
            .any(|e| applied(e, "ConfigMap", "visible"))
    );
    ns.apply(&configmap("later", "x", ""));
    events
        .wait_for("ConfigMap created", TIMEOUT, |e| {
            applied(e, "ConfigMap", "later")
        })
        .await;

    let summary = watcher.readiness().summary();
    assert!(
        summary.ready,
        "a forbidden kind does not hold readiness back: {summary:?}"
    );
    assert!(summary.degraded);
    assert_eq!(
        summary.kinds[&GroupKind::new("", "ConfigMap")].state,
        KindState::Ready
    );
    assert!(matches!(
        summary.kinds[&GroupKind::new("", "Secret")].state,
        KindState::Forbidden(_)
    ));

    // The one-shot list says the same.
    let (objects, errors) = list_once(
        &limited,
        &kinds,
        &WatchScope::namespaces([ns.name.clone()]),
        &hasher(),
    )
    .await;
    assert_eq!(objects.len(), 2);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].forbidden && errors[0].kind.kind == "Secret",
        "{errors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn cluster_secret_values_are_never_ingested_nor_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not thread-local: callsite interest is cached process-wide, and a thread-local
    // subscriber can miss events while other tests run in parallel. (Other tests' logs land in
    // the buffer too, which only makes the check stricter.)
    tracing::subscriber::set_global_default(subscriber)
        .expect("only this test installs a global subscriber");

    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "secret");
    let canary = format!("canary-{}-Zq9", std::process::id());
    let canary2 = format!("{canary}-rotated");
    let encoded = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let client = client(&kc).await;
    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let (kinds, _) = discovery.resolve_all(&["secrets", "configmaps"]);
    let (tx, mut events) = Events::channel();
    let watcher = LiveWatcher::start(
        client.clone(),
        &kinds,
        WatchScope::namespaces([ns.name.clone()]),
        hasher(),
        tx,
    );
    events
        .wait_for("first list", TIMEOUT, |e| synced(e, "Secret"))
        .await;

    // kubectl apply from a manifest with stringData: the value lands in data AND in the
    // last-applied annotation in clear.
    let manifest = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: \"{value}\"\n  dsn: \"postgres://app:{value}@db/app\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.yaml");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(manifest(&canary).as_bytes())
        .unwrap();
    ns.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let raw = ns.kubectl(&["get", "secret", "db", "-o", "json"]);
    assert!(
        raw.contains(&canary),
        "the API object carries it in the annotation (precondition)"
    );
    events
        .wait_for("Secret applied", TIMEOUT, |e| applied(e, "Secret", "db"))
        .await;
    std::fs::write(&file, manifest(&canary2)).unwrap();
    ns.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    events
        .wait_for("Secret re-applied", TIMEOUT, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.name == "db" && object.object["data"]["password"] == hasher().digest(canary2.as_bytes()))
        })
        .await;

    // Everything ingested: events, the cache, a one-shot list, a versioned read.
    let mut everything = String::new();
    for event in &events.seen {
        if let LiveEvent::Applied { object, .. } = event {
            everything.push_str(&serde_json::to_string(object).unwrap());
        }
    }
    for kind in watcher.cache().lens().keys() {
        for object in watcher.cache().snapshot_kind(kind) {
            everything.push_str(&serde_json::to_string(&object).unwrap());
        }
    }
    let (listed, errors) = list_once(
        &client,
        &kinds,
        &WatchScope::namespaces([ns.name.clone()]),
        &hasher(),
    )
    .await;
    assert!(errors.is_empty());
    assert!(listed.iter().any(|o| o.key.name == "db"));
    everything.push_str(&serde_json::to_string(&listed).unwrap());
    let got = get_in_version(&client, "v1", "Secret", &ns.name, "db", &hasher())
        .await
        .unwrap()
        .unwrap();
    everything.push_str(&serde_json::to_string(&got).unwrap());
    assert!(
        everything.contains(&hasher().digest(canary2.as_bytes())),
        "digests are there"
    );
    assert!(
        everything.contains("last-applied-configuration"),
        "the annotation is kept, redacted"
    );

    drop(watcher);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("watch ready"), "the capture works: {logs}");
    for value in [&canary, &canary2] {
        let dsn = format!("postgres://app:{value}@db/app");
        for needle in [value.clone(), encoded(value), encoded(&dsn)] {
            assert!(
                !everything.contains(&needle),
                "`{needle}` leaked into an ingested object"
            );
            assert!(!logs.contains(&needle), "`{needle}` leaked into the logs");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prepared live objects

/// kubectl's own last-applied copy (keys sorted, `annotations: {}` added, `<`/`&` escaped, a
/// trailing newline) is recognised as the manifest it applied, so comparisons never re-parse it;
/// the watcher's object is normalised with the resourceVersion kept apart.
#[tokio::test]
async fn cluster_kubectl_last_applied_is_recognised_as_the_manifest() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let ns = TestNamespace::create(&kc, "applied");
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "html", "namespace": ns.name, "labels": {"app": "web"}},
        "data": {"page": "<b>fish & chips</b>", "retries": "3"},
    });
    ns.apply(&manifest.to_string());
    let edited = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "edited", "namespace": ns.name},
        "data": {"retries": "3"},
    });
    ns.apply(&edited.to_string());
    ns.apply(&configmap("edited", "5", ""));

    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let (kinds, _) = discovery.resolve_all(&["configmaps"]);
    let scope = WatchScope::namespaces([ns.name.clone()]);
    let (objects, errors) = list_once(&client, &kinds, &scope, &hasher()).await;
    assert!(errors.is_empty(), "{errors:?}");
    let html = objects.iter().find(|o| o.key.name == "html").unwrap();
    let applied = html
        .last_applied
        .as_ref()
        .expect("kubectl wrote last-applied");
    assert!(applied.text.contains("\\u003cb\\u003e"), "{}", applied.text);
    assert_eq!(
        applied.hash,
        driftguard_core::canonical::content_hash(&manifest),
        "kubectl's copy is the manifest: {}",
        applied.text
    );
    assert!(html.resource_version.is_some());
    assert!(html.object["metadata"].get("resourceVersion").is_none());
    assert!(html.object["metadata"].get("annotations").is_none());
    // A later apply of another manifest no longer matches the first one.
    let later = objects.iter().find(|o| o.key.name == "edited").unwrap();
    assert_ne!(
        later.last_applied.as_ref().unwrap().hash,
        driftguard_core::canonical::content_hash(&edited)
    );
}

// ---------------------------------------------------------------------------------------------
// One-shot reads

#[tokio::test]
async fn cluster_list_once_and_get_in_the_git_version() {
    let kc = kubeconfig();
    let client = client(&kc).await;
    let ns = TestNamespace::create(&kc, "oneshot");
    let other = TestNamespace::create(&kc, "oneshot-b");
    ns.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  defaultBackend:
    service: {name: web, port: {number: 80}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
data: {k: v}
"#,
    );
    other.apply(&configmap("two", "v", ""));
    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let (kinds, _) = discovery.resolve_all(&["configmaps", "ingresses"]);
    let scope = WatchScope::namespaces([ns.name.clone(), other.name.clone()]);
    let (objects, errors) = list_once(&client, &kinds, &scope, &hasher()).await;
    assert!(errors.is_empty(), "{errors:?}");
    let mut ids: Vec<String> = objects.iter().map(|o| o.key.resource_id()).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            format!("ConfigMap:{}:one", ns.name),
            format!("ConfigMap:{}:two", other.name),
            format!("Ingress:{}:web", ns.name),
        ]
    );
    let ingress = objects.iter().find(|o| o.key.kind == "Ingress").unwrap();
    assert_eq!(ingress.api_version, "networking.k8s.io/v1");
    assert_eq!(ingress.object["apiVersion"], "networking.k8s.io/v1");

    // The same Ingress read in the older version a Git manifest might use: converted by the server.
    let old = get_in_version(
        &client,
        "extensions/v1beta1",
        "Ingress",
        &ns.name,
        "web",
        &hasher(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(old.api_version, "extensions/v1beta1");
    assert_eq!(old.object["spec"]["backend"]["serviceName"], "web");
    assert!(old.object.get("status").is_none());
    let current = get_in_version(
        &client,
        "networking.k8s.io/v1",
        "Ingress",
        &ns.name,
        "web",
        &hasher(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        current.object["spec"]["defaultBackend"]["service"]["name"],
        "web"
    );
    // Missing object, version not served, kind not in that version.
    assert!(
        get_in_version(&client, "v1", "ConfigMap", &ns.name, "absent", &hasher())
            .await
            .unwrap()
            .is_none()
    );
    let err = get_in_version(
        &client,
        "apps/v1beta1",
        "Deployment",
        &ns.name,
        "web",
        &hasher(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the API server does not serve Deployment in apiVersion apps/v1beta1"
    );
    let err = get_in_version(
        &client,
        "extensions/v1beta1",
        "Deployment",
        &ns.name,
        "web",
        &hasher(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::VersionNotServed { .. }), "{err}");
    // Cluster-scoped kinds ignore the namespace.
    let ns_obj = get_in_version(&client, "v1", "Namespace", "ignored", &ns.name, &hasher())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ns_obj.key.resource_id(), format!("Namespace::{}", ns.name));
}

// ---------------------------------------------------------------------------------------------
// API server restart (private plane)

/// A private control plane (own etcd and API server) for tests that stop the API server.
struct PrivatePlane {
    state: tempfile::TempDir,
    kubeconfig: String,
}

impl PrivatePlane {
    fn script(&self, cmd: &str) -> String {
        let out = std::process::Command::new(support::repo_root().join("scripts/control-plane.sh"))
            .arg(cmd)
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "control-plane.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start() -> Self {
        // The shared plane must exist (and so the cached kube-apiserver binary).
        let _ = kubeconfig();
        let state = tempfile::Builder::new()
            .prefix("dgk-plane-")
            .tempdir()
            .unwrap();
        let kubeconfig = state.path().join("kubeconfig").display().to_string();
        let plane = Self { state, kubeconfig };
        plane.script("up");
        plane
    }

    fn apiserver_port(&self) -> String {
        let ports = std::fs::read_to_string(self.state.path().join("ports.env")).unwrap();
        ports
            .lines()
            .find_map(|l| l.strip_prefix("APISERVER_PORT="))
            .unwrap()
            .to_owned()
    }
}

impl Drop for PrivatePlane {
    fn drop(&mut self) {
        let _ = std::process::Command::new(support::repo_root().join("scripts/control-plane.sh"))
            .args(["down", "--purge", "--state-dir"])
            .arg(self.state.path())
            .output();
    }
}

#[tokio::test]
async fn cluster_serial_watch_survives_an_apiserver_restart() {
    let plane = PrivatePlane::start();
    let kc = plane.kubeconfig.clone();
    let ns = TestNamespace::create(&kc, "restart");
    for name in ["keep", "change", "remove"] {
        ns.apply(&configmap(name, "before", ""));
    }
    let client = client(&kc).await;
    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let cm = discovery.resolve("configmaps").unwrap();
    let (tx, mut events) = Events::channel();
    let mut watcher = LiveWatcher::new(
        client,
        WatchScope::namespaces([ns.name.clone()]),
        support::hasher(),
        tx,
        WatchOptions {
            probe_interval: Duration::from_millis(500),
            ..WatchOptions::default()
        },
    );
    watcher.watch_kind(cm.clone());
    let first = events
        .wait_for("first list", TIMEOUT, |e| synced(e, "ConfigMap"))
        .await;
    let LiveEvent::Synced { keys, .. } = first else {
        unreachable!()
    };
    assert_eq!(keys.len(), 3);

    let port = plane.apiserver_port();
    plane.script("stop-apiserver");
    events
        .wait_for("watch reconnecting", TIMEOUT, |e| {
            matches!(
                e,
                LiveEvent::KindStatus {
                    status: KindState::Reconnecting(_),
                    ..
                }
            )
        })
        .await;
    let during = watcher.readiness().summary();
    assert!(during.ready && during.degraded, "{during:?}");
    assert_eq!(
        watcher.cache().len(&cm.group_kind()),
        3,
        "objects are kept while the server is away"
    );
    // Stay away a while: several backoff rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    events.drain();

    plane.script("up");
    assert_eq!(
        plane.apiserver_port(),
        port,
        "the API server came back on its port"
    );
    kubectl(
        &kc,
        &[
            "-n",
            &ns.name,
            "patch",
            "configmap/change",
            "--type=merge",
            "-p",
            r#"{"data":{"key":"after"}}"#,
        ],
        None,
    );
    kubectl(&kc, &["-n", &ns.name, "delete", "configmap/remove"], None);
    ns.apply(&configmap("new", "after", ""));
    let long = Duration::from_secs(90);
    events
        .wait_for("change after restart", long, |e| {
            matches!(e, LiveEvent::Applied { object, .. } if object.key.name == "change" && object.object["data"]["key"] == "after")
        })
        .await;
    events
        .wait_for("delete after restart", long, |e| {
            deleted(e, "ConfigMap", "remove")
        })
        .await;
    events
        .wait_for("create after restart", long, |e| {
            applied(e, "ConfigMap", "new")
        })
        .await;
    let deleted_names: HashSet<String> = events
        .seen
        .iter()
        .filter_map(|e| match e {
            LiveEvent::Deleted { key, .. } => Some(key.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deleted_names,
        HashSet::from(["remove".to_owned()]),
        "no object that still exists looked deleted"
    );
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while watcher.readiness().summary().degraded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            watcher.readiness().summary()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut names: Vec<String> = watcher
        .cache()
        .keys(&cm.group_kind())
        .into_iter()
        .map(|k| k.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["change", "keep", "new"]);
}

// ---------------------------------------------------------------------------------------------
// deploy/rbac

/// Deletes cluster-scoped objects made by a test on drop.
struct ClusterObjects(String, Vec<String>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for object in &self.1 {
            let _ = support::try_kubectl(&self.0, &["delete", object, "--wait=false"], None);
        }
    }
}

/// `deploy/rbac/<file>` with the role renamed (so tests never touch a real installation's role).
fn rbac_manifest(file: &str, role: &str) -> String {
    let path = support::repo_root().join("deploy/rbac").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("name: driftguard-reader", &format!("name: {role}"))
}

/// The admin kubeconfig impersonating `user`.
async fn impersonating(kc: &str, user: &str) -> kube::Client {
    let mut config = driftguard_kube::client_config(&support::k8s_config(kc))
        .await
        .unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    kube::Client::try_from(config).unwrap()
}

/// `deploy/rbac` grants exactly the kinds `deploy/` watches (deployments, services, configmaps):
/// Secrets only through the opt-in `components/secrets`, so they are forbidden here.
#[tokio::test]
async fn cluster_rbac_manifests_grant_exactly_the_deployed_kinds() {
    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "rbacfile");
    let admin = client(&kc).await;
    let discovery = DiscoverySnapshot::fetch(&admin).await.unwrap();
    let (kinds, errors) = discovery.resolve_all(&["deployments", "services", "configmaps"]);
    assert!(errors.is_empty() && kinds.len() == 3, "{errors:?}");
    let (extra, _) = discovery.resolve_all(&["secrets", "roles"]);
    assert_eq!(extra.len(), 2);

    // Cluster-wide: the ClusterRole, bound to a user of this test.
    let role = format!("{}-cluster", ns.name);
    let user = format!("{}-sa", ns.name);
    kubectl(
        &kc,
        &["apply", "-f", "-"],
        Some(&rbac_manifest("clusterrole.yaml", &role)),
    );
    kubectl(
        &kc,
        &[
            "create",
            "clusterrolebinding",
            &role,
            "--clusterrole",
            &role,
            "--user",
            &user,
        ],
        None,
    );
    let _cleanup = ClusterObjects(
        kc.clone(),
        vec![
            format!("clusterrole/{role}"),
            format!("clusterrolebinding/{role}"),
        ],
    );
    ns.apply(&configmap("seen", "x", ""));

    let limited = impersonating(&kc, &user).await;
    // Discovery needs no rule (system:discovery).
    let theirs = DiscoverySnapshot::fetch(&limited).await.unwrap();
    assert_eq!(
        theirs.resolve("deploy").unwrap(),
        discovery.resolve("deploy").unwrap()
    );
    let all_kinds: Vec<_> = kinds.iter().chain(&extra).cloned().collect();
    let scope = WatchScope::from_config(&KubernetesConfig::default());
    let (tx, mut events) = Events::channel();
    let watcher = LiveWatcher::start(limited.clone(), &all_kinds, scope.clone(), hasher(), tx);
    events
        .wait_synced(&["Deployment", "Service", "ConfigMap"])
        .await;
    for forbidden in ["Secret", "Role"] {
        events
            .wait_for(&format!("{forbidden} forbidden"), TIMEOUT, |e| {
                matches!(e, LiveEvent::KindStatus { kind, status: KindState::Forbidden(_), .. } if kind.kind == forbidden)
            })
            .await;
    }
    assert!(
        watcher
            .cache()
            .keys(&GroupKind::new("", "ConfigMap"))
            .iter()
            .any(|k| k.namespace == ns.name)
    );
    let summary = watcher.readiness().summary();
    for kind in &kinds {
        assert_eq!(
            summary.kinds[&kind.group_kind()].state,
            KindState::Ready,
            "{kind}"
        );
    }
    drop(watcher);
    // With the ClusterRole, readiness of reads outside the granted kinds stays forbidden.
    let (_, errors) = list_once(&limited, &all_kinds, &scope, &hasher()).await;
    assert_eq!(
        errors
            .iter()
            .map(|e| (e.kind.kind.as_str(), e.forbidden))
            .collect::<Vec<_>>(),
        vec![("Secret", true), ("Role", true)]
    );

    // Namespaced: the Role in one namespace, watches per namespace.
    let ns_user = format!("{}-ns", ns.name);
    let ns_role = format!("{}-ns", ns.name);
    ns.apply(&rbac_manifest("namespaced/role.yaml", &ns_role));
    ns.kubectl(&[
        "create",
        "rolebinding",
        &ns_role,
        "--role",
        &ns_role,
        "--user",
        &ns_user,
    ]);
    let ns_limited = impersonating(&kc, &ns_user).await;
    let (tx, mut events) = Events::channel();
    let watcher = LiveWatcher::start(
        ns_limited.clone(),
        &kinds,
        WatchScope::namespaces([ns.name.clone()]),
        hasher(),
        tx,
    );
    events
        .wait_synced(&["Deployment", "Service", "ConfigMap"])
        .await;
    let summary = watcher.readiness().summary();
    assert!(summary.ready && !summary.degraded, "{summary:?}");
    assert!(events.seen.iter().any(|e| applied(e, "ConfigMap", "seen")));
    // The same user cannot watch cluster-wide.
    let (_, errors) = list_once(&ns_limited, &kinds, &WatchScope::all(), &hasher()).await;
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().all(|e| e.forbidden));
}

// ---------------------------------------------------------------------------------------------
// Custom resources' schema defaults

/// A custom resource created with `kubectl create` (which owns every stored field) shows its
/// CRD's schema defaults live; with the defaults read from the cluster they are no drift, and
/// a value that is not the default still is.
#[tokio::test]
async fn cluster_crd_schema_defaults_are_not_drift() {
    use driftguard_core::engine::{EngineConfig, compare};
    use driftguard_core::{DesiredObject, Source};

    let kc = kubeconfig();
    let ns = TestNamespace::create(&kc, "crddef");
    let group = format!("{}.driftguard.test", support::unique("crddef"));
    let crd_yaml = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: string}}
              replicas: {{type: integer, default: 1}}
              mode: {{type: string, default: fast}}
"#
    );
    kubectl(&kc, &["apply", "-f", "-"], Some(&crd_yaml));
    let _cleanup = scopeguard_crd(&kc, &format!("gadgets.{group}"));
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/gadgets.{group}"),
        ],
        None,
    );
    let manifest = format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\n  namespace: {}\nspec:\n  size: small\n",
        ns.name
    );
    // Established CRDs can take a moment before objects are accepted.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while support::try_kubectl(&kc, &["create", "-f", "-"], Some(&manifest)).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Gadget never accepted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let client = client(&kc).await;
    let defaults = driftguard_kube::crd_defaults(&client).await.unwrap();
    assert!(!defaults.is_empty(), "the Gadget CRD has defaults");

    let api_version = format!("{group}/v1");
    let live = get_in_version(&client, &api_version, "Gadget", &ns.name, "g", &hasher())
        .await
        .unwrap()
        .expect("the Gadget exists");
    assert_eq!(
        live.object["spec"]["replicas"], 1,
        "the server filled the default"
    );
    let object: serde_json::Value = serde_json::json!({
        "apiVersion": api_version, "kind": "Gadget",
        "metadata": {"name": "g", "namespace": ns.name}, "spec": {"size": "small"}});
    let key = ResourceKey::from_api_version(&api_version, "Gadget", &ns.name, "g");
    let source = Source {
        commit: String::new(),
        path: "g.yaml".into(),
        doc_index: 0,
        line: None,
        helm_release: None,
    };
    let desired = DesiredObject::new(key, api_version.clone(), object, source);
    let with = EngineConfig {
        crd_defaults: Arc::new(defaults),
        ..EngineConfig::default()
    };
    let result = compare(&desired, &live, &with);
    assert!(result.changes.is_empty(), "{:?}", result.changes);
    let blind = compare(&desired, &live, &EngineConfig::default());
    assert_eq!(
        blind.changes.len(),
        2,
        "without the schema: {:?}",
        blind.changes
    );

    // A value that is not the schema's default is still an addition, by kubectl-patch.
    kubectl(
        &kc,
        &[
            "patch",
            &format!("gadgets.{group}"),
            "g",
            "-n",
            &ns.name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"mode":"slow"}}"#,
        ],
        None,
    );
    let live = get_in_version(&client, &api_version, "Gadget", &ns.name, "g", &hasher())
        .await
        .unwrap()
        .expect("the Gadget exists");
    let result = compare(&desired, &live, &with);
    assert_eq!(result.changes.len(), 1, "{:?}", result.changes);
    assert_eq!(result.changes[0].field.to_string(), "spec.mode");
    assert_eq!(result.changes[0].manager.as_deref(), Some("kubectl-patch"));
}

/// Deletes a CRD when dropped.
struct CrdGuard(String, String);

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let _ = support::try_kubectl(&self.0, &["delete", "crd", &self.1, "--wait=false"], None);
    }
}

fn scopeguard_crd(kubeconfig: &str, name: &str) -> CrdGuard {
    CrdGuard(kubeconfig.to_owned(), name.to_owned())
}

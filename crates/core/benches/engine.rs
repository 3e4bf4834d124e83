//! Engine cost per resource over 10,000 realistic resources (Deployments, Services, ConfigMaps
//! as `kubectl apply` leaves them: server defaults, `managedFields`, last-applied annotation,
//! status), unchanged and drifted. Single-threaded.
//!
//! - `unchanged_10k` / `drifted_10k`: [`compare`] of prepared objects — what every analysis
//!   pays for a resource whose objects are already known (a full analysis, a Git change
//!   re-checking resources whose live object did not move).
//! - `prepare_10k`: what a resource costs once per version, where it enters:
//!   [`DesiredObject::new`] when Git is read and [`LiveObject::from_api`] when a watch event
//!   arrives (normalising and hashing both sides). A resource seen for the first time costs
//!   `prepare` + `compare`.
//!
//! `cargo bench -p driftguard-core --bench engine -- --quick`
//! Besides criterion's figures (time per pass over the whole set, elements/s), each case prints
//! its thread CPU time per resource.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use driftguard_core::canonical::canonical_json;
use driftguard_core::engine::{EngineConfig, IgnoreRule, compare};
use driftguard_core::{DesiredObject, LiveObject, ResourceKey, Source};
use serde_json::{Value, json};

const RESOURCES: usize = 10_000;

fn managed(manager: &str, time: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields})
}

/// The last-applied annotation as kubectl writes it: keys sorted, compact, with the empty
/// `annotations` map it adds to a manifest that has none.
fn last_applied(desired: &Value) -> String {
    let mut applied = desired.clone();
    if applied["metadata"].get("annotations").is_none() {
        applied["metadata"]["annotations"] = json!({});
    }
    format!("{}\n", canonical_json(&applied))
}

fn deployment(i: usize) -> (Value, Value) {
    let name = format!("web-{i}");
    let desired = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name, "app.kubernetes.io/part-of": "shop"}},
        "spec": {
            "replicas": 2 + i % 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "web", "image": format!("registry.example/web:1.{}", i % 17),
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"},
                                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": 0.25, "memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/web"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": format!("web-{i}-config")}}],
                },
            },
        },
    });
    let mut live = desired.clone();
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": last_applied(&desired),
        "deployment.kubernetes.io/revision": "3",
    });
    for (k, v) in [
        ("uid", json!("0b0e5d7c-6b1f-4a62-8f55-9a7f3f1e2d10")),
        ("resourceVersion", json!("81234")),
        ("generation", json!(3)),
        ("creationTimestamp", json!("2026-11-20T10:00:00Z")),
    ] {
        live["metadata"][k] = v;
    }
    let spec = &mut live["spec"];
    spec["progressDeadlineSeconds"] = json!(600);
    spec["revisionHistoryLimit"] = json!(10);
    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    spec["template"]["metadata"]["creationTimestamp"] = Value::Null;
    let pod = &mut spec["template"]["spec"];
    for (k, v) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        pod[k] = v;
    }
    pod["volumes"][0]["configMap"]["defaultMode"] = json!(420);
    let c = &mut pod["containers"][0];
    c["imagePullPolicy"] = json!("IfNotPresent");
    c["terminationMessagePath"] = json!("/dev/termination-log");
    c["terminationMessagePolicy"] = json!("File");
    c["ports"][0]["protocol"] = json!("TCP");
    c["resources"]["requests"]["cpu"] = json!("250m");
    c["readinessProbe"]["httpGet"]["scheme"] = json!("HTTP");
    c["readinessProbe"]["timeoutSeconds"] = json!(1);
    c["readinessProbe"]["successThreshold"] = json!(1);
    c["readinessProbe"]["failureThreshold"] = json!(3);
    c["env"][2]["valueFrom"]["secretKeyRef"]["optional"] = Value::Null;
    live["status"] = json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2,
                             "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]});
    let container_fields = json!({
        ".": {}, "f:name": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:terminationMessagePath": {},
        "f:terminationMessagePolicy": {},
        "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
        "f:env": {".": {}, "k:{\"name\":\"LOG_LEVEL\"}": {".": {}, "f:name": {}, "f:value": {}},
                  "k:{\"name\":\"PORT\"}": {".": {}, "f:name": {}, "f:value": {}},
                  "k:{\"name\":\"DB_PASSWORD\"}": {".": {}, "f:name": {}, "f:valueFrom": {".": {}, "f:secretKeyRef": {".": {}, "f:key": {}, "f:name": {}}}}},
        "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
        "f:readinessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}, "f:periodSeconds": {},
                             "f:timeoutSeconds": {}, "f:successThreshold": {}, "f:failureThreshold": {}},
        "f:volumeMounts": {".": {}, "k:{\"mountPath\":\"/etc/web\"}": {".": {}, "f:mountPath": {}, "f:name": {}}},
    });
    live["metadata"]["managedFields"] = json!([
        managed(
            "kubectl-client-side-apply",
            "2026-11-20T10:00:00Z",
            json!({
                "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                               "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/part-of": {}}},
                "f:spec": {"f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
                           "f:selector": {"f:matchLabels": {".": {}, "f:app": {}}},
                           "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
                           "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                          "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": container_fields},
                                                     "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                                                     "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                                                     "f:volumes": {".": {}, "k:{\"name\":\"config\"}": {".": {}, "f:configMap": {".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}}}}}},
            })
        ),
        managed(
            "kube-controller-manager",
            "2026-11-20T10:00:05Z",
            json!({
                "f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                "f:status": {"f:availableReplicas": {}, "f:conditions": {}, "f:observedGeneration": {}, "f:readyReplicas": {}, "f:replicas": {}},
            })
        ),
    ]);
    (desired, live)
}

fn service(i: usize) -> (Value, Value) {
    let name = format!("svc-{i}");
    let desired = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "8080"},
                                                      {"name": "metrics", "port": 9090, "targetPort": 9090}]},
    });
    let mut live = desired.clone();
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied(&desired)});
    live["metadata"]["uid"] = json!("3c1d");
    live["metadata"]["resourceVersion"] = json!("991");
    live["spec"]["clusterIP"] = json!("10.0.0.42");
    live["spec"]["clusterIPs"] = json!(["10.0.0.42"]);
    live["spec"]["type"] = json!("ClusterIP");
    live["spec"]["sessionAffinity"] = json!("None");
    live["spec"]["ports"][0]["protocol"] = json!("TCP");
    live["spec"]["ports"][0]["targetPort"] = json!(8080);
    live["spec"]["ports"][1]["protocol"] = json!("TCP");
    live["status"] = json!({"loadBalancer": {}});
    live["metadata"]["managedFields"] = json!([managed(
        "kubectl-client-side-apply",
        "2026-11-20T10:00:00Z",
        json!({
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}, "f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}},
                                   "k:{\"port\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                       "f:selector": {".": {}, "f:app": {}}, "f:sessionAffinity": {}, "f:type": {}},
        })
    )]);
    (desired, live)
}

fn config_map(i: usize) -> (Value, Value) {
    let name = format!("web-{i}-config");
    let desired = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"},
        "data": {"retries": "3", "timeout": "30s", "app.properties": "mode=prod\nthreads=8\ncache=on\n"},
    });
    let mut live = desired.clone();
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied(&desired)});
    live["metadata"]["uid"] = json!("77aa");
    live["metadata"]["resourceVersion"] = json!("992");
    live["metadata"]["managedFields"] = json!([managed(
        "kubectl-client-side-apply",
        "2026-11-20T10:00:00Z",
        json!({
            "f:data": {".": {}, "f:app.properties": {}, "f:retries": {}, "f:timeout": {}},
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
        })
    )]);
    (desired, live)
}

/// A few typical drifts: image and replicas edited, an env var added by `kubectl set env`,
/// a ConfigMap value edited, a Service port retargeted.
fn drift(kind: &str, live: &mut Value) {
    let mf = live["metadata"]["managedFields"].as_array_mut().unwrap();
    match kind {
        "Deployment" => {
            mf.push(managed("kubectl-set", "2026-11-26T03:55:13Z", json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {"f:image": {}, "f:env": {"k:{\"name\":\"NEWVAR\"}": {".": {}, "f:name": {}, "f:value": {}}}}}}}}})));
            live["spec"]["replicas"] = json!(6);
            let c = &mut live["spec"]["template"]["spec"]["containers"][0];
            c["image"] = json!("registry.example/web:2.0");
            c["env"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "NEWVAR", "value": "x"}));
        }
        "Service" => {
            mf.push(managed("kubectl-edit", "2026-11-26T03:55:13Z", json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:targetPort": {}}}}})));
            live["spec"]["ports"][0]["targetPort"] = json!(8081);
        }
        _ => {
            mf.push(managed(
                "kubectl-edit",
                "2026-11-26T03:55:13Z",
                json!({"f:data": {"f:retries": {}, "f:debug": {}}}),
            ));
            live["data"]["retries"] = json!("5");
            live["data"]["debug"] = json!("true");
        }
    }
}

/// The raw objects: (key, apiVersion, manifest, live JSON as the API server returns it).
type Raw = (ResourceKey, String, Value, Value);

fn raw_corpus(drifted: bool) -> Vec<Raw> {
    (0..RESOURCES)
        .map(|i| {
            let (desired, mut live) = match i % 10 {
                0..=4 => deployment(i),
                5..=7 => service(i),
                _ => config_map(i),
            };
            let kind = desired["kind"].as_str().unwrap().to_owned();
            if drifted {
                drift(&kind, &mut live);
            }
            let api_version = desired["apiVersion"].as_str().unwrap().to_owned();
            let name = desired["metadata"]["name"].as_str().unwrap().to_owned();
            let key = ResourceKey::from_api_version(&api_version, kind, "shop", name);
            (key, api_version, desired, live)
        })
        .collect()
}

/// Both sides prepared, as the service holds them.
fn prepare(
    (key, api_version, desired, live): Raw,
    doc_index: usize,
) -> (DesiredObject, LiveObject) {
    let source = Source {
        commit: "0".repeat(40),
        path: "apps.yaml".into(),
        doc_index,
        line: None,
        helm_release: None,
    };
    let d = DesiredObject::new(key.clone(), api_version.clone(), desired, source);
    (d, LiveObject::from_api(key, api_version, live))
}

fn corpus(drifted: bool) -> Vec<(DesiredObject, LiveObject)> {
    raw_corpus(drifted)
        .into_iter()
        .enumerate()
        .map(|(i, raw)| prepare(raw, i))
        .collect()
}

/// CPU time of this thread in nanoseconds (Linux `schedstat`), so the per-resource figure holds
/// on a loaded machine where wall time does not.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn bench(c: &mut Criterion) {
    let mut cfg = EngineConfig::default();
    cfg.ignore.push(
        IgnoreRule::parse(
            Some("Deployment".into()),
            None,
            Some("web-9*".into()),
            &["spec.replicas"],
            vec![],
        )
        .unwrap(),
    );
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RESOURCES as u64));
    for (label, drifted) in [("unchanged_10k", false), ("drifted_10k", true)] {
        let set = corpus(drifted);
        // kubectl's last-applied copy is recognised as the Git manifest (not parsed per compare).
        assert!(
            set.iter()
                .all(|(d, l)| l.last_applied.as_ref().is_some_and(|a| a.hash == d.hash)),
            "{label}: a last-applied copy does not match its manifest"
        );
        let total: usize = set
            .iter()
            .map(|(d, l)| compare(d, l, &cfg).changes.len())
            .sum();
        assert_eq!(total == 0, !drifted, "{label}: {total} changes");
        if let Some(per) = cpu_per_resource(5, || {
            for (d, l) in &set {
                std::hint::black_box(compare(d, l, &cfg));
            }
        }) {
            eprintln!("engine/{label}: {per:.2} µs CPU per resource ({total} changes per pass)");
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut n = 0;
                for (d, l) in &set {
                    n += std::hint::black_box(compare(d, l, &cfg)).changes.len();
                }
                n
            });
        });
    }
    // Preparation: once per object version, where objects enter.
    let raw = raw_corpus(false);
    let mut batch = Some(raw.clone());
    if let Some(per) = cpu_per_resource(1, || {
        if let Some(items) = batch.take() {
            for (i, item) in items.into_iter().enumerate() {
                std::hint::black_box(prepare(item, i));
            }
        }
    }) {
        eprintln!("engine/prepare_10k: {per:.2} µs CPU per resource (desired and live)");
    }
    group.bench_function("prepare_10k", |b| {
        b.iter_batched(
            || raw.clone(),
            |items| {
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| prepare(item, i))
                    .collect::<Vec<_>>()
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Thread CPU time per resource in µs over `passes` runs of `pass` (each over the whole set).
fn cpu_per_resource(passes: u64, mut pass: impl FnMut()) -> Option<f64> {
    let start = thread_cpu_ns()?;
    for _ in 0..passes {
        pass();
    }
    let end = thread_cpu_ns()?;
    Some((end - start) as f64 / (passes as f64 * RESOURCES as f64) / 1000.0)
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Engine cost per resource over 10,000 realistic resources (Deployments, Services, ConfigMaps
//! as `kubectl apply` leaves them: server defaults, `managedFields`, last-applied annotation,
//! status), unchanged and drifted. Single-threaded.
//!
//! `cargo bench -p driftguard-core --bench engine -- --quick`
//! Criterion reports time per iteration over the whole set and elements/s; divide the time by
//! 10,000 (or invert the throughput) for the per-resource cost.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use driftguard_core::engine::{EngineConfig, IgnoreRule, compare};
use driftguard_core::{DesiredObject, LiveObject, ResourceKey, Source};
use serde_json::{Value, json};

const RESOURCES: usize = 10_000;

fn managed(manager: &str, time: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields})
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
        "kubectl.kubernetes.io/last-applied-configuration": desired.to_string(),
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
        json!({"kubectl.kubernetes.io/last-applied-configuration": desired.to_string()});
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
        json!({"kubectl.kubernetes.io/last-applied-configuration": desired.to_string()});
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

fn corpus(drifted: bool) -> Vec<(DesiredObject, LiveObject)> {
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
            let d = DesiredObject {
                key: key.clone(),
                api_version: api_version.clone(),
                hash: driftguard_core::canonical::content_hash(&desired),
                object: desired,
                source: Source {
                    commit: "0".repeat(40),
                    path: "apps.yaml".into(),
                    doc_index: i,
                    line: None,
                },
            };
            (d, LiveObject::from_api(key, api_version, live))
        })
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
        let total: usize = set
            .iter()
            .map(|(d, l)| compare(d, l, &cfg).changes.len())
            .sum();
        assert_eq!(total == 0, !drifted, "{label}: {total} changes");
        const PASSES: u64 = 5;
        if let Some(start) = thread_cpu_ns() {
            for _ in 0..PASSES {
                for (d, l) in &set {
                    std::hint::black_box(compare(d, l, &cfg));
                }
            }
            if let Some(end) = thread_cpu_ns() {
                let per = (end - start) as f64 / (PASSES as f64 * RESOURCES as f64) / 1000.0;
                eprintln!(
                    "engine/{label}: {per:.2} µs CPU per resource ({total} changes per pass)"
                );
            }
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

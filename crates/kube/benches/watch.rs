//! Watch benchmark against a real, private control plane (started with
//! `scripts/control-plane.sh up --state-dir <tmp>` and purged afterwards):
//!
//! - resident memory (`VmRSS`) with N watched ConfigMaps (default 10,000, applied with
//!   `kubectl apply` so they carry the last-applied annotation like GitOps-managed objects);
//! - delay from an API write to the watcher's `Applied` event, p50/p99 over U updates (default
//!   200), measured from the start of the PATCH call and from its return.
//!
//! `DRIFTGUARD_TEST_KUBECONFIG` must be set (it proves the shared plane, and so the cached
//! `kube-apiserver`, exists). Sizes: `DGK_BENCH_OBJECTS`, `DGK_BENCH_UPDATES`.
//!
//! Run: `cargo bench -p driftguard-kube --bench watch`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftguard_config::KubernetesConfig;
use driftguard_core::SecretHasher;
use driftguard_kube::{DiscoverySnapshot, LiveEvent, LiveWatcher, WatchScope};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::mpsc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/control-plane.sh")
}

struct Plane(tempfile::TempDir);

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", "--purge", "--state-dir"])
            .arg(self.0.path())
            .output();
    }
}

fn kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn configmaps(from: usize, to: usize) -> String {
    let mut yaml = String::new();
    for i in from..to {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  labels: {{app: bench, shard: \"{}\"}}\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"alpha,beta,gamma\"\n  app.properties: |\n    server.port=8080\n    cache.size={i}\n",
            i % 16
        ));
    }
    yaml
}

#[tokio::main]
async fn main() {
    if std::env::var("DRIFTGUARD_TEST_KUBECONFIG").map_or(true, |v| v.is_empty()) {
        panic!(
            "DRIFTGUARD_TEST_KUBECONFIG is not set: run `eval \"$(scripts/control-plane.sh up)\"` first"
        );
    }
    let objects = env_usize("DGK_BENCH_OBJECTS", 10_000);
    let updates = env_usize("DGK_BENCH_UPDATES", 200);

    let plane = Plane(
        tempfile::Builder::new()
            .prefix("dgk-bench-plane-")
            .tempdir()
            .unwrap(),
    );
    let out = Command::new(script())
        .arg("up")
        .arg("--state-dir")
        .arg(plane.0.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kc = plane.0.path().join("kubeconfig").display().to_string();
    let ns = "dgk-bench";
    kubectl(&kc, &["create", "namespace", ns], None);

    println!("applying {objects} ConfigMaps with kubectl apply (client-side, in chunks of 500)…");
    let started = Instant::now();
    let chunks: Vec<(usize, usize)> = (0..objects)
        .step_by(500)
        .map(|s| (s, (s + 500).min(objects)))
        .collect();
    for pair in chunks.chunks(2) {
        let handles: Vec<_> = pair
            .iter()
            .map(|&(from, to)| {
                let kc = kc.clone();
                std::thread::spawn(move || {
                    kubectl(
                        &kc,
                        &["-n", ns, "apply", "-f", "-"],
                        Some(&configmaps(from, to)),
                    )
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    println!("  applied in {:.1} s", started.elapsed().as_secs_f64());

    let cfg = KubernetesConfig {
        config_path: kc.clone(),
        ..KubernetesConfig::default()
    };
    let client = driftguard_kube::connect(&cfg).await.unwrap();
    let discovery = DiscoverySnapshot::fetch(&client).await.unwrap();
    let cm = discovery.resolve("configmaps").unwrap();
    let hasher = SecretHasher::new(b"bench-key-bench-key-bench-key-01".to_vec());

    let rss_before = rss_kib();
    let (tx, mut rx) = mpsc::channel::<LiveEvent>(4096);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, String, Instant)>();
    // Consumer: forwards (name, value of `cache.size`-independent marker, time) of Applied events.
    let consumer = tokio::spawn(async move {
        let mut synced_at = None;
        while let Some(event) = rx.recv().await {
            match event {
                LiveEvent::Synced { .. } if synced_at.is_none() => {
                    synced_at = Some(Instant::now());
                    let _ = seen_tx.send(("<synced>".into(), String::new(), Instant::now()));
                }
                LiveEvent::Applied { object, .. } if synced_at.is_some() => {
                    let marker = object
                        .object
                        .pointer("/data/MARKER")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = seen_tx.send((object.key.name.clone(), marker, Instant::now()));
                }
                _ => {}
            }
        }
    });

    let list_started = Instant::now();
    let watcher = LiveWatcher::start(
        client.clone(),
        std::slice::from_ref(&cm),
        WatchScope::namespaces([ns]),
        hasher,
        tx,
    );
    loop {
        let (name, _, _) = tokio::time::timeout(Duration::from_secs(300), seen_rx.recv())
            .await
            .unwrap()
            .unwrap();
        if name == "<synced>" {
            break;
        }
    }
    let list_time = list_started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    let cache = watcher.cache();
    let cached = cache.len(&cm.group_kind());
    let cache_bytes = cache.approx_bytes();
    assert_eq!(cached, objects, "every ConfigMap is cached");

    // Update latency.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut from_call = Vec::with_capacity(updates);
    let mut from_return = Vec::with_capacity(updates);
    for i in 0..updates {
        let name = format!("cm-{:05}", (i * 37) % objects);
        let marker = format!("m{i}");
        let patch = serde_json::json!({"data": {"MARKER": marker}});
        let t0 = Instant::now();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let t1 = Instant::now();
        loop {
            let (n, m, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                .await
                .unwrap()
                .unwrap();
            if n == name && m == marker {
                from_call.push(at - t0);
                from_return.push(at.saturating_duration_since(t1));
                break;
            }
        }
    }
    from_call.sort();
    from_return.sort();

    println!();
    println!("objects watched:            {cached}");
    println!(
        "initial list + ingest:      {:.2} s",
        list_time.as_secs_f64()
    );
    println!(
        "RSS before watch:           {:.1} MiB",
        rss_before as f64 / 1024.0
    );
    println!(
        "RSS with {cached} objects: {:.1} MiB",
        rss_after as f64 / 1024.0
    );
    println!(
        "RSS growth per object:      {:.2} KiB",
        (rss_after.saturating_sub(rss_before)) as f64 / cached as f64
    );
    println!(
        "cache text per object:      {:.2} KiB (compact JSON incl. managedFields and last-applied)",
        cache_bytes as f64 / cached as f64 / 1024.0
    );
    println!(
        "update → event (from call start)  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={updates})",
        percentile(&from_call, 0.50).as_secs_f64() * 1e3,
        percentile(&from_call, 0.99).as_secs_f64() * 1e3,
        from_call.last().unwrap().as_secs_f64() * 1e3,
    );
    println!(
        "update → event (from call return) p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(&from_return, 0.50).as_secs_f64() * 1e3,
        percentile(&from_return, 0.99).as_secs_f64() * 1e3,
        from_return.last().unwrap().as_secs_f64() * 1e3,
    );
    drop(watcher);
    consumer.abort();
    drop(plane);
}

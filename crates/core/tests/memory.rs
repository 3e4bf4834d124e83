//! What one watched ConfigMap costs in memory, per holder (issue 20): the live object as the
//! cache keeps it (compact JSON text), as a `LiveObject` tree (an event in flight, a lookup),
//! the desired object of the Git snapshot, and the record the analyzer keeps.
//!
//! Counting, not timing: the growth of this process's anonymous resident memory while N objects
//! are kept (allocator overhead included; each test runs in its own process under nextest).
//! `cargo nextest run -p driftguard-core --test memory --no-capture` prints the figures; nothing
//! is asserted (resident memory is a measure, not a budget every machine would hold).

use std::sync::Arc;

use chrono::Utc;
use driftguard_core::{
    DesiredObject, DriftRecord, LiveObject, Observation, ResourceKey, Source, engine, state,
};
use serde_json::{Value, json};

/// Anonymous resident bytes of this process (heap as glibc's malloc lays it out: what the
/// program asked for plus the allocator's headers and rounding).
fn rss_anon() -> isize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<isize>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

const N: usize = 10_000;

/// Heap bytes per item that `build` keeps alive.
fn per_item<T>(build: impl Fn(usize) -> T) -> f64 {
    let mut kept: Vec<T> = Vec::with_capacity(N);
    let before = rss_anon();
    kept.extend((0..N).map(build));
    let after = rss_anon();
    drop(kept);
    (after - before) as f64 / N as f64
}

/// The benchmark's ConfigMap as `kubectl apply` created it and a watch delivers it.
fn manifest(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:05}"), "namespace": "bench-api-0123abcd",
                     "labels": {"app": "bench", "shard": format!("s{}", i % 10)}},
        "data": {"retries": "3", "mode": "steady", "app.properties": "timeout=30\nlevel=info\n"}})
}

fn raw_live(i: usize) -> Value {
    let mut raw = manifest(i);
    let last_applied = format!(
        "{{\"apiVersion\":\"v1\",\"data\":{{\"app.properties\":\"timeout=30\\nlevel=info\\n\",\"mode\":\"steady\",\"retries\":\"3\"}},\"kind\":\"ConfigMap\",\"metadata\":{{\"annotations\":{{}},\"labels\":{{\"app\":\"bench\",\"shard\":\"s{}\"}},\"name\":\"cm-{i:05}\",\"namespace\":\"bench-api-0123abcd\"}}}}\n",
        i % 10
    );
    let meta = &mut raw["metadata"];
    meta["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied});
    meta["creationTimestamp"] = json!("2026-11-30T08:17:37Z");
    meta["resourceVersion"] = json!(format!("{}", 18434 + i));
    meta["uid"] = json!("4795c3ef-66a6-48d7-9d55-8f281136becb");
    meta["managedFields"] = json!([{"apiVersion": "v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:app.properties": {}, "f:mode": {}, "f:retries": {}},
                     "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                                    "f:labels": {".": {}, "f:app": {}, "f:shard": {}}}},
        "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-30T08:17:37Z"}]);
    raw
}

fn key(i: usize) -> ResourceKey {
    ResourceKey::new("", "ConfigMap", "bench-api-0123abcd", format!("cm-{i:05}"))
}

fn live(i: usize) -> LiveObject {
    LiveObject::from_api(key(i), "v1".into(), raw_live(i))
}

fn desired(i: usize) -> DesiredObject {
    DesiredObject::new(
        key(i),
        "v1".into(),
        manifest(i),
        Source {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            path: "configmaps.yaml".into(),
            doc_index: i,
            line: Some(1 + 15 * i),
            helm_release: None,
        },
    )
}

/// The record of an unchanged resource, as the analyzer keeps it (no states).
fn record(i: usize) -> DriftRecord {
    let d = desired(i);
    let l = live(i);
    let c = engine::compare(&d, &l, &Default::default());
    let obs = Observation {
        key: key(i),
        api_version: "v1".into(),
        managed: true,
        changes: c.changes,
        warnings: c.warnings,
        desired_state: None,
        live_state: None,
        desired_hash: Some(c.desired_hash),
        live_hash: Some(c.live_hash),
        git_commit: Some(d.source.commit.clone()),
        source_path: Some(d.source.source_path()),
        source_line: d.source.line,
        helm_release: None,
        cause: None,
    };
    state::advance(None, obs, Utc::now()).record
}

fn report(what: &str, bytes: f64) {
    println!("per watched ConfigMap, resident bytes (N = {N}): {what}: {bytes:.0}");
}

#[test]
fn live_cache_entry() {
    let text_len = serde_json::to_string(&live(1))
        .map(|s| s.len())
        .unwrap_or(0);
    let bytes = per_item(|i| {
        let l = live(i);
        let json = serde_json::to_string(&l)
            .unwrap_or_default()
            .into_boxed_str();
        let rv: Box<str> = l.resource_version.unwrap_or_default().into();
        (
            json,
            rv,
            Box::<str>::from("bench-api-0123abcd"),
            Box::<str>::from(format!("cm-{i:05}")),
        )
    });
    report(
        &format!("live cache entry (JSON text {text_len} B, keys)"),
        bytes,
    );
}

#[test]
fn live_object_tree() {
    report(
        "LiveObject tree (an event in flight, a lookup)",
        per_item(|i| Box::new(live(i))),
    );
}

#[test]
fn desired_object() {
    let d = desired(1);
    let text = |v: &Value| serde_json::to_string(v).map(|s| s.len()).unwrap_or(0);
    report(
        &format!(
            "DesiredObject in the snapshot (object {} B + state {} B as text)",
            text(&d.object),
            text(&d.state)
        ),
        per_item(|i| Arc::new(desired(i))),
    );
}

#[test]
fn analyzer_record() {
    report(
        "DriftRecord kept by the analyzer, with its map key",
        per_item(|i| (key(i).resource_id(), record(i))),
    );
}

#[test]
fn sizes() {
    println!(
        "size_of: LiveObject {}, DesiredObject {}, DriftRecord {}, Value {}",
        std::mem::size_of::<LiveObject>(),
        std::mem::size_of::<DesiredObject>(),
        std::mem::size_of::<DriftRecord>(),
        std::mem::size_of::<Value>()
    );
}

//! What one watched ConfigMap costs in memory, per holder (issue 20): the live object as the
//! cache keeps it (compact JSON text), as a `LiveObject` tree (an event in flight, a lookup),
//! the desired object of the Git snapshot, and the record the analyzer keeps.
//!
//! Counting, not timing: a counting allocator adds up the bytes the process asks for while N
//! objects are kept (what the program holds, before the allocator's own rounding). The figures
//! print with `cargo nextest run -p driftguard-core --test memory --no-capture`; the assertions
//! hold the shape that matters at 100,000 objects: what is kept per resource for the life of the
//! service is text, not trees.

use std::alloc::System;

use chrono::Utc;
use driftguard_core::{
    DesiredObject, DriftRecord, LiveObject, Observation, ResourceKey, Source, engine, state,
};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 2_000;

/// Heap bytes per item that `build` keeps alive (the vector holding them included).
/// Counted over the whole process: this file holds one test, so nothing else allocates.
fn per_item<T>(build: impl Fn(usize) -> T) -> f64 {
    let region = Region::new(ALLOCATOR);
    let mut kept: Vec<T> = Vec::with_capacity(N);
    kept.extend((0..N).map(build));
    let change = region.change();
    drop(kept);
    // A reallocation is counted in `bytes_allocated` or `bytes_deallocated` already.
    (change.bytes_allocated as f64 - change.bytes_deallocated as f64) / N as f64
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
    println!("per watched ConfigMap, bytes held (N = {N}): {what}: {bytes:.0}");
}

/// What the live cache keeps per object: its JSON text, resourceVersion and key parts.
fn live_cache_entry(i: usize) -> (Box<str>, Box<str>, Box<str>, Box<str>) {
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
}

#[test]
fn what_is_kept_per_resource_is_text_not_trees() {
    let d = desired(1);
    let state_text = d.state.as_str().len();
    let live_text = serde_json::to_string(&live(1))
        .map(|s| s.len())
        .unwrap_or(0);
    let cache = per_item(live_cache_entry);
    let live_tree = per_item(|i| Box::new(live(i)));
    let desired_object = per_item(|i| std::sync::Arc::new(desired(i)));
    let desired_tree = per_item(|i| Box::new(desired(i).state.value()));
    let record = per_item(|i| (key(i).resource_id(), record(i)));
    report(
        &format!("live cache entry (JSON text {live_text} B, keys)"),
        cache,
    );
    report("LiveObject tree (an event in flight, a lookup)", live_tree);
    report(
        &format!(
            "DesiredObject in the snapshot (state {state_text} B as text, key, source, hashes)"
        ),
        desired_object,
    );
    report(
        "the same desired state as a tree (parsed to compare it)",
        desired_tree,
    );
    report("DriftRecord kept by the analyzer, with its map key", record);
    // The text forms are what stays; the trees exist while one object is compared.
    assert!(cache < live_tree / 2.0, "cache {cache} vs tree {live_tree}");
    assert!(
        desired_object < desired_tree / 2.0,
        "desired object {desired_object} vs its tree alone {desired_tree}"
    );
    // The manifest and its normalised state are one text when normalising changed nothing.
    assert!(driftguard_core::JsonText::ptr_eq(&d.object, &d.state));
    // Text, key, source and two hashes: about the text and a few hundred bytes more.
    assert!(
        desired_object < state_text as f64 + 1_024.0,
        "desired object {desired_object} B for a {state_text} B text"
    );
    println!(
        "size_of: LiveObject {}, DesiredObject {}, DriftRecord {}, Value {}",
        std::mem::size_of::<LiveObject>(),
        std::mem::size_of::<DesiredObject>(),
        std::mem::size_of::<DriftRecord>(),
        std::mem::size_of::<Value>()
    );
    // `preserve_order` (turned on by the MongoDB driver for the whole binary) makes every node
    // of a tree an `IndexMap`-sized value: why trees are not what the service keeps.
    assert!(std::mem::size_of::<Value>() >= 72);
}

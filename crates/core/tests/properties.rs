//! Property tests of the drift engine.
//!
//! - an object compared with itself has no changes — also when the desired side is already
//!   normalised and when keyed lists are shuffled live;
//! - one mutated scalar yields exactly one change, at that scalar's path;
//! - `compare` never panics, whatever JSON is on either side (managedFields included).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use driftguard_core::engine::{EngineConfig, compare, normalize};
use driftguard_core::{
    DesiredObject, FieldPath, LiveObject, ManagedFieldsEntry, Op, ResourceKey, Source,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn desired(object: Value) -> DesiredObject {
    DesiredObject::new(
        ResourceKey::from_api_version("apps/v1", "Deployment", "ns", "app"),
        "apps/v1".into(),
        object,
        Source {
            commit: String::new(),
            path: "x.yaml".into(),
            doc_index: 0,
            line: None,
            helm_release: None,
        },
    )
}

fn live(object: Value) -> LiveObject {
    LiveObject::from_api(
        ResourceKey::from_api_version("apps/v1", "Deployment", "ns", "app"),
        "apps/v1".into(),
        object,
    )
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1u32..4000).prop_map(|m| json!(format!("{m}m"))),
        (1u32..64).prop_map(|g| json!(format!("{g}Gi"))),
        (1u32..512).prop_map(|m| json!(format!("{m}Mi"))),
        (1u32..8).prop_map(|n| json!(n)),
    ]
}

fn container(index: usize) -> impl Strategy<Value = Value> {
    (
        word(),
        prop::collection::vec((word(), word()), 0..4),
        prop::collection::vec(prop::bool::ANY, 0..3),
        quantity(),
        quantity(),
        prop::collection::vec(word(), 0..3),
        prop::option::of(prop::bool::ANY),
    )
        .prop_map(move |(image, env, ports, cpu, memory, args, privileged)| {
            let env: Vec<Value> = env
                .into_iter()
                .enumerate()
                .map(|(i, (name, value))| json!({"name": format!("V{i}_{name}"), "value": value}))
                .collect();
            let ports: Vec<Value> = ports
                .into_iter()
                .enumerate()
                .map(|(i, udp)| {
                    json!({"containerPort": 8000 + i, "protocol": if udp {"UDP"} else {"TCP"}, "name": format!("p{i}")})
                })
                .collect();
            let mut c = json!({
                "name": format!("c{index}"),
                "image": format!("registry.example/{image}:1.{index}"),
                "resources": {"limits": {"cpu": cpu, "memory": memory}},
            });
            if !env.is_empty() {
                c["env"] = Value::Array(env);
            }
            if !ports.is_empty() {
                c["ports"] = Value::Array(ports);
            }
            if !args.is_empty() {
                c["args"] = json!(args);
            }
            if let Some(p) = privileged {
                c["securityContext"] = json!({"privileged": p});
            }
            c
        })
}

fn deployment() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[a-z]{1,6}", word(), 0..4),
        0u32..20,
        prop::collection::vec(Just(()), 1..4)
            .prop_flat_map(|n| (0..n.len()).map(container).collect::<Vec<_>>()),
        prop::collection::vec(word(), 0..3),
        prop::option::of(word()),
    )
        .prop_map(|(labels, replicas, containers, volumes, account)| {
            let volumes: Vec<Value> = volumes
                .into_iter()
                .enumerate()
                .map(|(i, cm)| json!({"name": format!("vol{i}"), "configMap": {"name": cm}}))
                .collect();
            let mut pod = json!({"containers": containers});
            if !volumes.is_empty() {
                pod["volumes"] = Value::Array(volumes);
            }
            if let Some(a) = account {
                pod["serviceAccountName"] = json!(a);
            }
            let labels: Map<String, Value> =
                labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "app", "namespace": "ns", "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "app"}},
                    "template": {"metadata": {"labels": {"app": "app"}}, "spec": pod},
                },
            })
        })
}

/// Rotates and maybe reverses every keyed list (containers, env, ports, volumes).
fn shuffle_keyed(value: &mut Value, seed: u64) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if let Value::Array(items) = v
                    && matches!(key.as_str(), "containers" | "env" | "ports" | "volumes")
                    && !items.is_empty()
                {
                    let n = items.len();
                    items.rotate_left((seed as usize) % n);
                    if seed & 1 == 1 {
                        items.reverse();
                    }
                }
                shuffle_keyed(v, seed.rotate_right(7));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shuffle_keyed(v, seed)),
        _ => {}
    }
}

/// Every scalar reachable through maps and keyed lists (merge keys and identity excluded), with
/// its JSON pointer and its field path.
fn scalar_paths(
    value: &Value,
    pointer: String,
    path: FieldPath,
    parent_key: Option<&str>,
    out: &mut Vec<(String, FieldPath)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let in_item = matches!(
                    path.segments().last(),
                    Some(driftguard_core::Segment::Item(_))
                );
                let merge_key = in_item
                    && match parent_key {
                        Some("ports") => k == "containerPort" || k == "protocol",
                        _ => k == "name",
                    };
                if merge_key
                    || matches!(k.as_str(), "apiVersion" | "kind")
                    || (path.to_string() == "metadata")
                {
                    continue;
                }
                let child = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                scalar_paths(v, child, path.key(k.clone()), Some(k), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let keys = match parent_key {
                    Some("ports") => vec![
                        (
                            "containerPort".to_owned(),
                            item["containerPort"].to_string(),
                        ),
                        (
                            "protocol".to_owned(),
                            item["protocol"].as_str().unwrap_or("TCP").to_owned(),
                        ),
                    ],
                    Some("containers" | "env" | "volumes") => {
                        vec![(
                            "name".to_owned(),
                            item["name"].as_str().unwrap_or("").to_owned(),
                        )]
                    }
                    // Unkeyed lists are reported whole: not a scalar path.
                    _ => return,
                };
                scalar_paths(
                    item,
                    format!("{pointer}/{i}"),
                    path.item(keys),
                    parent_key,
                    out,
                );
            }
        }
        _ => out.push((pointer, path)),
    }
}

fn mutate(value: &mut Value) {
    *value = match value {
        Value::String(s) => json!(format!("{s}-x")),
        Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) as i64 + 1),
        Value::Bool(b) => json!(!*b),
        _ => json!("x"),
    };
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            "[a-zA-Z0-9 ./:_-]{0,8}",
            Just("500m".to_owned()),
            Just("1Gi".to_owned()),
            Just("k:{\"name\":\"a\"}".to_owned())
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_owned()),
                    Just("metadata".to_owned()),
                    Just("containers".to_owned()),
                    Just("env".to_owned()),
                    Just("ports".to_owned()),
                    Just("name".to_owned()),
                    Just("labels".to_owned()),
                    Just("data".to_owned()),
                    Just("replicas".to_owned()),
                    Just("f:spec".to_owned()),
                    Just("k:{\"name\":\"a\"}".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every map of `value` with its entries in reverse order (maps keep insertion order in tests,
/// as in the service).
fn reverse_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().rev().collect();
            for (k, mut v) in entries {
                reverse_keys(&mut v);
                map.insert(k, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(reverse_keys),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_object_compared_with_itself_has_no_changes(object in deployment(), seed in any::<u64>()) {
        let cfg = EngineConfig::default();
        let d = desired(object.clone());
        prop_assert!(compare(&d, &live(object.clone()), &cfg).changes.is_empty());
        // The desired side already normalised.
        let normalised = desired(normalize(&object));
        prop_assert!(compare(&normalised, &live(object.clone()), &cfg).changes.is_empty());
        // Keyed lists in another order live.
        let mut shuffled = object.clone();
        shuffle_keyed(&mut shuffled, seed);
        let result = compare(&d, &live(shuffled), &cfg);
        prop_assert!(result.changes.is_empty(), "{:?}", result.changes);
        // Normalisation is idempotent.
        prop_assert_eq!(normalize(&normalize(&object)), normalize(&object));
    }

    #[test]
    fn key_order_of_the_prepared_objects_does_not_change_the_verdict(object in deployment(), pick in any::<prop::sample::Index>(), other in arbitrary_json()) {
        // Prepared objects have sorted keys and are paired in one pass; objects built some other
        // way (keys in any order) take the lookup path and must give the same changes.
        let mut paths = Vec::new();
        scalar_paths(&object, String::new(), FieldPath::root(), None, &mut paths);
        let mut mutated = object.clone();
        if !paths.is_empty() {
            let (pointer, _) = pick.get(&paths).clone();
            // Change one scalar, or remove it when it sits in a map.
            let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", ""));
            let removed = pick.index(2) == 0
                && mutated
                    .pointer_mut(parent)
                    .and_then(Value::as_object_mut)
                    .and_then(|m| m.remove(last))
                    .is_some();
            if !removed && let Some(v) = mutated.pointer_mut(&pointer) {
                mutate(v);
            }
        }
        if let Value::Object(map) = &mut mutated {
            map.insert("extra".into(), other);
        }
        let d = desired(object);
        let mut l = live(mutated);
        l.managed_fields.push(ManagedFieldsEntry {
            manager: "kubectl-edit".into(),
            operation: "Update".into(),
            time: None,
            subresource: None,
            fields: json!({"f:extra": {}}),
        });
        let cfg = EngineConfig::default();
        let sorted = compare(&d, &l, &cfg);
        // The manifest written with every map in the reverse order.
        let mut reversed = d.object.value();
        reverse_keys(&mut reversed);
        let d_rev = DesiredObject::new(d.key.clone(), d.api_version.clone(), reversed, d.source.clone());
        let mut l_rev = l.clone();
        reverse_keys(&mut l_rev.object);
        prop_assert_eq!(compare(&d_rev, &l_rev, &cfg).changes, sorted.changes);
    }

    #[test]
    fn one_mutated_scalar_is_one_change_at_its_path(object in deployment(), pick in any::<prop::sample::Index>()) {
        let mut paths = Vec::new();
        scalar_paths(&object, String::new(), FieldPath::root(), None, &mut paths);
        prop_assume!(!paths.is_empty());
        let (pointer, path) = pick.get(&paths).clone();
        let mut mutated = object.clone();
        if let Some(v) = mutated.pointer_mut(&pointer) {
            mutate(v);
        }
        let result = compare(&desired(object), &live(mutated), &EngineConfig::default());
        prop_assert_eq!(result.changes.len(), 1, "{:?}", result.changes);
        prop_assert_eq!(&result.changes[0].field, &path);
        prop_assert_eq!(result.changes[0].op, Op::Changed);
    }

    #[test]
    fn compare_never_panics(a in arbitrary_json(), b in arbitrary_json(), fields in arbitrary_json(), kind in prop_oneof![Just("Deployment"), Just("Service"), Just("Secret"), Just("ConfigMap"), Just("ClusterRole")]) {
        let key = ResourceKey::new("", kind, "ns", "x");
        let d = DesiredObject { key: key.clone(), ..desired(a) };
        let mut l = LiveObject::from_api(key, "v1".into(), b);
        l.managed_fields.push(ManagedFieldsEntry {
            manager: "kubectl-edit".into(),
            operation: "Update".into(),
            time: None,
            subresource: None,
            fields,
        });
        let result = compare(&d, &l, &EngineConfig::default());
        let mut sorted = result.changes.clone();
        sorted.sort_by(|x, y| x.field.cmp(&y.field));
        prop_assert_eq!(sorted.len(), result.changes.len());
        let _ = driftguard_core::engine::missing(&d, &EngineConfig::default());
        let _ = driftguard_core::engine::unmanaged(&l, &EngineConfig::default());
    }
}

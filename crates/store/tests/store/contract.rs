//! The store contract: one async function per behaviour, run unchanged against every backend.

use std::sync::Arc;

use base64::Engine as _;
use chrono::Duration;
use driftguard_core::state::{self, Event};
use driftguard_core::{DriftStatus, DriftType, SecretHasher, Severity};
use driftguard_store::{OutboxEntry, RecordQuery, Store, Write};
use serde_json::json;

use crate::fixtures::*;
use crate::support::{Harness, assert_consistent, assert_record_consistent};

fn ids(page: &driftguard_store::Page) -> Vec<&str> {
    page.records
        .iter()
        .map(|r| r.resource_id.as_str())
        .collect()
}

async fn list(store: &Arc<dyn Store>, q: RecordQuery) -> driftguard_store::Page {
    store
        .list(&q)
        .await
        .unwrap_or_else(|e| panic!("list {q:?}: {e:?}"))
}

pub async fn installation_key_is_generated_once(h: &Harness) {
    h.store
        .ping()
        .await
        .unwrap_or_else(|e| panic!("ping: {e:?}"));
    let key = h
        .store
        .installation_key()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(key.len(), 32);
    assert_ne!(key, vec![0u8; 32]);
    let again = h
        .store
        .installation_key()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(key, again);
    let reopened = h.reopen().await;
    let after_restart = reopened
        .installation_key()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(key, after_restart, "the key survives a restart");
}

pub async fn empty_store_answers_empty(h: &Harness) {
    let s = &h.store;
    let page = list(s, RecordQuery::default()).await;
    assert_eq!(page.total, 0);
    assert!(page.records.is_empty());
    assert!(
        s.get("Deployment:x:y")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .is_none()
    );
    assert!(
        s.history("Deployment:x:y")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .is_none()
    );
    assert!(
        s.load_current()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .is_empty()
    );
    let stats = s
        .statistics(at(0))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(stats.total_records, 0);
    assert_eq!(stats.active_percentage, 0.0);
    assert_eq!(stats.resolved_percentage, 0.0);
    assert!(stats.by_type.is_empty() && stats.mttr_seconds.is_empty());
    s.apply(&[]).await.unwrap_or_else(|e| panic!("{e:?}"));
}

/// Seven records covering every filter value; returned in resource-id order.
async fn seed_filters(s: &Arc<dyn Store>) {
    drift(
        s,
        &key("Deployment", "shop", "web"),
        vec![scaling(), label()],
        at(1),
        None,
    )
    .await;
    drift(
        s,
        &key("Deployment", "shop", "api"),
        vec![image()],
        at(2),
        None,
    )
    .await;
    drift(
        s,
        &key("ConfigMap", "shop", "settings"),
        vec![change(
            "data.retries",
            DriftType::ConfigMapChange,
            Severity::Medium,
        )],
        at(3),
        None,
    )
    .await;
    drift(
        s,
        &key("Secret", "shop", "creds"),
        vec![change(
            "data.password",
            DriftType::SecretChange,
            Severity::High,
        )],
        at(4),
        Some(at(5)),
    )
    .await;
    step(
        s,
        None,
        observation(&key("Service", "web", "frontend"), vec![], "d", "d", C1),
        at(6),
    )
    .await;
    drift(
        s,
        &key("ClusterRole", "", "viewer"),
        vec![
            change("rules", DriftType::SecurityChange, Severity::High),
            label(),
        ],
        at(7),
        None,
    )
    .await;
    step(
        s,
        None,
        observation(&key("Deployment", "web", "worker"), vec![], "d", "d", C1),
        at(8),
    )
    .await;
}

pub async fn every_filter_selects_exactly(h: &Harness) {
    let s = &h.store;
    seed_filters(s).await;
    let all = list(s, RecordQuery::default()).await;
    assert_eq!(
        ids(&all),
        [
            "ClusterRole::viewer",
            "ConfigMap:shop:settings",
            "Deployment:shop:api",
            "Deployment:shop:web",
            "Deployment:web:worker",
            "Secret:shop:creds",
            "Service:web:frontend",
        ],
        "ordered by resource_id"
    );
    assert_eq!(all.total, 7);

    let q = |f: fn(&mut RecordQuery)| {
        let mut q = RecordQuery::default();
        f(&mut q);
        q
    };
    let cases: Vec<(RecordQuery, Vec<&str>)> = vec![
        (
            q(|q| q.namespace = Some("shop".into())),
            vec![
                "ConfigMap:shop:settings",
                "Deployment:shop:api",
                "Deployment:shop:web",
                "Secret:shop:creds",
            ],
        ),
        (
            q(|q| q.namespace = Some(String::new())),
            vec!["ClusterRole::viewer"],
        ),
        (
            q(|q| q.kind = Some("Deployment".into())),
            vec![
                "Deployment:shop:api",
                "Deployment:shop:web",
                "Deployment:web:worker",
            ],
        ),
        (
            q(|q| q.drift_detected = Some(true)),
            vec![
                "ClusterRole::viewer",
                "ConfigMap:shop:settings",
                "Deployment:shop:api",
                "Deployment:shop:web",
            ],
        ),
        (
            q(|q| q.drift_detected = Some(false)),
            vec![
                "Deployment:web:worker",
                "Secret:shop:creds",
                "Service:web:frontend",
            ],
        ),
        (
            q(|q| q.status = Some(DriftStatus::Resolved)),
            vec!["Secret:shop:creds"],
        ),
        (
            q(|q| q.status = Some(DriftStatus::None)),
            vec!["Deployment:web:worker", "Service:web:frontend"],
        ),
        (
            q(|q| q.status = Some(DriftStatus::Active)),
            vec![
                "ClusterRole::viewer",
                "ConfigMap:shop:settings",
                "Deployment:shop:api",
                "Deployment:shop:web",
            ],
        ),
        (
            q(|q| q.severity = Some(Severity::High)),
            vec!["ClusterRole::viewer", "Deployment:shop:api"],
        ),
        (
            q(|q| q.severity = Some(Severity::Medium)),
            vec!["ConfigMap:shop:settings", "Deployment:shop:web"],
        ),
        // Severity is the headline: low changes exist, but no record's headline is low.
        (q(|q| q.severity = Some(Severity::Low)), vec![]),
        // Type matches any change, not only the headline.
        (
            q(|q| q.drift_type = Some(DriftType::LabelChange)),
            vec!["ClusterRole::viewer", "Deployment:shop:web"],
        ),
        (
            q(|q| q.drift_type = Some(DriftType::VersionChange)),
            vec!["Deployment:shop:api"],
        ),
        // A resolved record has no current changes.
        (q(|q| q.drift_type = Some(DriftType::SecretChange)), vec![]),
        (
            q(|q| q.since = Some(at(5))),
            vec![
                "ClusterRole::viewer",
                "Deployment:web:worker",
                "Secret:shop:creds",
                "Service:web:frontend",
            ],
        ),
        // `since` is inclusive, to the nanosecond.
        (q(|q| q.since = Some(at(8))), vec!["Deployment:web:worker"]),
        (
            q(|q| q.since = Some(at(8) + Duration::nanoseconds(1))),
            vec![],
        ),
        (
            q(|q| {
                q.namespace = Some("shop".into());
                q.drift_type = Some(DriftType::LabelChange);
                q.drift_detected = Some(true);
            }),
            vec!["Deployment:shop:web"],
        ),
        (
            q(|q| {
                q.kind = Some("Deployment".into());
                q.severity = Some(Severity::High);
                q.status = Some(DriftStatus::Active);
            }),
            vec!["Deployment:shop:api"],
        ),
    ];
    for (query, expected) in cases {
        let page = list(s, query.clone()).await;
        assert_eq!(ids(&page), expected, "{query:?}");
        assert_eq!(page.total, expected.len() as u64, "{query:?}");
    }
}

pub async fn paging_honours_limit_offset_and_total(h: &Harness) {
    let s = &h.store;
    let mut batch = Vec::new();
    for i in 0..25 {
        let k = key("ConfigMap", "paging", &format!("cm-{i:02}"));
        let t = state::advance(None, observation(&k, vec![], "d", "d", C1), at(i));
        batch.push(Write::Upsert {
            record: t.record,
            episode: None,
        });
    }
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    let page = |limit, offset| {
        let q = RecordQuery {
            limit,
            offset,
            ..RecordQuery::default()
        };
        async move { list(s, q).await }
    };
    let first = page(10, 0).await;
    assert_eq!(first.total, 25);
    assert_eq!(first.records.len(), 10);
    assert_eq!(first.records[0].resource_id, "ConfigMap:paging:cm-00");
    let second = page(10, 10).await;
    assert_eq!(second.records[0].resource_id, "ConfigMap:paging:cm-10");
    let last = page(10, 20).await;
    assert_eq!(last.total, 25);
    assert_eq!(
        ids(&last),
        [
            "ConfigMap:paging:cm-20",
            "ConfigMap:paging:cm-21",
            "ConfigMap:paging:cm-22",
            "ConfigMap:paging:cm-23",
            "ConfigMap:paging:cm-24"
        ]
    );
    let beyond = page(10, 1000).await;
    assert_eq!(beyond.total, 25);
    assert!(beyond.records.is_empty());
    let one = page(1, 24).await;
    assert_eq!(ids(&one), ["ConfigMap:paging:cm-24"]);
    let none = page(0, 0).await;
    assert_eq!(none.total, 25);
    assert!(
        none.records.is_empty(),
        "limit 0 is honoured, not 'unlimited'"
    );
    let max = page(10_000, 0).await;
    assert_eq!(max.records.len(), 25);
    // The pages tile the whole view without overlap.
    let mut seen = Vec::new();
    for offset in (0..25).step_by(7) {
        seen.extend(
            page(7, offset)
                .await
                .records
                .into_iter()
                .map(|r| r.resource_id),
        );
    }
    assert_eq!(seen.len(), 25);
    seen.dedup();
    assert_eq!(seen.len(), 25);
    // Paging combines with filters: total counts matches only.
    let filtered = list(
        s,
        RecordQuery {
            since: Some(at(20)),
            limit: 2,
            offset: 1,
            ..RecordQuery::default()
        },
    )
    .await;
    assert_eq!(filtered.total, 5);
    assert_eq!(
        ids(&filtered),
        ["ConfigMap:paging:cm-21", "ConfigMap:paging:cm-22"]
    );
}

pub async fn statistics_count_every_figure(h: &Harness) {
    let s = &h.store;
    let now = at(0) + Duration::hours(100);
    let h_ago = |hours: i64| now - Duration::hours(hours);
    // Active, started 1 h ago (recent).
    drift(
        s,
        &key("Deployment", "a", "a"),
        vec![scaling()],
        h_ago(1),
        None,
    )
    .await;
    // Active, started 30 h ago (not recent).
    drift(
        s,
        &key("Deployment", "b", "b"),
        vec![image(), label()],
        h_ago(30),
        None,
    )
    .await;
    // Resolved 1 h ago after 1 h (recent resolution).
    drift(
        s,
        &key("Deployment", "c", "c"),
        vec![scaling()],
        h_ago(2),
        Some(h_ago(1)),
    )
    .await;
    // Resolved 48 h ago after 2 h (old resolution).
    drift(
        s,
        &key("Deployment", "d", "d"),
        vec![image()],
        h_ago(50),
        Some(h_ago(48)),
    )
    .await;
    // Never drifted.
    step(
        s,
        None,
        observation(&key("Service", "e", "e"), vec![], "x", "x", C1),
        h_ago(5),
    )
    .await;
    // Drifted 3 h ago, left the view 30 min later: its closed episode counts, the record not.
    let f = drift(
        s,
        &key("ConfigMap", "f", "f"),
        vec![change(
            "data.k",
            DriftType::ConfigMapChange,
            Severity::Medium,
        )],
        h_ago(3),
        None,
    )
    .await;
    let leaving = h_ago(3) + Duration::minutes(30);
    s.apply(&[Write::Remove {
        resource_id: f.resource_id.clone(),
        closing_episode: state::leave_view(&f, Some(C2), leaving),
    }])
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));

    let stats = s.statistics(now).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(stats.total_records, 5);
    assert_eq!(stats.active_drift, 2);
    assert_eq!(stats.resolved_drift, 2);
    assert_eq!(stats.no_drift, 1);
    assert_eq!(stats.recent_active_drift, 1);
    assert_eq!(stats.recent_resolutions, 2, "c and the departed f");
    assert_eq!(stats.active_percentage, 40.0);
    assert_eq!(stats.resolved_percentage, 40.0);
    assert_eq!(
        stats.by_type,
        [("Scaling".to_owned(), 1), ("VersionChange".to_owned(), 1)].into()
    );
    assert_eq!(
        stats.by_severity,
        [("high".to_owned(), 1), ("medium".to_owned(), 1)].into()
    );
    let mttr = &stats.mttr_seconds;
    let close = |k: &str, v: f64| {
        let got = mttr.get(k).copied().unwrap_or(f64::NAN);
        assert!((got - v).abs() < 1e-6, "mttr[{k}] = {got}, expected {v}");
    };
    close("Scaling", 3600.0);
    close("VersionChange", 7200.0);
    close("ConfigMapChange", 1800.0);
    close("medium", 2700.0);
    close("high", 7200.0);
    assert_eq!(mttr.len(), 5, "{mttr:?}");
    // Serialises with the contract's names.
    let json = serde_json::to_value(&stats).unwrap_or_default();
    for name in [
        "total_records",
        "active_drift",
        "resolved_drift",
        "no_drift",
        "recent_active_drift",
        "recent_resolutions",
        "active_percentage",
        "resolved_percentage",
    ] {
        assert!(json.get(name).is_some(), "{name} missing in {json}");
    }
    // A third of the records: rounded to 2 decimals.
    drift(
        s,
        &key("Deployment", "g", "g"),
        vec![scaling()],
        h_ago(1),
        None,
    )
    .await;
    let stats = s.statistics(now).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(stats.active_percentage, 50.0);
    assert_eq!(stats.resolved_percentage, 33.33);
}

/// Every transition of contract §4, end to end through the store.
pub async fn lifecycle_end_to_end(h: &Harness) {
    let s = &h.store;
    let k = key("Deployment", "shop", "web");
    let id = k.resource_id();
    let history = |s: Arc<dyn Store>, id: String| async move {
        s.history(&id)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("history of {id}"))
    };

    // none
    let t = step(s, None, observation(&k, vec![], "d1", "l1", C1), at(0)).await;
    assert_eq!(t.record.drift_status, DriftStatus::None);
    assert_eq!(
        history(s.clone(), id.clone()).await,
        vec![],
        "known, no episodes"
    );
    // none → active
    let t = step(
        s,
        Some(&t.record),
        observation(&k, vec![scaling()], "d1", "l2", C1),
        at(1),
    )
    .await;
    assert_eq!(t.event, Some(Event::Detected));
    let stored = s.get(&id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(stored.as_ref(), Some(&t.record), "stored byte-exact");
    let e = history(s.clone(), id.clone()).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].resolved_at, None);
    // active → active, same verdict: nothing written
    let before = s.get(&id).await.unwrap_or_else(|e| panic!("{e:?}"));
    let t2 = step(
        s,
        Some(&t.record),
        observation(&k, vec![scaling()], "d1", "l2", C1),
        at(2),
    )
    .await;
    assert!(!t2.changed);
    assert_eq!(s.get(&id).await.unwrap_or_else(|e| panic!("{e:?}")), before);
    // active → active, other fields: continued, same episode
    let t = step(
        s,
        Some(&t2.record),
        observation(&k, vec![scaling(), label()], "d1", "l3", C1),
        at(3),
    )
    .await;
    assert_eq!(t.event, Some(Event::Continued));
    let e = history(s.clone(), id.clone()).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].changes.len(), 2);
    assert_eq!(e[0].first_detected, at(1));
    assert_record_consistent(s, &t.record).await;
    // active → resolved (commit adopts the live value)
    let t = step(
        s,
        Some(&t.record),
        observation(&k, vec![], "d3", "l3", C2),
        at(4),
    )
    .await;
    assert_eq!(t.event, Some(Event::Resolved));
    let stored = s
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_else(|| panic!("record"));
    assert_eq!(stored.drift_status, DriftStatus::Resolved);
    assert_eq!(
        stored.resolution_message.as_deref(),
        Some("commit 9be0d11 adopts the live value")
    );
    let e = history(s.clone(), id.clone()).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].resolved_at, Some(at(4)));
    assert_eq!(e[0].resolution_message, stored.resolution_message);
    assert_record_consistent(s, &stored).await;
    // resolved stays resolved
    let t = step(
        s,
        Some(&stored),
        observation(&k, vec![], "d3", "l3", C2),
        at(5),
    )
    .await;
    assert!(!t.changed);
    // resolved → active: a new episode, newest first
    let t = step(
        s,
        Some(&t.record),
        observation(&k, vec![image()], "d3", "l4", C2),
        at(6),
    )
    .await;
    assert_eq!(t.event, Some(Event::Detected));
    let e = history(s.clone(), id.clone()).await;
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].first_detected, at(6));
    assert_eq!(e[0].resolved_at, None);
    assert_eq!(e[1].first_detected, at(1));
    assert_record_consistent(s, &t.record).await;
    // active → resolved (an ignore rule), then → left the view
    let mut ignored = observation(&k, vec![], "d3", "l4", C2);
    ignored.cause = Some(state::ResolutionCause::IgnoreRule);
    let t = step(s, Some(&t.record), ignored, at(7)).await;
    assert_eq!(
        t.record.resolution_message.as_deref(),
        Some("an ignore rule now covers it")
    );
    let t = step(
        s,
        Some(&t.record),
        observation(&k, vec![label()], "d3", "l5", C2),
        at(8),
    )
    .await;
    let closing = state::leave_view(&t.record, Some(C2), at(9));
    assert!(closing.is_some());
    s.apply(&[Write::Remove {
        resource_id: id.clone(),
        closing_episode: closing,
    }])
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(s.get(&id).await.unwrap_or_else(|e| panic!("{e:?}")), None);
    let e = history(s.clone(), id.clone()).await;
    assert_eq!(e.len(), 3, "episodes stay after the resource left the view");
    assert!(e.iter().all(|e| e.resolved_at.is_some()));
    assert_eq!(e[0].resolved_at, Some(at(9)));
    assert!(
        e[0].resolution_message
            .as_deref()
            .is_some_and(|m| m.contains("deleted from the cluster"))
    );
    assert_eq!(list(s, RecordQuery::default()).await.total, 0);

    // A resource that never drifted and left the view is still known.
    let quiet = key("Service", "shop", "quiet");
    step(s, None, observation(&quiet, vec![], "d", "d", C1), at(0)).await;
    s.apply(&[Write::Remove {
        resource_id: quiet.resource_id(),
        closing_episode: None,
    }])
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(history(s.clone(), quiet.resource_id()).await, vec![]);
    // And it can come back.
    let back = step(
        s,
        None,
        observation(&quiet, vec![scaling()], "d", "x", C1),
        at(10),
    )
    .await;
    assert_record_consistent(s, &back.record).await;
}

pub async fn reapplying_a_batch_is_idempotent(h: &Harness) {
    let s = &h.store;
    let k = key("Deployment", "shop", "web");
    let t = state::advance(None, observation(&k, vec![scaling()], "d", "l", C1), at(1));
    let batch = [Write::Upsert {
        record: t.record.clone(),
        episode: t.episode.clone(),
    }];
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    let history = s
        .history(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_default();
    assert_eq!(history.len(), 1);
    assert_eq!(list(s, RecordQuery::default()).await.total, 1);
    let closed = state::advance(
        Some(&t.record),
        observation(&k, vec![], "d", "d", C1),
        at(2),
    );
    let remove = [
        Write::Upsert {
            record: closed.record.clone(),
            episode: closed.episode.clone(),
        },
        Write::Remove {
            resource_id: k.resource_id(),
            closing_episode: None,
        },
    ];
    s.apply(&remove).await.unwrap_or_else(|e| panic!("{e:?}"));
    s.apply(&remove).await.unwrap_or_else(|e| panic!("{e:?}"));
    let history = s
        .history(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_default();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resolved_at, Some(at(2)));
    // An episode written on its own (as a buffered drain does) lands in the history.
    let other = key("Deployment", "shop", "api");
    let mut e = history[0].clone();
    e.first_detected = at(0);
    s.apply(&[Write::Episode {
        resource_id: other.resource_id(),
        episode: e.clone(),
    }])
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        s.history(&other.resource_id())
            .await
            .unwrap_or_else(|e| panic!("{e:?}")),
        Some(vec![e])
    );
}

pub async fn restart_keeps_the_same_episode(h: &Harness) {
    let k = key("Deployment", "shop", "web");
    let active = drift(&h.store, &k, vec![scaling()], at(1), None).await;
    let untouched = drift(
        &h.store,
        &key("Service", "shop", "web"),
        vec![],
        at(1),
        None,
    )
    .await;

    let reopened = h.reopen().await;
    let current = reopened
        .load_current()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(current.len(), 2);
    let warm = current
        .iter()
        .find(|r| r.resource_id == k.resource_id())
        .unwrap_or_else(|| panic!("warm record"));
    assert_eq!(warm, &active, "warm start sees the record byte-exact");
    assert!(current.contains(&untouched));

    // Same drift after the restart: nothing to write, same episode.
    let t = step(
        &reopened,
        Some(warm),
        observation(&k, vec![scaling()], "d1", "l2", C1),
        at(30),
    )
    .await;
    assert!(!t.changed);
    // The drift grows after the restart: still the same episode.
    let t = step(
        &reopened,
        Some(warm),
        observation(&k, vec![scaling(), label()], "d1", "l3", C1),
        at(31),
    )
    .await;
    assert_eq!(t.record.first_detected, Some(at(1)));
    let history = reopened
        .history(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_default();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].first_detected, at(1));
    assert_eq!(history[0].changes.len(), 2);
    assert_consistent(&reopened).await;
}

pub async fn secret_canary_never_stored(h: &Harness) {
    const CANARY: &str = "canary-Pa55w0rd-7f3e91";
    let s = &h.store;
    let hasher = SecretHasher::new(
        s.installation_key()
            .await
            .unwrap_or_else(|e| panic!("{e:?}")),
    );
    let digest = hasher.digest(CANARY.as_bytes());
    let live_digest = hasher.digest(b"another-value");
    let k = key("Secret", "shop", "creds");
    let mut o = observation(&k, vec![], "d1", "l2", C1);
    o.desired_state = Some(json!({"kind": "Secret", "data": {"password": digest}}));
    o.live_state = Some(json!({"kind": "Secret", "data": {"password": live_digest}}));
    let mut c = change("data.password", DriftType::SecretChange, Severity::High);
    c.from = Some(json!(digest));
    c.to = Some(json!(live_digest));
    o.changes = vec![c];
    let t = step(s, None, o, at(1)).await;
    step(
        s,
        Some(&t.record),
        observation(&k, vec![], "d1", "l1", C1),
        at(2),
    )
    .await;

    let dump = h.dump().await;
    let contains = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(digest.as_bytes()),
        "sanity: the dump holds the digest"
    );
    assert!(
        !contains(CANARY.as_bytes()),
        "the canary plaintext is stored"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    assert!(!contains(b64.as_bytes()), "the canary's base64 is stored");
}

pub async fn odd_keys_round_trip(h: &Harness) {
    let s = &h.store;
    let k = key("ConfigMap", "shop", "odd");
    let odd = json!({
        "metadata": {"labels": {"app.kubernetes.io/name": "odd", "$weird": "x", "a.b.c": {"$ref": 1}}},
        "data": {"app.properties": "k=v", "$set": "y", ".": "dot", "": "empty"}
    });
    let mut o = observation(&k, vec![], "d1", "l2", C1);
    o.desired_state = Some(odd.clone());
    o.live_state = Some(odd.clone());
    let mut c = change(
        r#"data["app.properties"]"#,
        DriftType::ConfigMapChange,
        Severity::Medium,
    );
    c.from = Some(json!({"$in": [1], "x.y": 2}));
    o.changes = vec![
        c,
        change(
            r#"metadata.labels["$weird"]"#,
            DriftType::LabelChange,
            Severity::Low,
        ),
    ];
    let t = step(s, None, o, at(1)).await;
    let stored = s
        .get(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_else(|| panic!("record"));
    assert_eq!(stored, t.record);
    assert_eq!(stored.desired_state, Some(odd));
    let history = s
        .history(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_default();
    assert_eq!(history[0].changes, t.record.drift_details);
    let page = list(
        s,
        RecordQuery {
            drift_type: Some(DriftType::LabelChange),
            ..RecordQuery::default()
        },
    )
    .await;
    assert_eq!(page.total, 1);
}

pub async fn one_analysis_batch_of_many_resources(h: &Harness) {
    let s = &h.store;
    let mut previous = Vec::new();
    let mut batch = Vec::new();
    for i in 0..300 {
        let k = key("ConfigMap", "bulk", &format!("cm-{i:03}"));
        let changes = if i % 3 == 0 { vec![scaling()] } else { vec![] };
        let t = state::advance(None, observation(&k, changes, "d", "l", C1), at(1));
        batch.push(Write::Upsert {
            record: t.record.clone(),
            episode: t.episode,
        });
        previous.push(t.record);
    }
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    // Second analysis: resolve every drift, remove ten clean ones.
    let mut batch = Vec::new();
    for (i, prev) in previous.iter().enumerate() {
        let k = key("ConfigMap", "bulk", &prev.name);
        if i % 3 == 1 && i < 30 {
            batch.push(Write::Remove {
                resource_id: prev.resource_id.clone(),
                closing_episode: state::leave_view(prev, Some(C2), at(2)),
            });
            continue;
        }
        let t = state::advance(Some(prev), observation(&k, vec![], "d", "d", C2), at(2));
        if t.changed {
            batch.push(Write::Upsert {
                record: t.record,
                episode: t.episode,
            });
        }
    }
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    let stats = s
        .statistics(at(3))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(stats.total_records, 290);
    assert_eq!(stats.resolved_drift, 100);
    assert_eq!(stats.active_drift, 0);
    assert_eq!(stats.recent_resolutions, 100);
    assert_consistent(s).await;
}

/// A record larger than MongoDB's 16 MiB document limit (a huge object in its states) is
/// stored with its states cut and a `truncated` warning, never dropped; its history episode is
/// stored too, and the verdict reads back whole.
pub async fn oversized_record_is_stored_cut_not_dropped(h: &Harness) {
    let s = &h.store;
    let k = key("ConfigMap", "shop", "huge");
    let blob = "x".repeat(17 * 1024 * 1024);
    let mut obs = observation(&k, vec![label()], "d", "l", C1);
    obs.desired_state = Some(json!({ "data": { "blob": blob } }));
    obs.live_state = Some(json!({ "data": { "blob": format!("{blob}y") } }));
    let t = state::advance(None, obs, at(1));
    s.apply(&[Write::Upsert {
        record: t.record.clone(),
        episode: t.episode.clone(),
    }])
    .await
    .unwrap_or_else(|e| panic!("an oversized record must be stored, not refused: {e:?}"));
    let stored = s
        .get(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_else(|| panic!("the record was dropped"));
    assert_eq!(stored.drift_status, DriftStatus::Active);
    assert_eq!(stored.drift_details, t.record.drift_details);
    assert_eq!(stored.first_detected, t.record.first_detected);
    assert_eq!((stored.desired_state, stored.live_state), (None, None));
    let warning = stored
        .warnings
        .iter()
        .find(|w| w.code == driftguard_store::TRUNCATED)
        .unwrap_or_else(|| panic!("no truncated marker: {:?}", stored.warnings));
    assert!(warning.message.contains("bytes"), "{warning:?}");
    let history = s
        .history(&k.resource_id())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_default();
    assert_eq!(history.len(), 1, "the episode landed");
    let loaded = s.load_current().await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(loaded.len(), 1, "and the view loads at start-up");
}

pub async fn keyset_paging_after_a_resource_id(h: &Harness) {
    let s = &h.store;
    let mut batch = Vec::new();
    for (i, (kind, ns, name)) in (0_i64..).zip([
        ("ConfigMap", "keyset", "cm-00"),
        ("ConfigMap", "keyset", "cm-01"),
        ("ConfigMap", "keyset", "cm-02"),
        ("ConfigMap", "keyset", "cm-10"),
        ("ConfigMap", "other", "cm-00"),
        ("Deployment", "keyset", "api"),
        ("Deployment", "keyset", "web"),
        ("ClusterRole", "", "view"),
    ]) {
        let k = key(kind, ns, name);
        let t = state::advance(None, observation(&k, vec![], "d", "d", C1), at(i));
        batch.push(Write::Upsert {
            record: t.record,
            episode: None,
        });
    }
    s.apply(&batch).await.unwrap_or_else(|e| panic!("{e:?}"));
    let after = |after: &str, limit: u32, namespace: Option<&str>| RecordQuery {
        after: Some(after.to_owned()),
        limit,
        namespace: namespace.map(str::to_owned),
        ..RecordQuery::default()
    };
    // Strictly after, in the listing's order; `total` counts the matches without `after`.
    let page = list(s, after("ConfigMap:keyset:cm-01", 3, None)).await;
    assert_eq!(
        ids(&page),
        [
            "ConfigMap:keyset:cm-02",
            "ConfigMap:keyset:cm-10",
            "ConfigMap:other:cm-00"
        ]
    );
    assert_eq!(page.total, 8);
    // A key that no record has starts after where it would sort.
    let page = list(s, after("ConfigMap:keyset:cm-05", 2, None)).await;
    assert_eq!(
        ids(&page),
        ["ConfigMap:keyset:cm-10", "ConfigMap:other:cm-00"]
    );
    // Byte order: "" sorts before everything, "ClusterRole::" before "ConfigMap:".
    let page = list(s, after("", 1, None)).await;
    assert_eq!(ids(&page), ["ClusterRole::view"]);
    let page = list(s, after("Deployment:keyset:web", 10, None)).await;
    assert!(page.records.is_empty());
    assert_eq!(page.total, 8);
    // Combined with a filter.
    let page = list(s, after("ConfigMap:keyset:cm-10", 10, Some("keyset"))).await;
    assert_eq!(
        ids(&page),
        ["Deployment:keyset:api", "Deployment:keyset:web"]
    );
    assert_eq!(page.total, 6);
    // Walking the pages by their last key visits the listing once, in order, for both the
    // decoded and the JSON listing.
    let everything = list(s, RecordQuery::default()).await;
    let all: Vec<String> = ids(&everything).into_iter().map(str::to_owned).collect();
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = after(&cursor, 3, None);
        let json = s
            .list_json(&q)
            .await
            .unwrap_or_else(|e| panic!("list_json {q:?}: {e:?}"));
        let page = list(s, q).await;
        assert_eq!(json.records.len(), page.records.len());
        assert_eq!(json.total, page.total);
        let Some(last) = page.records.last() else {
            break;
        };
        cursor = last.resource_id.clone();
        walked.extend(page.records.iter().map(|r| r.resource_id.clone()));
    }
    assert_eq!(walked, all);
}

// === outbox ===

fn entry(
    sink: &str,
    key: &str,
    payload: &str,
    queued_at: chrono::DateTime<chrono::Utc>,
) -> OutboxEntry {
    OutboxEntry {
        sink: sink.to_owned(),
        key: key.to_owned(),
        payload: payload.to_owned(),
        queued_at,
    }
}

async fn pending(store: &Arc<dyn Store>) -> Vec<OutboxEntry> {
    store
        .outbox_pending()
        .await
        .unwrap_or_else(|e| panic!("outbox_pending: {e:?}"))
}

async fn push(store: &Arc<dyn Store>, entries: &[OutboxEntry]) {
    store
        .outbox_push(entries)
        .await
        .unwrap_or_else(|e| panic!("outbox_push of {} entries: {e:?}", entries.len()));
}

async fn remove(store: &Arc<dyn Store>, sink: &str, keys: &[&str]) {
    let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    store
        .outbox_remove(sink, &keys)
        .await
        .unwrap_or_else(|e| panic!("outbox_remove {sink} {keys:?}: {e:?}"));
}

/// Oldest first: `queued_at` (to the nanosecond), then sink, then key — whatever the order of
/// the pushes and of the entries within one push.
pub async fn outbox_pending_is_oldest_first(h: &Harness) {
    let s = &h.store;
    assert!(
        pending(s).await.is_empty(),
        "a new store has an empty outbox"
    );
    push(s, &[]).await;
    assert!(pending(s).await.is_empty());

    let late = entry("slack", "a", "late", at(5));
    let one_nano_earlier = entry("slack", "z", "1ns", at(5) - Duration::nanoseconds(1));
    let tie_webhook_b = entry("webhook:b", "k1", "wb", at(2));
    let tie_alertmanager = entry("alertmanager", "k9", "am", at(2));
    let tie_webhook_a2 = entry("webhook:a", "k2", "wa2", at(2));
    let tie_webhook_a1 = entry("webhook:a", "k10", "wa10", at(2));
    let first = entry("webhook:z", "zzz", "first", at(-3));
    push(
        s,
        &[
            late.clone(),
            tie_webhook_b.clone(),
            tie_alertmanager.clone(),
        ],
    )
    .await;
    push(
        s,
        &[
            tie_webhook_a2.clone(),
            first.clone(),
            one_nano_earlier.clone(),
            tie_webhook_a1.clone(),
        ],
    )
    .await;
    assert_eq!(
        pending(s).await,
        vec![
            first,
            tie_alertmanager,
            // Keys sort as text: "k10" before "k2".
            tie_webhook_a1,
            tie_webhook_a2,
            tie_webhook_b,
            one_nano_earlier,
            late,
        ]
    );
}

/// Queueing the same (sink, key) again keeps the first entry (payload and time); the same key
/// of another sink is another entry; the other entries of a push with a duplicate are queued.
pub async fn outbox_push_keeps_the_first_of_a_duplicate(h: &Harness) {
    let s = &h.store;
    let original = entry("slack", "episode-1", "first payload", at(1));
    push(s, std::slice::from_ref(&original)).await;

    let again = entry("slack", "episode-1", "second payload", at(0));
    let other_sink = entry("webhook:ops", "episode-1", "for ops", at(3));
    let after_the_duplicate = entry("slack", "episode-2", "next", at(4));
    let twice_in_one_call = entry("alertmanager", "episode-3", "am first", at(5));
    let twice_in_one_call_again = entry("alertmanager", "episode-3", "am second", at(6));
    push(
        s,
        &[
            again.clone(),
            other_sink.clone(),
            after_the_duplicate.clone(),
            twice_in_one_call.clone(),
            twice_in_one_call_again,
            again,
        ],
    )
    .await;
    assert_eq!(
        pending(s).await,
        vec![
            original.clone(),
            other_sink,
            after_the_duplicate,
            twice_in_one_call
        ],
    );

    // Once removed, the key can be queued afresh.
    remove(s, "slack", &["episode-1"]).await;
    let fresh = entry("slack", "episode-1", "fresh payload", at(9));
    push(s, std::slice::from_ref(&fresh)).await;
    let now = pending(s).await;
    assert_eq!(now.last(), Some(&fresh));
    assert!(!now.contains(&original));
}

/// Removal deletes exactly the named sink's named keys; unknown keys and sinks are ignored.
pub async fn outbox_remove_only_the_named_sinks_keys(h: &Harness) {
    let s = &h.store;
    let mut all = Vec::new();
    for (i, sink) in ["slack", "webhook:a", "alertmanager"]
        .into_iter()
        .enumerate()
    {
        for (j, key) in ["k1", "k2", "k3"].into_iter().enumerate() {
            all.push(entry(
                sink,
                key,
                &format!("{sink}/{key}"),
                at((i * 3 + j) as i64),
            ));
        }
    }
    push(s, &all).await;
    assert_eq!(pending(s).await, all);

    remove(s, "slack", &[]).await;
    remove(s, "nobody", &["k1", "k2", "k3"]).await;
    remove(s, "webhook", &["k1"]).await;
    assert_eq!(pending(s).await, all, "nothing matched, nothing removed");

    remove(s, "webhook:a", &["k1", "k3", "unknown", "k1"]).await;
    let left: Vec<(String, String)> = pending(s)
        .await
        .into_iter()
        .map(|e| (e.sink, e.key))
        .collect();
    let expected: Vec<(String, String)> = [
        ("slack", "k1"),
        ("slack", "k2"),
        ("slack", "k3"),
        ("webhook:a", "k2"),
        ("alertmanager", "k1"),
        ("alertmanager", "k2"),
        ("alertmanager", "k3"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(left, expected);

    // Removing twice is harmless.
    remove(s, "webhook:a", &["k1"]).await;
    remove(s, "slack", &["k1", "k2", "k3"]).await;
    remove(s, "alertmanager", &["k1", "k2", "k3"]).await;
    remove(s, "webhook:a", &["k2"]).await;
    assert!(pending(s).await.is_empty());
}

/// Queued entries survive a restart, and a restarted instance removes what the other queued.
pub async fn outbox_survives_a_restart(h: &Harness) {
    let queued = vec![
        entry("slack", "e1", r#"{"text":"drift"}"#, at(1)),
        entry("webhook:ops", "e1", r#"{"event":"drift_detected"}"#, at(1)),
        entry("alertmanager", "e2", "[]", at(2)),
    ];
    push(&h.store, &queued).await;

    let reopened = h.reopen().await;
    let mut expected = queued.clone();
    expected.sort_by(|a, b| (a.queued_at, &a.sink, &a.key).cmp(&(b.queued_at, &b.sink, &b.key)));
    assert_eq!(pending(&reopened).await, expected);

    // A duplicate after the restart is still recognised.
    push(&reopened, &[entry("slack", "e1", "other", at(7))]).await;
    remove(&reopened, "alertmanager", &["e2"]).await;
    let after = pending(&h.store).await;
    assert_eq!(after, expected[..2].to_vec());

    let third = h.reopen().await;
    assert_eq!(pending(&third).await, after);
}

/// A 200 KB payload and keys with unicode, quotes, `$`, `.` and control characters round-trip
/// byte-exact, and remove addresses them exactly.
pub async fn outbox_large_payload_and_odd_keys_round_trip(h: &Harness) {
    let s = &h.store;
    let mut large = String::with_capacity(200 * 1024 + 64);
    let mut i = 0u64;
    while large.len() < 200 * 1024 {
        large.push_str(&format!("{{\"n\":{i},\"ü\":\"☃ $set a.b 'q' \\\"\"}}\n"));
        i += 1;
    }
    let odd_keys = [
        "$set",
        "a.b.c",
        ".",
        "$",
        "\"quoted\"",
        "it's",
        "ünïcödé/☃/日本語",
        "emoji 🚀",
        "tab\there\nnewline",
        "{\"$in\": [1]}",
        "' OR 1=1 --",
        "",
    ];
    let mut entries = vec![entry("webhook:big", "large", &large, at(1))];
    for (n, key) in odd_keys.iter().enumerate() {
        entries.push(entry(
            "webhook:$x.y \"z\" ☃",
            key,
            &format!("payload {n} {key}"),
            at(2),
        ));
    }
    push(s, &entries).await;

    let got = pending(s).await;
    assert_eq!(got.len(), entries.len());
    assert_eq!(got[0].payload.len(), large.len());
    assert!(got[0].payload == large, "the large payload is byte-exact");
    let mut expected = entries.clone();
    expected.sort_by(|a, b| (a.queued_at, &a.sink, &a.key).cmp(&(b.queued_at, &b.sink, &b.key)));
    assert_eq!(got, expected);

    // Each odd key is a key of its own: a duplicate of one is ignored, removing one removes
    // only it.
    push(
        s,
        &[entry("webhook:$x.y \"z\" ☃", "$set", "changed", at(0))],
    )
    .await;
    assert_eq!(pending(s).await, expected);
    remove(
        s,
        "webhook:$x.y \"z\" ☃",
        &["$set", "a.b.c", "' OR 1=1 --", "$in"],
    )
    .await;
    let left: Vec<String> = pending(s).await.into_iter().map(|e| e.key).collect();
    assert_eq!(left.len(), entries.len() - 3);
    for gone in ["$set", "a.b.c", "' OR 1=1 --"] {
        assert!(!left.iter().any(|k| k == gone), "{gone} removed: {left:?}");
    }
    for kept in ["$", ".", "{\"$in\": [1]}", "", "large"] {
        assert!(left.iter().any(|k| k == kept), "{kept:?} kept: {left:?}");
    }
}

/// One push of 1000 entries queues all of them; pushing them again (plus one) adds only the
/// new one; removing 500 in one call leaves the rest.
pub async fn outbox_takes_a_thousand_entries_in_one_call(h: &Harness) {
    let s = &h.store;
    let many: Vec<OutboxEntry> = (0..1000)
        .map(|i| {
            entry(
                if i % 2 == 0 { "slack" } else { "webhook:ops" },
                &format!("event-{i:04}"),
                &format!("{{\"n\":{i}}}"),
                t0() + Duration::milliseconds(i),
            )
        })
        .collect();
    push(s, &many).await;
    assert_eq!(pending(s).await, many);

    let mut again: Vec<OutboxEntry> = many
        .iter()
        .map(|e| entry(&e.sink, &e.key, "replaced?", at(100)))
        .collect();
    let extra = entry("slack", "event-extra", "new", at(100));
    again.insert(500, extra.clone());
    push(s, &again).await;
    let mut expected = many.clone();
    expected.push(extra);
    assert_eq!(pending(s).await, expected);

    let slack_keys: Vec<String> = many
        .iter()
        .filter(|e| e.sink == "slack")
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(slack_keys.len(), 500);
    s.outbox_remove("slack", &slack_keys)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let left = pending(s).await;
    assert_eq!(left.len(), 501);
    assert!(left[..500].iter().all(|e| e.sink == "webhook:ops"));
    assert_eq!(left[500].key, "event-extra");
}

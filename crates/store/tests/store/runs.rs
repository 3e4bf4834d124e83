//! Analysis requests and run states shared between replicas: the contract on every backend.

use std::sync::Arc;

use driftguard_store::{MAX_RUNS, Store};
use futures::StreamExt;

use crate::fixtures::*;
use crate::support::Harness;

async fn take(store: &Arc<dyn Store>) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    store
        .take_run_requests()
        .await
        .unwrap_or_else(|e| panic!("take: {e:?}"))
}

async fn request(store: &Arc<dyn Store>, run_id: &str, minutes: i64) {
    store
        .request_run(run_id, at(minutes))
        .await
        .unwrap_or_else(|e| panic!("request {run_id}: {e:?}"));
}

async fn put(store: &Arc<dyn Store>, run_id: &str, json: &str) {
    store
        .put_run(run_id, json)
        .await
        .unwrap_or_else(|e| panic!("put {run_id}: {e:?}"));
}

async fn get(store: &Arc<dyn Store>, run_id: &str) -> Option<String> {
    store
        .get_run(run_id)
        .await
        .unwrap_or_else(|e| panic!("get {run_id}: {e:?}"))
}

/// Requests come out oldest first (then by id), once; a repeated id keeps its first time; the
/// queue survives a restart and another handle (the leader) takes what a follower queued.
pub async fn run_requests_are_taken_oldest_first_once(h: &Harness) {
    let follower = &h.store;
    assert!(take(follower).await.is_empty());
    request(follower, "run-b", 2).await;
    request(follower, "run-c", 1).await;
    request(follower, "run-a", 1).await;
    request(follower, "run-b", 9).await; // a retried POST: keeps minute 2
    let leader = h.reopen().await;
    assert_eq!(
        take(&leader).await,
        [
            ("run-a".to_owned(), at(1)),
            ("run-c".to_owned(), at(1)),
            ("run-b".to_owned(), at(2)),
        ]
    );
    assert!(take(&leader).await.is_empty(), "taking removes them");
    assert!(take(follower).await.is_empty());
    request(follower, "run-b", 3).await; // taken before, so queued anew
    request(follower, "run-d", 4).await;
    assert_eq!(
        take(&leader).await,
        [("run-b".to_owned(), at(3)), ("run-d".to_owned(), at(4))]
    );
}

/// A run's state reads back byte for byte, a later state replaces it, an unknown run is `None`,
/// and a 20 KB state with odd characters survives.
pub async fn run_states_replace_and_round_trip(h: &Harness) {
    let s = &h.store;
    assert_eq!(get(s, "run-1").await, None);
    put(s, "run-1", r#"{"run_id":"run-1","status":"running"}"#).await;
    put(s, "run-2", r#"{"run_id":"run-2","status":"running"}"#).await;
    put(s, "run-1", r#"{"run_id":"run-1","status":"completed"}"#).await;
    assert_eq!(
        get(s, "run-1").await.as_deref(),
        Some(r#"{"run_id":"run-1","status":"completed"}"#)
    );
    assert_eq!(
        get(s, "run-2").await.as_deref(),
        Some(r#"{"run_id":"run-2","status":"running"}"#)
    );
    let odd = "ü€😀 \"quoted\" \\back\\slash \\u0000 $set a.b \u{202e}rtl\t'; DROP TABLE runs; --";
    let mut big = String::from(r#"{"run_id":"run-odd","notes":["#);
    while big.len() < 20 * 1024 {
        big.push_str(&serde_json::to_string(odd).unwrap_or_default());
        big.push(',');
    }
    big.push_str(r#""end"]}"#);
    assert!(serde_json::from_str::<serde_json::Value>(&big).is_ok());
    put(s, "run/odd id ü", &big).await;
    assert_eq!(get(s, "run/odd id ü").await.as_deref(), Some(big.as_str()));
    let restarted = h.reopen().await;
    assert_eq!(
        get(&restarted, "run/odd id ü").await.as_deref(),
        Some(big.as_str())
    );
}

/// Past `MAX_RUNS` the runs stored longest ago are pruned; storing a run's state again makes it
/// one of the newest.
pub async fn run_states_keep_the_newest_thousand(h: &Harness) {
    let s = &h.store;
    let id = |i: usize| format!("run-{i:05}");
    for i in 0..5 {
        put(s, &id(i), &format!(r#"{{"n":{i}}}"#)).await;
    }
    // The next thousand from 16 tasks at once (as fast as the slow test peer allows): whatever
    // order they land in, the five stored before them are the oldest.
    futures::stream::iter(5..MAX_RUNS + 5)
        .for_each_concurrent(16, |i| async move {
            put(s, &id(i), &format!(r#"{{"n":{i}}}"#)).await;
        })
        .await;
    for i in 0..5 {
        assert_eq!(get(s, &id(i)).await, None, "{} was pruned", id(i));
    }
    assert_eq!(get(s, &id(5)).await.as_deref(), Some(r#"{"n":5}"#));
    assert_eq!(
        get(s, &id(MAX_RUNS + 4)).await.as_deref(),
        Some(format!(r#"{{"n":{}}}"#, MAX_RUNS + 4).as_str())
    );
    // Run 5 is refreshed, then a new run pushes out the oldest. That is not run 5 but whichever
    // of the concurrent ones landed first (their order is the tasks', not their numbers'): exactly
    // one of runs 6..=MAX_RUNS + 4 is gone.
    put(s, &id(5), r#"{"n":5,"again":true}"#).await;
    put(s, &id(MAX_RUNS + 5), "{}").await;
    assert_eq!(
        get(s, &id(5)).await.as_deref(),
        Some(r#"{"n":5,"again":true}"#)
    );
    assert_eq!(get(s, &id(MAX_RUNS + 5)).await.as_deref(), Some("{}"));
    let gone: Vec<String> = futures::stream::iter(6..MAX_RUNS + 5)
        .map(|i| async move { (i, get(s, &id(i)).await) })
        .buffer_unordered(16)
        .filter_map(|(i, state)| async move { state.is_none().then(|| id(i)) })
        .collect()
        .await;
    assert_eq!(gone.len(), 1, "one run pruned, not {gone:?}");
}

//! The outage buffer against a store that can be switched off (deterministic, no network).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, Episode, state};
use driftguard_store::{
    BufferConfig, BufferState, BufferedStore, Error, OutboxEntry, Page, RecordQuery, Result,
    Statistics, Store, Write,
};

use crate::fixtures::*;
use crate::support::{Harness, assert_consistent};

/// Wraps a real store; while `down`, every call fails as unavailable.
struct Switchable {
    inner: Arc<dyn Store>,
    down: AtomicBool,
    applies: AtomicUsize,
}

impl Switchable {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(Error::Unavailable {
                operation: "testing",
                source: "switched off".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Switchable {
    async fn ping(&self) -> Result<()> {
        self.check()?;
        self.inner.ping().await
    }
    async fn installation_key(&self) -> Result<Vec<u8>> {
        self.check()?;
        self.inner.installation_key().await
    }
    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        self.check()?;
        self.inner.load_current().await
    }
    async fn apply(&self, batch: &[Write]) -> Result<()> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.apply(batch).await
    }
    async fn list(&self, q: &RecordQuery) -> Result<Page> {
        self.check()?;
        self.inner.list(q).await
    }
    async fn get(&self, id: &str) -> Result<Option<DriftRecord>> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn history(&self, id: &str) -> Result<Option<Vec<Episode>>> {
        self.check()?;
        self.inner.history(id).await
    }
    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        self.check()?;
        self.inner.statistics(now).await
    }
    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        self.check()?;
        self.inner.outbox_push(entries).await
    }
    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        self.check()?;
        self.inner.outbox_pending().await
    }
    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        self.check()?;
        self.inner.outbox_remove(sink, keys).await
    }
    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        self.check()?;
        self.inner.claim_term(lease_term, holder).await
    }
    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        self.check()?;
        self.inner.request_run(run_id, requested_at).await
    }
    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.check()?;
        self.inner.take_run_requests().await
    }
    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        self.check()?;
        self.inner.put_run(run_id, json).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.get_run(run_id).await
    }
}

fn fast() -> BufferConfig {
    BufferConfig {
        max_pending: 10_000,
        max_pending_bytes: 64 * 1024 * 1024,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_chunk: 7,
    }
}

pub(crate) async fn wait_drained(store: &BufferedStore) {
    for _ in 0..500 {
        if store.health().state == BufferState::Healthy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("buffer did not drain: {:?}", store.health());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_buffered_store_rides_out_an_outage() {
    let h = Harness::sqlite().await;
    let switch = Arc::new(Switchable {
        inner: h.store.clone(),
        down: AtomicBool::new(false),
        applies: AtomicUsize::new(0),
    });
    let buffered = BufferedStore::new(switch.clone(), fast());

    let k = key("Deployment", "shop", "web");
    let t1 = state::advance(None, observation(&k, vec![scaling()], "d", "l1", C1), at(1));
    buffered
        .apply(&[Write::Upsert {
            record: t1.record.clone(),
            episode: t1.episode.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(buffered.pending(), 0);

    switch.down.store(true, Ordering::SeqCst);
    // While down: resolve, drift again (a second episode), and touch 20 other resources.
    let t2 = state::advance(
        Some(&t1.record),
        observation(&k, vec![], "d", "d", C1),
        at(2),
    );
    buffered
        .apply(&[Write::Upsert {
            record: t2.record.clone(),
            episode: t2.episode.clone(),
        }])
        .await
        .expect("accepted while the store is down");
    let health = buffered.health();
    assert_eq!(health.state, BufferState::Buffering);
    assert_eq!(health.pending, 1);
    assert!(health.since.is_some());
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|m| m.contains("unavailable"))
    );
    let t3 = state::advance(
        Some(&t2.record),
        observation(&k, vec![image()], "d", "l3", C1),
        at(3),
    );
    let mut batch = vec![Write::Upsert {
        record: t3.record.clone(),
        episode: t3.episode.clone(),
    }];
    for i in 0..20 {
        let other = key("ConfigMap", "shop", &format!("cm-{i}"));
        let t = state::advance(
            None,
            observation(&other, vec![label()], "d", "x", C1),
            at(3),
        );
        batch.push(Write::Upsert {
            record: t.record,
            episode: t.episode,
        });
    }
    buffered.apply(&batch).await.unwrap();
    assert_eq!(buffered.pending(), 21, "coalesced per resource");
    assert!(
        buffered.ping().await.unwrap_err().is_unavailable(),
        "reads say unavailable"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(switch.applies.load(Ordering::SeqCst) > 3, "it retries");
    assert_eq!(buffered.pending(), 21);

    switch.down.store(false, Ordering::SeqCst);
    wait_drained(&buffered).await;
    assert_eq!(buffered.pending(), 0);
    assert!(!buffered.take_resync_needed());

    let history = h.store.history(&k.resource_id()).await.unwrap().unwrap();
    assert_eq!(
        history.len(),
        2,
        "the closed and the new episode both landed"
    );
    assert_eq!(history[1].resolved_at, Some(at(2)));
    assert_eq!(history[0].first_detected, at(3));
    assert_eq!(
        h.store.get(&k.resource_id()).await.unwrap(),
        Some(t3.record)
    );
    assert_eq!(h.store.load_current().await.unwrap().len(), 21);
    assert_consistent(&h.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_buffered_store_bound_drops_oldest_and_asks_for_resync() {
    let h = Harness::sqlite().await;
    let switch = Arc::new(Switchable {
        inner: h.store.clone(),
        down: AtomicBool::new(true),
        applies: AtomicUsize::new(0),
    });
    let buffered = BufferedStore::new(
        switch.clone(),
        BufferConfig {
            max_pending: 5,
            ..fast()
        },
    );
    for i in 0..8 {
        let k = key("ConfigMap", "shop", &format!("cm-{i}"));
        let t = state::advance(None, observation(&k, vec![], "d", "d", C1), at(i));
        buffered
            .apply(&[Write::Upsert {
                record: t.record,
                episode: None,
            }])
            .await
            .unwrap();
    }
    let health = buffered.health();
    assert_eq!(health.pending, 5);
    assert_eq!(health.dropped, 3);
    assert!(
        !buffered.take_resync_needed(),
        "not before the buffer drained"
    );
    switch.down.store(false, Ordering::SeqCst);
    wait_drained(&buffered).await;
    assert!(buffered.take_resync_needed());
    assert!(!buffered.take_resync_needed(), "reported once");
    let names: Vec<String> = h
        .store
        .load_current()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        ["cm-3", "cm-4", "cm-5", "cm-6", "cm-7"],
        "the newest survive"
    );
}

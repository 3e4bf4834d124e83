//! A store handle that exists before the database answers: every call fails as "unavailable"
//! until the real store is connected, so the HTTP server (and `/health`, `/ready`) can start
//! while the database is still unreachable.
//!
//! It also keeps the last statistics for at most [`STATISTICS_TTL`]: dashboards poll
//! `/api/v1/statistics`, and between two writes the answer cannot change except for the "last
//! 24 hours" windows sliding (by at most the TTL) and other replicas' writes (seen within the
//! TTL). Every write through this handle drops the cached value.
//!
//! With several replicas it is also where the leader's writes are gated (issue 19): a batch is
//! written only while [`LeaderGate::is_leading`] holds (the last Lease renewal is younger than
//! the renew deadline), so a leader that lost the Lease API, or was paused, stops writing
//! before its Lease could have expired — including writes the outage buffer drains later.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, Episode};
use driftguard_kube::lease::LeaderGate;
use driftguard_store::{
    Error, JsonPage, OutboxEntry, Page, RecordQuery, Result, Statistics, Store, Write,
};

/// How long computed statistics are served again.
pub const STATISTICS_TTL: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Default)]
pub struct LazyStore {
    inner: RwLock<Option<Arc<dyn Store>>>,
    statistics: Mutex<Option<(Instant, Statistics)>>,
    /// `None`: writes always pass (one replica). `Some`: only while the gate is open.
    gate: RwLock<Option<(LeaderGate, u64)>>,
}

impl LazyStore {
    /// Connects the real store.
    pub fn set(&self, store: Arc<dyn Store>) {
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(store);
    }

    /// Gates writes on leadership: `Some((gate, term))` while leading a term, so a write after
    /// the gate closed is refused as fenced.
    pub fn set_gate(&self, gate: Option<(LeaderGate, u64)>) {
        *self
            .gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = gate;
    }

    /// `Err(Fenced)` when a gate is set and closed.
    fn check_gate(&self) -> Result<()> {
        match &*self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((gate, term)) if !gate.is_leading() => Err(Error::Fenced {
                term: *term,
                current: *term,
            }),
            _ => Ok(()),
        }
    }

    fn cached_statistics(&self) -> Option<Statistics> {
        let cached = self
            .statistics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < STATISTICS_TTL)
            .map(|(_, s)| s.clone())
    }

    fn set_statistics(&self, value: Option<(Instant, Statistics)>) {
        *self
            .statistics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    }

    fn get(&self) -> Result<Arc<dyn Store>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Unavailable {
                operation: "connecting",
                source: "the store is not connected yet".into(),
            })
    }
}

#[async_trait]
impl Store for LazyStore {
    async fn ping(&self) -> Result<()> {
        self.get()?.ping().await
    }
    async fn installation_key(&self) -> Result<Vec<u8>> {
        self.get()?.installation_key().await
    }
    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        self.get()?.load_current().await
    }
    async fn apply(&self, batch: &[Write]) -> Result<()> {
        self.check_gate()?;
        self.set_statistics(None);
        let result = self.get()?.apply(batch).await;
        // A statistics read that raced this write may have cached the old numbers.
        self.set_statistics(None);
        result
    }
    async fn list(&self, query: &RecordQuery) -> Result<Page> {
        self.get()?.list(query).await
    }
    async fn list_json(&self, query: &RecordQuery) -> Result<JsonPage> {
        self.get()?.list_json(query).await
    }
    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>> {
        self.get()?.get(resource_id).await
    }
    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>> {
        self.get()?.history(resource_id).await
    }
    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        if let Some(cached) = self.cached_statistics() {
            return Ok(cached);
        }
        let started = Instant::now();
        let statistics = self.get()?.statistics(now).await?;
        self.set_statistics(Some((started, statistics.clone())));
        Ok(statistics)
    }
    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        self.get()?.outbox_push(entries).await
    }
    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        self.get()?.outbox_pending().await
    }
    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        self.get()?.outbox_remove(sink, keys).await
    }
    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        self.get()?.claim_term(lease_term, holder).await
    }
    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        self.get()?.request_run(run_id, requested_at).await
    }
    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.get()?.take_run_requests().await
    }
    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        self.get()?.put_run(run_id, json).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        self.get()?.get_run(run_id).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftguard_core::ResourceKey;
    use driftguard_core::state::{Observation, advance};

    fn record(name: &str) -> DriftRecord {
        let obs = Observation {
            key: ResourceKey::new("", "ConfigMap", "ns", name),
            api_version: "v1".into(),
            managed: true,
            changes: Vec::new(),
            warnings: Vec::new(),
            desired_state: None,
            live_state: None,
            desired_hash: Some("sha256:a".into()),
            live_hash: Some("sha256:a".into()),
            git_commit: None,
            source_path: None,
            source_line: None,
            helm_release: None,
            cause: None,
        };
        advance(None, obs, Utc::now()).record
    }

    #[tokio::test]
    async fn unavailable_until_set_and_writes_drop_cached_statistics() {
        let lazy = LazyStore::default();
        assert!(
            lazy.statistics(Utc::now())
                .await
                .unwrap_err()
                .is_unavailable()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let sqlite =
            driftguard_store::SqliteStore::open(path.to_str().unwrap(), Duration::from_secs(5))
                .await
                .unwrap();
        lazy.set(Arc::new(sqlite));
        assert_eq!(lazy.statistics(Utc::now()).await.unwrap().total_records, 0);
        let write = Write::Upsert {
            record: record("a"),
            episode: None,
        };
        lazy.apply(std::slice::from_ref(&write)).await.unwrap();
        assert_eq!(
            lazy.statistics(Utc::now()).await.unwrap().total_records,
            1,
            "a write through the handle drops the cached statistics"
        );
    }
}

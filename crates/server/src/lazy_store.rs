//! A store handle that exists before the database answers: every call fails as "unavailable"
//! until the real store is connected, so the HTTP server (and `/health`, `/ready`) can start
//! while the database is still unreachable.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, Episode};
use driftguard_store::{Error, Page, RecordQuery, Result, Statistics, Store, Write};

/// See the module docs.
#[derive(Default)]
pub struct LazyStore {
    inner: RwLock<Option<Arc<dyn Store>>>,
}

impl LazyStore {
    /// Connects the real store.
    pub fn set(&self, store: Arc<dyn Store>) {
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(store);
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
        self.get()?.apply(batch).await
    }
    async fn list(&self, query: &RecordQuery) -> Result<Page> {
        self.get()?.list(query).await
    }
    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>> {
        self.get()?.get(resource_id).await
    }
    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>> {
        self.get()?.history(resource_id).await
    }
    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        self.get()?.statistics(now).await
    }
}

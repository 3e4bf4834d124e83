//! The store's health: pinged every few seconds for `/ready`, with the outage buffer's state.

use std::sync::Arc;
use std::time::Duration;

use driftguard_store::{BufferedStore, Store};
use tokio::sync::watch;

use crate::errors::chain;
use crate::health::{Health, Readiness};
use crate::metrics::Metrics;
use crate::retry::pause;

/// How often the store is pinged for readiness.
const STORE_PING_EVERY: Duration = Duration::from_secs(5);

/// Pings the store for readiness and exports the outage buffer's size.
pub async fn watch_store(
    store: Arc<dyn Store>,
    buffered: Arc<BufferedStore>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let result = store.ping().await;
        metrics.store_op("ping", result.is_ok());
        let health = buffered.health();
        metrics
            .store_pending_writes
            .set(i64::try_from(health.pending).unwrap_or(i64::MAX));
        match result {
            Ok(()) if health.pending == 0 => readiness.set("store", Health::Ok, "answering"),
            Ok(()) if health.rejected > 0 => readiness.set(
                "store",
                Health::Degraded,
                format!(
                    "answering but refusing writes; {} record updates kept for retry",
                    health.pending
                ),
            ),
            Ok(()) => readiness.set(
                "store",
                Health::Degraded,
                format!(
                    "answering; {} buffered record updates draining",
                    health.pending
                ),
            ),
            Err(e) => readiness.set(
                "store",
                Health::Down,
                format!("{} ({} record updates buffered)", chain(&e), health.pending),
            ),
        }
        if !pause(STORE_PING_EVERY, &mut shutdown).await {
            return;
        }
    }
}

//! Drift record stores: where the current view of drift records and the history of episodes
//! live.
//!
//! Two implementations behind one [`Store`] trait:
//!
//! - [`SqliteStore`] — an embedded SQLite file (WAL mode), the default for a single replica;
//! - [`MongoStore`] — MongoDB, for several replicas sharing state. It never relies on
//!   multi-document transactions (a standalone `mongod` has none): every write is idempotent and
//!   ordered so a crash between two of them is repaired by the next analysis.
//!
//! [`BufferedStore`] wraps either one and keeps writes in a bounded in-memory queue while the
//! store is unreachable, draining it with exponential backoff once it answers again.
//!
//! One analysis produces one batch of [`Write`]s: a record and the history episode it opens,
//! updates or closes are written together, in one transaction on SQLite and in a constant number
//! of bulk commands on MongoDB.
//!
//! **Several replicas** (issue 19) share one store; the leader writes. [`Store::claim_term`]
//! fences the writes of a leader that lost its Lease while paused: once another handle claims a
//! higher term, the old handle's `apply` fails with [`Error::Fenced`]. Followers hand analysis
//! requests to the leader through the store ([`Store::request_run`]) and every replica answers
//! for a run's state ([`Store::get_run`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_config::{DatabaseConfig, DatabaseDriver};
use driftguard_core::{DriftRecord, DriftStatus, DriftType, Episode, Severity};
use serde::Serialize;

mod buffer;
mod error;
mod fit;
mod mongo;
mod sqlite;

pub use buffer::{BufferConfig, BufferHealth, BufferState, BufferedStore};
pub use error::{Error, Result};
pub use fit::{CUT_VALUE, MAX_DOCUMENT_JSON, TRUNCATED};
pub use mongo::MongoStore;
pub use sqlite::SqliteStore;

/// Default page size of [`RecordQuery::limit`].
pub const DEFAULT_LIMIT: u32 = 500;
/// Largest page size the API accepts.
pub const MAX_LIMIT: u32 = 10_000;
/// Length of the installation key (the HMAC key for Secret digests).
pub const INSTALLATION_KEY_LEN: usize = 32;
/// Analysis runs whose state [`Store::put_run`] keeps; older ones are pruned.
pub const MAX_RUNS: usize = 1_000;

/// The drift record store.
#[async_trait]
pub trait Store: Send + Sync {
    /// Answers when the store is reachable; `Err(Error::Unavailable)` otherwise.
    async fn ping(&self) -> Result<()>;

    /// The installation's 32-byte random key, generated on first use and kept in the store so
    /// every replica and every restart digests Secrets the same way.
    async fn installation_key(&self) -> Result<Vec<u8>>;

    /// The whole current view, for a warm start after a restart.
    async fn load_current(&self) -> Result<Vec<DriftRecord>>;

    /// Writes one analysis's batch, in order. Re-applying the same batch is harmless.
    async fn apply(&self, batch: &[Write]) -> Result<()>;

    /// One page of records matching `query`, ordered by `resource_id`, with the total count of
    /// matches before paging.
    async fn list(&self, query: &RecordQuery) -> Result<Page>;

    /// The same page as [`Store::list`] with each record as its JSON text (the contract's
    /// record shape). Stores that keep records as JSON return the stored text, sparing the API a
    /// decode and an encode per record; the default encodes what `list` returns.
    async fn list_json(&self, query: &RecordQuery) -> Result<JsonPage> {
        let page = self.list(query).await?;
        let mut records = Vec::with_capacity(page.records.len());
        for record in &page.records {
            records.push(
                serde_json::to_string(record)
                    .map_err(|e| Error::corrupt(format!("record {}", record.resource_id), e))?,
            );
        }
        Ok(JsonPage {
            total: page.total,
            records,
        })
    }

    /// One record of the current view.
    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>>;

    /// The episodes of a resource, newest first; `Some` also for resources that left the
    /// current view, `None` only for a resource never known.
    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>>;

    /// Counts over the current view and the history (`now` anchors "the last 24 hours").
    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics>;

    /// Queues notifications in the outbox (issue 17): an entry whose (`sink`, `key`) is
    /// already queued is left as it is, so queueing the same event twice delivers it once.
    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()>;

    /// Every queued entry, oldest first (`queued_at`, then `sink`, then `key`).
    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>>;

    /// Removes delivered (or dropped) entries of `sink`; unknown keys are ignored.
    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()>;

    /// Takes the writer's term for this handle (issue 19). `lease_term` is the Lease's
    /// transition count; the store's term becomes max(stored term + 1, `lease_term`) (so a
    /// recreated Lease never lowers it) and is returned. From then on every `apply` through this
    /// handle is fenced: it is refused with [`Error::Fenced`] (writing nothing it can avoid) once
    /// another handle has claimed a higher term. A handle that never claimed writes unfenced
    /// (single replica, as today). `holder` names the claimer (the Lease holder identity) for
    /// operators reading the store.
    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64>;

    /// Queues a request for a full analysis (a follower's `POST /api/v1/analyze`). Idempotent
    /// on `run_id`: a second request with the same id keeps the first one's time.
    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()>;

    /// Takes (removes and returns) every queued request, oldest first (`requested_at`, then
    /// `run_id`). Only the leader calls it.
    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>>;

    /// Stores a run's state as the API shows it (opaque JSON text), replacing an earlier state
    /// of the same `run_id`; keeps the newest [`MAX_RUNS`] runs (by when their state was last
    /// stored) and prunes older ones.
    async fn put_run(&self, run_id: &str, json: &str) -> Result<()>;

    /// A run's stored state ([`Store::put_run`]), `None` for an unknown or pruned run.
    async fn get_run(&self, run_id: &str) -> Result<Option<String>>;
}

/// One write of an analysis batch.
// Nearly every write is an `Upsert`: boxing the record would add an allocation per write and
// save no memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Insert or replace the record, and the episode it opens, updates or closes.
    Upsert {
        /// The new verdict.
        record: DriftRecord,
        /// The history entry to write alongside, keyed by (`resource_id`, `first_detected`).
        episode: Option<Episode>,
    },
    /// The resource left the current view (gone from Git and cluster); its history stays.
    Remove {
        /// `Kind:namespace:name`.
        resource_id: String,
        /// The episode it closes, when it was still drifting.
        closing_episode: Option<Episode>,
    },
    /// A history entry on its own (used when a buffered record write carries several episodes).
    Episode {
        /// `Kind:namespace:name`.
        resource_id: String,
        /// The episode, keyed by (`resource_id`, `first_detected`).
        episode: Episode,
    },
}

/// One undelivered notification in the outbox ([`Store::outbox_push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The sink it is for (`alertmanager`, `slack`, `webhook:<name>`).
    pub sink: String,
    /// The event's idempotency key, unique per sink.
    pub key: String,
    /// The notification as the notifier serialised it; opaque to the store. Holds no Secret
    /// value (records carry digests only, contract §2.3).
    pub payload: String,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
}

/// Filters and paging for [`Store::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    /// Exact namespace (`""` for cluster-scoped).
    pub namespace: Option<String>,
    /// Exact kind.
    pub kind: Option<String>,
    /// `drift_detected`.
    pub drift_detected: Option<bool>,
    /// `drift_status`.
    pub status: Option<DriftStatus>,
    /// Headline severity, exact.
    pub severity: Option<Severity>,
    /// Records with any change of this type.
    pub drift_type: Option<DriftType>,
    /// `last_updated` at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Page size (the API validates `1..=10000`; default 500).
    pub limit: u32,
    /// Records to skip.
    pub offset: u64,
    /// Keyset paging: only records whose `resource_id` sorts after this one (byte order, the
    /// listing's order). A paging parameter like `offset`: `total` does not depend on it.
    pub after: Option<String>,
}

/// One page of records as JSON text ([`Store::list_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPage {
    /// Matches before paging.
    pub total: u64,
    /// The page, ordered by `resource_id`, each record's JSON object.
    pub records: Vec<String>,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Matches before paging.
    pub total: u64,
    /// The page, ordered by `resource_id`.
    pub records: Vec<DriftRecord>,
}

/// The numbers behind `GET /api/v1/statistics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Statistics {
    /// Records in the current view.
    pub total_records: u64,
    /// Records `active`.
    pub active_drift: u64,
    /// Records `resolved`.
    pub resolved_drift: u64,
    /// Records `none`.
    pub no_drift: u64,
    /// Active records whose episode started in the last 24 hours.
    pub recent_active_drift: u64,
    /// Episodes resolved in the last 24 hours (also of resources that left the view).
    pub recent_resolutions: u64,
    /// `active_drift / total_records` in percent, 2 decimals; 0 without records.
    pub active_percentage: f64,
    /// `resolved_drift / total_records` in percent, 2 decimals; 0 without records.
    pub resolved_percentage: f64,
    /// Active records by headline type.
    pub by_type: BTreeMap<String, u64>,
    /// Active records by headline severity.
    pub by_severity: BTreeMap<String, u64>,
    /// Mean time to resolve, in seconds, over resolved episodes: keyed by headline type
    /// (`Scaling`, …) and by headline severity (`high`, …).
    pub mttr_seconds: BTreeMap<String, f64>,
}

// === impl RecordQuery ===

impl Default for RecordQuery {
    fn default() -> Self {
        Self {
            namespace: None,
            kind: None,
            drift_detected: None,
            status: None,
            severity: None,
            drift_type: None,
            since: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
            after: None,
        }
    }
}

// === impl Write ===

impl Write {
    /// The resource this write is about.
    pub fn resource_id(&self) -> &str {
        match self {
            Write::Upsert { record, .. } => &record.resource_id,
            Write::Remove { resource_id, .. } | Write::Episode { resource_id, .. } => resource_id,
        }
    }
}

// === impl Statistics ===

impl Statistics {
    /// Adds `n` records of status `status` (as the stores group them) to the counts.
    fn add_status_count(&mut self, status: &str, n: u64) -> Result<()> {
        self.total_records += n;
        match status.parse::<DriftStatus>() {
            Ok(DriftStatus::Active) => self.active_drift += n,
            Ok(DriftStatus::Resolved) => self.resolved_drift += n,
            Ok(DriftStatus::None) => self.no_drift += n,
            Err(e) => return Err(Error::corrupt("a record status", e)),
        }
        Ok(())
    }

    /// Fills the percentages from the counts.
    fn with_percentages(mut self) -> Self {
        self.active_percentage = percentage(self.active_drift, self.total_records);
        self.resolved_percentage = percentage(self.resolved_drift, self.total_records);
        self
    }
}

/// Opens the store the configuration asks for ([`DatabaseConfig::effective_driver`]): SQLite at
/// `database.path`, or MongoDB at [`DatabaseConfig::mongodb_uri`] / `database.dbname`.
/// Wrap the result in a [`BufferedStore`] to ride out outages.
pub async fn open(cfg: &DatabaseConfig) -> Result<Arc<dyn Store>> {
    match cfg.effective_driver() {
        DatabaseDriver::Sqlite => Ok(Arc::new(SqliteStore::open(&cfg.path, cfg.timeout).await?)),
        DatabaseDriver::Mongodb => Ok(Arc::new(
            MongoStore::connect(&cfg.mongodb_uri(), &cfg.dbname, cfg.timeout).await?,
        )),
    }
}

/// `part / whole` in percent, rounded to 2 decimals; 0 when `whole` is 0.
fn percentage(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

/// Nanoseconds since the epoch: exact, sortable, and comparable in both stores.
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The distinct change types of a record, for the `type` filter.
fn change_types(record: &DriftRecord) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = record
        .drift_details
        .iter()
        .map(|c| c.drift_type.as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// A stored record that cannot be decoded (a corrupt row, a document written by hand): logged
/// and left out of the current view instead of failing the load, which start-up would retry
/// forever. The next analysis writes that resource's record again. The message names the
/// resource and the decode error, never the stored text.
fn skip_corrupt(resource_id: &str, error: &Error) {
    tracing::error!(
        resource = %resource_id,
        error = %error,
        "skipping a stored record that cannot be decoded; the next analysis rewrites it"
    );
}

/// Seconds between detection and resolution.
fn duration_seconds(episode: &Episode) -> Option<f64> {
    episode.duration().map(|d| {
        d.num_nanoseconds()
            .map_or(d.num_seconds() as f64, |n| n as f64 / 1e9)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_to_two_decimals() {
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(2, 3), 66.67);
        assert_eq!(percentage(0, 0), 0.0);
        assert_eq!(percentage(5, 5), 100.0);
    }
}

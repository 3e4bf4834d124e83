//! Riding out store failures: a bounded in-memory queue of writes, drained with backoff.
//!
//! [`BufferedStore`] wraps any [`Store`]. A batch whose write fails — for any reason: the store
//! is unreachable, a password was rotated, the SQLite file turned read-only, MongoDB's disk is
//! full — is queued instead of being forgotten, and a background task retries with exponential
//! backoff (with jitter) until the store takes it; then the queue drains in order. While
//! anything is queued or in flight, new batches join the queue so an old verdict never lands
//! after a newer one. The caller's in-memory view is therefore always what the store holds plus
//! what the queue still owes it: no verdict is lost while the process lives.
//!
//! **Isolation**: when the store rejects a drain chunk (an error other than "unavailable"), each
//! resource of the chunk is retried on its own, so one write the store cannot take does not hold
//! back the others; the rejected ones stay queued, counted in [`BufferHealth::rejected`].
//! Records too large for a store never get there: they are cut to fit (see `fit.rs`).
//!
//! **Coalescing**: the queue keeps one entry per resource — its latest record verdict plus every
//! distinct episode (keyed by `first_detected`, latest version each), so history is never lost to
//! coalescing and only superseded verdicts are dropped.
//!
//! **Bound**: at most [`BufferConfig::max_pending`] resources (default 10,000) and
//! [`BufferConfig::max_pending_bytes`] bytes of encoded records and episodes (default 64 MiB —
//! records carry whole objects, so a count alone does not bound memory). Past either, the
//! resource whose entry is oldest is dropped, counted in [`BufferHealth::dropped`] and logged, and
//! [`BufferedStore::take_resync_needed`] turns true: the caller must then write its whole current
//! view again once the store is back (the next full analysis rewrites the truth), since "writes
//! only what changed" would otherwise never repair the dropped verdicts.
//!
//! Reads go straight to the wrapped store: buffered writes become visible once drained, and a
//! read during an outage fails with [`Error::Unavailable`] (the API's 503). Analysis requests and
//! run states ([`Store::request_run`], [`Store::put_run`]) are not buffered either: an outage
//! returns the error to the caller.
//!
//! **Fencing** (issue 19): when the wrapped store refuses a write with [`Error::Fenced`] —
//! another replica claimed a higher term — every queued write is dropped (they belong to a term
//! that no longer writes), a warning is logged once, and every later `apply` returns
//! [`Error::Fenced`] at once, until a [`Store::claim_term`] through this buffer succeeds.
//! [`BufferedStore::fenced`] tells the service. A refusal of a write this replica made at a term
//! it has since replaced by a newer claim of its own drops that write but does not fence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, Episode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{Error, OutboxEntry, Page, RecordQuery, Result, Statistics, Store, Write};

/// Tuning of a [`BufferedStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// Most resources kept pending; past it the oldest entry is dropped (see the module docs).
    pub max_pending: usize,
    /// Most bytes (JSON size of the pending records and episodes) kept pending; past it the
    /// oldest entry is dropped.
    pub max_pending_bytes: usize,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Resources written per drain batch.
    pub drain_chunk: usize,
}

/// Whether writes are going straight through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferState {
    /// Writes reach the store.
    Healthy,
    /// The store is unreachable; writes wait in memory.
    Buffering,
}

/// A snapshot of the buffer for `/ready` and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferHealth {
    /// Healthy or buffering.
    pub state: BufferState,
    /// Resources with writes waiting.
    pub pending: usize,
    /// Approximate bytes those writes hold.
    pub pending_bytes: usize,
    /// Resources whose last write the store rejected (not merely unreachable); they are
    /// retried.
    pub rejected: usize,
    /// Resource writes dropped past the bound since start.
    pub dropped: u64,
    /// When buffering started (`None` while healthy).
    pub since: Option<DateTime<Utc>>,
    /// The last store error, when buffering (no record contents).
    pub last_error: Option<String>,
}

/// A [`Store`] that queues writes while the wrapped store is unreachable.
pub struct BufferedStore {
    shared: Arc<Shared>,
    drainer: JoinHandle<()>,
}

struct Shared {
    inner: Arc<dyn Store>,
    config: BufferConfig,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    entries: HashMap<String, Entry>,
    /// Age order: sequence number → resource id.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    in_flight: bool,
    bytes: usize,
    rejected: usize,
    dropped: u64,
    resync_needed: bool,
    since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// `(term, current)` of the refusal that fenced this replica, until it claims again.
    fenced: Option<(u64, u64)>,
    /// The last term claimed through the buffer (0: never).
    claimed: u64,
}

struct Entry {
    seq: u64,
    /// JSON size of the verdict and episodes held.
    bytes: usize,
    verdict: Option<Verdict>,
    episodes: BTreeMap<DateTime<Utc>, Episode>,
}

enum Verdict {
    Upsert(Box<DriftRecord>),
    Remove,
}

// === impl BufferConfig ===

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            max_pending_bytes: 64 * 1024 * 1024,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            drain_chunk: 1_000,
        }
    }
}

// === impl BufferedStore ===

impl BufferedStore {
    /// Wraps `inner`; spawns the drain task on the current tokio runtime.
    pub fn new(inner: Arc<dyn Store>, config: BufferConfig) -> Self {
        let shared = Arc::new(Shared {
            inner,
            config,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        let drainer = tokio::spawn(drain(Arc::clone(&shared)));
        Self { shared, drainer }
    }

    /// Resources with writes waiting.
    pub fn pending(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// The buffer's state, for readiness and metrics.
    pub fn health(&self) -> BufferHealth {
        let q = self.shared.lock();
        let buffering = !q.entries.is_empty() || q.in_flight;
        BufferHealth {
            state: if buffering {
                BufferState::Buffering
            } else {
                BufferState::Healthy
            },
            pending: q.entries.len(),
            pending_bytes: q.bytes,
            rejected: q.rejected,
            dropped: q.dropped,
            since: if buffering { q.since } else { None },
            last_error: if buffering {
                q.last_error.clone()
            } else {
                None
            },
        }
    }

    /// True (once) when writes were dropped past the bound and the buffer has drained since: the
    /// caller should now write its whole current view again.
    pub fn take_resync_needed(&self) -> bool {
        let mut q = self.shared.lock();
        if q.resync_needed && q.entries.is_empty() && !q.in_flight {
            q.resync_needed = false;
            return true;
        }
        false
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.shared.inner
    }

    /// `Some((term, current))` while another replica leads: the store refused this replica's
    /// writes at `term` because `current` was claimed. Every `apply` then fails with
    /// [`Error::Fenced`] and nothing is queued, until [`Store::claim_term`] succeeds again.
    pub fn fenced(&self) -> Option<(u64, u64)> {
        self.shared.lock().fenced
    }
}

impl Drop for BufferedStore {
    fn drop(&mut self) {
        self.drainer.abort();
    }
}

#[async_trait]
impl Store for BufferedStore {
    async fn ping(&self) -> Result<()> {
        self.shared.inner.ping().await
    }

    async fn installation_key(&self) -> Result<Vec<u8>> {
        self.shared.inner.installation_key().await
    }

    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        self.shared.inner.load_current().await
    }

    async fn apply(&self, batch: &[Write]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        {
            let mut q = self.shared.lock();
            if let Some((term, current)) = q.fenced {
                return Err(Error::Fenced { term, current });
            }
            if !q.entries.is_empty() || q.in_flight {
                // Older writes are still waiting: keep the order.
                q.push_all(batch, &self.shared.config);
                drop(q);
                self.shared.wake.notify_one();
                return Ok(());
            }
        }
        match self.shared.inner.apply(batch).await {
            Ok(()) => Ok(()),
            Err(Error::Fenced { term, current }) => {
                self.shared.lock().fence(term, current);
                Err(Error::Fenced { term, current })
            }
            Err(e) => {
                if e.is_unavailable() {
                    tracing::warn!(error = %e, writes = batch.len(), "store unreachable; buffering writes");
                } else {
                    tracing::error!(error = %e.detail(), writes = batch.len(), "store rejected writes; keeping them to retry");
                }
                let mut q = self.shared.lock();
                q.note_error(&e);
                q.push_all(batch, &self.shared.config);
                drop(q);
                self.shared.wake.notify_one();
                Ok(())
            }
        }
    }

    async fn list(&self, query: &RecordQuery) -> Result<Page> {
        self.shared.inner.list(query).await
    }

    async fn list_json(&self, query: &RecordQuery) -> Result<crate::JsonPage> {
        self.shared.inner.list_json(query).await
    }

    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>> {
        self.shared.inner.get(resource_id).await
    }

    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>> {
        self.shared.inner.history(resource_id).await
    }

    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        self.shared.inner.statistics(now).await
    }

    // The outbox is not buffered: its caller keeps what it could not queue and retries.

    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        self.shared.inner.outbox_push(entries).await
    }

    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        self.shared.inner.outbox_pending().await
    }

    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        self.shared.inner.outbox_remove(sink, keys).await
    }

    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        let term = self.shared.inner.claim_term(lease_term, holder).await?;
        let mut q = self.shared.lock();
        q.claimed = q.claimed.max(term);
        if q.fenced.take().is_some() {
            tracing::info!(term, "claimed the writer's term again; writes go through");
        }
        Ok(term)
    }

    // Analysis requests and run states are not buffered: the caller gets the error.

    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        self.shared.inner.request_run(run_id, requested_at).await
    }

    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.shared.inner.take_run_requests().await
    }

    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        self.shared.inner.put_run(run_id, json).await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        self.shared.inner.get_run(run_id).await
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is plain data updated in small steps; a poisoned lock still holds it whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn drain(shared: Arc<Shared>) {
    let config = shared.config.clone();
    let mut backoff = config.initial_backoff;
    loop {
        if shared.lock().entries.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        tokio::time::sleep(jittered(backoff)).await;
        loop {
            let taken = {
                let mut q = shared.lock();
                let taken = q.take(config.drain_chunk);
                q.in_flight = !taken.is_empty();
                taken
            };
            if taken.is_empty() {
                break;
            }
            let writes = to_writes(&taken);
            match shared.inner.apply(&writes).await {
                Err(Error::Fenced { term, current }) => {
                    // The taken writes are dropped with the rest of the queue.
                    let mut q = shared.lock();
                    q.in_flight = false;
                    q.fence(term, current);
                    backoff = config.initial_backoff;
                    break;
                }
                Ok(()) => {
                    let mut q = shared.lock();
                    q.in_flight = false;
                    q.rejected = 0;
                    if q.entries.is_empty() {
                        tracing::info!("store reachable again; buffered writes drained");
                        q.since = None;
                        q.last_error = None;
                    }
                    backoff = config.initial_backoff;
                }
                Err(e) if e.is_unavailable() => {
                    let mut q = shared.lock();
                    q.in_flight = false;
                    q.note_error(&e);
                    q.put_back(taken, &config);
                    tracing::debug!(error = %e, pending = q.entries.len(), "store still unreachable");
                    backoff = (backoff * 2).min(config.max_backoff);
                    break;
                }
                Err(e) => {
                    // Rejected: retry each resource alone so the others get through; whatever
                    // the store still rejects stays queued (a rotated password or a full disk
                    // is fixed by an operator, and the verdict must still land then).
                    let failed = match isolate(&shared, taken).await {
                        Ok(failed) => failed,
                        Err((term, current)) => {
                            let mut q = shared.lock();
                            q.in_flight = false;
                            q.fence(term, current);
                            backoff = config.initial_backoff;
                            break;
                        }
                    };
                    let mut q = shared.lock();
                    q.in_flight = false;
                    q.note_error(&e);
                    q.rejected = failed.len();
                    let rejected = failed.len();
                    if rejected > 0 {
                        q.put_back(failed, &config);
                        tracing::error!(error = %e.detail(), resources = rejected, pending = q.entries.len(), "store rejects writes; retrying them");
                        backoff = (backoff * 2).min(config.max_backoff);
                        break;
                    }
                }
            }
        }
    }
}

/// Applies each resource's writes on its own; returns the resources the store still refused,
/// or `Err((term, current))` when it fenced them (the rest are not tried).
async fn isolate(
    shared: &Shared,
    taken: Vec<(String, Entry)>,
) -> std::result::Result<Vec<(String, Entry)>, (u64, u64)> {
    let mut failed = Vec::new();
    for one in taken {
        let writes = to_writes(std::slice::from_ref(&one));
        match shared.inner.apply(&writes).await {
            Ok(()) => {}
            Err(Error::Fenced { term, current }) => return Err((term, current)),
            Err(_) => failed.push(one),
        }
    }
    Ok(failed)
}

fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

/// Each resource's episodes first (oldest first), then its verdict.
fn to_writes(taken: &[(String, Entry)]) -> Vec<Write> {
    let mut writes = Vec::new();
    for (resource_id, entry) in taken {
        for episode in entry.episodes.values() {
            writes.push(Write::Episode {
                resource_id: resource_id.clone(),
                episode: episode.clone(),
            });
        }
        match &entry.verdict {
            Some(Verdict::Upsert(record)) => writes.push(Write::Upsert {
                record: (**record).clone(),
                episode: None,
            }),
            Some(Verdict::Remove) => writes.push(Write::Remove {
                resource_id: resource_id.clone(),
                closing_episode: None,
            }),
            None => {}
        }
    }
    writes
}

// === impl Queue ===

impl Queue {
    /// The store refused a write at `term` because `current` was claimed: drop every queued
    /// write and refuse new ones — unless this replica has since claimed a newer term itself,
    /// in which case only the refused write is lost.
    fn fence(&mut self, term: u64, current: u64) {
        if term < self.claimed {
            tracing::warn!(
                term,
                claimed = self.claimed,
                "a write made before this replica's latest claim was refused; dropped it"
            );
            return;
        }
        let dropped = self.entries.len();
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
        self.rejected = 0;
        self.since = None;
        self.last_error = None;
        if self.fenced.is_none() {
            tracing::warn!(
                term,
                current,
                dropped,
                "another replica leads now; dropped this replica's queued writes and refuse \
                 its writes until it claims the term again"
            );
        }
        self.fenced = Some((term, current));
    }

    fn note_error(&mut self, e: &Error) {
        self.since.get_or_insert_with(Utc::now);
        self.last_error = Some(e.to_string());
    }

    fn push_all(&mut self, batch: &[Write], config: &BufferConfig) {
        for write in batch {
            self.push(write);
        }
        self.enforce_bound(config);
    }

    fn push(&mut self, write: &Write) {
        let id = write.resource_id().to_owned();
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = self.entries.entry(id.clone()).or_insert_with(|| Entry {
            seq,
            bytes: 0,
            verdict: None,
            episodes: BTreeMap::new(),
        });
        self.order.remove(&entry.seq);
        entry.seq = seq;
        self.order.insert(seq, id);
        match write {
            Write::Upsert { record, episode } => {
                entry.verdict = Some(Verdict::Upsert(Box::new(record.clone())));
                if let Some(e) = episode {
                    entry.episodes.insert(e.first_detected, e.clone());
                }
            }
            Write::Remove {
                closing_episode, ..
            } => {
                entry.verdict = Some(Verdict::Remove);
                if let Some(e) = closing_episode {
                    entry.episodes.insert(e.first_detected, e.clone());
                }
            }
            Write::Episode { episode, .. } => {
                entry
                    .episodes
                    .insert(episode.first_detected, episode.clone());
            }
        }
        let before = entry.bytes;
        entry.bytes = entry.size();
        self.bytes = self.bytes - before.min(self.bytes) + entry.bytes;
    }

    fn enforce_bound(&mut self, config: &BufferConfig) {
        while self.entries.len() > config.max_pending.max(1)
            || (self.bytes > config.max_pending_bytes && self.entries.len() > 1)
        {
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes -= entry.bytes.min(self.bytes);
            }
            self.dropped += 1;
            self.resync_needed = true;
            tracing::warn!(
                resource_id = %id,
                dropped = self.dropped,
                "store outage buffer full; dropped the oldest pending write (a full rewrite follows recovery)"
            );
        }
    }

    /// Removes up to `n` of the oldest entries.
    fn take(&mut self, n: usize) -> Vec<(String, Entry)> {
        let mut out = Vec::new();
        while out.len() < n.max(1) {
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes -= entry.bytes.min(self.bytes);
                out.push((id, entry));
            }
        }
        out
    }

    /// Returns entries whose write failed; newer writes queued meanwhile win.
    fn put_back(&mut self, taken: Vec<(String, Entry)>, config: &BufferConfig) {
        for (id, old) in taken {
            match self.entries.get_mut(&id) {
                Some(newer) => {
                    for (start, episode) in old.episodes {
                        newer.episodes.entry(start).or_insert(episode);
                    }
                    if newer.verdict.is_none() {
                        newer.verdict = old.verdict;
                    }
                    let before = newer.bytes;
                    newer.bytes = newer.size();
                    self.bytes = self.bytes - before.min(self.bytes) + newer.bytes;
                }
                None => {
                    self.bytes += old.bytes;
                    self.order.insert(old.seq, id.clone());
                    self.entries.insert(id, old);
                }
            }
        }
        self.enforce_bound(config);
    }
}

// === impl Entry ===

impl Entry {
    /// JSON size of what the entry holds (only computed while the store is failing).
    fn size(&self) -> usize {
        let verdict = match &self.verdict {
            Some(Verdict::Upsert(record)) => json_len(record.as_ref()),
            _ => 0,
        };
        verdict + self.episodes.values().map(json_len).sum::<usize>()
    }
}

/// Bytes of `value`'s JSON, counted without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising plain data into a counter cannot fail; a failure would only under-count.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftguard_core::{DriftStatus, ResourceKey};

    fn cap(max_pending: usize) -> BufferConfig {
        BufferConfig {
            max_pending,
            ..BufferConfig::default()
        }
    }

    fn record(name: &str) -> DriftRecord {
        let key = ResourceKey::new("", "ConfigMap", "ns", name);
        DriftRecord {
            id: key.record_uuid(),
            resource_id: key.resource_id(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            api_version: "v1".into(),
            drift_detected: false,
            drift_status: DriftStatus::None,
            drift_details: vec![],
            warnings: vec![],
            drift_type: None,
            severity: None,
            desired_state: None,
            live_state: None,
            last_known_good_hash: None,
            live_hash: None,
            git_commit: None,
            source_path: None,
            source_line: None,
            helm_release: None,
            managed: true,
            first_detected: None,
            resolved_at: None,
            resolution_message: None,
            last_updated: DateTime::<Utc>::UNIX_EPOCH,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn episode(minute: i64, resolved: bool) -> Episode {
        let start = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute);
        Episode {
            first_detected: start,
            resolved_at: resolved.then(|| start + chrono::Duration::minutes(1)),
            resolution_message: None,
            drift_type: None,
            severity: None,
            changes: vec![],
            git_commit: None,
        }
    }

    #[test]
    fn coalesces_per_resource_and_keeps_every_episode() {
        let mut q = Queue::default();
        q.push_all(
            &[Write::Upsert {
                record: record("a"),
                episode: Some(episode(1, false)),
            }],
            &cap(10),
        );
        q.push_all(
            &[Write::Upsert {
                record: record("a"),
                episode: Some(episode(1, true)),
            }],
            &cap(10),
        );
        q.push_all(
            &[Write::Upsert {
                record: record("a"),
                episode: Some(episode(5, false)),
            }],
            &cap(10),
        );
        assert_eq!(q.entries.len(), 1);
        let writes = to_writes(&q.take(10));
        assert_eq!(writes.len(), 3, "two episodes then the verdict");
        assert!(
            matches!(&writes[0], Write::Episode { episode, .. } if episode.resolved_at.is_some())
        );
        assert!(matches!(&writes[2], Write::Upsert { episode: None, .. }));
    }

    #[test]
    fn drops_the_oldest_past_the_bound() {
        let mut q = Queue::default();
        for name in ["a", "b", "c"] {
            q.push_all(
                &[Write::Upsert {
                    record: record(name),
                    episode: None,
                }],
                &cap(2),
            );
        }
        assert_eq!(q.entries.len(), 2);
        assert_eq!(q.dropped, 1);
        assert!(q.resync_needed);
        assert!(!q.entries.contains_key("ConfigMap:ns:a"));
    }

    #[test]
    fn put_back_lets_newer_writes_win() {
        let mut q = Queue::default();
        q.push_all(
            &[Write::Upsert {
                record: record("a"),
                episode: Some(episode(1, false)),
            }],
            &cap(10),
        );
        let taken = q.take(10);
        let mut newer = record("a");
        newer.api_version = "v2".into();
        q.push_all(
            &[Write::Upsert {
                record: newer,
                episode: None,
            }],
            &cap(10),
        );
        q.put_back(taken, &cap(10));
        let entry = &q.entries["ConfigMap:ns:a"];
        assert!(matches!(&entry.verdict, Some(Verdict::Upsert(r)) if r.api_version == "v2"));
        assert_eq!(entry.episodes.len(), 1, "the older episode is kept");
    }

    #[test]
    fn the_bound_counts_bytes_too() {
        let config = BufferConfig {
            max_pending: 1_000,
            max_pending_bytes: 50_000,
            ..BufferConfig::default()
        };
        let mut q = Queue::default();
        for i in 0..10 {
            let mut r = record(&format!("r{i}"));
            r.live_state = Some(serde_json::json!({ "blob": "x".repeat(10_000) }));
            q.push_all(
                &[Write::Upsert {
                    record: r,
                    episode: None,
                }],
                &config,
            );
        }
        assert!(q.bytes <= 50_000, "{}", q.bytes);
        assert_eq!(q.entries.len(), 4, "four 10 kB records fit in 50 kB");
        assert_eq!(q.dropped, 6);
        assert!(q.resync_needed);
        let taken = q.take(10);
        assert_eq!(q.bytes, 0, "taking releases the bytes");
        q.put_back(taken, &config);
        assert!(q.bytes > 40_000 && q.bytes <= 50_000, "{}", q.bytes);
    }
}

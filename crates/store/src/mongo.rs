//! The MongoDB store, for several replicas sharing state.
//!
//! Collections:
//!
//! - `drift_records` — the current view, `_id` = resource id; one field per filter plus the record
//!   as a JSON **string** (`record`): Kubernetes objects carry keys with `.` and `$`
//!   (`app.kubernetes.io/name`, ConfigMap keys) that MongoDB restricts in field names, and the
//!   string keeps the record byte-exact (nanosecond timestamps included).
//! - `drift_episodes` — history; `_id` = a UUIDv5 fingerprint of resource id + `first_detected`,
//!   so writing an episode twice is idempotent.
//! - `drift_departed` — resources that left the view (so their history stays addressable).
//! - `meta` — the installation key, inserted once and never overwritten.
//! - `outbox` — queued notifications; `_id` = a UUIDv5 fingerprint of sink + key (so queueing
//!   the same event twice keeps the first), with `sink`, `key`, the opaque `payload` string and
//!   `queued_at_ns` as fields.
//! - `leadership` — the writer's fence: one document `{_id: "writer", term, holder, since}`.
//! - `run_requests` — analysis requests from followers, `_id` = run id, `requested_at_ns`.
//! - `analysis_runs` — run states, `_id` = run id, the opaque `state` JSON string and
//!   `stored_at_ns` (the newest [`crate::MAX_RUNS`] are kept).
//!
//! **Bulk writes** (issue 20). One batch costs a constant number of round trips whatever its
//! size: the fence read (claimed handles only), then one `update` command of episode upserts,
//! one `delete` of orphaned open episodes, one `update` of record upserts, one `update` of
//! departed marks and one `delete` of removed records — each command split only where the
//! server's limits demand (100,000 statements, or 16 MiB: `run_command` sends one document, not
//! the 48 MB document sequences of the driver's own helpers). These are the classic write
//! commands every server version has; the driver's `Client::bulk_write` would need MongoDB 8.0.
//! Statements within a command touch distinct `_id`s (a batch's repeated writes of one document
//! are reduced to the last, which is what writing them in order leaves), so they run unordered.
//!
//! No multi-document transactions (a standalone `mongod` has none): the commands go episodes
//! first, records second, a removed record's departed mark before its deletion, each write
//! idempotent. A crash between them leaves at worst an episode the record does not know yet;
//! the next analysis rewrites the same episode (same fingerprint) or, when it opens another
//! one, removes the orphaned open episode.
//!
//! **Fencing** (issue 19). [`Store::claim_term`] raises the fence document's term by
//! compare-and-set, then raises the `term` field of every record and open episode to the new
//! term (one `update_many` each). A claimed handle's batch
//!
//! 1. reads the fence once and writes nothing when its term is above the handle's
//!    ([`Error::Fenced`]);
//! 2. writes every record and episode conditionally: an upsert filtered on
//!    `{_id, term: {$not: {$gt: mine}}}`, so a document a newer leader holds makes the upsert
//!    collide on `_id` (duplicate key → [`Error::Fenced`]); deletions carry the same condition.
//!
//! Documents carry the `term` they were written at (a field beside the record JSON, never in
//! it). The residual window: a writer paused between its fence read and its commands, while
//! another claims, can still write what the claim did not raise — *insert* documents that did
//! not exist at the claim (a new record, a new episode, a departed mark), rewrite an episode
//! closed before the claim — and its unordered command writes the other statements around a
//! collision (the commands after a failed one are not sent). It can no longer change or delete
//! a record or open episode that existed at the claim, nor a record or episode the new leader
//! wrote. Its orphaned open episode is removed by the new leader's next episode of that
//! resource, and a record it inserted is rewritten by the new leader's next full analysis. The
//! window is as long as the pause; SQLite has none (its check is inside the write transaction).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftType, Episode, Severity};
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, RawArrayBuf, RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use uuid::Uuid;

use crate::{
    Error, INSTALLATION_KEY_LEN, MAX_RUNS, OutboxEntry, Page, RecordQuery, Result, Statistics,
    Store, Write, change_types, duration_seconds, nanos,
};

/// Collection of current records.
pub const RECORDS: &str = "drift_records";
/// Collection of history episodes.
pub const EPISODES: &str = "drift_episodes";
/// Collection of resources that left the current view.
pub const DEPARTED: &str = "drift_departed";
/// Collection of installation metadata.
pub const META: &str = "meta";
/// Collection of queued notifications.
pub const OUTBOX: &str = "outbox";
/// Collection of the writer's fence (one document).
pub const LEADERSHIP: &str = "leadership";
/// Collection of queued analysis requests.
pub const RUN_REQUESTS: &str = "run_requests";
/// Collection of analysis run states.
pub const RUNS: &str = "analysis_runs";

/// Namespace of the episode fingerprints (fixed forever so `_id`s stay stable).
const EPISODE_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x8c, 0x41, 0x2e, 0x07, 0x5d, 0xa3, 0x4b, 0x19, 0x9f, 0x62, 0x0b, 0xe4, 0x71, 0xc8, 0x36, 0xd5,
]);
/// Namespace of the outbox fingerprints (fixed forever so `_id`s stay stable).
const OUTBOX_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x3f, 0x9a, 0x60, 0xd2, 0x1b, 0x7e, 0x4c, 0x85, 0xa4, 0x0d, 0x52, 0xe9, 0x16, 0xb3, 0x78, 0xca,
]);
const KEY_ID: &str = "installation_key";
/// `_id` of the fence document in `leadership`.
const FENCE_ID: &str = "writer";
/// Most statements in one write command (the server's `maxWriteBatchSize`).
const MAX_WRITE_BATCH: usize = 100_000;
/// Most bytes of statements in one write command: a command is one BSON document, at most
/// `maxBsonObjectSize` (16 MiB) plus the 16 KiB the server allows for the command's own fields.
const MAX_COMMAND_BYTES: usize = 16 * 1024 * 1024;
/// Compare-and-set attempts of a claim before giving up (each lost one means another claim won).
const CLAIM_ATTEMPTS: usize = 64;
/// Longest server message quoted in an error.
const MAX_QUOTED: usize = 300;

/// Drift records in a MongoDB database.
///
/// Clones share one handle: the same connection pool and the same claimed term.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    /// The term this handle claimed ([`Store::claim_term`]); 0 = never claimed, unfenced.
    term: Arc<AtomicU64>,
    /// The last `stored_at_ns` this handle gave a run (kept increasing within the handle).
    run_clock: Arc<AtomicI64>,
}

// === impl MongoStore ===

impl MongoStore {
    /// Connects to `uri`, database `dbname`, and creates the indexes. `timeout` bounds server
    /// selection and connecting, so an unreachable server fails fast with
    /// [`Error::Unavailable`].
    pub async fn connect(uri: &str, dbname: &str, timeout: Duration) -> Result<Self> {
        // The connection string may hold a password: never echo it, nor the parser's message.
        let mut options = ClientOptions::parse(uri).await.map_err(|e| {
            Error::Config(format!(
                "the MongoDB connection string is invalid ({})",
                kind_name(&e)
            ))
        })?;
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        Self::connect_with_options(options, dbname).await
    }

    /// Connects with `options` as given (timeouts included), database `dbname`, and creates the
    /// indexes. For tools and tests that need more than [`MongoStore::connect`] offers, such as
    /// a `command_event_handler` counting the commands sent.
    pub async fn connect_with_options(mut options: ClientOptions, dbname: &str) -> Result<Self> {
        options
            .app_name
            .get_or_insert_with(|| "driftguard".to_owned());
        let client = Client::with_options(options).map_err(mongo("connecting"))?;
        let store = Self {
            db: client.database(dbname),
            term: Arc::new(AtomicU64::new(0)),
            run_clock: Arc::new(AtomicI64::new(0)),
        };
        store.create_indexes().await?;
        Ok(store)
    }

    /// The `_id` of an episode in `drift_episodes`: a UUIDv5 of the resource id and
    /// `first_detected` (to the nanosecond), so rewriting an episode replaces it.
    pub fn episode_fingerprint(resource_id: &str, first_detected: DateTime<Utc>) -> String {
        episode_id(resource_id, first_detected)
    }

    /// The database, for tooling and tests that inspect stored documents.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_indexes(&self) -> Result<()> {
        let op = "creating indexes";
        let by = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        self.records()
            .create_indexes([
                by(doc! { "status": 1, "_id": 1 }, "status"),
                by(doc! { "namespace": 1, "_id": 1 }, "namespace"),
                by(doc! { "kind": 1, "_id": 1 }, "kind"),
                by(doc! { "severity": 1, "_id": 1 }, "severity"),
                by(doc! { "change_types": 1, "_id": 1 }, "change_types"),
                by(doc! { "last_updated_ns": 1 }, "last_updated"),
            ])
            .await
            .map_err(mongo(op))?;
        self.episodes()
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "resource_id": 1, "first_detected_ns": -1 })
                    .options(
                        IndexOptions::builder()
                            .name("resource_first_detected".to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build(),
                by(doc! { "resolved_at_ns": 1 }, "resolved_at"),
            ])
            .await
            .map_err(mongo(op))?;
        self.outbox()
            .create_indexes([by(
                doc! { "queued_at_ns": 1, "sink": 1, "key": 1 },
                "queued_at",
            )])
            .await
            .map_err(mongo(op))?;
        self.run_requests()
            .create_indexes([by(doc! { "requested_at_ns": 1, "_id": 1 }, "requested_at")])
            .await
            .map_err(mongo(op))?;
        self.runs()
            .create_indexes([by(doc! { "stored_at_ns": -1, "_id": -1 }, "stored_at")])
            .await
            .map_err(mongo(op))?;
        Ok(())
    }

    /// The `_id` of an outbox entry: a UUIDv5 of its sink and key.
    pub fn outbox_fingerprint(sink: &str, key: &str) -> String {
        outbox_id(sink, key)
    }

    fn records(&self) -> Collection<Document> {
        self.db.collection(RECORDS)
    }

    fn episodes(&self) -> Collection<Document> {
        self.db.collection(EPISODES)
    }

    fn departed(&self) -> Collection<Document> {
        self.db.collection(DEPARTED)
    }

    fn meta(&self) -> Collection<Document> {
        self.db.collection(META)
    }

    fn outbox(&self) -> Collection<Document> {
        self.db.collection(OUTBOX)
    }

    fn leadership(&self) -> Collection<Document> {
        self.db.collection(LEADERSHIP)
    }

    fn run_requests(&self) -> Collection<Document> {
        self.db.collection(RUN_REQUESTS)
    }

    fn runs(&self) -> Collection<Document> {
        self.db.collection(RUNS)
    }

    /// The fence's term (0 before any claim).
    async fn current_term(&self, op: &'static str) -> Result<u64> {
        Ok(self.read_fence(op).await?.unwrap_or(0))
    }

    /// The fence's term, `None` before any claim.
    async fn read_fence(&self, op: &'static str) -> Result<Option<u64>> {
        let Some(fence) = self
            .leadership()
            .find_one(doc! { "_id": FENCE_ID })
            .await
            .map_err(mongo(op))?
        else {
            return Ok(None);
        };
        match fence.get("term") {
            Some(Bson::Int64(t)) => Ok(Some(u64::try_from(*t).unwrap_or(0))),
            Some(Bson::Int32(t)) => Ok(Some(u64::try_from(*t).unwrap_or(0))),
            _ => Err(Error::corrupt(
                "the writer's fence",
                "its term is not an integer",
            )),
        }
    }

    /// `Err(Fenced)` when another handle claimed a term above `term`.
    async fn check_fence(&self, term: u64, op: &'static str) -> Result<()> {
        let current = self.current_term(op).await?;
        if current > term {
            return Err(Error::Fenced { term, current });
        }
        Ok(())
    }

    /// Raises the `term` of every record and open episode to `term` (never lowers one), so a
    /// stale writer's conditional write to any of them fails.
    async fn raise_terms(&self, term: i64) -> Result<()> {
        let op = "raising stored documents to the claimed term";
        let below = doc! { "$not": { "$gte": term } };
        self.records()
            .update_many(
                doc! { "term": below.clone() },
                doc! { "$max": { "term": term } },
            )
            .await
            .map_err(mongo(op))?;
        self.episodes()
            .update_many(
                doc! { "open": true, "term": below },
                doc! { "$max": { "term": term } },
            )
            .await
            .map_err(mongo(op))?;
        Ok(())
    }

    /// Sends `statements` as `update` or `delete` commands on `coll`, as few as the server's
    /// limits allow, unordered; returns the commands' summed `n`. A statement colliding on
    /// `_id` under a claimed `term` that another handle has overtaken is [`Error::Fenced`]; any
    /// other write error fails naming the collection and the first failing `_id`.
    async fn bulk(
        &self,
        op: &'static str,
        coll: &'static str,
        kind: Bulk,
        statements: Vec<Statement>,
        term: u64,
    ) -> Result<u64> {
        let mut n = 0;
        let mut statements = statements.into_iter().peekable();
        while statements.peek().is_some() {
            let mut list = RawArrayBuf::new();
            let mut ids = Vec::new();
            let mut bytes = 0;
            while let Some(next) = statements.peek() {
                let size = element_size(ids.len(), next.body.as_bytes().len());
                if !ids.is_empty()
                    && (ids.len() >= MAX_WRITE_BATCH || bytes + size > MAX_COMMAND_BYTES)
                {
                    break;
                }
                let Some(statement) = statements.next() else {
                    break;
                };
                bytes += size;
                ids.push(statement.id);
                list.push(statement.body);
            }
            let mut command = RawDocumentBuf::new();
            command.append(kind.command(), coll);
            command.append(kind.list(), list);
            command.append("ordered", false);
            let reply = self.db.run_raw_command(command).await.map_err(mongo(op))?;
            n += reply.get("n").map_or(0, as_u64);
            self.check_reply(op, coll, &reply, &ids, term).await?;
        }
        Ok(n)
    }

    /// Turns a write command's reported failures into an error.
    async fn check_reply(
        &self,
        op: &'static str,
        coll: &str,
        reply: &Document,
        ids: &[String],
        term: u64,
    ) -> Result<()> {
        if let Ok(concern) = reply.get_document("writeConcernError") {
            return Err(Error::backend(
                op,
                format!(
                    "collection {coll}: the write concern failed (code {}: {})",
                    concern.get("code").map_or(0, as_u64),
                    quoted(concern.get_str("errmsg").unwrap_or(""))
                ),
            ));
        }
        let Ok(errors) = reply.get_array("writeErrors") else {
            return Ok(());
        };
        let failures: Vec<(String, i64, String)> = errors
            .iter()
            .filter_map(Bson::as_document)
            .map(|e| {
                let index = e.get("index").map_or(u64::MAX, as_u64);
                let id = usize::try_from(index)
                    .ok()
                    .and_then(|i| ids.get(i))
                    .map_or_else(|| "?".to_owned(), Clone::clone);
                let code = e.get("code").map_or(-1, |c| {
                    c.as_i64().or(c.as_i32().map(i64::from)).unwrap_or(-1)
                });
                (id, code, quoted(e.get_str("errmsg").unwrap_or("")))
            })
            .collect();
        let Some((first_id, first_code, first_msg)) = failures.first() else {
            return Ok(());
        };
        if term > 0 && failures.iter().any(|(_, code, _)| *code == DUPLICATE_KEY) {
            // A document a newer leader holds: our conditional upsert fell through to an insert.
            self.check_fence(term, op).await?;
        }
        Err(Error::backend(
            op,
            format!(
                "collection {coll}: the write of _id {first_id} failed (code {first_code}: \
                 {first_msg}); {} of {} statements failed",
                failures.len(),
                ids.len()
            ),
        ))
    }

    /// After deleting removed records under `term`: when fewer were deleted than asked, were
    /// some kept because a newer leader holds them?
    async fn check_removals(&self, term: u64, removed: &[String]) -> Result<()> {
        let op = "removing records";
        let held = self
            .records()
            .count_documents(doc! {
                "_id": { "$in": removed },
                "term": { "$gt": term_i64(term)? },
            })
            .await
            .map_err(mongo(op))?;
        if held > 0 {
            self.check_fence(term, op).await?;
        }
        Ok(())
    }

    async fn count(&self, coll: Collection<Document>, filter: Document) -> Result<u64> {
        coll.count_documents(filter)
            .await
            .map_err(mongo("computing statistics"))
    }

    async fn grouped(
        &self,
        coll: Collection<Document>,
        pipeline: Vec<Document>,
    ) -> Result<Vec<(String, Bson)>> {
        let op = "computing statistics";
        let mut cursor = coll.aggregate(pipeline).await.map_err(mongo(op))?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            if let (Some(Bson::String(key)), Some(value)) = (doc.get("_id"), doc.get("v")) {
                out.push((key.clone(), value.clone()));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(mongo("pinging"))
    }

    async fn installation_key(&self) -> Result<Vec<u8>> {
        let op = "reading the installation key";
        if let Some(key) = self.read_key().await? {
            return Ok(key);
        }
        let fresh: [u8; INSTALLATION_KEY_LEN] = rand::random();
        let insert = self
            .meta()
            .update_one(
                doc! { "_id": KEY_ID },
                doc! { "$setOnInsert": { "value": Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: fresh.to_vec(),
                } } },
            )
            .upsert(true)
            .await;
        match insert {
            Ok(_) => {}
            // Another replica inserted it first: theirs is the key.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(mongo(op)(e)),
        }
        self.read_key().await?.ok_or_else(|| {
            Error::corrupt("the installation key", "missing right after it was written")
        })
    }

    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        let op = "loading the current view";
        let mut cursor = self
            .records()
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .projection(doc! { "record": 1 })
            .await
            .map_err(mongo(op))?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            // A corrupt document is reported and skipped (see `skip_corrupt`).
            match decode_record(&doc) {
                Ok(record) => out.push(record),
                Err(e) => crate::skip_corrupt(doc.get_str("_id").unwrap_or("?"), &e),
            }
        }
        Ok(out)
    }

    async fn apply(&self, batch: &[Write]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let term = self.term.load(Ordering::SeqCst);
        let plan = Plan::of(batch, term_i64(term)?)?;
        if term > 0 {
            self.check_fence(term, "checking the writer's term").await?;
        }
        // Episodes before records, a departed mark before its record's deletion (module docs).
        self.bulk(
            "writing episodes",
            EPISODES,
            Bulk::Update,
            plan.episodes,
            term,
        )
        .await?;
        self.bulk(
            "removing orphaned open episodes",
            EPISODES,
            Bulk::Delete,
            plan.orphans,
            term,
        )
        .await?;
        self.bulk("writing records", RECORDS, Bulk::Update, plan.records, term)
            .await?;
        self.bulk(
            "marking resources departed",
            DEPARTED,
            Bulk::Update,
            plan.departed,
            term,
        )
        .await?;
        let asked = plan.removals.len();
        let removed = self
            .bulk(
                "removing records",
                RECORDS,
                Bulk::Delete,
                plan.removals,
                term,
            )
            .await?;
        if term > 0 && removed < asked as u64 {
            self.check_removals(term, &plan.removed_ids).await?;
        }
        Ok(())
    }

    async fn list(&self, query: &RecordQuery) -> Result<Page> {
        let op = "listing records";
        let mut filter = filter_of(query);
        let total = self
            .records()
            .count_documents(filter.clone())
            .await
            .map_err(mongo(op))?;
        // `after` pages, it does not filter: the total above counts without it. `_id` is the
        // resource id, so its index answers the range and the sort.
        if let Some(after) = &query.after {
            filter.insert("_id", doc! { "$gt": after });
        }
        if query.limit == 0 {
            // MongoDB reads a limit of 0 as "no limit".
            return Ok(Page {
                total,
                records: Vec::new(),
            });
        }
        let mut cursor = self
            .records()
            .find(filter)
            .sort(doc! { "_id": 1 })
            .skip(query.offset)
            .limit(i64::from(query.limit))
            .projection(doc! { "record": 1 })
            .await
            .map_err(mongo(op))?;
        let mut records = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            records.push(decode_record(&doc)?);
        }
        Ok(Page { total, records })
    }

    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>> {
        self.records()
            .find_one(doc! { "_id": resource_id })
            .await
            .map_err(mongo("reading a record"))?
            .map(|doc| decode_record(&doc))
            .transpose()
    }

    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>> {
        let op = "reading history";
        let mut cursor = self
            .episodes()
            .find(doc! { "resource_id": resource_id })
            .sort(doc! { "first_detected_ns": -1 })
            .await
            .map_err(mongo(op))?;
        let mut episodes = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            let json = doc.get_str("episode").map_err(|e| {
                Error::corrupt(format!("an episode of {resource_id}"), e.to_string())
            })?;
            episodes.push(
                serde_json::from_str::<Episode>(json)
                    .map_err(|e| Error::corrupt(format!("an episode of {resource_id}"), e))?,
            );
        }
        if !episodes.is_empty() {
            return Ok(Some(episodes));
        }
        let known = self
            .records()
            .count_documents(doc! { "_id": resource_id })
            .await
            .map_err(mongo(op))?
            + self
                .departed()
                .count_documents(doc! { "_id": resource_id })
                .await
                .map_err(mongo(op))?;
        Ok((known > 0).then(Vec::new))
    }

    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        let day_ago = nanos(now - chrono::Duration::hours(24));
        let now_ns = nanos(now);
        let mut stats = Statistics::default();
        let count_by = |field: &str, only_active: bool| {
            let mut pipeline = Vec::new();
            if only_active {
                pipeline.push(doc! { "$match": { "status": "active", field: { "$ne": null } } });
            }
            pipeline.push(doc! { "$group": { "_id": format!("${field}"), "v": { "$sum": 1 } } });
            pipeline
        };
        for (status, n) in self
            .grouped(self.records(), count_by("status", false))
            .await?
        {
            stats.add_status_count(&status, as_u64(&n))?;
        }
        stats.recent_active_drift = self
            .count(
                self.records(),
                doc! { "status": "active", "first_detected_ns": { "$gte": day_ago, "$lte": now_ns } },
            )
            .await?;
        stats.recent_resolutions = self
            .count(
                self.episodes(),
                doc! { "resolved_at_ns": { "$gte": day_ago, "$lte": now_ns } },
            )
            .await?;
        for (t, n) in self
            .grouped(self.records(), count_by("drift_type", true))
            .await?
        {
            stats.by_type.insert(t, as_u64(&n));
        }
        for (s, n) in self
            .grouped(self.records(), count_by("severity", true))
            .await?
        {
            stats.by_severity.insert(s, as_u64(&n));
        }
        for field in ["drift_type", "severity"] {
            let pipeline = vec![
                doc! { "$match": { "open": false, field: { "$ne": null } } },
                doc! { "$group": { "_id": format!("${field}"), "v": { "$avg": "$duration_seconds" } } },
            ];
            for (key, mean) in self.grouped(self.episodes(), pipeline).await? {
                if let Some(mean) = as_f64(&mean) {
                    stats.mttr_seconds.insert(key, mean);
                }
            }
        }
        Ok(stats.with_percentages())
    }

    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let docs = entries.iter().map(outbox_doc);
        match self.outbox().insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            // Entries already queued stay as they are; every other entry was inserted.
            Err(e) if only_duplicate_keys(&e) => Ok(()),
            Err(e) => Err(mongo("queueing notifications")(e)),
        }
    }

    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        let op = "reading the outbox";
        let mut cursor = self
            .outbox()
            .find(doc! {})
            .sort(doc! { "queued_at_ns": 1, "sink": 1, "key": 1 })
            .await
            .map_err(mongo(op))?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            out.push(decode_outbox(&doc)?);
        }
        // The server sorts strings by their bytes like Rust does; sorting again here keeps the
        // order exact whatever the server's collation.
        out.sort_by(|a, b| (a.queued_at, &a.sink, &a.key).cmp(&(b.queued_at, &b.sink, &b.key)));
        Ok(out)
    }

    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = keys.iter().map(|k| outbox_id(sink, k)).collect();
        self.outbox()
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map(|_| ())
            .map_err(mongo("removing notifications"))
    }

    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        let op = "claiming the writer's term";
        for _ in 0..CLAIM_ATTEMPTS {
            let stored = self.read_fence(op).await?;
            let term = stored.unwrap_or(0).saturating_add(1).max(lease_term);
            let fields = doc! {
                "term": term_i64(term)?,
                "holder": holder,
                "since": mongodb::bson::DateTime::now(),
            };
            // Compare-and-set on the term read above: a lost race reads again.
            let won = match stored {
                None => {
                    let mut fence = doc! { "_id": FENCE_ID };
                    fence.extend(fields);
                    match self.leadership().insert_one(fence).await {
                        Ok(_) => true,
                        Err(e) if is_duplicate_key(&e) => false,
                        Err(e) => return Err(mongo(op)(e)),
                    }
                }
                Some(old) => {
                    self.leadership()
                        .update_one(
                            doc! { "_id": FENCE_ID, "term": term_i64(old)? },
                            doc! { "$set": fields },
                        )
                        .await
                        .map_err(mongo(op))?
                        .matched_count
                        == 1
                }
            };
            if won {
                self.raise_terms(term_i64(term)?).await?;
                self.term.store(term, Ordering::SeqCst);
                return Ok(term);
            }
        }
        Err(Error::backend(
            op,
            format!("other claims won the compare-and-set {CLAIM_ATTEMPTS} times in a row"),
        ))
    }

    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        let op = "queueing an analysis request";
        let queued = self
            .run_requests()
            .update_one(
                doc! { "_id": run_id },
                doc! { "$setOnInsert": { "requested_at_ns": nanos(requested_at) } },
            )
            .upsert(true)
            .await;
        match queued {
            Ok(_) => Ok(()),
            // The same request queued at the same moment by another call: the first one stays.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(mongo(op)(e)),
        }
    }

    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let op = "taking analysis requests";
        let mut cursor = self
            .run_requests()
            .find(doc! {})
            .sort(doc! { "requested_at_ns": 1, "_id": 1 })
            .await
            .map_err(mongo(op))?;
        let mut taken = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            let id = doc
                .get_str("_id")
                .map_err(|e| Error::corrupt("an analysis request", e.to_string()))?
                .to_owned();
            let at = doc
                .get_i64("requested_at_ns")
                .map_err(|e| Error::corrupt(format!("analysis request {id}"), e.to_string()))?;
            taken.push((id, DateTime::from_timestamp_nanos(at)));
        }
        if taken.is_empty() {
            return Ok(taken);
        }
        // Only what was read: a request queued meanwhile stays for the next call.
        let ids: Vec<&str> = taken.iter().map(|(id, _)| id.as_str()).collect();
        self.run_requests()
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(mongo(op))?;
        // The server sorts strings by their bytes like Rust does; sorting again here keeps the
        // order exact whatever the server's collation.
        taken.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Ok(taken)
    }

    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        let op = "storing an analysis run";
        let now = nanos(Utc::now());
        // Increasing within this handle even when the clock does not move between two calls.
        let last = self
            .run_clock
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(now);
        let run = doc! {
            "_id": run_id,
            "state": json,
            "stored_at_ns": now.max(last.saturating_add(1)),
        };
        let mut inserted = false;
        for attempt in 0..2 {
            match self
                .runs()
                .replace_one(doc! { "_id": run_id }, run.clone())
                .upsert(true)
                .await
            {
                Ok(r) => {
                    inserted = r.upserted_id.is_some();
                    break;
                }
                // Two first writes of one run raced; the second attempt replaces.
                Err(e) if attempt == 0 && is_duplicate_key(&e) => {}
                Err(e) => return Err(mongo(op)(e)),
            }
        }
        if !inserted {
            return Ok(());
        }
        let mut cursor = self
            .runs()
            .find(doc! {})
            .sort(doc! { "stored_at_ns": -1, "_id": -1 })
            .skip(MAX_RUNS as u64)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(mongo(op))?;
        let mut old = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(mongo(op))? {
            if let Some(id) = doc.get("_id") {
                old.push(id.clone());
            }
        }
        if !old.is_empty() {
            self.runs()
                .delete_many(doc! { "_id": { "$in": old } })
                .await
                .map_err(mongo(op))?;
        }
        Ok(())
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        let op = "reading an analysis run";
        let Some(doc) = self
            .runs()
            .find_one(doc! { "_id": run_id })
            .projection(doc! { "state": 1 })
            .await
            .map_err(mongo(op))?
        else {
            return Ok(None);
        };
        doc.get_str("state")
            .map(|s| Some(s.to_owned()))
            .map_err(|e| Error::corrupt(format!("analysis run {run_id}"), e.to_string()))
    }
}

impl MongoStore {
    async fn read_key(&self) -> Result<Option<Vec<u8>>> {
        let Some(doc) = self
            .meta()
            .find_one(doc! { "_id": KEY_ID })
            .await
            .map_err(mongo("reading the installation key"))?
        else {
            return Ok(None);
        };
        match doc.get("value") {
            Some(Bson::Binary(b)) if b.bytes.len() == INSTALLATION_KEY_LEN => {
                Ok(Some(b.bytes.clone()))
            }
            _ => Err(Error::corrupt(
                "the installation key",
                "not 32 bytes of binary data",
            )),
        }
    }
}

/// The server's duplicate-key error code.
const DUPLICATE_KEY: i64 = 11000;

/// One statement of a write command and the `_id` it is about (for error messages).
struct Statement {
    id: String,
    body: RawDocumentBuf,
}

/// The write commands a batch uses.
#[derive(Clone, Copy)]
enum Bulk {
    Update,
    Delete,
}

impl Bulk {
    fn command(self) -> &'static str {
        match self {
            Bulk::Update => "update",
            Bulk::Delete => "delete",
        }
    }

    fn list(self) -> &'static str {
        match self {
            Bulk::Update => "updates",
            Bulk::Delete => "deletes",
        }
    }
}

/// One batch as the statements of its write commands.
struct Plan {
    /// Episode upserts, one per episode `_id`.
    episodes: Vec<Statement>,
    /// Per resource that wrote an open episode: delete its other open episodes.
    orphans: Vec<Statement>,
    /// Record upserts, one per resource whose last verdict in the batch is an upsert.
    records: Vec<Statement>,
    /// Departed marks, one per resource removed in the batch.
    departed: Vec<Statement>,
    /// Record deletions, one per resource whose last verdict in the batch is a removal.
    removals: Vec<Statement>,
    /// The resource ids of `removals`.
    removed_ids: Vec<String>,
}

/// What writing a batch in order leaves behind, per document (the last write of each).
#[derive(Default)]
struct Reduced<'a> {
    episodes: Vec<(String, &'a str, &'a Episode)>,
    episode_slot: HashMap<String, usize>,
    /// Per resource, the open episode its last open-episode write keeps (the others go).
    keep_open: Vec<(&'a str, String)>,
    open_slot: HashMap<&'a str, usize>,
    /// Per resource, its last verdict: the record, or `None` for a removal.
    verdicts: Vec<(&'a str, Option<&'a DriftRecord>)>,
    verdict_slot: HashMap<&'a str, usize>,
    departed: Vec<&'a str>,
    departed_seen: HashSet<&'a str>,
}

impl<'a> Reduced<'a> {
    fn of(batch: &'a [Write]) -> Self {
        let mut r = Self::default();
        for write in batch {
            match write {
                Write::Upsert { record, episode } => {
                    if let Some(episode) = episode {
                        r.episode(&record.resource_id, episode);
                    }
                    r.verdict(&record.resource_id, Some(record));
                }
                Write::Remove {
                    resource_id,
                    closing_episode,
                } => {
                    if let Some(episode) = closing_episode {
                        r.episode(resource_id, episode);
                    }
                    if r.departed_seen.insert(resource_id) {
                        r.departed.push(resource_id);
                    }
                    r.verdict(resource_id, None);
                }
                Write::Episode {
                    resource_id,
                    episode,
                } => r.episode(resource_id, episode),
            }
        }
        r
    }

    fn episode(&mut self, resource_id: &'a str, episode: &'a Episode) {
        let id = episode_id(resource_id, episode.first_detected);
        if episode.resolved_at.is_none() {
            match self.open_slot.get(resource_id) {
                Some(&i) => self.keep_open[i].1 = id.clone(),
                None => {
                    self.open_slot.insert(resource_id, self.keep_open.len());
                    self.keep_open.push((resource_id, id.clone()));
                }
            }
        }
        match self.episode_slot.get(&id) {
            Some(&i) => self.episodes[i] = (id, resource_id, episode),
            None => {
                self.episode_slot.insert(id.clone(), self.episodes.len());
                self.episodes.push((id, resource_id, episode));
            }
        }
    }

    fn verdict(&mut self, resource_id: &'a str, record: Option<&'a DriftRecord>) {
        match self.verdict_slot.get(resource_id) {
            Some(&i) => self.verdicts[i].1 = record,
            None => {
                self.verdict_slot.insert(resource_id, self.verdicts.len());
                self.verdicts.push((resource_id, record));
            }
        }
    }
}

impl Plan {
    /// The statements of `batch` written at `term` (0: unfenced, documents carry no term).
    fn of(batch: &[Write], term: i64) -> Result<Plan> {
        let reduced = Reduced::of(batch);
        let mut plan = Plan {
            episodes: Vec::with_capacity(reduced.episodes.len()),
            orphans: Vec::with_capacity(reduced.keep_open.len()),
            records: Vec::with_capacity(reduced.verdicts.len()),
            departed: Vec::with_capacity(reduced.departed.len()),
            removals: Vec::new(),
            removed_ids: Vec::new(),
        };
        for (id, resource_id, episode) in &reduced.episodes {
            let statement = doc! {
                "q": fenced(doc! { "_id": id }, term),
                "u": with_term(episode_doc(id, resource_id, episode)?, term),
                "upsert": true,
            };
            plan.episodes.push(Statement::new(id, &statement)?);
        }
        // Only one episode of a resource can be open. Another open one is the leftover of a
        // crash between an episode write and its record write: the record never showed it.
        for (resource_id, keep) in &reduced.keep_open {
            let statement = doc! {
                "q": fenced(
                    doc! { "resource_id": *resource_id, "open": true, "_id": { "$ne": keep } },
                    term,
                ),
                "limit": 0,
            };
            plan.orphans.push(Statement::new(resource_id, &statement)?);
        }
        for (resource_id, verdict) in &reduced.verdicts {
            match verdict {
                Some(record) => {
                    let statement = doc! {
                        "q": fenced(doc! { "_id": *resource_id }, term),
                        "u": with_term(record_doc(record)?, term),
                        "upsert": true,
                    };
                    plan.records.push(Statement::new(resource_id, &statement)?);
                }
                None => {
                    let statement = doc! {
                        "q": fenced(doc! { "_id": *resource_id }, term),
                        "limit": 1,
                    };
                    plan.removals.push(Statement::new(resource_id, &statement)?);
                    plan.removed_ids.push((*resource_id).to_owned());
                }
            }
        }
        let left_at = nanos(Utc::now());
        for resource_id in &reduced.departed {
            let statement = doc! {
                "q": { "_id": *resource_id },
                "u": { "$set": { "left_at_ns": left_at } },
                "upsert": true,
            };
            plan.departed.push(Statement::new(resource_id, &statement)?);
        }
        Ok(plan)
    }
}

impl Statement {
    fn new(id: &str, statement: &Document) -> Result<Self> {
        Ok(Self {
            id: id.to_owned(),
            body: RawDocumentBuf::from_document(statement).map_err(|e| Error::Backend {
                operation: "encoding a batch",
                source: Box::new(e),
            })?,
        })
    }
}

/// `filter` limited to documents no newer writer holds: their `term` is at most `term` (or
/// absent). Unchanged for an unfenced handle (`term` 0).
fn fenced(mut filter: Document, term: i64) -> Document {
    if term > 0 {
        filter.insert("term", doc! { "$not": { "$gt": term } });
    }
    filter
}

/// `document` marked with the `term` it is written at (not for an unfenced handle).
fn with_term(mut document: Document, term: i64) -> Document {
    if term > 0 {
        document.insert("term", term);
    }
    document
}

/// A term as MongoDB stores it.
fn term_i64(term: u64) -> Result<i64> {
    i64::try_from(term).map_err(|_| {
        Error::Config(format!(
            "the writer's term {term} does not fit the store (at most {})",
            i64::MAX
        ))
    })
}

/// Bytes statement number `index` of `len` bytes adds to a command's array.
fn element_size(index: usize, len: usize) -> usize {
    // Type byte, the decimal index as the key, its terminating NUL, the document.
    let digits = index.checked_ilog10().map_or(1, |d| d as usize + 1);
    1 + digits + 1 + len
}

/// A server message cut to [`MAX_QUOTED`] bytes (on a character boundary).
fn quoted(message: &str) -> String {
    if message.len() <= MAX_QUOTED {
        return message.to_owned();
    }
    let mut end = MAX_QUOTED;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

fn episode_id(resource_id: &str, first_detected: DateTime<Utc>) -> String {
    let text = format!("{resource_id}\n{}", nanos(first_detected));
    Uuid::new_v5(&EPISODE_ID_NAMESPACE, text.as_bytes()).to_string()
}

fn outbox_id(sink: &str, key: &str) -> String {
    // Length-prefixed, so no (sink, key) pair spells the same text as another.
    let text = format!("{}\n{sink}\n{key}", sink.len());
    Uuid::new_v5(&OUTBOX_ID_NAMESPACE, text.as_bytes()).to_string()
}

fn outbox_doc(entry: &OutboxEntry) -> Document {
    doc! {
        "_id": outbox_id(&entry.sink, &entry.key),
        "sink": &entry.sink,
        "key": &entry.key,
        "payload": &entry.payload,
        "queued_at_ns": nanos(entry.queued_at),
    }
}

fn decode_outbox(doc: &Document) -> Result<OutboxEntry> {
    let id = doc.get_str("_id").unwrap_or("?");
    let corrupt = |e: mongodb::bson::document::ValueAccessError| {
        Error::corrupt(format!("outbox entry {id}"), e.to_string())
    };
    Ok(OutboxEntry {
        sink: doc.get_str("sink").map_err(corrupt)?.to_owned(),
        key: doc.get_str("key").map_err(corrupt)?.to_owned(),
        payload: doc.get_str("payload").map_err(corrupt)?.to_owned(),
        queued_at: DateTime::from_timestamp_nanos(doc.get_i64("queued_at_ns").map_err(corrupt)?),
    })
}

fn record_doc(record: &DriftRecord) -> Result<Document> {
    let json = crate::fit::encode_record(record, crate::fit::MAX_DOCUMENT_JSON)?;
    Ok(doc! {
        "_id": &record.resource_id,
        "namespace": &record.namespace,
        "kind": &record.kind,
        "name": &record.name,
        "status": record.drift_status.as_str(),
        "drift_detected": record.drift_detected,
        "drift_type": record.drift_type.map(DriftType::as_str),
        "severity": record.severity.map(Severity::as_str),
        "change_types": change_types(record),
        "first_detected_ns": record.first_detected.map(nanos),
        "last_updated_ns": nanos(record.last_updated),
        "last_updated": mongodb::bson::DateTime::from_millis(record.last_updated.timestamp_millis()),
        "record": json,
    })
}

fn episode_doc(id: &str, resource_id: &str, episode: &Episode) -> Result<Document> {
    let json = crate::fit::encode_episode(episode, crate::fit::MAX_DOCUMENT_JSON)?;
    Ok(doc! {
        "_id": id,
        "resource_id": resource_id,
        "first_detected_ns": nanos(episode.first_detected),
        "resolved_at_ns": episode.resolved_at.map(nanos),
        "open": episode.resolved_at.is_none(),
        "drift_type": episode.drift_type.map(DriftType::as_str),
        "severity": episode.severity.map(Severity::as_str),
        "duration_seconds": duration_seconds(episode),
        "episode": json,
    })
}

fn filter_of(q: &RecordQuery) -> Document {
    let mut filter = Document::new();
    if let Some(ns) = &q.namespace {
        filter.insert("namespace", ns);
    }
    if let Some(kind) = &q.kind {
        filter.insert("kind", kind);
    }
    if let Some(detected) = q.drift_detected {
        filter.insert("drift_detected", detected);
    }
    if let Some(status) = q.status {
        filter.insert("status", status.as_str());
    }
    if let Some(severity) = q.severity {
        filter.insert("severity", severity.as_str());
    }
    if let Some(t) = q.drift_type {
        filter.insert("change_types", t.as_str());
    }
    if let Some(since) = q.since {
        filter.insert("last_updated_ns", doc! { "$gte": nanos(since) });
    }
    filter
}

fn decode_record(doc: &Document) -> Result<DriftRecord> {
    let id = doc.get_str("_id").unwrap_or("?");
    let json = doc
        .get_str("record")
        .map_err(|e| Error::corrupt(format!("record {id}"), e.to_string()))?;
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("record {id}"), e))
}

fn as_u64(value: &Bson) -> u64 {
    match value {
        Bson::Int32(n) => u64::try_from(*n).unwrap_or(0),
        Bson::Int64(n) => u64::try_from(*n).unwrap_or(0),
        Bson::Double(n) if *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

fn as_f64(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(n) => Some(*n),
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        _ => None,
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// An unordered insert that failed only because some documents were already there: the others
/// were inserted.
fn only_duplicate_keys(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.code == 11000))
        }
        _ => is_duplicate_key(e),
    }
}

fn kind_name(e: &mongodb::error::Error) -> &'static str {
    match e.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } => "invalid argument",
        ErrorKind::DnsResolve { .. } => "DNS lookup failed",
        _ => "unreadable",
    }
}

/// Maps a driver error: network, pool, server-selection and shutdown errors mean "unavailable".
fn mongo(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> Error {
    move |e| {
        let unavailable = matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::DnsResolve { .. }
                | ErrorKind::Shutdown
        ) || e.contains_label("RetryableWriteError");
        if unavailable {
            Error::Unavailable {
                operation,
                source: Box::new(e),
            }
        } else {
            Error::Backend {
                operation,
                source: Box::new(e),
            }
        }
    }
}

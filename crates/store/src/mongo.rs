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
//!
//! No multi-document transactions (a standalone `mongod` has none): within a batch each
//! resource's writes go episode first, record second, each idempotent. A crash between them
//! leaves at worst an episode the record does not know yet; the next analysis rewrites the same
//! episode (same fingerprint) or, when it opens another one, removes the orphaned open episode.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftType, Episode, Severity};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use uuid::Uuid;

use crate::{
    Error, INSTALLATION_KEY_LEN, OutboxEntry, Page, RecordQuery, Result, Statistics, Store, Write,
    change_types, duration_seconds, nanos,
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

/// Namespace of the episode fingerprints (fixed forever so `_id`s stay stable).
const EPISODE_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x8c, 0x41, 0x2e, 0x07, 0x5d, 0xa3, 0x4b, 0x19, 0x9f, 0x62, 0x0b, 0xe4, 0x71, 0xc8, 0x36, 0xd5,
]);
/// Namespace of the outbox fingerprints (fixed forever so `_id`s stay stable).
const OUTBOX_ID_NAMESPACE: Uuid = Uuid::from_bytes([
    0x3f, 0x9a, 0x60, 0xd2, 0x1b, 0x7e, 0x4c, 0x85, 0xa4, 0x0d, 0x52, 0xe9, 0x16, 0xb3, 0x78, 0xca,
]);
const KEY_ID: &str = "installation_key";
/// Resources written concurrently within one batch (writes of one resource stay in order).
const WRITE_CONCURRENCY: usize = 16;

/// Drift records in a MongoDB database.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
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
        options
            .app_name
            .get_or_insert_with(|| "driftguard".to_owned());
        let client = Client::with_options(options).map_err(mongo("connecting"))?;
        let store = Self {
            db: client.database(dbname),
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

    /// The writes of one resource, in order.
    async fn apply_one(&self, batch: &[Write], indices: Vec<usize>) -> Result<()> {
        for write in indices.into_iter().filter_map(|i| batch.get(i)) {
            match write {
                Write::Upsert { record, episode } => {
                    if let Some(episode) = episode {
                        self.put_episode(&record.resource_id, episode).await?;
                    }
                    self.records()
                        .replace_one(doc! { "_id": &record.resource_id }, record_doc(record)?)
                        .upsert(true)
                        .await
                        .map_err(mongo("writing a record"))?;
                }
                Write::Remove {
                    resource_id,
                    closing_episode,
                } => {
                    if let Some(episode) = closing_episode {
                        self.put_episode(resource_id, episode).await?;
                    }
                    self.departed()
                        .update_one(
                            doc! { "_id": resource_id },
                            doc! { "$set": { "left_at_ns": nanos(Utc::now()) } },
                        )
                        .upsert(true)
                        .await
                        .map_err(mongo("marking a resource departed"))?;
                    self.records()
                        .delete_one(doc! { "_id": resource_id })
                        .await
                        .map_err(mongo("removing a record"))?;
                }
                Write::Episode {
                    resource_id,
                    episode,
                } => self.put_episode(resource_id, episode).await?,
            }
        }
        Ok(())
    }

    async fn put_episode(&self, resource_id: &str, episode: &Episode) -> Result<()> {
        let op = "writing an episode";
        let id = episode_id(resource_id, episode.first_detected);
        self.episodes()
            .replace_one(doc! { "_id": &id }, episode_doc(&id, resource_id, episode)?)
            .upsert(true)
            .await
            .map_err(mongo(op))?;
        if episode.resolved_at.is_none() {
            // Only one episode of a resource can be open. Another open one is the leftover of a
            // crash between an episode write and its record write: the record never showed it.
            self.episodes()
                .delete_many(doc! {
                    "resource_id": resource_id,
                    "open": true,
                    "_id": { "$ne": &id },
                })
                .await
                .map_err(mongo(op))?;
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
        // Group by resource, keeping each resource's writes in batch order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut slots: std::collections::HashMap<&str, usize> = Default::default();
        for (i, write) in batch.iter().enumerate() {
            let slot = *slots.entry(write.resource_id()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[slot].push(i);
        }
        futures::stream::iter(groups)
            .map(|group| self.apply_one(batch, group))
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
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

//! The embedded SQLite store (the default).
//!
//! One file in WAL mode with `synchronous=NORMAL`: a crash (even `kill -9`) loses at most the
//! last transactions, never consistency. Each analysis batch is one transaction, so a record and
//! its history entry never disagree. Blocking calls run on tokio's blocking pool; a writer and a
//! reader connection let API reads proceed while an analysis writes.
//!
//! Schema (versioned with `PRAGMA user_version`, each applied migration logged in
//! `schema_version`): `records` (one row per resource of the current view, a column per filter
//! plus the record JSON), `record_change_types` (for the `type` filter), `episodes` (history,
//! keyed by resource and start), `departed` (resources that left the view), `meta` (the
//! installation key), `outbox` (queued notifications, keyed by sink and idempotency key),
//! `fence` (the writer's term, one row), `run_requests` (analysis requests from followers) and
//! `runs` (analysis run states, the newest [`crate::MAX_RUNS`]).
//!
//! **Fencing** (issue 19) is exact here: a handle that claimed a term reads the fence inside
//! each batch's `IMMEDIATE` transaction, which holds the write lock, so no claim can slip in
//! between the check and the writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftType, Episode, Severity};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{
    Error, INSTALLATION_KEY_LEN, MAX_RUNS, OutboxEntry, Page, RecordQuery, Result, Statistics,
    Store, Write, change_types, duration_seconds, nanos,
};

/// Schema migrations, in order; `user_version` = how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE records (
    resource_id       TEXT PRIMARY KEY,
    namespace         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    drift_detected    INTEGER NOT NULL,
    drift_type        TEXT,
    severity          TEXT,
    first_detected_ns INTEGER,
    last_updated_ns   INTEGER NOT NULL,
    record_json       TEXT NOT NULL
);
CREATE INDEX records_status       ON records (status, resource_id);
CREATE INDEX records_namespace    ON records (namespace, resource_id);
CREATE INDEX records_kind         ON records (kind, resource_id);
CREATE INDEX records_severity     ON records (severity, resource_id);
CREATE INDEX records_last_updated ON records (last_updated_ns);

CREATE TABLE record_change_types (
    resource_id TEXT NOT NULL,
    drift_type  TEXT NOT NULL,
    PRIMARY KEY (resource_id, drift_type)
) WITHOUT ROWID;
CREATE INDEX record_change_types_type ON record_change_types (drift_type, resource_id);

CREATE TABLE episodes (
    resource_id       TEXT NOT NULL,
    first_detected_ns INTEGER NOT NULL,
    resolved_at_ns    INTEGER,
    drift_type        TEXT,
    severity          TEXT,
    duration_seconds  REAL,
    episode_json      TEXT NOT NULL,
    PRIMARY KEY (resource_id, first_detected_ns)
) WITHOUT ROWID;
CREATE INDEX episodes_resolved_at ON episodes (resolved_at_ns);

CREATE TABLE departed (
    resource_id TEXT PRIMARY KEY,
    left_at_ns  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the notification outbox (issue 17).
    r#"
CREATE TABLE outbox (
    sink         TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    queued_at_ns INTEGER NOT NULL,
    PRIMARY KEY (sink, key)
) WITHOUT ROWID;
CREATE INDEX outbox_queued_at ON outbox (queued_at_ns, sink, key);
"#,
    // 3: several replicas (issue 19): the writer's fence, analysis requests, run states.
    r#"
CREATE TABLE fence (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    term     INTEGER NOT NULL,
    holder   TEXT NOT NULL,
    since_ns INTEGER NOT NULL
);

CREATE TABLE run_requests (
    run_id          TEXT PRIMARY KEY,
    requested_at_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_requests_requested_at ON run_requests (requested_at_ns, run_id);

CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    stored_seq INTEGER NOT NULL,
    state_json TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_stored_seq ON runs (stored_seq);
"#,
];

const KEY_NAME: &str = "installation_key";

/// Drift records in an SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Several read connections: WAL lets readers run beside each other and the writer, and the
    /// API serves concurrent requests.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    path: PathBuf,
    /// The term this handle claimed ([`Store::claim_term`]); 0 = never claimed, unfenced.
    term: AtomicU64,
}

/// Read connections per store.
const READERS: usize = 4;

#[derive(Clone, Copy)]
enum Conn {
    Reader,
    Writer,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if needed) the file at `path` and migrates its schema. `timeout` bounds
    /// how long a call waits for a lock held by another process.
    pub async fn open(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let (writer, readers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let writer = connect(&opened, timeout)?;
            migrate(&writer)?;
            let mut readers = Vec::with_capacity(READERS);
            for _ in 0..READERS {
                let reader = connect(&opened, timeout)?;
                reader
                    .pragma_update(None, "query_only", true)
                    .map_err(sql("opening the database"))?;
                readers.push(Mutex::new(reader));
            }
            Ok((writer, readers))
        })
        .await
        .map_err(join("opening the database"))??;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: std::sync::atomic::AtomicUsize::new(0),
                path,
                term: AtomicU64::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (the number of applied migrations).
    pub async fn schema_version(&self) -> Result<i64> {
        self.run(Conn::Reader, "reading the schema version", |conn| {
            conn.pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(sql("reading the schema version"))
        })
        .await
    }

    /// Result of `PRAGMA integrity_check` (`"ok"` for a sound file).
    pub async fn integrity_check(&self) -> Result<String> {
        self.run(Conn::Reader, "checking integrity", |conn| {
            conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .map_err(sql("checking integrity"))
        })
        .await
    }

    /// The total and one page of (resource id, record JSON) rows.
    async fn list_rows(&self, query: &RecordQuery) -> Result<(u64, Vec<(String, String)>)> {
        let query = query.clone();
        self.run(Conn::Reader, "listing records", move |conn| {
            let op = "listing records";
            let (where_sql, mut args) = where_clause(&query);
            let total: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM records{where_sql}"),
                    rusqlite::params_from_iter(args.iter()),
                    |row| row.get(0),
                )
                .map_err(sql(op))?;
            // `after` pages, it does not filter: the total above counts without it. The
            // primary key answers `resource_id > ?` and the order.
            let page_sql = match &query.after {
                Some(after) => {
                    args.push(SqlValue::Text(after.clone()));
                    let join = if where_sql.is_empty() {
                        " WHERE"
                    } else {
                        " AND"
                    };
                    format!("{where_sql}{join} resource_id > ?")
                }
                None => where_sql,
            };
            args.push(SqlValue::Integer(i64::from(query.limit)));
            args.push(SqlValue::Integer(
                i64::try_from(query.offset).unwrap_or(i64::MAX),
            ));
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT resource_id, record_json FROM records{page_sql} \
                     ORDER BY resource_id LIMIT ? OFFSET ?"
                ))
                .map_err(sql(op))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(sql(op))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(sql(op))?);
            }
            Ok((u64::try_from(total).unwrap_or(0), out))
        })
        .await
    }

    async fn run<T, F>(&self, which: Conn, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call rolled its transaction back when the guard unwound; the
            // connection is still usable.
            let mut conn = match which {
                Conn::Writer => inner
                    .writer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Conn::Reader => {
                    // A free reader if there is one, else wait for the next in turn.
                    let free = inner.readers.iter().find_map(|r| r.try_lock().ok());
                    match free {
                        Some(guard) => guard,
                        None => {
                            let n = inner
                                .next_reader
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            inner.readers[n % inner.readers.len()]
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                        }
                    }
                }
            };
            f(&mut conn)
        })
        .await
        .map_err(join(operation))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.run(Conn::Reader, "pinging", |conn| {
            conn.query_row("SELECT count(*) FROM meta", [], |row| row.get::<_, i64>(0))
                .map(|_| ())
                .map_err(sql("pinging"))
        })
        .await
    }

    async fn installation_key(&self) -> Result<Vec<u8>> {
        self.run(Conn::Writer, "reading the installation key", |conn| {
            let op = "reading the installation key";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let fresh: [u8; INSTALLATION_KEY_LEN] = rand::random();
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![KEY_NAME, &fresh[..]],
            )
            .map_err(sql(op))?;
            let key: Vec<u8> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [KEY_NAME], |row| {
                    row.get(0)
                })
                .map_err(sql(op))?;
            tx.commit().map_err(sql(op))?;
            if key.len() != INSTALLATION_KEY_LEN {
                return Err(Error::corrupt(
                    "the installation key",
                    format!("{} bytes instead of {INSTALLATION_KEY_LEN}", key.len()),
                ));
            }
            Ok(key)
        })
        .await
    }

    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        self.run(Conn::Reader, "loading the current view", |conn| {
            let op = "loading the current view";
            let mut stmt = conn
                .prepare("SELECT resource_id, record_json FROM records ORDER BY resource_id")
                .map_err(sql(op))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(sql(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(sql(op))?;
                // A corrupt row is reported and skipped: the next analysis writes the
                // resource's record again; retrying the load would never get past it.
                match decode_record(&id, &json) {
                    Ok(record) => out.push(record),
                    Err(e) => crate::skip_corrupt(&id, &e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn apply(&self, batch: &[Write]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Encoded here, so the blocking task gets rows of text rather than a copy of every
        // record's object trees (the batch of a first analysis holds all of them).
        let rows = batch
            .iter()
            .map(RowWrite::encode)
            .collect::<Result<Vec<_>>>()?;
        let term = self.inner.term.load(Ordering::SeqCst);
        self.run(Conn::Writer, "writing an analysis batch", move |conn| {
            apply_batch(conn, term, &rows)
        })
        .await
    }

    async fn list(&self, query: &RecordQuery) -> Result<Page> {
        let (total, rows) = self.list_rows(query).await?;
        let mut records = Vec::with_capacity(rows.len());
        for (id, json) in rows {
            records.push(decode_record(&id, &json)?);
        }
        Ok(Page { total, records })
    }

    async fn list_json(&self, query: &RecordQuery) -> Result<crate::JsonPage> {
        let (total, rows) = self.list_rows(query).await?;
        Ok(crate::JsonPage {
            total,
            records: rows.into_iter().map(|(_, json)| json).collect(),
        })
    }

    async fn get(&self, resource_id: &str) -> Result<Option<DriftRecord>> {
        let id = resource_id.to_owned();
        self.run(Conn::Reader, "reading a record", move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT record_json FROM records WHERE resource_id = ?1",
                    [&id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql("reading a record"))?;
            json.map(|j| decode_record(&id, &j)).transpose()
        })
        .await
    }

    async fn history(&self, resource_id: &str) -> Result<Option<Vec<Episode>>> {
        let id = resource_id.to_owned();
        self.run(Conn::Reader, "reading history", move |conn| {
            let op = "reading history";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT episode_json FROM episodes WHERE resource_id = ?1 \
                     ORDER BY first_detected_ns DESC",
                )
                .map_err(sql(op))?;
            let rows = stmt
                .query_map([&id], |row| row.get::<_, String>(0))
                .map_err(sql(op))?;
            let mut episodes = Vec::new();
            for row in rows {
                let json = row.map_err(sql(op))?;
                episodes.push(
                    serde_json::from_str::<Episode>(&json)
                        .map_err(|e| Error::corrupt(format!("an episode of {id}"), e))?,
                );
            }
            if !episodes.is_empty() {
                return Ok(Some(episodes));
            }
            let known: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM records WHERE resource_id = ?1) \
                         OR EXISTS (SELECT 1 FROM departed WHERE resource_id = ?1)",
                    [&id],
                    |row| row.get(0),
                )
                .map_err(sql(op))?;
            Ok(known.then(Vec::new))
        })
        .await
    }

    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        self.run(Conn::Reader, "computing statistics", move |conn| {
            statistics(conn, now)
        })
        .await
    }

    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.run(Conn::Writer, "queueing notifications", move |conn| {
            let op = "queueing notifications";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO outbox (sink, key, payload, queued_at_ns) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(sql(op))?;
                for e in &entries {
                    insert
                        .execute(params![e.sink, e.key, e.payload, nanos(e.queued_at)])
                        .map_err(sql(op))?;
                }
            }
            tx.commit().map_err(sql(op))
        })
        .await
    }

    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        self.run(Conn::Reader, "reading the outbox", |conn| {
            let op = "reading the outbox";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sink, key, payload, queued_at_ns FROM outbox \
                     ORDER BY queued_at_ns, sink, key",
                )
                .map_err(sql(op))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(OutboxEntry {
                        sink: row.get(0)?,
                        key: row.get(1)?,
                        payload: row.get(2)?,
                        queued_at: DateTime::from_timestamp_nanos(row.get::<_, i64>(3)?),
                    })
                })
                .map_err(sql(op))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql(op))
        })
        .await
    }

    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let sink = sink.to_owned();
        let keys = keys.to_vec();
        self.run(Conn::Writer, "removing notifications", move |conn| {
            let op = "removing notifications";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM outbox WHERE sink = ?1 AND key = ?2")
                    .map_err(sql(op))?;
                for key in &keys {
                    delete.execute(params![sink, key]).map_err(sql(op))?;
                }
            }
            tx.commit().map_err(sql(op))
        })
        .await
    }

    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        let op = "claiming the writer's term";
        let holder = holder.to_owned();
        let term = self
            .run(Conn::Writer, op, move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql(op))?;
                let term = stored_term(&tx, op)?.saturating_add(1).max(lease_term);
                let stored = i64::try_from(term).map_err(|_| {
                    Error::Config(format!(
                        "the writer's term {term} does not fit the store (at most {})",
                        i64::MAX
                    ))
                })?;
                tx.execute(
                    "INSERT INTO fence (id, term, holder, since_ns) VALUES (1, ?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET term = excluded.term, \
                         holder = excluded.holder, since_ns = excluded.since_ns",
                    params![stored, holder, nanos(Utc::now())],
                )
                .map_err(sql(op))?;
                tx.commit().map_err(sql(op))?;
                Ok(term)
            })
            .await?;
        self.inner.term.store(term, Ordering::SeqCst);
        Ok(term)
    }

    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        let op = "queueing an analysis request";
        let run_id = run_id.to_owned();
        self.run(Conn::Writer, op, move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO run_requests (run_id, requested_at_ns) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![run_id, nanos(requested_at)]))
            .map(|_| ())
            .map_err(sql(op))
        })
        .await
    }

    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let op = "taking analysis requests";
        self.run(Conn::Writer, op, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let taken = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT run_id, requested_at_ns FROM run_requests \
                         ORDER BY requested_at_ns, run_id",
                    )
                    .map_err(sql(op))?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            DateTime::from_timestamp_nanos(row.get::<_, i64>(1)?),
                        ))
                    })
                    .map_err(sql(op))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql(op))?
            };
            // The transaction holds the write lock: what was read is everything queued.
            tx.execute("DELETE FROM run_requests", [])
                .map_err(sql(op))?;
            tx.commit().map_err(sql(op))?;
            Ok(taken)
        })
        .await
    }

    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        let op = "storing an analysis run";
        let run_id = run_id.to_owned();
        let json = json.to_owned();
        self.run(Conn::Writer, op, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            // `stored_seq` orders runs by when their state was last stored, exactly.
            tx.prepare_cached(
                "INSERT INTO runs (run_id, stored_seq, state_json) VALUES \
                     (?1, (SELECT coalesce(max(stored_seq), 0) + 1 FROM runs), ?2) \
                 ON CONFLICT (run_id) DO UPDATE SET stored_seq = excluded.stored_seq, \
                     state_json = excluded.state_json",
            )
            .and_then(|mut s| s.execute(params![run_id, json]))
            .map_err(sql(op))?;
            tx.prepare_cached(
                "DELETE FROM runs WHERE stored_seq <= \
                     (SELECT stored_seq FROM runs ORDER BY stored_seq DESC LIMIT 1 OFFSET ?1)",
            )
            .and_then(|mut s| s.execute([i64::try_from(MAX_RUNS).unwrap_or(i64::MAX)]))
            .map_err(sql(op))?;
            tx.commit().map_err(sql(op))
        })
        .await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        let op = "reading an analysis run";
        let run_id = run_id.to_owned();
        self.run(Conn::Reader, op, move |conn| {
            conn.query_row(
                "SELECT state_json FROM runs WHERE run_id = ?1",
                [&run_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql(op))
        })
        .await
    }
}

fn connect(path: &Path, timeout: Duration) -> Result<Connection> {
    let op = "opening the database";
    create_private(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Unavailable {
        operation: op,
        source: Box::new(e),
    })?;
    conn.busy_timeout(timeout).map_err(sql(op))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sql(op))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Config(format!(
            "the SQLite database could not switch to WAL mode (journal mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql(op))?;
    Ok(conn)
}

/// Creates the database file readable by its owner only (it holds the installation's digest
/// key); SQLite gives its `-wal` and `-shm` files the same mode. An existing file is left as it
/// is; failures are left to SQLite's open to report.
fn create_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn migrate(conn: &Connection) -> Result<()> {
    let op = "migrating the schema";
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL
         )",
    )
    .map_err(sql(op))?;
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql(op))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(Error::Config(format!(
            "the SQLite database has schema version {current}, newer than this DriftGuard \
             understands ({known}); upgrade DriftGuard or point database.path elsewhere"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        // DDL is transactional in SQLite: a migration applies fully or not at all.
        let script = format!(
            "BEGIN IMMEDIATE;\n{migration}\n\
             INSERT INTO schema_version (version, applied_at) VALUES ({version}, '{}');\n\
             PRAGMA user_version = {version};\nCOMMIT;",
            Utc::now().to_rfc3339()
        );
        if let Err(e) = conn.execute_batch(&script) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sql(op)(e));
        }
        tracing::info!(version, "migrated the SQLite schema");
    }
    Ok(())
}

/// One write, encoded for SQLite: the JSON text and the indexed columns.
enum RowWrite {
    Upsert {
        record: RecordRow,
        episode: Option<EpisodeRow>,
    },
    Remove {
        resource_id: String,
        closing_episode: Option<EpisodeRow>,
    },
    Episode {
        resource_id: String,
        episode: EpisodeRow,
    },
}

/// A record's row.
struct RecordRow {
    resource_id: String,
    namespace: String,
    kind: String,
    status: &'static str,
    drift_detected: bool,
    drift_type: Option<&'static str>,
    severity: Option<&'static str>,
    first_detected_ns: Option<i64>,
    last_updated_ns: i64,
    json: String,
    change_types: Vec<&'static str>,
}

/// An episode's row.
struct EpisodeRow {
    first_detected_ns: i64,
    resolved_at_ns: Option<i64>,
    drift_type: Option<&'static str>,
    severity: Option<&'static str>,
    duration_seconds: Option<f64>,
    json: String,
}

impl RowWrite {
    fn encode(write: &Write) -> Result<RowWrite> {
        Ok(match write {
            Write::Upsert { record, episode } => RowWrite::Upsert {
                record: RecordRow::encode(record)?,
                episode: episode.as_ref().map(EpisodeRow::encode).transpose()?,
            },
            Write::Remove {
                resource_id,
                closing_episode,
            } => RowWrite::Remove {
                resource_id: resource_id.clone(),
                closing_episode: closing_episode
                    .as_ref()
                    .map(EpisodeRow::encode)
                    .transpose()?,
            },
            Write::Episode {
                resource_id,
                episode,
            } => RowWrite::Episode {
                resource_id: resource_id.clone(),
                episode: EpisodeRow::encode(episode)?,
            },
        })
    }
}

impl RecordRow {
    fn encode(record: &DriftRecord) -> Result<RecordRow> {
        let json = crate::fit::encode_record(record, crate::fit::MAX_DOCUMENT_JSON)?;
        Ok(RecordRow {
            resource_id: record.resource_id.clone(),
            namespace: record.namespace.clone(),
            kind: record.kind.clone(),
            status: record.drift_status.as_str(),
            drift_detected: record.drift_detected,
            drift_type: record.drift_type.map(DriftType::as_str),
            severity: record.severity.map(Severity::as_str),
            first_detected_ns: record.first_detected.map(nanos),
            last_updated_ns: nanos(record.last_updated),
            json,
            change_types: change_types(record),
        })
    }
}

impl EpisodeRow {
    fn encode(episode: &Episode) -> Result<EpisodeRow> {
        let json = crate::fit::encode_episode(episode, crate::fit::MAX_DOCUMENT_JSON)?;
        Ok(EpisodeRow {
            first_detected_ns: nanos(episode.first_detected),
            resolved_at_ns: episode.resolved_at.map(nanos),
            drift_type: episode.drift_type.map(DriftType::as_str),
            severity: episode.severity.map(Severity::as_str),
            duration_seconds: duration_seconds(episode),
            json,
        })
    }
}

/// Writes `batch` in one transaction; with a claimed `term` (> 0), only while no other handle
/// claimed a higher one.
fn apply_batch(conn: &mut Connection, term: u64, batch: &[RowWrite]) -> Result<()> {
    let op = "writing an analysis batch";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(op))?;
    if term > 0 {
        // Inside the write transaction: no claim can commit between this read and the writes.
        let current = stored_term(&tx, op)?;
        if current > term {
            return Err(Error::Fenced { term, current });
        }
    }
    for write in batch {
        match write {
            RowWrite::Upsert { record, episode } => {
                if let Some(episode) = episode {
                    put_episode(&tx, &record.resource_id, episode)?;
                }
                put_record(&tx, record)?;
            }
            RowWrite::Remove {
                resource_id,
                closing_episode,
            } => {
                if let Some(episode) = closing_episode {
                    put_episode(&tx, resource_id, episode)?;
                }
                tx.prepare_cached("DELETE FROM records WHERE resource_id = ?1")
                    .and_then(|mut s| s.execute([resource_id]))
                    .map_err(sql(op))?;
                tx.prepare_cached("DELETE FROM record_change_types WHERE resource_id = ?1")
                    .and_then(|mut s| s.execute([resource_id]))
                    .map_err(sql(op))?;
                tx.prepare_cached(
                    "INSERT INTO departed (resource_id, left_at_ns) VALUES (?1, ?2) \
                     ON CONFLICT (resource_id) DO UPDATE SET left_at_ns = excluded.left_at_ns",
                )
                .and_then(|mut s| s.execute(params![resource_id, nanos(Utc::now())]))
                .map_err(sql(op))?;
            }
            RowWrite::Episode {
                resource_id,
                episode,
            } => put_episode(&tx, resource_id, episode)?,
        }
    }
    tx.commit().map_err(sql(op))
}

/// The fence's term (0 before any claim).
fn stored_term(conn: &Connection, op: &'static str) -> Result<u64> {
    let term: Option<i64> = conn
        .query_row("SELECT term FROM fence WHERE id = 1", [], |row| row.get(0))
        .optional()
        .map_err(sql(op))?;
    Ok(term.map_or(0, |t| u64::try_from(t).unwrap_or(0)))
}

fn put_record(tx: &rusqlite::Transaction<'_>, row: &RecordRow) -> Result<()> {
    let op = "writing a record";
    tx.prepare_cached(
        "INSERT INTO records (resource_id, namespace, kind, status, drift_detected, drift_type, \
             severity, first_detected_ns, last_updated_ns, record_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (resource_id) DO UPDATE SET namespace = excluded.namespace, \
             kind = excluded.kind, status = excluded.status, \
             drift_detected = excluded.drift_detected, drift_type = excluded.drift_type, \
             severity = excluded.severity, first_detected_ns = excluded.first_detected_ns, \
             last_updated_ns = excluded.last_updated_ns, record_json = excluded.record_json",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.resource_id,
            row.namespace,
            row.kind,
            row.status,
            row.drift_detected,
            row.drift_type,
            row.severity,
            row.first_detected_ns,
            row.last_updated_ns,
            row.json,
        ])
    })
    .map_err(sql(op))?;
    tx.prepare_cached("DELETE FROM record_change_types WHERE resource_id = ?1")
        .and_then(|mut s| s.execute([&row.resource_id]))
        .map_err(sql(op))?;
    let mut insert = tx
        .prepare_cached("INSERT INTO record_change_types (resource_id, drift_type) VALUES (?1, ?2)")
        .map_err(sql(op))?;
    for t in &row.change_types {
        insert
            .execute(params![row.resource_id, t])
            .map_err(sql(op))?;
    }
    Ok(())
}

fn put_episode(tx: &rusqlite::Transaction<'_>, resource_id: &str, row: &EpisodeRow) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO episodes (resource_id, first_detected_ns, resolved_at_ns, drift_type, \
             severity, duration_seconds, episode_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (resource_id, first_detected_ns) DO UPDATE SET \
             resolved_at_ns = excluded.resolved_at_ns, drift_type = excluded.drift_type, \
             severity = excluded.severity, duration_seconds = excluded.duration_seconds, \
             episode_json = excluded.episode_json",
    )
    .and_then(|mut s| {
        s.execute(params![
            resource_id,
            row.first_detected_ns,
            row.resolved_at_ns,
            row.drift_type,
            row.severity,
            row.duration_seconds,
            row.json,
        ])
    })
    .map_err(sql("writing an episode"))?;
    Ok(())
}

fn where_clause(q: &RecordQuery) -> (String, Vec<SqlValue>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut args = Vec::new();
    if let Some(ns) = &q.namespace {
        conds.push("namespace = ?");
        args.push(SqlValue::Text(ns.clone()));
    }
    if let Some(kind) = &q.kind {
        conds.push("kind = ?");
        args.push(SqlValue::Text(kind.clone()));
    }
    if let Some(detected) = q.drift_detected {
        conds.push("drift_detected = ?");
        args.push(SqlValue::Integer(i64::from(detected)));
    }
    if let Some(status) = q.status {
        conds.push("status = ?");
        args.push(SqlValue::Text(status.as_str().to_owned()));
    }
    if let Some(severity) = q.severity {
        conds.push("severity = ?");
        args.push(SqlValue::Text(severity.as_str().to_owned()));
    }
    if let Some(t) = q.drift_type {
        conds.push(
            "resource_id IN (SELECT resource_id FROM record_change_types WHERE drift_type = ?)",
        );
        args.push(SqlValue::Text(t.as_str().to_owned()));
    }
    if let Some(since) = q.since {
        conds.push("last_updated_ns >= ?");
        args.push(SqlValue::Integer(nanos(since)));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

fn statistics(conn: &Connection, now: DateTime<Utc>) -> Result<Statistics> {
    let op = "computing statistics";
    let day_ago = nanos(now - chrono::Duration::hours(24));
    let now_ns = nanos(now);
    let mut stats = Statistics::default();
    for (status, n) in grouped_counts(conn, "SELECT status, count(*) FROM records GROUP BY status")?
    {
        stats.add_status_count(&status, n.max(0) as u64)?;
    }
    stats.recent_active_drift = conn
        .query_row(
            "SELECT count(*) FROM records WHERE status = 'active' \
             AND first_detected_ns BETWEEN ?1 AND ?2",
            params![day_ago, now_ns],
            |row| row.get::<_, i64>(0),
        )
        .map_err(sql(op))?
        .max(0) as u64;
    stats.recent_resolutions = conn
        .query_row(
            "SELECT count(*) FROM episodes WHERE resolved_at_ns BETWEEN ?1 AND ?2",
            params![day_ago, now_ns],
            |row| row.get::<_, i64>(0),
        )
        .map_err(sql(op))?
        .max(0) as u64;
    for (t, n) in grouped_counts(
        conn,
        "SELECT drift_type, count(*) FROM records WHERE status = 'active' \
         AND drift_type IS NOT NULL GROUP BY drift_type",
    )? {
        stats.by_type.insert(t, n.max(0) as u64);
    }
    for (s, n) in grouped_counts(
        conn,
        "SELECT severity, count(*) FROM records WHERE status = 'active' \
         AND severity IS NOT NULL GROUP BY severity",
    )? {
        stats.by_severity.insert(s, n.max(0) as u64);
    }
    for column in ["drift_type", "severity"] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {column}, avg(duration_seconds) FROM episodes \
                 WHERE resolved_at_ns IS NOT NULL AND {column} IS NOT NULL GROUP BY {column}"
            ))
            .map_err(sql(op))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
            })
            .map_err(sql(op))?;
        for row in rows {
            let (key, mean) = row.map_err(sql(op))?;
            stats.mttr_seconds.insert(key, mean);
        }
    }
    Ok(stats.with_percentages())
}

fn grouped_counts(conn: &Connection, query: &str) -> Result<Vec<(String, i64)>> {
    let op = "computing statistics";
    let mut stmt = conn.prepare_cached(query).map_err(sql(op))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(sql(op))?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql(op))
}

fn decode_record(resource_id: &str, json: &str) -> Result<DriftRecord> {
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("record {resource_id}"), e))
}

/// Maps an SQLite error: lock timeouts, IO failures and an unopenable file mean "unavailable".
fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| {
        let unavailable = matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::FileLockingProtocolFailed
            )
        );
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

fn join(operation: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
    move |e| Error::Backend {
        operation,
        source: Box::new(e),
    }
}

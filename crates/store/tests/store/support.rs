//! One store per test: a temp SQLite file, or a fresh database on the MongoDB test peer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driftguard_core::{DriftRecord, DriftStatus};
use driftguard_store::{MongoStore, SqliteStore, Store};
use futures::TryStreamExt;
use mongodb::bson::Document;

/// The MongoDB peer's URI; a missing peer is a failure (saying how to start it), never a
/// silent skip.
pub fn mongo_uri() -> String {
    driftguard_test_support::mongo::TestMongo::shared()
        .uri()
        .to_owned()
}

/// A store under test and what is needed to reopen it or dump its bytes.
pub struct Harness {
    pub store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
        path: PathBuf,
    },
    Mongo {
        uri: String,
        dbname: String,
        store: MongoStore,
    },
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("driftguard.db");
        let store = SqliteStore::open(&path, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("open sqlite: {e:?}"));
        Self {
            store: Arc::new(store),
            backend: Backend::Sqlite { dir, path },
        }
    }

    pub async fn mongo() -> Self {
        let uri = mongo_uri();
        let dbname = format!("dg_test_{}", uuid::Uuid::new_v4().simple());
        let store = MongoStore::connect(&uri, &dbname, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("connect to the MongoDB peer at {uri}: {e:?}"));
        Self {
            store: Arc::new(store.clone()),
            backend: Backend::Mongo { uri, dbname, store },
        }
    }

    /// A new store instance on the same data (a restart).
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(
                SqliteStore::open(path, Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|e| panic!("reopen sqlite: {e:?}")),
            ),
            Backend::Mongo { uri, dbname, .. } => Arc::new(
                MongoStore::connect(uri, dbname, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|e| panic!("reconnect: {e:?}")),
            ),
        }
    }

    pub fn mongo_store(&self) -> Option<&MongoStore> {
        match &self.backend {
            Backend::Mongo { store, .. } => Some(store),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Every byte the store holds: the SQLite file with its WAL and shared-memory files, or
    /// every document of every collection (raw BSON plus its extended-JSON rendering).
    pub async fn dump(&self) -> Vec<u8> {
        match &self.backend {
            Backend::Sqlite { dir, .. } => {
                let mut out = Vec::new();
                let entries = std::fs::read_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
                for entry in entries.flatten() {
                    out.extend(std::fs::read(entry.path()).unwrap_or_default());
                }
                out
            }
            Backend::Mongo { store, .. } => {
                let db = store.database();
                let mut out = Vec::new();
                let names = db
                    .list_collection_names()
                    .await
                    .unwrap_or_else(|e| panic!("list collections: {e}"));
                for name in names {
                    let mut cursor = db
                        .collection::<Document>(&name)
                        .find(mongodb::bson::doc! {})
                        .await
                        .unwrap_or_else(|e| panic!("dump {name}: {e}"));
                    while let Some(doc) = cursor
                        .try_next()
                        .await
                        .unwrap_or_else(|e| panic!("dump {name}: {e}"))
                    {
                        let _ = doc.to_writer(&mut out);
                        out.extend(doc.to_string().into_bytes());
                    }
                }
                out
            }
        }
    }

    /// Drops the test database (best effort).
    pub async fn cleanup(self) {
        if let Backend::Mongo { store, .. } = &self.backend {
            let _ = store.database().drop().await;
        }
    }
}

/// Every record agrees with its history: an active record has exactly one open episode, which
/// started when the record says; a resolved record's newest episode is closed when the record
/// says; nothing else is open.
pub async fn assert_consistent(store: &Arc<dyn Store>) {
    let records = store
        .load_current()
        .await
        .unwrap_or_else(|e| panic!("load: {e:?}"));
    for r in &records {
        assert_record_consistent(store, r).await;
    }
}

pub async fn assert_record_consistent(store: &Arc<dyn Store>, r: &DriftRecord) {
    let history = store
        .history(&r.resource_id)
        .await
        .unwrap_or_else(|e| panic!("history: {e:?}"))
        .unwrap_or_else(|| panic!("{} has a record but no history entry", r.resource_id));
    let open: Vec<_> = history.iter().filter(|e| e.resolved_at.is_none()).collect();
    assert_eq!(r.drift_detected, r.drift_status == DriftStatus::Active);
    match r.drift_status {
        DriftStatus::Active => {
            assert_eq!(open.len(), 1, "{}: one open episode", r.resource_id);
            assert_eq!(Some(open[0].first_detected), r.first_detected);
            assert_eq!(history[0].first_detected, open[0].first_detected, "newest");
        }
        DriftStatus::Resolved => {
            assert!(open.is_empty(), "{}: no open episode", r.resource_id);
            assert_eq!(Some(history[0].first_detected), r.first_detected);
            assert_eq!(history[0].resolved_at, r.resolved_at);
        }
        DriftStatus::None => {
            assert!(open.is_empty(), "{}: no open episode", r.resource_id);
        }
    }
}

//! Outbox specifics per backend (the shared behaviours are in `contract.rs`): the SQLite
//! migration that adds the table to an existing file, and the MongoDB document shape.

use std::sync::Arc;
use std::time::Duration;

use driftguard_store::{MongoStore, OutboxEntry, SqliteStore, Store};
use mongodb::bson::{Document, doc};
use rusqlite::Connection;

use crate::fixtures::*;
use crate::support::Harness;

fn entry(sink: &str, key: &str, payload: &str) -> OutboxEntry {
    OutboxEntry {
        sink: sink.to_owned(),
        key: key.to_owned(),
        payload: payload.to_owned(),
        queued_at: at(1),
    }
}

/// A file written before the outbox existed (schema version 1, records in it) gains the table
/// on open, keeps its records, and logs the migration.
#[tokio::test]
async fn sqlite_outbox_migration_upgrades_a_version_1_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    let k = key("Deployment", "shop", "web");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let record = drift(&shared, &k, vec![scaling()], at(1), None).await;
    drop(shared);
    drop(store);
    // Back to what version 1 wrote.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE outbox; DROP TABLE fence; DROP TABLE run_requests; DROP TABLE runs; \
             DELETE FROM schema_version WHERE version > 1; PRAGMA user_version = 1;",
        )
        .unwrap();
    }

    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 3);
    assert_eq!(store.load_current().await.unwrap(), vec![record]);
    store
        .outbox_push(&[entry("slack", "e1", "p")])
        .await
        .unwrap();
    assert_eq!(
        store.outbox_pending().await.unwrap(),
        vec![entry("slack", "e1", "p")]
    );
    drop(store);

    let conn = Connection::open(&path).unwrap();
    let logged: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(logged, [1, 2, 3]);
    // Pending entries are read in index order, not sorted after a scan.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT sink, key, payload, queued_at_ns FROM outbox \
             ORDER BY queued_at_ns, sink, key",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("outbox_queued_at")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
}

/// One document per entry in `outbox`, `_id` the (sink, key) fingerprint, the payload an
/// opaque string and the time in nanoseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outbox_documents_are_keyed_by_sink_and_key() {
    let h = Harness::mongo().await;
    let store = h.mongo_store().unwrap().clone();
    store
        .outbox_push(&[
            entry("slack", "e1", "{\"a\":1}"),
            entry("webhook:ops", "e1", "x"),
        ])
        .await
        .unwrap();
    let coll = store.database().collection::<Document>("outbox");
    let doc = coll
        .find_one(doc! { "_id": MongoStore::outbox_fingerprint("slack", "e1") })
        .await
        .unwrap()
        .expect("the slack entry under its fingerprint");
    assert_eq!(doc.get_str("sink").unwrap(), "slack");
    assert_eq!(doc.get_str("key").unwrap(), "e1");
    assert_eq!(doc.get_str("payload").unwrap(), "{\"a\":1}");
    assert_eq!(
        doc.get_i64("queued_at_ns").unwrap(),
        at(1).timestamp_nanos_opt().unwrap()
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 2);
    assert_ne!(
        MongoStore::outbox_fingerprint("a", "bc"),
        MongoStore::outbox_fingerprint("ab", "c"),
        "sink and key cannot run into each other"
    );
    h.cleanup().await;
}

//! A store that answers but refuses writes (a read-only file, a rotated password, a full disk):
//! no verdict is lost once it takes writes again, and one refused resource does not hold back
//! the others.
//!
//! The refusal is real SQLite behaviour: triggers that `RAISE(ABORT, …)` make SQLite fail the
//! statement exactly where a read-only file would (the tests run as root, which ignores file
//! modes, so `chmod` cannot make the file read-only for them).

use std::sync::Arc;
use std::time::Duration;

use driftguard_core::state;
use driftguard_store::{BufferConfig, BufferState, BufferedStore, SqliteStore, Store, Write};
use rusqlite::Connection;

use crate::buffer::wait_drained;
use crate::fixtures::*;
use crate::support::assert_consistent;

fn fast() -> BufferConfig {
    BufferConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_chunk: 5,
        ..BufferConfig::default()
    }
}

const TABLES: [&str; 3] = ["records", "episodes", "departed"];

/// Makes every write to the store's tables fail (for `only`: writes of that resource).
fn refuse_writes(path: &std::path::Path, only: Option<&str>) {
    let conn = Connection::open(path).unwrap();
    for table in TABLES {
        for op in ["INSERT", "UPDATE", "DELETE"] {
            let row = if op == "DELETE" { "OLD" } else { "NEW" };
            let when = match only {
                Some(id) => format!("WHEN {row}.resource_id = '{id}'"),
                None => String::new(),
            };
            conn.execute_batch(&format!(
                "CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} {when} \
                 BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END;"
            ))
            .unwrap();
        }
    }
}

fn accept_writes(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    for table in TABLES {
        for op in ["INSERT", "UPDATE", "DELETE"] {
            conn.execute_batch(&format!("DROP TRIGGER refuse_{table}_{op};"))
                .unwrap();
        }
    }
}

async fn open(dir: &tempfile::TempDir) -> (std::path::PathBuf, Arc<dyn Store>) {
    let path = dir.path().join("dg.db");
    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    (path, Arc::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refused_writes_lose_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (path, plain) = open(&dir).await;
    let buffered = BufferedStore::new(plain.clone(), fast());

    let k = key("Deployment", "shop", "web");
    let t1 = state::advance(None, observation(&k, vec![scaling()], "d", "l1", C1), at(1));
    buffered
        .apply(&[Write::Upsert {
            record: t1.record.clone(),
            episode: t1.episode.clone(),
        }])
        .await
        .unwrap();

    refuse_writes(&path, None);
    // Refused: the drift resolves (closing its episode), then comes back (a second one).
    let t2 = state::advance(
        Some(&t1.record),
        observation(&k, vec![], "d", "d", C1),
        at(2),
    );
    let t3 = state::advance(
        Some(&t2.record),
        observation(&k, vec![image()], "d", "l3", C1),
        at(3),
    );
    for t in [&t2, &t3] {
        buffered
            .apply(&[Write::Upsert {
                record: t.record.clone(),
                episode: t.episode.clone(),
            }])
            .await
            .expect("a refused write is kept, not returned as lost");
    }
    // The drainer retries and finds the write refused (not merely unreachable).
    let mut health = buffered.health();
    for _ in 0..500 {
        if health.rejected > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        health = buffered.health();
    }
    assert_eq!(health.state, BufferState::Buffering, "{health:?}");
    assert_eq!(health.pending, 1);
    assert_eq!(health.rejected, 1, "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|m| m.contains("store failed")),
        "{health:?}"
    );
    // Nothing landed meanwhile, and nothing was given up.
    assert_eq!(
        plain.get(&k.resource_id()).await.unwrap(),
        Some(t1.record.clone())
    );
    assert!(!buffered.take_resync_needed());

    accept_writes(&path);
    wait_drained(&buffered).await;
    assert_eq!(
        plain.get(&k.resource_id()).await.unwrap(),
        Some(t3.record.clone())
    );
    let history = plain.history(&k.resource_id()).await.unwrap().unwrap();
    assert_eq!(
        history.len(),
        2,
        "the closed and the new episode both landed"
    );
    assert_eq!(history[1].resolved_at, Some(at(2)));
    assert_eq!(history[0].first_detected, at(3));
    assert_consistent(&plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_refused_resource_does_not_hold_back_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (path, plain) = open(&dir).await;
    let buffered = BufferedStore::new(plain.clone(), fast());
    let bad = key("ConfigMap", "shop", "bad");
    refuse_writes(&path, Some(&bad.resource_id()));

    let mut batch = Vec::new();
    for name in ["bad", "a", "b", "c", "d", "e", "f", "g"] {
        let k = key("ConfigMap", "shop", name);
        let t = state::advance(None, observation(&k, vec![label()], "d", "x", C1), at(1));
        batch.push(Write::Upsert {
            record: t.record,
            episode: t.episode,
        });
    }
    buffered.apply(&batch).await.unwrap();
    let mut others_landed = false;
    for _ in 0..200 {
        if plain.load_current().await.unwrap().len() == 7 {
            others_landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        others_landed,
        "the seven others landed: {:?}",
        buffered.health()
    );
    // Between two retries the refused one is back in the queue, counted as rejected.
    let mut health = buffered.health();
    for _ in 0..500 {
        if (health.pending, health.rejected) == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        health = buffered.health();
    }
    assert_eq!((health.pending, health.rejected), (1, 1), "{health:?}");
    assert_eq!(plain.get(&bad.resource_id()).await.unwrap(), None);

    accept_writes(&path);
    wait_drained(&buffered).await;
    assert!(plain.get(&bad.resource_id()).await.unwrap().is_some());
    assert_eq!(plain.load_current().await.unwrap().len(), 8);
    assert_consistent(&plain).await;
}

//! `kill -9` during writes leaves a sound SQLite file whose records agree with their history.
//!
//! The parent test re-runs this test binary as a child (`sqlite_kill9_child_writer`, selected
//! with `--exact` and told where to write by an environment variable) that writes analysis
//! batches in a loop, and kills it with SIGKILL mid-stream, three times over the same file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use driftguard_core::state;
use driftguard_store::{SqliteStore, Store, Write};

use crate::fixtures::*;
use crate::support::assert_consistent;

const CHILD_ENV: &str = "DRIFTGUARD_STORE_KILL9_DB";
const RESOURCES: usize = 60;

#[test]
fn sqlite_kill9_leaves_a_consistent_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill9.db");
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9::sqlite_kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut batches = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("batch ") {
                batches += 1;
                // Kill at a different point each round, well inside the write loop.
                if batches >= 15 + round * 7 {
                    break;
                }
            }
        }
        assert!(batches > 0, "round {round}: the child wrote nothing");
        std::thread::sleep(Duration::from_millis(3 + 5 * round as u64));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child was killed, not finished"
        );
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        let store: Arc<dyn Store> = Arc::new(store);
        let records = store.load_current().await.unwrap();
        assert!(!records.is_empty());
        assert_consistent(&store).await;
    });
}

/// The child half of `sqlite_kill9_leaves_a_consistent_file`; does nothing when run alone.
#[test]
fn sqlite_kill9_child_writer() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        eprintln!("child half of sqlite_kill9_leaves_a_consistent_file: nothing to do alone");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&db, Duration::from_secs(5))
            .await
            .unwrap();
        let mut previous: HashMap<String, _> = store
            .load_current()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.resource_id.clone(), r))
            .collect();
        let start = chrono::Utc::now();
        for i in 0u64.. {
            let now = start + chrono::Duration::milliseconds(i as i64);
            let mut batch = Vec::new();
            for n in 0..RESOURCES {
                let k = key("Deployment", "kill9", &format!("app-{n:02}"));
                // Each resource cycles clean → drifted → drifted more → clean at its own pace.
                let phase = (i as usize + n) % (4 + n % 3);
                let changes = match phase {
                    1 => vec![scaling()],
                    2 => vec![scaling(), label()],
                    _ => vec![],
                };
                let live = format!("l{phase}");
                let prev = previous.get(&k.resource_id());
                if i % 17 == 5
                    && n % 10 == 0
                    && let Some(prev) = prev
                {
                    batch.push(Write::Remove {
                        resource_id: prev.resource_id.clone(),
                        closing_episode: state::leave_view(prev, Some(C1), now),
                    });
                    previous.remove(&k.resource_id());
                    continue;
                }
                let t = state::advance(prev, observation(&k, changes, "d", &live, C1), now);
                if t.changed {
                    batch.push(Write::Upsert {
                        record: t.record.clone(),
                        episode: t.episode,
                    });
                    previous.insert(t.record.resource_id.clone(), t.record);
                }
            }
            store.apply(&batch).await.unwrap();
            println!("batch {i}");
        }
    });
}

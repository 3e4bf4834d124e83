//! How long one analysis batch takes to reach MongoDB (issue 20): `N` upserts with an episode
//! for every tenth record, written once (inserts) and once more with every record changed
//! (replacements, every open episode closed), into a fresh database on the server named by
//! `DRIFTGUARD_TEST_MONGODB_URI`.
//!
//! ```text
//! eval "$(scripts/mongo-peer.sh up)"
//! cargo run --release -p driftguard-store --example mongo_bulk -- 1000 10000
//! ```

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use driftguard_core::state;
use driftguard_store::{MongoStore, Store, Write};

#[path = "../tests/store/fixtures.rs"]
mod fixtures;

use fixtures::*;

/// One analysis of `n` Deployments, every tenth drifting (so it opens an episode).
fn analysis(n: usize, round: i64, previous: Option<&[Write]>) -> Vec<Write> {
    (0..n)
        .map(|i| {
            let k = key(
                "Deployment",
                &format!("ns-{}", i % 50),
                &format!("app-{i:06}"),
            );
            let drifting = (i as i64 + round) % 10 == 0;
            let changes = if drifting { vec![scaling()] } else { vec![] };
            let before = previous.and_then(|p| match p.get(i) {
                Some(Write::Upsert { record, .. }) => Some(record),
                _ => None,
            });
            let t = state::advance(
                before,
                observation(&k, changes, "d", &format!("l{round}"), C1),
                at(round),
            );
            Write::Upsert {
                record: t.record,
                episode: t.episode,
            }
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::var("DRIFTGUARD_TEST_MONGODB_URI")
        .map_err(|_| "DRIFTGUARD_TEST_MONGODB_URI is not set (scripts/mongo-peer.sh up)")?;
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for n in sizes {
            let dbname = format!("dg_bulk_{}", uuid::Uuid::new_v4().simple());
            let store = MongoStore::connect(&uri, &dbname, Duration::from_secs(10)).await?;
            let first = analysis(n, 1, None);
            let episodes = first
                .iter()
                .filter(|w| {
                    matches!(
                        w,
                        Write::Upsert {
                            episode: Some(_),
                            ..
                        }
                    )
                })
                .count();
            let started = Instant::now();
            store.apply(&first).await?;
            let insert = started.elapsed();
            let second = analysis(n, 2, Some(&first));
            let started = Instant::now();
            store.apply(&second).await?;
            let replace = started.elapsed();
            let stored = store.load_current().await?.len();
            println!(
                "{n} upserts ({episodes} with an episode): first write {:.2} s, \
                 rewrite {:.2} s ({stored} records stored)",
                insert.as_secs_f64(),
                replace.as_secs_f64()
            );
            let _ = store.database().drop().await;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

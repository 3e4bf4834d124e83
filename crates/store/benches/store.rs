//! Store benchmarks: upserting 10,000 records, one analysis with 1 % changed, and the statistics
//! query at 100,000 records — on SQLite, and on MongoDB when `DRIFTGUARD_TEST_MONGODB_URI` is
//! set.
//!
//! ```text
//! cargo bench -p driftguard-store --bench store -- --sample-size 10 --warm-up-time 1
//! ```
//!
//! `DRIFTGUARD_BENCH_MONGO_DIVISOR=N` divides the MongoDB record counts by N (the SecantusDB test
//! peer is a Python server, far slower than `mongod`; the bench names carry the real counts).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use driftguard_core::{DriftRecord, state};
use driftguard_store::{MongoStore, SqliteStore, Store, Write};
use tokio::runtime::Runtime;

#[path = "../tests/store/fixtures.rs"]
mod fixtures;

use fixtures::*;

/// Records of one analysis: every tenth drifting.
fn analysis(n: usize, offset_minutes: i64) -> Vec<Write> {
    (0..n)
        .map(|i| {
            let k = key(
                "Deployment",
                &format!("ns-{}", i % 50),
                &format!("app-{i:06}"),
            );
            let changes = if i % 10 == 0 { vec![scaling()] } else { vec![] };
            let t = state::advance(
                None,
                observation(&k, changes, "d", "l", C1),
                at(offset_minutes),
            );
            Write::Upsert {
                record: t.record,
                episode: t.episode,
            }
        })
        .collect()
}

fn records_of(batch: &[Write]) -> Vec<DriftRecord> {
    batch
        .iter()
        .filter_map(|w| match w {
            Write::Upsert { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// The 1 % of `current` that changed in the next analysis.
fn one_percent_changed(current: &[DriftRecord], round: i64) -> Vec<Write> {
    current
        .iter()
        .step_by(100)
        .map(|prev| {
            let k = key("Deployment", &prev.namespace, &prev.name);
            let changes = if round % 2 == 0 {
                vec![scaling(), label()]
            } else {
                vec![]
            };
            let t = state::advance(
                Some(prev),
                observation(&k, changes, "d", &format!("l{round}"), C1),
                at(10 + round),
            );
            Write::Upsert {
                record: t.record,
                episode: t.episode,
            }
        })
        .collect()
}

fn bench_backend(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    divisor: usize,
    open: &dyn Fn() -> Arc<dyn Store>,
) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    let (small, big_n) = (10_000 / divisor, 100_000 / divisor);
    let ten_k = analysis(small, 1);
    let store = open();
    group.bench_function(format!("upsert_{small}_records"), |b| {
        b.iter(|| rt.block_on(store.apply(&ten_k)).unwrap())
    });

    let current = records_of(&ten_k);
    let mut round = 0;
    group.bench_function(format!("analysis_{small}_1pct_changed"), |b| {
        b.iter_batched(
            || {
                round += 1;
                one_percent_changed(&current, round)
            },
            |batch| rt.block_on(store.apply(&batch)).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let big = open();
    let hundred_k = analysis(big_n, 1);
    for chunk in hundred_k.chunks(10_000) {
        rt.block_on(big.apply(chunk)).unwrap();
    }
    let now = at(60);
    group.bench_function(format!("statistics_{big_n}_records"), |b| {
        b.iter(|| rt.block_on(big.statistics(now)).unwrap())
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    let open_sqlite = || -> Arc<dyn Store> {
        counter.set(counter.get() + 1);
        let path = dir.path().join(format!("bench-{}.db", counter.get()));
        Arc::new(
            rt.block_on(SqliteStore::open(path, Duration::from_secs(5)))
                .unwrap(),
        )
    };
    bench_backend(c, &rt, "sqlite", 1, &open_sqlite);

    match std::env::var("DRIFTGUARD_TEST_MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => {
            let dbs = std::cell::RefCell::new(Vec::new());
            let open_mongo = || -> Arc<dyn Store> {
                let name = format!("dg_bench_{}", uuid::Uuid::new_v4().simple());
                let store = rt
                    .block_on(MongoStore::connect(&uri, &name, Duration::from_secs(10)))
                    .unwrap();
                dbs.borrow_mut().push(store.clone());
                Arc::new(store)
            };
            let divisor = std::env::var("DRIFTGUARD_BENCH_MONGO_DIVISOR")
                .ok()
                .and_then(|d| d.parse().ok())
                .filter(|d| *d >= 1)
                .unwrap_or(1);
            bench_backend(c, &rt, "mongodb", divisor, &open_mongo);
            for store in dbs.borrow().iter() {
                let _ = rt.block_on(store.database().drop().into_future());
            }
        }
        _ => eprintln!(
            "DRIFTGUARD_TEST_MONGODB_URI is not set: MongoDB benchmarks not run \
             (start the peer with scripts/mongo-peer.sh up)"
        ),
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);

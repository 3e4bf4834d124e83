//! How long one analysis batch takes to reach MongoDB (issue 20): `N` upserts with an episode
//! for every tenth record, written once (inserts) and once more with every record changed
//! (replacements, every open episode closed), into a fresh database on the server named by
//! `DRIFTGUARD_TEST_MONGODB_URI`. Each line is followed by the commands the batch sent, with
//! the time the server took for each (from the driver's command monitoring).
//!
//! ```text
//! eval "$(scripts/mongo-peer.sh up)"
//! cargo run --release -p driftguard-store --example mongo_bulk -- 1000 10000
//! ```

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftguard_core::state;
use driftguard_store::{MongoStore, Store, Write};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;

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

/// Commands started (name and collection, by request id) and finished (with their duration).
#[derive(Default)]
struct Log {
    started: Mutex<Vec<(i32, String)>>,
    finished: Mutex<Vec<(i32, Duration)>>,
}

impl Log {
    fn on(&self, event: CommandEvent) {
        match event {
            CommandEvent::Started(e) => {
                let target = e.command.get_str(&e.command_name).unwrap_or("");
                let label = format!("{} {target}", e.command_name);
                if let Ok(mut started) = self.started.lock() {
                    started.push((e.request_id, label));
                }
            }
            CommandEvent::Succeeded(e) => {
                if let Ok(mut finished) = self.finished.lock() {
                    finished.push((e.request_id, e.duration));
                }
            }
            CommandEvent::Failed(e) => {
                if let Ok(mut finished) = self.finished.lock() {
                    finished.push((e.request_id, e.duration));
                }
            }
            _ => {}
        }
    }

    /// `name collection time` of every command since the last call.
    fn drain(&self) -> Vec<String> {
        let started = self.started.lock().map(|mut s| std::mem::take(&mut *s));
        let finished = self.finished.lock().map(|mut f| std::mem::take(&mut *f));
        let (Ok(started), Ok(finished)) = (started, finished) else {
            return Vec::new();
        };
        started
            .into_iter()
            .map(|(id, label)| {
                let took = finished.iter().find(|(f, _)| *f == id).map_or_else(
                    || "?".to_owned(),
                    |(_, d)| format!("{:.2} s", d.as_secs_f64()),
                );
                format!("{label} {took}")
            })
            .collect()
    }
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
            let log = Arc::new(Log::default());
            let mut options = ClientOptions::parse(&uri).await?;
            options.server_selection_timeout = Some(Duration::from_secs(10));
            let sink = log.clone();
            options.command_event_handler = Some(EventHandler::callback(move |e| sink.on(e)));
            let store = MongoStore::connect_with_options(options, &dbname).await?;
            log.drain();
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
            let first_commands = log.drain();
            let second = analysis(n, 2, Some(&first));
            let started = Instant::now();
            store.apply(&second).await?;
            let replace = started.elapsed();
            let second_commands = log.drain();
            let stored = store.load_current().await?.len();
            println!(
                "{n} upserts ({episodes} with an episode): first write {:.2} s, \
                 rewrite {:.2} s ({stored} records stored)",
                insert.as_secs_f64(),
                replace.as_secs_f64()
            );
            println!("  first write: {}", first_commands.join(", "));
            println!("  rewrite:     {}", second_commands.join(", "));
            let _ = store.database().drop().await;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

//! One batch, written in bulk (issue 20): what several writes of one resource in one batch leave
//! (every backend), and what a batch costs in MongoDB commands.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftguard_core::state;
use driftguard_store::{MongoStore, Store, Write};
use mongodb::bson::doc;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use serde_json::json;

use crate::fixtures::*;
use crate::support::{Harness, assert_consistent, mongo_uri};

fn upsert(t: &state::Transition) -> Write {
    Write::Upsert {
        record: t.record.clone(),
        episode: t.episode.clone(),
    }
}

/// A batch holding several writes of one resource (an event queue that saw it change twice,
/// a buffered drain) ends exactly as writing them one after the other would.
pub async fn several_writes_of_one_resource_in_one_batch(h: &Harness) {
    let s = &h.store;
    let r = key("Deployment", "shop", "r");
    let gone = key("Deployment", "shop", "gone");
    let back = key("Deployment", "shop", "back");
    // `back` exists before the batch removes it and brings it back.
    let back_before = step(s, None, observation(&back, vec![], "d", "d", C1), at(0)).await;

    let r1 = state::advance(None, observation(&r, vec![scaling()], "d", "l1", C1), at(1));
    let r2 = state::advance(
        Some(&r1.record),
        observation(&r, vec![], "d", "d", C1),
        at(2),
    );
    let r3 = state::advance(
        Some(&r2.record),
        observation(&r, vec![image()], "d", "l3", C1),
        at(3),
    );
    let g1 = state::advance(None, observation(&gone, vec![label()], "d", "l", C1), at(1));
    let back_again = state::advance(
        Some(&back_before.record),
        observation(&back, vec![label()], "d", "l", C1),
        at(2),
    );
    let batch = vec![
        upsert(&r1),
        upsert(&g1),
        Write::Remove {
            resource_id: back.resource_id(),
            closing_episode: None,
        },
        upsert(&r2),
        Write::Remove {
            resource_id: gone.resource_id(),
            closing_episode: state::leave_view(&g1.record, Some(C2), at(2)),
        },
        upsert(&back_again),
        upsert(&r3),
    ];
    s.apply(&batch).await.unwrap();

    let ids: Vec<String> = s
        .load_current()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.resource_id)
        .collect();
    assert_eq!(ids, [back.resource_id(), r.resource_id()]);
    assert_eq!(
        s.get(&r.resource_id()).await.unwrap(),
        Some(r3.record.clone())
    );
    let history = s.history(&r.resource_id()).await.unwrap().unwrap();
    let spans: Vec<_> = history
        .iter()
        .map(|e| (e.first_detected, e.resolved_at))
        .collect();
    assert_eq!(spans, [(at(3), None), (at(1), Some(at(2)))]);
    let gone_history = s.history(&gone.resource_id()).await.unwrap().unwrap();
    assert_eq!(gone_history.len(), 1);
    assert_eq!(
        gone_history[0].resolved_at,
        Some(at(2)),
        "closed as it left"
    );
    assert_eq!(
        s.get(&back.resource_id()).await.unwrap(),
        Some(back_again.record),
        "removed, then back in the same batch"
    );
    assert_consistent(s).await;
}

/// The commands a client sends: (name, target collection).
#[derive(Default)]
struct Commands(Mutex<Vec<(String, String)>>);

impl Commands {
    fn record(&self, event: &CommandEvent) {
        if let CommandEvent::Started(started) = event {
            let target = started
                .command
                .get_str(&started.command_name)
                .unwrap_or("")
                .to_owned();
            self.0
                .lock()
                .unwrap()
                .push((started.command_name.clone(), target));
        }
    }

    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn is_write(name: &str) -> bool {
    matches!(
        name,
        "insert" | "update" | "delete" | "findAndModify" | "bulkWrite"
    )
}

async fn counted_store(dbname: &str) -> (MongoStore, Arc<Commands>) {
    let commands = Arc::new(Commands::default());
    let mut options = ClientOptions::parse(mongo_uri()).await.unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(10));
    let sink = commands.clone();
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(move |e| {
        sink.record(&e)
    }));
    let store = MongoStore::connect_with_options(options, dbname)
        .await
        .unwrap();
    (store, commands)
}

/// One analysis of `n` Deployments, every tenth drifting.
fn analysis(n: usize, round: i64, previous: &[Write]) -> Vec<Write> {
    (0..n)
        .map(|i| {
            let k = key(
                "Deployment",
                &format!("ns-{}", i % 50),
                &format!("app-{i:06}"),
            );
            let changes = if (i as i64 + round) % 10 == 0 {
                vec![scaling()]
            } else {
                vec![]
            };
            let before = match previous.get(i) {
                Some(Write::Upsert { record, .. }) => Some(record),
                _ => None,
            };
            upsert(&state::advance(
                before,
                observation(&k, changes, "d", &format!("l{round}"), C1),
                at(round),
            ))
        })
        .collect()
}

/// 1,000 and 10,000 upserts with their episodes cost the same handful of commands: the fence
/// read and at most five write commands, not one per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_one_batch_costs_a_constant_number_of_commands() {
    for n in [1_000, 10_000] {
        let dbname = format!("dg_test_{}", uuid::Uuid::new_v4().simple());
        let (store, commands) = counted_store(&dbname).await;
        let s: Arc<dyn Store> = Arc::new(store.clone());
        s.claim_term(0, "counted").await.unwrap();
        let first = analysis(n, 1, &[]);
        // The rewrite (every record replaced, episodes closed and opened) at 1,000; the first
        // write alone at 10,000, which takes the test peer long enough.
        let second = if n == 1_000 {
            analysis(n, 2, &first)
        } else {
            Vec::new()
        };
        for (round, batch) in [(1, &first), (2, &second)] {
            if batch.is_empty() {
                continue;
            }
            commands.take();
            s.apply(batch).await.unwrap();
            let sent = commands.take();
            let writes: Vec<_> = sent.iter().filter(|(name, _)| is_write(name)).collect();
            assert!(
                writes.len() <= 5 && sent.len() <= 6,
                "{n} upserts, round {round}: {} commands, {} writes: {sent:?}",
                sent.len(),
                writes.len()
            );
            assert_eq!(
                sent.first()
                    .map(|(name, coll)| (name.as_str(), coll.as_str())),
                Some(("find", "leadership")),
                "the fence is read first"
            );
        }
        assert_eq!(s.load_current().await.unwrap().len(), n);
        let episodes = store
            .database()
            .collection::<mongodb::bson::Document>("drift_episodes");
        let rounds = if second.is_empty() { 1 } else { 2 };
        assert_eq!(
            episodes.count_documents(doc! {}).await.unwrap() as usize,
            rounds * n / 10,
            "a tenth opened in each round"
        );
        assert_eq!(
            episodes
                .count_documents(doc! { "open": true })
                .await
                .unwrap() as usize,
            n / 10,
            "the first round's were closed by the second"
        );
        if n == 1_000 {
            assert_consistent(&s).await;
        }
        let _ = store.database().drop().await;
    }
}

/// A batch larger than one command document may be (16 MiB) is split at that limit, and every
/// record lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_batch_past_the_command_size_limit_is_split() {
    let dbname = format!("dg_test_{}", uuid::Uuid::new_v4().simple());
    let (store, commands) = counted_store(&dbname).await;
    let s: Arc<dyn Store> = Arc::new(store.clone());
    let blob = "x".repeat(6 * 1024 * 1024);
    let batch: Vec<Write> = (0..5)
        .map(|i| {
            let k = key("ConfigMap", "big", &format!("cm-{i}"));
            let mut o = observation(&k, vec![label()], "d", "l", C1);
            o.live_state = Some(json!({ "data": { "blob": blob } }));
            upsert(&state::advance(None, o, at(1)))
        })
        .collect();
    commands.take();
    s.apply(&batch).await.unwrap();
    let record_commands = commands
        .take()
        .into_iter()
        .filter(|(name, coll)| name == "update" && coll == "drift_records")
        .count();
    assert_eq!(record_commands, 3, "two 6 MiB records per 16 MiB command");
    let stored = s.load_current().await.unwrap();
    assert_eq!(stored.len(), 5);
    for (write, stored) in batch.iter().zip(&stored) {
        let Write::Upsert { record, .. } = write else {
            unreachable!()
        };
        assert_eq!(record, stored);
    }
    let _ = store.database().drop().await;
}

/// MongoDB has no transaction around an episode and its record: an open episode left by a crash
/// between the two is removed when the resource opens another, also when both are in one batch
/// — and of two episodes a batch opens for one resource, the later one stays open, as if they
/// had been written one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_open_episodes_a_batch_supersedes_are_removed() {
    let h = Harness::mongo().await;
    let s = &h.store;
    let crashed = key("Deployment", "shop", "crashed");
    let clean = step(s, None, observation(&crashed, vec![], "d", "d", C1), at(0)).await;
    let lost = state::advance(
        Some(&clean.record),
        observation(&crashed, vec![scaling()], "d", "l", C1),
        at(0),
    );
    s.apply(&[Write::Episode {
        resource_id: crashed.resource_id(),
        episode: lost.episode.clone().unwrap(),
    }])
    .await
    .unwrap();
    let twice = key("Deployment", "shop", "twice");
    let first = state::advance(
        None,
        observation(&twice, vec![scaling()], "d", "l1", C1),
        at(1),
    );
    let mut second = first.clone();
    second.record.first_detected = Some(at(2));
    let mut reopened = first.episode.clone().unwrap();
    reopened.first_detected = at(2);
    second.episode = Some(reopened);
    let next = state::advance(
        Some(&clean.record),
        observation(&crashed, vec![image()], "d", "l", C1),
        at(1),
    );
    s.apply(&[upsert(&first), upsert(&next), upsert(&second)])
        .await
        .unwrap();
    let history = s.history(&crashed.resource_id()).await.unwrap().unwrap();
    let starts: Vec<_> = history.iter().map(|e| e.first_detected).collect();
    assert_eq!(starts, [at(1)], "the orphan of minute 0 is gone");
    let history = s.history(&twice.resource_id()).await.unwrap().unwrap();
    let starts: Vec<_> = history.iter().map(|e| e.first_detected).collect();
    assert_eq!(starts, [at(2)], "the later open episode won");
    assert_consistent(s).await;
    h.cleanup().await;
}

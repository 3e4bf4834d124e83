//! Fencing between replicas (issue 19): the contract on every backend, and MongoDB's
//! per-document conditions in the window between its fence read and its writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftRecord, DriftStatus, Episode, state};
use driftguard_store::{
    BufferConfig, BufferedStore, Error, MongoStore, OutboxEntry, Page, RecordQuery, Result,
    Statistics, Store, Write,
};
use mongodb::bson::{Bson, Document, doc};
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;

use crate::fixtures::*;
use crate::support::{Harness, assert_consistent, mongo_uri};

fn upsert(t: &state::Transition) -> Write {
    Write::Upsert {
        record: t.record.clone(),
        episode: t.episode.clone(),
    }
}

async fn claim(store: &Arc<dyn Store>, lease_term: u64, holder: &str) -> u64 {
    store
        .claim_term(lease_term, holder)
        .await
        .unwrap_or_else(|e| panic!("claim by {holder}: {e:?}"))
}

fn expect_fenced(result: Result<()>, term: u64, current: u64) {
    match result {
        Err(Error::Fenced {
            term: t,
            current: c,
        }) => {
            assert_eq!((t, c), (term, current), "the terms the refusal names");
        }
        other => panic!("expected Fenced {{ term: {term}, current: {current} }}, got {other:?}"),
    }
}

async fn history_of(store: &Arc<dyn Store>, id: &str) -> Vec<Episode> {
    store
        .history(id)
        .await
        .unwrap_or_else(|e| panic!("history {id}: {e:?}"))
        .unwrap_or_default()
}

/// A claims and writes; B claims a higher term; A's next batch (a paused leader waking up) is
/// refused whole and the store keeps what B and A-before-B wrote; B writes on; A claiming again
/// turns the tables.
pub async fn a_newer_claim_fences_the_old_writer(h: &Harness) {
    let a = h.store.clone();
    let b = h.reopen().await;
    assert_eq!(claim(&a, 3, "replica-a").await, 3, "max(0 + 1, lease 3)");

    let web = key("Deployment", "shop", "web");
    let active = drift(&a, &web, vec![scaling()], at(1), None).await;
    let api = key("Deployment", "shop", "api");
    let clean = step(&a, None, observation(&api, vec![], "d", "d", C1), at(1)).await;

    assert_eq!(claim(&b, 0, "replica-b").await, 4, "stored 3 + 1");
    // The new leader resolves web.
    let resolved = step(
        &b,
        Some(&active),
        observation(&web, vec![], "d", "d", C1),
        at(2),
    )
    .await;
    assert_eq!(resolved.record.drift_status, DriftStatus::Resolved);

    // The old leader wakes with its stale view: web drifts again (a second open episode), api
    // drifts, a new resource appears, and api leaves.
    let stale_web = state::advance(
        Some(&active),
        observation(&web, vec![image()], "d", "l9", C1),
        at(3),
    );
    let stale_api = state::advance(
        Some(&clean.record),
        observation(&api, vec![label()], "d", "l9", C1),
        at(3),
    );
    let fresh = key("ConfigMap", "shop", "new");
    let stale_new = state::advance(
        None,
        observation(&fresh, vec![label()], "d", "x", C1),
        at(3),
    );
    let before = a.load_current().await.unwrap_or_else(|e| panic!("{e:?}"));
    expect_fenced(
        a.apply(&[upsert(&stale_web), upsert(&stale_api), upsert(&stale_new)])
            .await,
        3,
        4,
    );
    expect_fenced(
        a.apply(&[Write::Remove {
            resource_id: api.resource_id(),
            closing_episode: None,
        }])
        .await,
        3,
        4,
    );
    expect_fenced(
        a.apply(&[Write::Episode {
            resource_id: web.resource_id(),
            episode: stale_web
                .episode
                .clone()
                .unwrap_or_else(|| panic!("episode")),
        }])
        .await,
        3,
        4,
    );
    let after = a.load_current().await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(after, before, "nothing of the stale batches landed");
    assert_eq!(
        a.get(&web.resource_id())
            .await
            .unwrap_or_else(|e| panic!("{e:?}")),
        Some(resolved.record.clone()),
        "B's verdict stands"
    );
    let history = history_of(&a, &web.resource_id()).await;
    assert_eq!(history.len(), 1, "no second episode: {history:?}");
    assert_eq!(history[0].resolved_at, Some(at(2)), "and B closed it");
    assert!(
        history_of(&a, &fresh.resource_id()).await.is_empty(),
        "the stale new resource has no history"
    );
    assert_consistent(&a).await;

    // B keeps writing; A claims again (it got the Lease back) and B is the stale one now.
    let b_drift = step(
        &b,
        Some(&clean.record),
        observation(&api, vec![image()], "d", "l2", C1),
        at(4),
    )
    .await;
    assert_eq!(claim(&a, 0, "replica-a").await, 5);
    let b_late = state::advance(
        Some(&b_drift.record),
        observation(&api, vec![], "d", "d", C1),
        at(5),
    );
    expect_fenced(b.apply(&[upsert(&b_late)]).await, 4, 5);
    let a_now = state::advance(
        Some(&b_drift.record),
        observation(&api, vec![], "d", "d", C2),
        at(6),
    );
    a.apply(&[upsert(&a_now)])
        .await
        .unwrap_or_else(|e| panic!("the new leader writes: {e:?}"));
    let api_history = history_of(&a, &api.resource_id()).await;
    assert_eq!(api_history.len(), 1);
    assert_eq!(
        api_history[0].resolved_at,
        Some(at(6)),
        "A closed B's episode"
    );
    assert_consistent(&a).await;
}

/// The stored term only grows: a recreated Lease (its transition count back at 0) or a smaller
/// count still gets stored + 1, a larger one is taken as is.
pub async fn claims_never_lower_the_term(h: &Harness) {
    let a = h.store.clone();
    let b = h.reopen().await;
    assert_eq!(
        claim(&a, 0, "a").await,
        1,
        "the first claim on an empty store"
    );
    assert_eq!(
        claim(&b, 10, "b").await,
        10,
        "a larger lease count is taken"
    );
    assert_eq!(claim(&a, 2, "a").await, 11, "a smaller one gets stored + 1");
    assert_eq!(claim(&a, 11, "a").await, 12, "an equal one too");
    let restarted = h.reopen().await;
    assert_eq!(
        claim(&restarted, 0, "a").await,
        13,
        "the term survives a restart"
    );
    expect_fenced(
        a.apply(&[Write::Remove {
            resource_id: "Deployment:x:y".into(),
            closing_episode: None,
        }])
        .await,
        12,
        13,
    );
}

/// A handle that never claimed writes as before (one replica, no leader election), even after
/// another handle claimed.
pub async fn an_unclaimed_handle_writes_unfenced(h: &Harness) {
    let single = h.store.clone();
    let web = key("Deployment", "shop", "web");
    let active = drift(&single, &web, vec![scaling()], at(1), None).await;
    let other = h.reopen().await;
    assert_eq!(claim(&other, 0, "elected").await, 1);
    let resolved = step(
        &single,
        Some(&active),
        observation(&web, vec![], "d", "d", C1),
        at(2),
    )
    .await;
    assert_eq!(
        single
            .get(&web.resource_id())
            .await
            .unwrap_or_else(|e| panic!("{e:?}")),
        Some(resolved.record)
    );
    assert_consistent(&single).await;
}

/// A store whose writes can be made to fail as "unavailable", so the buffer queues them.
struct Outage {
    inner: Arc<dyn Store>,
    down: AtomicBool,
}

#[async_trait]
impl Store for Outage {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn installation_key(&self) -> Result<Vec<u8>> {
        self.inner.installation_key().await
    }
    async fn load_current(&self) -> Result<Vec<DriftRecord>> {
        self.inner.load_current().await
    }
    async fn apply(&self, batch: &[Write]) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable {
                operation: "testing",
                source: "switched off".into(),
            });
        }
        self.inner.apply(batch).await
    }
    async fn list(&self, q: &RecordQuery) -> Result<Page> {
        self.inner.list(q).await
    }
    async fn get(&self, id: &str) -> Result<Option<DriftRecord>> {
        self.inner.get(id).await
    }
    async fn history(&self, id: &str) -> Result<Option<Vec<Episode>>> {
        self.inner.history(id).await
    }
    async fn statistics(&self, now: DateTime<Utc>) -> Result<Statistics> {
        self.inner.statistics(now).await
    }
    async fn outbox_push(&self, entries: &[OutboxEntry]) -> Result<()> {
        self.inner.outbox_push(entries).await
    }
    async fn outbox_pending(&self) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox_pending().await
    }
    async fn outbox_remove(&self, sink: &str, keys: &[String]) -> Result<()> {
        self.inner.outbox_remove(sink, keys).await
    }
    async fn claim_term(&self, lease_term: u64, holder: &str) -> Result<u64> {
        self.inner.claim_term(lease_term, holder).await
    }
    async fn request_run(&self, run_id: &str, requested_at: DateTime<Utc>) -> Result<()> {
        self.inner.request_run(run_id, requested_at).await
    }
    async fn take_run_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.inner.take_run_requests().await
    }
    async fn put_run(&self, run_id: &str, json: &str) -> Result<()> {
        self.inner.put_run(run_id, json).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<String>> {
        self.inner.get_run(run_id).await
    }
}

fn fast() -> BufferConfig {
    BufferConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..BufferConfig::default()
    }
}

async fn wait_fenced(buffered: &BufferedStore) -> (u64, u64) {
    for _ in 0..500 {
        if let Some(fenced) = buffered.fenced() {
            return fenced;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the buffer never noticed the fence: {:?}",
        buffered.health()
    );
}

/// Writes a stale leader queued during an outage are dropped when the store answers "fenced"
/// on the drain; the buffer then refuses writes until its replica claims again.
pub async fn a_stale_leaders_buffered_writes_are_dropped(h: &Harness) {
    let outage = Arc::new(Outage {
        inner: h.store.clone(),
        down: AtomicBool::new(false),
    });
    let buffered = BufferedStore::new(outage.clone(), fast());
    assert_eq!(buffered.claim_term(0, "a").await.unwrap(), 1);
    let web = key("Deployment", "shop", "web");
    let active = state::advance(
        None,
        observation(&web, vec![scaling()], "d", "l", C1),
        at(1),
    );
    buffered.apply(&[upsert(&active)]).await.unwrap();

    outage.down.store(true, Ordering::SeqCst);
    let stale_web = state::advance(
        Some(&active.record),
        observation(&web, vec![], "d", "d", C1),
        at(2),
    );
    let fresh = key("ConfigMap", "shop", "new");
    let stale_new = state::advance(None, observation(&fresh, vec![], "d", "d", C1), at(2));
    buffered
        .apply(&[upsert(&stale_web), upsert(&stale_new)])
        .await
        .expect("queued while the store is unreachable");
    assert_eq!(buffered.pending(), 2);
    assert_eq!(buffered.fenced(), None);

    let b = h.reopen().await;
    assert_eq!(claim(&b, 0, "b").await, 2);
    let other = key("Service", "web", "frontend");
    step(&b, None, observation(&other, vec![], "d", "d", C1), at(3)).await;

    outage.down.store(false, Ordering::SeqCst);
    assert_eq!(wait_fenced(&buffered).await, (1, 2));
    assert_eq!(buffered.pending(), 0, "the queued writes were dropped");
    let ids: Vec<String> = h
        .store
        .load_current()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.resource_id)
        .collect();
    assert_eq!(ids, [web.resource_id(), other.resource_id()]);
    assert_eq!(
        h.store.get(&web.resource_id()).await.unwrap(),
        Some(active.record.clone()),
        "web is as A wrote it before B's claim"
    );
    assert_eq!(history_of(&h.store, &web.resource_id()).await.len(), 1);
    assert_consistent(&h.store).await;

    // Fenced: refused at once, nothing queued, even while the store is reachable.
    let later = state::advance(None, observation(&fresh, vec![], "d", "d", C1), at(4));
    expect_fenced(buffered.apply(&[upsert(&later)]).await, 1, 2);
    assert_eq!(buffered.pending(), 0);

    // Leading again: the buffer writes through.
    assert_eq!(buffered.claim_term(0, "a").await.unwrap(), 3);
    assert_eq!(buffered.fenced(), None);
    buffered.apply(&[upsert(&later)]).await.unwrap();
    assert_eq!(
        h.store.get(&fresh.resource_id()).await.unwrap(),
        Some(later.record)
    );
}

/// The buffer also notices a refusal of a write it passes straight through.
pub async fn a_fenced_direct_write_fences_the_buffer(h: &Harness) {
    let buffered = BufferedStore::new(h.store.clone(), fast());
    assert_eq!(buffered.claim_term(5, "a").await.unwrap(), 5);
    let b = h.reopen().await;
    assert_eq!(claim(&b, 0, "b").await, 6);
    let web = key("Deployment", "shop", "web");
    let t = state::advance(None, observation(&web, vec![], "d", "d", C1), at(1));
    expect_fenced(buffered.apply(&[upsert(&t)]).await, 5, 6);
    assert_eq!(buffered.fenced(), Some((5, 6)));
    assert_eq!(
        buffered.pending(),
        0,
        "a fenced write is not queued to retry"
    );
    assert!(
        !Error::Fenced {
            term: 5,
            current: 6
        }
        .is_unavailable()
    );
    assert!(h.store.load_current().await.unwrap().is_empty());
}

// === MongoDB specifics ===

/// Pauses the first `update` command a client sends while armed, until released: a leader
/// frozen between its fence read and its writes.
struct Pause {
    armed: AtomicBool,
    paused: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    resume: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Pause {
    fn on(&self, event: &CommandEvent) {
        let CommandEvent::Started(started) = event else {
            return;
        };
        if started.command_name != "update" || !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let paused = self.paused.lock().unwrap().take();
        let resume = self.resume.lock().unwrap().take();
        tokio::task::block_in_place(|| {
            if let Some(paused) = paused {
                let _ = paused.send(());
            }
            if let Some(resume) = resume {
                let _ = resume.recv_timeout(Duration::from_secs(60));
            }
        });
    }
}

/// The residual window: another replica claims after the old leader's fence read but before
/// its writes. Every document that existed at the claim carries the new term by then, so the
/// old leader's conditional writes to them collide and it gets `Fenced`; nothing after the
/// failing command is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongo_a_claim_between_fence_read_and_write_still_fences() {
    let uri = mongo_uri();
    let dbname = format!("dg_test_{}", uuid::Uuid::new_v4().simple());
    let (paused_tx, paused_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    let pause = Arc::new(Pause {
        armed: AtomicBool::new(false),
        paused: std::sync::Mutex::new(Some(paused_tx)),
        resume: std::sync::Mutex::new(Some(resume_rx)),
    });
    let mut options = ClientOptions::parse(&uri).await.unwrap();
    let hook = pause.clone();
    options.command_event_handler =
        Some(mongodb::event::EventHandler::callback(move |e| hook.on(&e)));
    let a_store = MongoStore::connect_with_options(options, &dbname)
        .await
        .unwrap();
    let a: Arc<dyn Store> = Arc::new(a_store.clone());
    let b: Arc<dyn Store> = Arc::new(
        MongoStore::connect(&uri, &dbname, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    assert_eq!(claim(&a, 0, "a").await, 1);
    let web = key("Deployment", "shop", "web");
    let active = drift(&a, &web, vec![scaling()], at(1), None).await;

    // A's stale batch closes web's episode and adds a resource; it freezes before writing.
    let stale = state::advance(
        Some(&active),
        observation(&web, vec![], "d", "d", C1),
        at(2),
    );
    let fresh = key("ConfigMap", "shop", "new");
    let stale_new = state::advance(None, observation(&fresh, vec![], "d", "d", C1), at(2));
    pause.armed.store(true, Ordering::SeqCst);
    let writer = a.clone();
    let batch = vec![upsert(&stale), upsert(&stale_new)];
    let stale_apply = tokio::spawn(async move { writer.apply(&batch).await });
    tokio::task::spawn_blocking(move || paused_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("A reached its first write command");
    assert_eq!(claim(&b, 0, "b").await, 2);
    resume_tx.send(()).unwrap();
    expect_fenced(stale_apply.await.unwrap(), 1, 2);

    assert_eq!(
        b.get(&web.resource_id()).await.unwrap(),
        Some(active.clone()),
        "web's record is untouched"
    );
    let history = history_of(&b, &web.resource_id()).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resolved_at, None, "its episode is still open");
    assert_eq!(
        b.get(&fresh.resource_id()).await.unwrap(),
        None,
        "the record command after the refused episode command was never sent"
    );
    let db = a_store.database();
    let record = db
        .collection::<Document>("drift_records")
        .find_one(doc! { "_id": web.resource_id() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.get("term"),
        Some(&Bson::Int64(2)),
        "raised by B's claim"
    );
    let _ = db.drop().await;
}

/// The fence document and the `term` each written document carries; the term never leaks into
/// the record JSON the API serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_terms_are_stored_beside_the_record_json() {
    let h = Harness::mongo().await;
    let mongo = h.mongo_store().unwrap();
    let s = &h.store;
    assert_eq!(claim(s, 7, "replica-7").await, 7);
    let web = key("Deployment", "shop", "web");
    let record = drift(s, &web, vec![scaling()], at(1), None).await;
    let db = mongo.database();
    let fence = db
        .collection::<Document>("leadership")
        .find_one(doc! { "_id": "writer" })
        .await
        .unwrap()
        .expect("the fence document");
    assert_eq!(fence.get_i64("term").unwrap(), 7);
    assert_eq!(fence.get_str("holder").unwrap(), "replica-7");
    assert!(matches!(fence.get("since"), Some(Bson::DateTime(_))));
    let stored = db
        .collection::<Document>("drift_records")
        .find_one(doc! { "_id": web.resource_id() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_i64("term").unwrap(), 7);
    let episode = db
        .collection::<Document>("drift_episodes")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(episode.get_i64("term").unwrap(), 7);

    let page = s.list_json(&RecordQuery::default()).await.unwrap();
    assert_eq!(page.records.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&page.records[0]).unwrap();
    assert!(json.get("term").is_none(), "{}", page.records[0]);
    assert_eq!(json, serde_json::to_value(&record).unwrap());
    assert_eq!(s.get(&web.resource_id()).await.unwrap(), Some(record));
    h.cleanup().await;
}

// === SQLite specifics ===

/// A file written by version 2 (records, history and an outbox entry in it) gains the fence and
/// the run tables on open and keeps its data; its writes are fenced like a fresh file's.
#[tokio::test]
async fn sqlite_migration_3_upgrades_a_version_2_file() {
    use driftguard_store::SqliteStore;
    use rusqlite::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    let open = || SqliteStore::open(&path, Duration::from_secs(5));
    let store: Arc<dyn Store> = Arc::new(open().await.unwrap());
    let web = key("Deployment", "shop", "web");
    let active = drift(&store, &web, vec![scaling()], at(1), None).await;
    let entry = OutboxEntry {
        sink: "slack".into(),
        key: "e1".into(),
        payload: "p".into(),
        queued_at: at(1),
    };
    store
        .outbox_push(std::slice::from_ref(&entry))
        .await
        .unwrap();
    drop(store);
    // Back to what version 2 wrote.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE fence; DROP TABLE run_requests; DROP TABLE runs; \
             DELETE FROM schema_version WHERE version > 2; PRAGMA user_version = 2;",
        )
        .unwrap();
    }

    let upgraded = open().await.unwrap();
    assert_eq!(upgraded.schema_version().await.unwrap(), 3);
    let a: Arc<dyn Store> = Arc::new(upgraded);
    assert_eq!(a.load_current().await.unwrap(), vec![active.clone()]);
    assert_eq!(history_of(&a, &web.resource_id()).await.len(), 1);
    assert_eq!(a.outbox_pending().await.unwrap(), vec![entry]);
    assert_eq!(claim(&a, 0, "a").await, 1);
    a.put_run("r1", "{}").await.unwrap();
    assert_eq!(a.get_run("r1").await.unwrap().as_deref(), Some("{}"));
    let b: Arc<dyn Store> = Arc::new(open().await.unwrap());
    assert_eq!(claim(&b, 0, "b").await, 2);
    let resolved = state::advance(
        Some(&active),
        observation(&web, vec![], "d", "d", C1),
        at(2),
    );
    expect_fenced(a.apply(&[upsert(&resolved)]).await, 1, 2);
    assert_eq!(b.load_current().await.unwrap(), vec![active]);

    let conn = Connection::open(&path).unwrap();
    let logged: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert_eq!(logged, [1, 2, 3]);
}

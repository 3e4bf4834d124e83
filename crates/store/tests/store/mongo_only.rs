//! MongoDB specifics: the stored document shape, crash repair without transactions, and an
//! outage of a private peer.

use std::sync::Arc;
use std::time::Duration;

use driftguard_core::state;
use driftguard_store::{BufferConfig, BufferState, BufferedStore, MongoStore, Store, Write};
use driftguard_test_support::mongo::PrivateMongo;
use mongodb::bson::{Bson, Document, doc};

use crate::fixtures::*;
use crate::support::{Harness, assert_consistent, mongo_uri};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_document_shape() {
    let h = Harness::mongo().await;
    let s = &h.store;
    let k = key("ConfigMap", "shop", "settings");
    let mut o = observation(&k, vec![scaling(), label()], "d", "l", C1);
    o.live_state = Some(serde_json::json!({"data": {"app.properties": "x", "$set": 1}}));
    let t = step(s, None, o, at(1)).await;
    s.installation_key().await.unwrap();

    let db = h.mongo_store().unwrap().database();
    let record: Document = db
        .collection::<Document>("drift_records")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.get_str("_id").unwrap(), "ConfigMap:shop:settings");
    assert_eq!(record.get_str("namespace").unwrap(), "shop");
    assert_eq!(record.get_str("kind").unwrap(), "ConfigMap");
    assert_eq!(record.get_str("status").unwrap(), "active");
    assert!(record.get_bool("drift_detected").unwrap());
    assert_eq!(record.get_str("severity").unwrap(), "medium");
    assert_eq!(record.get_str("drift_type").unwrap(), "Scaling");
    let types: Vec<&str> = record
        .get_array("change_types")
        .unwrap()
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(types, ["LabelChange", "Scaling"]);
    assert!(matches!(
        record.get("last_updated_ns"),
        Some(Bson::Int64(_))
    ));
    assert!(matches!(
        record.get("last_updated"),
        Some(Bson::DateTime(_))
    ));
    // The record itself is a JSON string: keys with `.` and `$` never become field names.
    let json = record.get_str("record").unwrap();
    assert!(json.contains("app.properties") && json.contains("$set"));
    let decoded: driftguard_core::DriftRecord = serde_json::from_str(json).unwrap();
    assert_eq!(decoded, t.record);
    fn no_odd_field_names(doc: &Document) {
        for (key, value) in doc {
            assert!(
                !key.contains('.') && !key.starts_with('$'),
                "field name {key:?}"
            );
            if let Bson::Document(inner) = value {
                no_odd_field_names(inner);
            }
        }
    }
    no_odd_field_names(&record);

    let episode: Document = db
        .collection::<Document>("drift_episodes")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        episode.get_str("_id").unwrap(),
        driftguard_store::MongoStore::episode_fingerprint(&k.resource_id(), at(1))
    );
    assert_eq!(
        episode.get_str("resource_id").unwrap(),
        "ConfigMap:shop:settings"
    );
    assert!(episode.get_bool("open").unwrap());
    assert!(matches!(episode.get("resolved_at_ns"), Some(Bson::Null)));
    assert!(episode.get_str("episode").is_ok());
    no_odd_field_names(&episode);

    let meta: Document = db
        .collection::<Document>("meta")
        .find_one(doc! { "_id": "installation_key" })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(meta.get("value"), Some(Bson::Binary(b)) if b.bytes.len() == 32));

    let names: Vec<String> = db
        .collection::<Document>("drift_records")
        .list_index_names()
        .await
        .unwrap();
    for wanted in [
        "status",
        "namespace",
        "kind",
        "severity",
        "change_types",
        "last_updated",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "index {wanted} in {names:?}"
        );
    }
    h.cleanup().await;
}

/// A crash between the episode write and the record write leaves an open episode the record
/// never knew; the next write that opens an episode removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_crash_between_episode_and_record_is_repaired() {
    let h = Harness::mongo().await;
    let s = &h.store;
    let k = key("Deployment", "shop", "web");
    let clean = step(s, None, observation(&k, vec![], "d", "d", C1), at(0)).await;
    // The "crashed" analysis: its episode landed, its record did not.
    let lost = state::advance(
        Some(&clean.record),
        observation(&k, vec![scaling()], "d", "l", C1),
        at(1),
    );
    s.apply(&[Write::Episode {
        resource_id: k.resource_id(),
        episode: lost.episode.clone().unwrap(),
    }])
    .await
    .unwrap();
    // After the restart the record still says `none`; the next analysis opens an episode.
    let warm = s.get(&k.resource_id()).await.unwrap().unwrap();
    let next = step(
        s,
        Some(&warm),
        observation(&k, vec![scaling()], "d", "l", C1),
        at(2),
    )
    .await;
    let history = s.history(&k.resource_id()).await.unwrap().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].first_detected, at(2));
    assert_eq!(next.record.first_detected, Some(at(2)));
    assert_consistent(s).await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_open_picks_the_driver_from_config() {
    let cfg = driftguard_config::DatabaseConfig {
        uri: Some(mongo_uri()),
        dbname: format!("dg_test_{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    };
    let store = driftguard_store::open(&cfg).await.unwrap();
    store.ping().await.unwrap();
    let mongo = MongoStore::connect(&mongo_uri(), &cfg.dbname, Duration::from_secs(5))
        .await
        .unwrap();
    let names = mongo.database().list_collection_names().await.unwrap();
    assert!(names.iter().any(|n| n == "drift_records"), "{names:?}");
    let _ = mongo.database().drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_unreachable_server_is_unavailable_and_secret_free() {
    // A port nothing listens on (bound then released), with a password in the URI.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("mongodb://dg:s3cr3t-pw@127.0.0.1:{port}/?directConnection=true");
    let err = MongoStore::connect(&uri, "dg", Duration::from_millis(500))
        .await
        .err()
        .expect("nothing listens");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_buffers_writes_and_drains_after_restart() {
    let _ = mongo_uri(); // the mongo_ group needs the peer set up; say so early
    // A server of its own: stopping the shared one would break the tests running beside it.
    let peer = PrivateMongo::start().unwrap_or_else(|e| panic!("{e:#}"));
    let uri = peer.uri().to_owned();
    assert!(uri.starts_with("mongodb://127.0.0.1:"), "{uri}");

    let mongo = MongoStore::connect(&uri, "dg_outage", Duration::from_secs(2))
        .await
        .unwrap();
    let plain: Arc<dyn Store> = Arc::new(mongo);
    let buffered = BufferedStore::new(
        plain.clone(),
        BufferConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            ..BufferConfig::default()
        },
    );

    let k = key("Deployment", "shop", "web");
    let t1 = state::advance(None, observation(&k, vec![scaling()], "d", "l1", C1), at(1));
    buffered
        .apply(&[Write::Upsert {
            record: t1.record.clone(),
            episode: t1.episode.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(buffered.health().state, BufferState::Healthy);

    peer.stop().unwrap_or_else(|e| panic!("{e:#}"));
    let err = plain.ping().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let t2 = state::advance(
        Some(&t1.record),
        observation(&k, vec![], "d", "d", C1),
        at(2),
    );
    let mut batch = vec![Write::Upsert {
        record: t2.record.clone(),
        episode: t2.episode.clone(),
    }];
    for i in 0..10 {
        let other = key("ConfigMap", "shop", &format!("cm-{i}"));
        let t = state::advance(
            None,
            observation(&other, vec![label()], "d", "x", C1),
            at(2),
        );
        batch.push(Write::Upsert {
            record: t.record,
            episode: t.episode,
        });
    }
    buffered
        .apply(&batch)
        .await
        .expect("accepted into the buffer");
    let health = buffered.health();
    assert_eq!(health.state, BufferState::Buffering);
    assert_eq!(health.pending, 11);
    let read = buffered.get(&k.resource_id()).await.unwrap_err();
    assert!(read.is_unavailable(), "reads during the outage: {read:?}");

    peer.resume().unwrap_or_else(|e| panic!("{e:#}")); // same port, same data
    let mut drained = false;
    for _ in 0..150 {
        if buffered.health().state == BufferState::Healthy {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(drained, "buffer did not drain: {:?}", buffered.health());
    assert_eq!(buffered.pending(), 0);

    let stored = plain.get(&k.resource_id()).await.unwrap().unwrap();
    assert_eq!(stored, t2.record);
    assert_eq!(plain.load_current().await.unwrap().len(), 11);
    let history = plain.history(&k.resource_id()).await.unwrap().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resolved_at, Some(at(2)));
    assert_consistent(&plain).await;
    drop(buffered);
    drop(peer);
}

/// A corrupt document is skipped (and logged) rather than failing the load, which start-up
/// would retry forever; the rest of the view loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_corrupt_document_is_skipped_by_the_load() {
    let h = Harness::mongo().await;
    let s = &h.store;
    let good = key("ConfigMap", "shop", "good");
    let bad = key("ConfigMap", "shop", "bad");
    step(s, None, observation(&good, vec![], "d", "d", C1), at(0)).await;
    step(s, None, observation(&bad, vec![], "d", "d", C1), at(0)).await;
    let db = h.mongo_store().unwrap().database();
    db.collection::<Document>("drift_records")
        .update_one(
            doc! {"_id": bad.resource_id()},
            doc! {"$set": {"record": "{not json"}},
        )
        .await
        .unwrap();
    let loaded = s.load_current().await.unwrap();
    let ids: Vec<&str> = loaded.iter().map(|r| r.resource_id.as_str()).collect();
    assert_eq!(ids, [good.resource_id().as_str()]);
    h.cleanup().await;
}

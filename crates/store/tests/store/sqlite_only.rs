//! SQLite specifics: file format, pragmas, migrations.

use std::time::Duration;

use driftguard_store::{SqliteStore, Store};
use rusqlite::Connection;

#[tokio::test]
async fn sqlite_file_is_wal_versioned_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 3);
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    store.installation_key().await.unwrap();

    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let logged: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(logged, [1, 2, 3]);
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for wanted in [
        "records_status",
        "records_namespace",
        "records_kind",
        "records_severity",
        "records_last_updated",
        "record_change_types_type",
        "episodes_resolved_at",
        "outbox_queued_at",
        "run_requests_requested_at",
        "runs_stored_seq",
    ] {
        assert!(
            indexes.iter().any(|i| i == wanted),
            "{wanted} in {indexes:?}"
        );
    }
    // The type filter uses its index rather than scanning.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT resource_id FROM record_change_types WHERE drift_type = 'Scaling'",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("record_change_types_type")),
        "{plan:?}"
    );
    drop(conn);

    // Reopening does not re-run migrations.
    drop(store);
    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 3);
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(!err.is_unavailable());
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn sqlite_unopenable_path_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("dg.db");
    let err = SqliteStore::open(&path, Duration::from_secs(1))
        .await
        .err()
        .expect("cannot open");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("missing-dir"), "message: {err}");
}

#[tokio::test]
async fn sqlite_open_picks_the_driver_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = driftguard_config::DatabaseConfig {
        path: dir.path().join("cfg.db").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let store = driftguard_store::open(&cfg).await.unwrap();
    store.ping().await.unwrap();
    assert!(dir.path().join("cfg.db").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    let store = SqliteStore::open(&path, Duration::from_secs(5))
        .await
        .unwrap();
    // The file holds the installation's digest key.
    store.installation_key().await.unwrap();
    for file in ["dg.db", "dg.db-wal", "dg.db-shm"] {
        let file = dir.path().join(file);
        if let Ok(meta) = std::fs::metadata(&file) {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}: mode {mode:o}", file.display());
        }
    }
    assert!(path.exists());
}

/// A corrupt row is skipped (and logged) rather than failing the load: start-up would retry a
/// failing load forever. The rest of the view loads.
#[tokio::test]
async fn sqlite_corrupt_row_is_skipped_by_the_load() {
    use crate::fixtures::{C1, at, key, observation, step};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dg.db");
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
        SqliteStore::open(&path, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let good = key("ConfigMap", "shop", "good");
    let bad = key("ConfigMap", "shop", "bad");
    step(
        &store,
        None,
        observation(&good, vec![], "d", "d", C1),
        at(0),
    )
    .await;
    step(&store, None, observation(&bad, vec![], "d", "d", C1), at(0)).await;
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE records SET record_json = '{not json' WHERE resource_id = ?1",
        [bad.resource_id()],
    )
    .unwrap();
    let loaded = store.load_current().await.unwrap();
    let ids: Vec<&str> = loaded.iter().map(|r| r.resource_id.as_str()).collect();
    assert_eq!(ids, [good.resource_id().as_str()]);
}

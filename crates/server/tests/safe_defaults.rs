//! Safe defaults (issue 14), through the real `serve` entry point: without a token the API
//! listens on loopback only, a non-loopback address without a token is refused unless opted in,
//! and `/ready` — open to anyone — never shows the database path or the MongoDB host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftguard_config::{LoadOptions, Loaded, load};
use driftguard_server::{ServeError, run};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

fn loaded(env: &[(&str, &str)]) -> Loaded {
    let mut all = vec![
        ("DRIFTGUARD_SERVER__PORT", "0"),
        (
            "DRIFTGUARD_GIT__REPOSITORY_URL",
            "/nonexistent/driftguard-repo",
        ),
    ];
    all.extend_from_slice(env);
    load(&LoadOptions {
        file: None,
        search_dir: Some(PathBuf::from("/nonexistent-driftguard-dir")),
        env: all
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    })
    .unwrap()
}

struct Running {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

async fn start(loaded: Loaded) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(run(loaded, shutdown, Some(bound_tx)));
    let address = tokio::time::timeout(Duration::from_secs(20), bound_rx)
        .await
        .expect("serve binds within 20 s")
        .expect("serve binds");
    Running {
        address,
        stop,
        task,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve stops within 30 s")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    /// `/ready` once the store component reports `down` (the store is unreachable).
    async fn ready_with_store_down(&self) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/ready", self.address.port());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = client.get(&url).send().await.unwrap();
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap();
            let json: Value = serde_json::from_str(&body).unwrap();
            if json["components"]["store"]["status"] == "down" {
                return (status, body);
            }
            assert!(
                Instant::now() < deadline,
                "the store never reported down: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn without_a_token_serve_listens_on_loopback_and_ready_hides_the_database_path() {
    let dir = tempfile::tempdir().unwrap();
    // A file in a directory that does not exist: SQLite cannot open it (store unreachable).
    let db = dir
        .path()
        .join("private-dir-name")
        .join("secret-db-name.db");
    let db = db.to_str().unwrap().to_owned();
    let running = start(loaded(&[
        ("DRIFTGUARD_DATABASE__DRIVER", "sqlite"),
        ("DRIFTGUARD_DATABASE__PATH", &db),
    ]))
    .await;
    assert!(
        running.address.ip().is_loopback(),
        "no token: loopback only, got {}",
        running.address
    );
    let (status, body) = running.ready_with_store_down().await;
    assert_eq!(status, 503, "{body}");
    for leak in [
        "private-dir-name",
        "secret-db-name",
        dir.path().to_str().unwrap(),
    ] {
        assert!(!body.contains(leak), "/ready shows {leak}: {body}");
    }
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["components"]["store"]["message"], "unreachable");
    running.stop().await;
}

#[tokio::test]
async fn ready_hides_the_mongodb_host_when_the_store_is_unreachable() {
    // A reserved name (RFC 2606) that never resolves, and a port nothing listens on.
    let running = start(loaded(&[
        (
            "DRIFTGUARD_DATABASE__URI",
            "mongodb://dg-user:dg-pass@mongo-secret-host.invalid:27999/?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
        ),
        ("DRIFTGUARD_DATABASE__TIMEOUT", "1s"),
    ]))
    .await;
    let (status, body) = running.ready_with_store_down().await;
    assert_eq!(status, 503, "{body}");
    for leak in [
        "mongo-secret-host",
        "27999",
        "dg-user",
        "dg-pass",
        "mongodb://",
    ] {
        assert!(!body.contains(leak), "/ready shows {leak}: {body}");
    }
    running.stop().await;
}

/// Runs `serve` and expects it to stop at once with a configuration error; returns its text.
async fn refused(loaded: Loaded) -> String {
    let (_stop, shutdown) = watch::channel(false);
    let result = tokio::time::timeout(Duration::from_secs(20), run(loaded, shutdown, None))
        .await
        .expect("refused at once, not left running");
    let Err(ServeError::Config(message)) = result else {
        panic!("expected a configuration error, got {result:?}");
    };
    message
}

#[tokio::test]
async fn a_non_loopback_address_without_a_token_is_refused_naming_the_keys() {
    let message = refused(loaded(&[("DRIFTGUARD_SERVER__ADDRESS", "0.0.0.0")])).await;
    for key in [
        "server.auth_token",
        "server.address",
        "server.allow_unauthenticated",
    ] {
        assert!(message.contains(key), "{message} names {key}");
    }
}

#[tokio::test]
async fn the_opt_in_or_a_token_opens_every_interface() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing").join("x.db");
    let db = db.to_str().unwrap().to_owned();
    for env in [
        vec![
            ("DRIFTGUARD_SERVER__ADDRESS", "0.0.0.0"),
            ("DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED", "true"),
        ],
        // A token: every interface by default.
        vec![("DRIFTGUARD_SERVER__AUTH_TOKEN", "s3cret")],
    ] {
        let mut env = env;
        env.push(("DRIFTGUARD_DATABASE__PATH", &db));
        let running = start(loaded(&env)).await;
        assert!(
            running.address.ip().is_unspecified(),
            "{env:?}: {}",
            running.address
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn leader_election_with_sqlite_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let message = refused(loaded(&[
        ("DRIFTGUARD_LEADER_ELECTION__ENABLED", "true"),
        ("DRIFTGUARD_DATABASE__PATH", db.to_str().unwrap()),
    ]))
    .await;
    assert!(message.contains("leader_election.enabled"), "{message}");
    assert!(message.contains("database.driver: mongodb"), "{message}");
}

#[tokio::test]
async fn a_second_serve_on_the_same_sqlite_file_is_refused_and_the_first_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("one.db");
    let db = db.to_str().unwrap().to_owned();
    let first = start(loaded(&[("DRIFTGUARD_DATABASE__PATH", &db)])).await;
    // The first one holds the file once its store is open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(&format!("{db}.lock")).exists() {
        assert!(
            Instant::now() < deadline,
            "the first serve never locked its file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let message = refused(loaded(&[("DRIFTGUARD_DATABASE__PATH", &db)])).await;
    assert!(message.contains("database.path"), "{message}");
    assert!(message.contains("one replica"), "{message}");
    assert!(!first.task.is_finished(), "the first serve keeps running");
    first.stop().await;
    // Released with the first one: a new serve starts on the same file.
    let again = start(loaded(&[("DRIFTGUARD_DATABASE__PATH", &db)])).await;
    again.stop().await;
}

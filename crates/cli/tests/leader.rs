//! Several replicas (issue 19): three `serve` processes on the real control plane
//! (`DRIFTGUARD_TEST_KUBECONFIG`) sharing the MongoDB peer (`DRIFTGUARD_TEST_MONGODB_URI`), one
//! Lease per test in the test's own namespace.
//!
//! - exactly one leader; every replica answers the API with the same records; a follower's
//!   `POST /api/v1/analyze` is run by the leader and answered by every replica;
//! - `kill -9` of the leader → another leads within lease duration + retry period, a change
//!   made during the gap is detected, the open episode stays the same episode;
//! - a leader paused (SIGSTOP) past its Lease is replaced; resumed, it writes nothing and
//!   steps down (asserted on the store's documents);
//! - a rolling restart (SIGTERM, one replica after another) hands over at once and loses no
//!   transition;
//! - the leader cut off from the API server stops leading before its Lease could expire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::mongo::TestMongo;
use driftguard_test_support::serve::ServeProcess;
use driftguard_test_support::tcp_proxy::TcpProxy;
use serde_json::Value;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn deployment(ns: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n"
    )
}

/// Lease timings of a test: short, so failovers take seconds.
struct Timing {
    lease: Duration,
    renew: Duration,
    retry: Duration,
}

const FAST: Timing = Timing {
    lease: Duration::from_secs(3),
    renew: Duration::from_secs(2),
    retry: Duration::from_millis(500),
};

/// One test's world: namespace, repository, database, and the replicas' shared config.
struct World {
    ns: TestNamespace,
    repo: TestRepo,
    mongo: TestMongo,
    db: String,
    dir: tempfile::TempDir,
    id: String,
}

impl World {
    fn new(prefix: &str) -> World {
        let ns = TestCluster::shared().namespace(prefix).unwrap();
        let yaml = deployment(ns.name());
        ns.apply_yaml(&yaml).unwrap();
        let repo = TestRepo::with_files(&[("web.yaml", &yaml)]).unwrap();
        let mongo = TestMongo::shared();
        let db = mongo.fresh_database_name();
        let id = format!("Deployment:{}:web", ns.name());
        World {
            ns,
            repo,
            mongo,
            db,
            dir: tempfile::tempdir().unwrap(),
            id,
        }
    }

    fn config(&self, identity: &str, kubeconfig: &Path, timing: &Timing) -> String {
        format!(
            "database:\n  driver: mongodb\n  uri: \"{uri}\"\n  dbname: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\n  resources: [deployments]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\nleader_election:\n  enabled: true\n  lease_name: driftguard\n  lease_namespace: {ns}\n  identity: {identity}\n  lease_duration: {lease}ms\n  renew_deadline: {renew}ms\n  retry_period: {retry}ms\n",
            uri = self.mongo.uri(),
            db = self.db,
            kc = kubeconfig.display(),
            ns = self.ns.name(),
            url = self.repo.url(),
            wd = self.dir.path().join(format!("git-{identity}")).display(),
            lease = timing.lease.as_millis(),
            renew = timing.renew.as_millis(),
            retry = timing.retry.as_millis(),
        )
    }

    fn start(&self, identity: &str, timing: &Timing) -> Replica {
        self.start_with(identity, self.ns.kubeconfig(), timing)
    }

    fn start_with(&self, identity: &str, kubeconfig: &Path, timing: &Timing) -> Replica {
        let process =
            ServeProcess::start(binary(), &self.config(identity, kubeconfig, timing), &[]).unwrap();
        Replica {
            name: identity.to_owned(),
            process,
        }
    }

    fn apply_git(&self) {
        self.ns.apply_yaml(&deployment(self.ns.name())).unwrap();
    }
}

struct Replica {
    name: String,
    process: ServeProcess,
}

impl Replica {
    /// `leader` / `follower` as `/ready` reports it (`None` when it does not answer).
    fn role(&self) -> Option<String> {
        let (_, body) = self.process.get("/ready").ok()?;
        let ready: Value = serde_json::from_str(&body).ok()?;
        ready["leader"]["role"].as_str().map(str::to_owned)
    }

    /// The Lease holder this replica reports (its own name from the moment it holds the
    /// Lease, before the store's term is claimed).
    fn holder(&self) -> Option<String> {
        let (_, body) = self.process.get("/ready").ok()?;
        let ready: Value = serde_json::from_str(&body).ok()?;
        ready["leader"]["holder"].as_str().map(str::to_owned)
    }

    fn record(&self, id: &str) -> Option<Value> {
        let (status, body) = self
            .process
            .get(&format!("/api/v1/drift-records/{id}"))
            .ok()?;
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    fn history(&self, id: &str) -> Vec<Value> {
        let history = self
            .process
            .get_json(&format!("/api/v1/drift-records/{id}/history"))
            .unwrap();
        history["episodes"].as_array().cloned().unwrap_or_default()
    }

    fn records(&self) -> Vec<(String, String)> {
        let list = self.process.get_json("/api/v1/drift-records").unwrap();
        list["drift_records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["resource_id"].as_str().unwrap().to_owned(),
                    r["drift_status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

/// Waits (at most `timeout`) until exactly one of `replicas` leads; returns its index.
fn one_leader(replicas: &[&Replica], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let roles: Vec<Option<String>> = replicas.iter().map(|r| r.role()).collect();
        let leaders: Vec<usize> = roles
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_deref() == Some("leader"))
            .map(|(i, _)| i)
            .collect();
        if leaders.len() == 1 && roles.iter().all(Option::is_some) {
            return leaders[0];
        }
        assert!(leaders.len() <= 1, "two leaders at once: {roles:?}");
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {} ---\n{}", r.name, tail(&r.log())))
                .collect();
            panic!(
                "no single leader within {timeout:?}: {roles:?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(
    what: &str,
    timeout: Duration,
    replicas: &[&Replica],
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {} ---\n{}", r.name, tail(&r.log())))
                .collect();
            panic!("{what}: not within {timeout:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn status_of(replica: &Replica, id: &str) -> Option<String> {
    replica
        .record(id)
        .and_then(|r| r["drift_status"].as_str().map(str::to_owned))
}

fn replicas_of(replica: &Replica, id: &str) -> Option<i64> {
    let record = replica.record(id)?;
    record["drift_details"]
        .as_array()?
        .iter()
        .find(|c| c["field"] == "spec.replicas")
        .and_then(|c| c["to"].as_i64())
}

/// Open episodes in a history (no `resolved_at`).
fn open_episodes(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|e| e["resolved_at"].is_null())
        .collect()
}

#[test]
fn cluster_leader_three_replicas_one_leader_same_answers_and_failover_on_kill() {
    let world = World::new("leader-kill");
    let mut replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| world.start(n, &FAST))
        .collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = one_leader(&all, Duration::from_secs(60));
    let id = world.id.clone();
    wait_until(
        "every replica shows the record in sync",
        Duration::from_secs(60),
        &all,
        || {
            all.iter()
                .all(|r| status_of(r, &id).as_deref() == Some("none"))
        },
    );

    // Every replica answers with the same records; statistics are served by every replica.
    let first = all[0].records();
    for r in &all {
        assert_eq!(r.records(), first, "{} answers differently", r.name);
        let stats = r.process.get_json("/api/v1/statistics").unwrap();
        assert_eq!(
            stats["statistics"]["total_records"], 1,
            "{}: {stats}",
            r.name
        );
    }
    // Followers keep no watches and no Git: their /ready lists neither.
    for (i, r) in all.iter().enumerate() {
        let ready = r.process.get_json("/ready").unwrap();
        assert_eq!(ready["leader"]["identity"], r.name.as_str());
        assert_eq!(
            ready["leader"]["holder"],
            all[leader].name.as_str(),
            "{ready}"
        );
        let components = ready["components"].as_object().unwrap();
        if i == leader {
            assert!(components.contains_key("git"), "{ready}");
        } else {
            assert!(
                !components.contains_key("git"),
                "a follower fetches Git: {ready}"
            );
            // Ready because the store answers, with no watch or Git of its own.
            assert_eq!(
                r.process.get("/ready").unwrap().0,
                200,
                "a follower is ready: {ready}"
            );
            assert_eq!(components["leader"]["message"], "follower");
        }
        let (_, metrics) = r.process.get("/metrics").unwrap();
        let expected = if i == leader {
            "driftguard_leader 1"
        } else {
            "driftguard_leader 0"
        };
        assert!(
            metrics.lines().any(|l| l == expected),
            "{}: no `{expected}`",
            r.name
        );
    }

    // A follower's POST /analyze is run by the leader and answered by every replica.
    let follower = (leader + 1) % 3;
    let (status, body) = all[follower].process.post("/api/v1/analyze", None).unwrap();
    assert_eq!(status, 202, "{body}");
    let run_id = serde_json::from_str::<Value>(&body).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        "the follower's run completes",
        Duration::from_secs(30),
        &all,
        || {
            all.iter().all(|r| {
                r.process
                    .get_json(&format!("/api/v1/analysis/{run_id}"))
                    .is_ok_and(|run| run["status"] == "completed")
            })
        },
    );

    // Drift, seen by every replica.
    world.ns.scale("deployment/web", 3).unwrap();
    wait_until(
        "every replica shows the drift",
        Duration::from_secs(30),
        &all,
        || {
            all.iter()
                .all(|r| status_of(r, &id).as_deref() == Some("active"))
        },
    );
    let before = all[leader].history(&id);
    assert_eq!(open_episodes(&before).len(), 1, "{before:?}");
    let opened = open_episodes(&before)[0]["first_detected"].clone();

    // kill -9 of the leader, and a change while nobody leads.
    let killed_name = replicas[leader].name.clone();
    replicas[leader].process.kill_hard().unwrap();
    let killed_at = Instant::now();
    world.ns.scale("deployment/web", 4).unwrap();
    let survivors: Vec<&Replica> = replicas.iter().filter(|r| r.name != killed_name).collect();
    // The Lease is taken within lease duration + retry period (plus scheduling slack on a
    // loaded machine); leading (the store's term claimed) follows.
    wait_until(
        "a survivor holds the Lease",
        Duration::from_secs(30),
        &survivors,
        || {
            survivors
                .iter()
                .any(|r| r.holder().as_deref() == Some(r.name.as_str()))
        },
    );
    let took = killed_at.elapsed();
    let next = one_leader(&survivors, Duration::from_secs(30));
    eprintln!(
        "kill -9 → {} holds the Lease after {took:?}, leads after {:?}",
        survivors[next].name,
        killed_at.elapsed()
    );
    assert!(
        took <= FAST.lease + FAST.retry + Duration::from_secs(2),
        "failover took {took:?} (lease {:?} + retry {:?})",
        FAST.lease,
        FAST.retry
    );
    wait_until(
        "the change made during the gap is detected",
        Duration::from_secs(30),
        &survivors,
        || survivors.iter().all(|r| replicas_of(r, &id) == Some(4)),
    );
    let after = survivors[next].history(&id);
    let open = open_episodes(&after);
    assert_eq!(
        open.len(),
        1,
        "one open episode, not a duplicate: {after:#?}"
    );
    assert_eq!(
        open[0]["first_detected"], opened,
        "the same episode continues"
    );
    assert_eq!(
        after.len(),
        before.len(),
        "no episode added or lost: {after:#?}"
    );

    // Re-applying Git resolves it; the episode closes once.
    world.apply_git();
    wait_until(
        "every replica shows the resolution",
        Duration::from_secs(30),
        &survivors,
        || {
            survivors
                .iter()
                .all(|r| status_of(r, &id).as_deref() == Some("resolved"))
        },
    );
    let closed = survivors[0].history(&id);
    assert_eq!(closed.len(), before.len(), "{closed:#?}");
    assert!(open_episodes(&closed).is_empty(), "{closed:#?}");
    assert_eq!(closed[0]["first_detected"], opened);
}

#[test]
fn cluster_leader_a_paused_leader_is_replaced_and_writes_nothing_when_it_wakes() {
    let world = World::new("leader-stop");
    let replicas: Vec<Replica> = ["p1", "p2"].iter().map(|n| world.start(n, &FAST)).collect();
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = one_leader(&all, Duration::from_secs(60));
    let other = 1 - leader;
    let id = world.id.clone();
    wait_until(
        "the record is in sync",
        Duration::from_secs(60),
        &all,
        || status_of(all[other], &id).as_deref() == Some("none"),
    );

    all[leader].process.signal("STOP").unwrap();
    let stopped_at = Instant::now();
    wait_until(
        "the other replica takes over",
        Duration::from_secs(30),
        &all,
        || all[other].role().as_deref() == Some("leader"),
    );
    eprintln!(
        "SIGSTOP → {} leads after {:?}",
        all[other].name,
        stopped_at.elapsed()
    );
    // A change while the old leader sleeps: its watch delivers it when it wakes.
    world.ns.scale("deployment/web", 5).unwrap();
    wait_until(
        "the new leader records the drift",
        Duration::from_secs(30),
        &all,
        || replicas_of(all[other], &id) == Some(5),
    );
    let term = all[other].process.get_json("/ready").unwrap()["leader"]["term"]
        .as_u64()
        .unwrap();

    all[leader].process.signal("CONT").unwrap();
    wait_until(
        "the woken replica steps down",
        Duration::from_secs(30),
        &all,
        || all[leader].role().as_deref() == Some("follower"),
    );
    // Give a stale write every chance to land, then look at the documents themselves.
    std::thread::sleep(Duration::from_secs(2));
    let documents = runtime().block_on(async {
        let client = world.mongo.client().await.unwrap();
        let db = client.database(&world.db);
        let records: Vec<mongodb::bson::Document> = collect(db.collection("drift_records")).await;
        let episodes: Vec<mongodb::bson::Document> = collect(db.collection("drift_episodes")).await;
        (records, episodes)
    });
    let (records, episodes) = documents;
    assert_eq!(records.len(), 1, "{records:?}");
    let written_term = records[0]
        .get("term")
        .and_then(|t| t.as_i64().or_else(|| t.as_i32().map(i64::from)))
        .unwrap_or(-1);
    assert_eq!(
        u64::try_from(written_term).ok(),
        Some(term),
        "the record carries the new leader's term: {:?}",
        records[0]
    );
    let open: Vec<_> = episodes
        .iter()
        .filter(|e| e.get_bool("open").unwrap_or(false))
        .collect();
    assert_eq!(open.len(), 1, "one open episode: {episodes:?}");
    assert_eq!(replicas_of(all[other], &id), Some(5));
    assert_eq!(
        all[other].role().as_deref(),
        Some("leader"),
        "the new leader keeps leading"
    );
}

#[test]
fn cluster_leader_rolling_restart_hands_over_on_sigterm_and_loses_no_transition() {
    // A long Lease: a hand-over faster than it proves the Lease was released, not left to lapse.
    let slow = Timing {
        lease: Duration::from_secs(15),
        renew: Duration::from_secs(10),
        retry: Duration::from_secs(2),
    };
    let world = World::new("leader-roll");
    let mut replicas: Vec<Option<Replica>> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Some(world.start(n, &slow)))
        .collect();
    let id = world.id.clone();
    let mut handovers = Vec::new();
    let mut cycles = 0;
    for round in 0..3 {
        let live: Vec<&Replica> = replicas.iter().flatten().collect();
        let leader = one_leader(&live, Duration::from_secs(60));
        let leader_name = live[leader].name.clone();
        wait_until(
            "the leader is ready",
            Duration::from_secs(60),
            &live,
            || {
                live[leader]
                    .process
                    .get("/ready")
                    .is_ok_and(|(s, _)| s == 200)
            },
        );
        // One full drift cycle per leader: opened, then resolved.
        world.ns.scale("deployment/web", 3 + round).unwrap();
        wait_until("drift detected", Duration::from_secs(30), &live, || {
            replicas_of(live[leader], &id) == Some(i64::from(3 + round))
        });
        world.apply_git();
        wait_until("drift resolved", Duration::from_secs(30), &live, || {
            status_of(live[leader], &id).as_deref() == Some("resolved")
        });
        cycles += 1;

        // SIGTERM the leader: a follower takes over at once.
        let slot = replicas
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.name == leader_name))
            .unwrap();
        let mut old = replicas[slot].take().unwrap();
        let terminated = Instant::now();
        old.process.terminate(Duration::from_secs(15)).unwrap();
        let live: Vec<&Replica> = replicas.iter().flatten().collect();
        wait_until(
            "a follower holds the Lease",
            Duration::from_secs(30),
            &live,
            || {
                live.iter()
                    .any(|r| r.holder().as_deref() == Some(r.name.as_str()))
            },
        );
        let took = terminated.elapsed();
        one_leader(&live, Duration::from_secs(30));
        handovers.push(took);
        assert!(
            took < slow.renew,
            "SIGTERM hand-over took {took:?}: the Lease was not released"
        );
        // The replica comes back (a rolling update's new pod).
        replicas[slot] = Some(world.start(&leader_name, &slow));
    }
    eprintln!("SIGTERM hand-overs: {handovers:?}");
    let live: Vec<&Replica> = replicas.iter().flatten().collect();
    // The leader has claimed the store's term, so its store answers; a replica restarted a
    // moment ago may still be connecting (503 `store_unavailable`, as its `/ready` says).
    let leader = one_leader(&live, Duration::from_secs(60));
    let history = live[leader].history(&id);
    assert_eq!(
        history.len(),
        cycles,
        "one episode per drift cycle: {history:#?}"
    );
    assert!(open_episodes(&history).is_empty(), "{history:#?}");
}

#[test]
fn cluster_leader_cut_off_from_the_api_server_stops_leading_before_its_lease_expires() {
    let world = World::new("leader-cut");
    // The first replica reaches the API server through a relay the test can cut.
    let kubeconfig = std::fs::read_to_string(world.ns.kubeconfig()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .unwrap()
        .trim()
        .to_owned();
    let authority = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let target: std::net::SocketAddr = authority.trim_end_matches('/').parse().unwrap();
    let proxy = TcpProxy::start(target).unwrap();
    let relayed: PathBuf = world.dir.path().join("relayed.kubeconfig");
    std::fs::write(
        &relayed,
        kubeconfig.replace(authority, &proxy.local_addr().to_string()),
    )
    .unwrap();
    let cut = world.start_with("c1", &relayed, &FAST);
    let all = [&cut];
    one_leader(&all, Duration::from_secs(60));
    let id = world.id.clone();
    wait_until(
        "the record is in sync",
        Duration::from_secs(60),
        &all,
        || status_of(&cut, &id).as_deref() == Some("none"),
    );
    let other = world.start("c2", &FAST);
    assert_eq!(other.role().as_deref(), Some("follower"));

    proxy.cut();
    let cut_at = Instant::now();
    wait_until(
        "the cut leader stops leading",
        Duration::from_secs(30),
        &[&cut, &other],
        || cut.role().as_deref() == Some("follower"),
    );
    let stopped = cut_at.elapsed();
    eprintln!("API server cut → leader stopped after {stopped:?}");
    assert!(
        stopped < FAST.lease,
        "stopped leading after {stopped:?}, not before the Lease ({:?}) could expire",
        FAST.lease
    );
    wait_until(
        "the other replica takes over",
        Duration::from_secs(30),
        &[&cut, &other],
        || other.role().as_deref() == Some("leader"),
    );
    // It keeps serving the API from the store meanwhile.
    assert_eq!(status_of(&cut, &id).as_deref(), Some("none"));
    world.ns.scale("deployment/web", 6).unwrap();
    wait_until(
        "the new leader detects a change",
        Duration::from_secs(30),
        &[&cut, &other],
        || replicas_of(&other, &id) == Some(6),
    );
    assert!(
        cut.log().contains("stepping down") || cut.log().contains("stepped down"),
        "{}",
        cut.log()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn collect(
    collection: mongodb::Collection<mongodb::bson::Document>,
) -> Vec<mongodb::bson::Document> {
    use futures::TryStreamExt;
    collection
        .find(mongodb::bson::doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

//! `driftguard serve`: wires the edges (store, Git, Kubernetes) to the pipeline, the API and
//! the event sinks. What each part does lives in its own module: [`crate::pipeline`] (the loop
//! that evaluates and writes), [`crate::git_loop`] (fetching snapshots),
//! [`crate::store_health`] (store readiness), [`crate::retry`] (backoff), [`crate::sink`] (where
//! events go). Nothing here panics on bad input: every failing edge is retried with backoff and
//! reported through `/ready`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use driftguard_config::{Config, Loaded};
use driftguard_core::SecretHasher;
use driftguard_core::engine::EngineConfig;
use driftguard_git::{GitSource, ReadOptions};
use driftguard_kube::lease::{Elector, Role};
use driftguard_kube::{LiveWatcher, WatchScope};
use driftguard_store::{BufferConfig, BufferedStore, Store};
use tokio::sync::{mpsc, watch};

use crate::analyzer::Analyzer;
use crate::api::{ApiState, router};
pub use crate::errors::ServeError;
use crate::errors::chain;
use crate::evaluate::Scope;
use crate::git_loop::git_loop;
use crate::health::{Health, Readiness};
use crate::http::{self, Timeouts};
use crate::kube_start::KubeStart;
use crate::lazy_store::LazyStore;
use crate::leader::{Leadership, SlotSink};
use crate::pipeline::Pipeline;
use crate::retry::until_ok;
use crate::runs::{Runs, Trigger};
use crate::selector::Selector;
use crate::sink::{EventSink, LogSink, MetricsSink, Sinks};
use crate::unmanaged::Claim;
use crate::watched::{WatchedLive, component};

/// Discovery refresh period (a CRD installed later is picked up).
const DISCOVERY_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Time allowed to finish in-flight requests and flush buffered writes at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the service until SIGINT or SIGTERM.
pub async fn serve(loaded: Loaded) -> Result<(), ServeError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("🛑 shutdown requested; finishing in-flight work");
        let _ = shutdown_tx.send(true);
    });
    run(loaded, shutdown_rx, None).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the service until `shutdown` turns true. `bound` receives the listening address (for
/// `server.port: 0`).
pub async fn run(
    loaded: Loaded,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    run_with_sinks(loaded, shutdown, bound, Vec::new()).await
}

/// [`run`], with `extra_sinks` receiving every event after the log and the metrics.
pub async fn run_with_sinks(
    loaded: Loaded,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    extra_sinks: Vec<Arc<dyn EventSink>>,
) -> Result<(), ServeError> {
    let config = loaded.config.clone();
    let exposure = config.server.exposure().map_err(ServeError::Config)?;
    let engine = config
        .drift_detection
        .engine_config()
        .map_err(|e| ServeError::Config(format!("drift_detection.ignore: {e}")))?;
    let selector = Selector::parse(&config.kubernetes.labels)
        .map_err(|e| ServeError::Config(format!("invalid value for `kubernetes.labels`: {e}")))?;

    let metrics = Arc::new(crate::metrics::Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let runs = Arc::new(Runs::default());
    readiness.register("store", true, "connecting");
    let elected = config.leader_election.enabled;
    if elected && config.database.effective_driver() != driftguard_config::DatabaseDriver::Mongodb {
        return Err(ServeError::Config(
            "invalid value for `leader_election.enabled`: several replicas need a shared store; \
             set database.driver: mongodb (an SQLite file belongs to one replica)"
                .to_owned(),
        ));
    }
    let identity = crate::leader::identity(&config.leader_election);
    let leadership = Arc::new(if elected {
        readiness.register("leader", false, "follower");
        readiness.set("leader", Health::Ok, "follower");
        Leadership::elected(&identity)
    } else {
        // One replica leads from the start: Kubernetes and Git must be ready once.
        readiness.register("kubernetes", true, "connecting to the API server");
        readiness.register("git", true, "waiting for the first fetch");
        Leadership::single()
    });
    metrics.leader.set(i64::from(!elected));

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        repository = %driftguard_git::redact_url(&config.git.repository_url),
        branch = %config.git.default_branch,
        store = ?config.database.effective_driver(),
        namespaces = ?config.kubernetes.namespaces,
        resources = ?config.kubernetes.resources,
        "🚀 DriftGuard starting"
    );

    // The store handle exists at once; the database may answer later.
    let lazy = Arc::new(LazyStore::default());
    let buffered = Arc::new(BufferedStore::new(lazy.clone(), BufferConfig::default()));
    let store: Arc<dyn Store> = buffered.clone();

    // HTTP first, so /health and /ready answer while the rest comes up.
    let address = format!("{}:{}", config.server.address, config.server.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| ServeError::Bind {
            address: address.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        address: address.clone(),
        source,
    })?;
    tracing::info!(address = %local, "listening");
    if exposure == driftguard_config::Exposure::Unauthenticated {
        tracing::warn!(
            address = %local,
            "⚠️ the API is open without authentication (server.allow_unauthenticated: true); \
             set server.auth_token"
        );
    }
    if let Some(bound) = bound {
        let _ = bound.send(local);
    }
    let events = Arc::new(crate::api::events::EventHub::default());
    let api = ApiState {
        events: events.clone(),
        source_web: crate::ui::web_base(&config.git.repository_url).map(Arc::from),
        leadership: leadership.clone(),
        store: store.clone(),
        runs: runs.clone(),
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        auth_token: config
            .server
            .auth_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    let app = http::with_write_timeout(router(api), config.server.write_timeout);
    let timeouts = Timeouts {
        read: config.server.read_timeout,
        idle: config.server.idle_timeout,
    };
    // The HTTP server stops at shutdown, and also when the service cannot go on (an error
    // found after the listener opened, such as a store another replica holds): the process
    // must exit with that error rather than keep answering /health.
    // Event streams end with it, so the HTTP server can drain.
    let (http_stop, http_stopping) = watch::channel(false);
    {
        let mut stopping = shutdown.clone();
        let http_stop = http_stop.clone();
        tokio::spawn(async move {
            // Also when the sender is gone: nothing can start the service again.
            let _ = stopping.wait_for(|stop| *stop).await;
            let _ = http_stop.send(true);
        });
        let events = events.clone();
        let mut stopping = http_stopping.clone();
        tokio::spawn(async move {
            // Also when the sender is gone: nothing can start the service again.
            let _ = stopping.wait_for(|stop| *stop).await;
            events.close();
        });
    }
    let http_task = tokio::spawn(http::serve(
        listener,
        app,
        timeouts,
        http_stopping,
        SHUTDOWN_GRACE,
    ));

    let mut sinks = Sinks::new(vec![
        Arc::new(LogSink) as Arc<dyn EventSink>,
        Arc::new(MetricsSink(metrics.clone())),
        events.clone(),
    ])
    .with(extra_sinks);
    // Notifications: the leader's sink queues, its workers deliver once the store answers.
    // The slot is empty on a follower.
    let notify_sinks =
        crate::notify::deliver::Sink::all(&config.notifications).map_err(ServeError::Config)?;
    let notify_slot = Arc::new(SlotSink::default());
    sinks.push(notify_slot.clone());
    crate::sink::publish_health(&readiness, sinks.clone());
    let result = run_pipeline(PipelineParts {
        config: &config,
        engine,
        selector,
        lazy,
        buffered: buffered.clone(),
        store,
        metrics,
        readiness,
        runs,
        sinks,
        notify_sinks,
        notify_slot,
        leadership,
        identity,
        shutdown: shutdown.clone(),
    })
    .await;

    // Flush what the outage buffer still holds, within the grace period.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while buffered.pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if buffered.pending() > 0 {
        tracing::warn!(
            pending = buffered.pending(),
            "stopping with unwritten record updates; the next start re-analyses everything"
        );
    }
    if result.is_err() {
        let _ = http_stop.send(true);
    }
    let _ = http_task.await;
    tracing::info!("👋 DriftGuard stopped");
    result
}

struct PipelineParts<'a> {
    config: &'a Config,
    engine: EngineConfig,
    selector: Selector,
    lazy: Arc<LazyStore>,
    buffered: Arc<BufferedStore>,
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
    readiness: Arc<Readiness>,
    runs: Arc<Runs>,
    sinks: Sinks,
    notify_sinks: Vec<crate::notify::deliver::Sink>,
    notify_slot: Arc<SlotSink>,
    leadership: Arc<Leadership>,
    identity: String,
    shutdown: watch::Receiver<bool>,
}

async fn run_pipeline(parts: PipelineParts<'_>) -> Result<(), ServeError> {
    let mut shutdown = parts.shutdown.clone();
    let (config, lazy, store, readiness) =
        (parts.config, &parts.lazy, &parts.store, &parts.readiness);

    // --- store: open (retrying while unreachable), then its key.
    let mut attempt = 0;
    let mut _sqlite_lock = None;
    loop {
        match driftguard_store::open(&config.database).await {
            Ok(opened) => {
                lazy.set(opened);
                break;
            }
            Err(e) if e.is_unavailable() => {
                readiness.set("store", Health::Down, chain(&e));
                tracing::warn!(error = %chain(&e), "store unreachable; retrying");
                let wait = crate::retry::backoff(attempt, Duration::from_secs(30));
                if !crate::retry::pause(wait, &mut shutdown).await {
                    return Ok(());
                }
                attempt += 1;
            }
            Err(e) => return Err(ServeError::Store(e)),
        }
    }
    if config.database.effective_driver() == driftguard_config::DatabaseDriver::Sqlite {
        _sqlite_lock = Some(lock_sqlite(&config.database.path)?);
    }
    let Some(key) = until_ok(
        &mut shutdown,
        readiness,
        "store",
        Health::Down,
        "reading the installation key",
        || store.installation_key(),
    )
    .await
    else {
        return Ok(());
    };
    // drift_detection.redact was checked at load; an error here is a config built in code.
    let redact = config
        .drift_detection
        .redact_rules()
        .map_err(ServeError::Config)?;
    let hasher = SecretHasher::new(key).with_redact_rules(redact);

    if !config.leader_election.enabled {
        let Some(current) = load_current(store, readiness, &mut shutdown).await else {
            return Ok(());
        };
        spawn_store_health(&parts);
        lead(&parts, &hasher, current, shutdown).await?;
        return Ok(());
    }
    readiness.set("store", Health::Ok, "answering");
    spawn_store_health(&parts);
    elect(&parts, &hasher).await
}

/// An SQLite file belongs to one replica: a second `serve` on the same file would run its own
/// analyses and write the same records. Holds an exclusive lock on `<path>.lock` for the
/// process's life (released by the OS even on `kill -9`).
fn lock_sqlite(path: &str) -> Result<Option<std::fs::File>, ServeError> {
    if path == ":memory:" || path.is_empty() {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            ServeError::Config(format!("cannot open the SQLite lock file {lock_path}: {e}"))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError::Config(format!(
            "another `driftguard serve` already uses the SQLite file {path} (database.path): an \
             SQLite file is one replica's store; to run several replicas use database.driver: \
             mongodb with leader_election.enabled: true"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(ServeError::Config(format!(
            "cannot lock the SQLite file {path} (database.path): {e}"
        ))),
    }
}

/// The current view (retried while the store does not answer); `None` on shutdown.
async fn load_current(
    store: &Arc<dyn Store>,
    readiness: &Readiness,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<driftguard_core::DriftRecord>> {
    let current = until_ok(
        stop,
        readiness,
        "store",
        Health::Down,
        "loading the current view",
        || store.load_current(),
    )
    .await?;
    readiness.set("store", Health::Ok, "answering");
    Some(current)
}

fn spawn_store_health(parts: &PipelineParts<'_>) {
    tokio::spawn(crate::store_health::watch_store(
        parts.store.clone(),
        parts.buffered.clone(),
        parts.readiness.clone(),
        parts.metrics.clone(),
        parts.shutdown.clone(),
    ));
}

/// Several replicas (issue 19): follow until this replica holds the Lease, lead until it
/// loses it (or the store fences it), then follow again; release the Lease at shutdown.
async fn elect(parts: &PipelineParts<'_>, hasher: &SecretHasher) -> Result<(), ServeError> {
    let config = parts.config;
    let mut shutdown = parts.shutdown.clone();
    let le = &config.leader_election;
    let Some(client) = until_ok(
        &mut shutdown,
        &parts.readiness,
        "leader",
        Health::Degraded,
        "building the Kubernetes client",
        || driftguard_kube::connect(&config.kubernetes),
    )
    .await
    else {
        return Ok(());
    };
    let settings = driftguard_kube::lease::LeaseSettings {
        name: le.lease_name.clone(),
        namespace: crate::leader::lease_namespace(le),
        identity: parts.identity.clone(),
        lease_duration: le.lease_duration,
        renew_deadline: le.renew_deadline,
        retry_period: le.retry_period,
    };
    tracing::info!(
        lease = %settings.name,
        namespace = %settings.namespace,
        identity = %settings.identity,
        "🗳️ leader election: following until this replica holds the Lease"
    );
    let elector = Elector::start(client, settings);
    let gate = elector.gate();
    let mut role = elector.role();
    loop {
        // --- follow: serve the API from the store, keep no watches.
        let term = loop {
            let current_role = role.borrow_and_update().clone();
            match current_role {
                Role::Leading { term } if gate.is_leading() => {
                    // The Lease is ours; the role turns `leader` once the store's term is.
                    parts
                        .leadership
                        .set(false, Some(parts.identity.clone()), None);
                    break term;
                }
                Role::Leading { .. } => {}
                Role::Following { holder } => {
                    parts.leadership.set(false, holder, None);
                    parts.readiness.set("leader", Health::Ok, "follower");
                    parts.metrics.leader.set(0);
                }
            }
            tokio::select! {
                changed = role.changed() => if changed.is_err() { return Ok(()); },
                _ = shutdown.changed() => {
                    elector.release(SHUTDOWN_GRACE).await;
                    return Ok(());
                }
            }
        };
        // --- take the store's term, then its records as the starting state.
        let claiming = Instant::now();
        let Some(term) = claim(parts, &gate, term).await else {
            if *shutdown.borrow() {
                elector.release(SHUTDOWN_GRACE).await;
                return Ok(());
            }
            continue;
        };
        let claimed_in = claiming.elapsed();
        let mut stop_load = shutdown.clone();
        let Some(current) = load_current(&parts.store, &parts.readiness, &mut stop_load).await
        else {
            elector.release(SHUTDOWN_GRACE).await;
            return Ok(());
        };
        parts
            .leadership
            .set(true, Some(parts.identity.clone()), Some(term));
        parts.readiness.set("leader", Health::Ok, "leader");
        parts.metrics.leader.set(1);
        parts
            .metrics
            .leader_term
            .set(i64::try_from(term).unwrap_or(i64::MAX));
        parts.metrics.leader_transitions.inc();
        parts.lazy.set_gate(Some((gate.clone(), term)));
        tracing::info!(
            term,
            records = current.len(),
            claim_ms = claimed_in.as_millis() as u64,
            load_ms = (claiming.elapsed() - claimed_in).as_millis() as u64,
            "leading: starting watches and a full analysis"
        );

        // The term ends at shutdown, when the Lease is lost, or when the store fences us.
        let (stop_tx, stop_rx) = watch::channel(false);
        let watchdog = {
            let mut shutdown = shutdown.clone();
            let mut role = role.clone();
            let gate = gate.clone();
            let buffered = parts.buffered.clone();
            let leadership = parts.leadership.clone();
            let metrics = parts.metrics.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        changed = role.changed() => {
                            if changed.is_err() || !role.borrow().is_leading() { break; }
                        }
                        _ = tick.tick() => {
                            if !gate.is_leading() { break; }
                            if let Some((term, current)) = buffered.fenced() {
                                tracing::warn!(term, current, "the store refused this replica's writes: another replica leads");
                                break;
                            }
                        }
                    }
                }
                // Not the leader from this moment (writes are already refused by the gate or
                // the store), even if tearing the term down takes a while.
                leadership.set(false, None, None);
                metrics.leader.set(0);
                let _ = stop_tx.send(true);
            })
        };
        // At shutdown the Lease is released first, while the term tears down: a follower
        // takes over at once. Writes still in flight are then refused (the gate is closed) or
        // fenced by the new leader's term; its full analysis redoes them.
        let owned = {
            let lead = lead(parts, hasher, current, stop_rx);
            tokio::pin!(lead);
            let mut stopping = shutdown.clone();
            tokio::select! {
                result = &mut lead => result,
                _ = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    elector.stop();
                    lead.await
                }
            }
        };
        watchdog.abort();
        if *shutdown.borrow() {
            elector.release(SHUTDOWN_GRACE).await;
            owned?;
            return Ok(());
        }
        owned?;
        // --- stepped down: what this term owned goes; a follower keeps no watches.
        parts
            .lazy
            .set_gate(Some((driftguard_kube::lease::LeaderGate::closed(), term)));
        parts.metrics.leader.set(0);
        parts.metrics.leader_transitions.inc();
        parts.leadership.set(false, None, None);
        parts.readiness.set("leader", Health::Ok, "follower");
        parts
            .runs
            .interrupt("this replica stopped leading; another replica runs analyses");
        tracing::warn!(term, "stepped down: following again");
    }
}

/// Claims the store's term for a Lease term, retrying while the store does not answer and the
/// Lease is still held; `None` when leadership ended first.
async fn claim(
    parts: &PipelineParts<'_>,
    gate: &driftguard_kube::lease::LeaderGate,
    lease_term: u64,
) -> Option<u64> {
    let mut attempt = 0;
    loop {
        if !gate.is_leading() || *parts.shutdown.borrow() {
            return None;
        }
        match parts.store.claim_term(lease_term, &parts.identity).await {
            Ok(term) => return Some(term),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "cannot take the store's writer term; retrying");
                tokio::time::sleep(crate::retry::backoff(attempt, Duration::from_secs(2))).await;
                attempt += 1;
            }
        }
    }
}

/// One term of leadership (or the whole life of a single replica): Kubernetes watches, Git,
/// notifications and the pipeline, until `stop`. Everything it starts ends with it.
async fn lead(
    parts: &PipelineParts<'_>,
    hasher: &SecretHasher,
    current: Vec<driftguard_core::DriftRecord>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let mut owned = Owned {
        readiness: parts.readiness.clone(),
        names: Vec::new(),
        elected: parts.leadership.is_elected(),
    };
    for (name, message) in [
        ("kubernetes", "connecting to the API server"),
        ("git", "waiting for the first fetch"),
    ] {
        parts.readiness.register(name, true, message);
        owned.names.push(name.to_owned());
    }
    let result = lead_term(parts, hasher, current, stop, &mut owned).await;
    parts.notify_slot.set(None);
    parts.runs.set_mirror(None);
    result
}

/// Readiness components a term registered, removed when a follower's term ends.
struct Owned {
    readiness: Arc<Readiness>,
    names: Vec<String>,
    elected: bool,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.elected {
            for name in &self.names {
                self.readiness.remove(name);
            }
        }
    }
}

async fn lead_term(
    parts: &PipelineParts<'_>,
    hasher: &SecretHasher,
    current: Vec<driftguard_core::DriftRecord>,
    mut stop: watch::Receiver<bool>,
    owned: &mut Owned,
) -> Result<(), ServeError> {
    let config = parts.config;
    let store = &parts.store;
    let readiness = &parts.readiness;

    // Notifications: this term's sink and workers (the outbox carries what a previous leader
    // left undelivered).
    if let Some((sink, workers)) = crate::notify::worker::notifier(
        parts.notify_sinks.clone(),
        parts.metrics.clone(),
        readiness.clone(),
    ) {
        workers
            .start(store.clone(), &current, stop.clone())
            .map_err(ServeError::Config)?;
        parts.notify_slot.set(Some(sink));
        owned.names.extend(
            parts
                .notify_sinks
                .iter()
                .map(crate::notify::worker::component),
        );
    }
    if parts.leadership.is_elected() {
        parts
            .runs
            .set_mirror(Some(crate::leader::mirror_runs(store.clone())));
        tokio::spawn(crate::leader::pump_run_requests(
            store.clone(),
            parts.runs.clone(),
            stop.clone(),
        ));
    }

    // --- Kubernetes: client, discovery, watchers.
    let Some(KubeStart {
        client,
        discovery,
        kinds,
    }) = crate::kube_start::connect(config, readiness, &mut stop).await?
    else {
        return Ok(());
    };
    // Custom resources' schema defaults, read once at start (a CRD whose defaults change
    // takes effect at the next start).
    let engine = EngineConfig {
        crd_defaults: crate::crds::defaults_for(&client, kinds.iter().map(|k| k.group.as_str()))
            .await,
        ..parts.engine.clone()
    };
    let _refresh = discovery.spawn_refresh(DISCOVERY_REFRESH_EVERY);
    for kind in &kinds {
        readiness.register(&component(kind), true, "listing");
        owned.names.push(component(kind));
    }
    let (live_tx, live_rx) = mpsc::channel(4096);
    let watch_scope = WatchScope::from_config(&config.kubernetes);
    let watcher = LiveWatcher::start(
        client.clone(),
        &kinds,
        watch_scope.clone(),
        hasher.clone(),
        live_tx,
    );
    let _api_probe = crate::kube_start::probe(&client, &watcher, readiness, kinds.len());

    // --- Git: a blocking thread that fetches and builds snapshots.
    let (git_tx, git_rx) = mpsc::channel(8);
    let stop_git = Arc::new(AtomicBool::new(false));
    let git_thread = {
        let options = ReadOptions::for_config(config, hasher.clone())
            .map_err(|e| ServeError::Config(chain(&e)))?
            .with_scope_lookup(Arc::new(discovery.clone()));
        let source = GitSource::open_with(&config.git, options)
            .map_err(|e| ServeError::Config(chain(&e)))?;
        let poll = config.git.poll_interval;
        let readiness = readiness.clone();
        let metrics = parts.metrics.clone();
        let stop = stop_git.clone();
        std::thread::Builder::new()
            .name("driftguard-git".to_owned())
            .spawn(move || git_loop(source, poll, git_tx, readiness, metrics, stop))
            .map_err(|e| ServeError::Config(format!("cannot start the Git thread: {e}")))?
    };

    // --- The pipeline.
    let kind_map: HashMap<_, _> = kinds.iter().map(|k| (k.group_kind(), k.clone())).collect();
    let claim = Claim::new(
        watch_scope.clone(),
        parts.selector.clone(),
        &config.kubernetes.labels,
    );
    let analyzer =
        Analyzer::new(engine, config.drift_detection.report_unmanaged, current).with_claim(claim);
    let live = WatchedLive::new(watcher, discovery, kind_map);
    let scope = Scope {
        watch: watch_scope,
        selector: parts.selector.clone(),
    };
    let mut pipeline = Pipeline::new(
        analyzer,
        live,
        scope,
        client,
        hasher.clone(),
        parts.buffered.clone(),
        parts.metrics.clone(),
        readiness.clone(),
        parts.runs.clone(),
        parts.sinks.clone(),
    );
    parts.runs.trigger(Trigger::Startup);
    let periodic = config
        .drift_detection
        .enable_periodic
        .then_some(config.drift_detection.interval);
    pipeline.run(live_rx, git_rx, periodic, stop).await;

    stop_git.store(true, Ordering::Relaxed);
    drop(pipeline);
    let _ = tokio::task::spawn_blocking(move || git_thread.join()).await;
    Ok(())
}

//! `driftguard serve`: wires the edges (store, Git, Kubernetes) to the analyzer and the API.
//!
//! The analyzer loop takes a closed set of events ([`Input`]): a live object changed, the Git
//! snapshot moved, a full analysis run may start, the periodic tick, shutdown. A live change
//! re-evaluates only that resource; a new commit re-evaluates the desired objects that changed
//! (and the removed ones); a full analysis evaluates everything. Nothing here panics on bad
//! input: every failing edge is retried with backoff and reported through `/ready`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftguard_config::{Config, Loaded};
use driftguard_core::engine::{EngineConfig, IgnoreRule};
use driftguard_core::state::{Event, short_commit};
use driftguard_core::{DriftRecord, DriftStatus, FieldPath, ResourceKey, SecretHasher};
use driftguard_git::{GitSource, ReadOptions, ScopeLookup, Snapshot, SyncOutcome};
use driftguard_kube::{
    GroupKind, KindState, LiveCache, LiveEvent, LiveWatcher, ResolvedKind, SharedDiscovery,
    WatchScope,
};
use driftguard_store::{BufferConfig, BufferedStore, Store, Write};
use tokio::sync::{mpsc, watch};

use crate::analyzer::{Analyzer, Outcome, key_of};
use crate::api::{ApiState, router};
use crate::health::{Health, Readiness};
use crate::http::{self, Timeouts};
use crate::lazy_store::LazyStore;
use crate::metrics::{
    CommitLabels, KindLabels, RecordLabels, ResultLabels, TriggerLabels, TypeLabels,
};
use crate::runs::{RunCounts, RunInfo, Runs, Trigger};
use crate::selector::Selector;
use crate::unmanaged::Claim;

/// A failure that stops the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}")]
    Bind {
        /// `address:port`.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable (reported before anything runs).
    #[error("{0}")]
    Config(String),
    /// The store is misconfigured (not merely unreachable).
    #[error("cannot open the store")]
    Store(#[source] driftguard_store::Error),
}

/// How often the store is pinged for readiness.
const STORE_PING_EVERY: Duration = Duration::from_secs(5);
/// Discovery refresh period (a CRD installed later is picked up).
const DISCOVERY_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Most live events folded into one store batch.
const LIVE_BATCH: usize = 512;
/// Most writes one store batch carries: an analysis writes as it goes, so its memory peak is
/// one chunk, not every record twice.
const WRITE_CHUNK: usize = 500;
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
    let config = loaded.config.clone();
    let exposure = config.server.exposure().map_err(ServeError::Config)?;
    let engine = engine_config(&config)?;
    let selector = Selector::parse(&config.kubernetes.labels)
        .map_err(|e| ServeError::Config(format!("invalid value for `kubernetes.labels`: {e}")))?;

    let metrics = Arc::new(crate::metrics::Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let runs = Arc::new(Runs::default());
    readiness.register("store", true, "connecting");
    readiness.register("kubernetes", true, "connecting to the API server");
    readiness.register("git", true, "waiting for the first fetch");

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
    let api = ApiState {
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
    let http_task = tokio::spawn(http::serve(
        listener,
        app,
        timeouts,
        shutdown.clone(),
        SHUTDOWN_GRACE,
    ));

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
    let _ = http_task.await;
    tracing::info!("👋 DriftGuard stopped");
    result
}

pub(crate) fn engine_config(config: &Config) -> Result<EngineConfig, ServeError> {
    let dd = &config.drift_detection;
    let mut ignore = Vec::new();
    for (i, rule) in dd.ignore.iter().enumerate() {
        let mut paths = Vec::new();
        for path in &rule.paths {
            paths.push(FieldPath::parse(path).map_err(|e| {
                ServeError::Config(format!("drift_detection.ignore rule {i}: {e}"))
            })?);
        }
        let compiled = IgnoreRule::new(
            rule.kind.clone(),
            rule.namespace.clone(),
            rule.name.clone(),
            paths,
            rule.managers.clone(),
        )
        .map_err(|e| ServeError::Config(format!("drift_detection.ignore rule {i}: {e}")))?;
        ignore.push(compiled);
    }
    Ok(EngineConfig {
        appliers: dd.appliers.clone(),
        controllers: dd.controllers.clone(),
        ignore,
        crd_defaults: Default::default(),
    })
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
    shutdown: watch::Receiver<bool>,
}

/// Backoff: 0.5 s doubling to `max`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(10));
    base.min(max)
}

/// Sleeps unless shutdown comes first; returns false on shutdown.
async fn pause(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = shutdown.changed() => false,
    }
}

pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

async fn run_pipeline(parts: PipelineParts<'_>) -> Result<(), ServeError> {
    let PipelineParts {
        config,
        engine,
        selector,
        lazy,
        buffered,
        store,
        metrics,
        readiness,
        runs,
        mut shutdown,
    } = parts;

    // --- store: open (retrying while unreachable), then its key and the current view.
    let mut attempt = 0;
    loop {
        match driftguard_store::open(&config.database).await {
            Ok(opened) => {
                lazy.set(opened);
                break;
            }
            Err(e) if e.is_unavailable() => {
                readiness.set("store", Health::Down, chain(&e));
                tracing::warn!(error = %chain(&e), "store unreachable; retrying");
                if !pause(backoff(attempt, Duration::from_secs(30)), &mut shutdown).await {
                    return Ok(());
                }
                attempt += 1;
            }
            Err(e) => return Err(ServeError::Store(e)),
        }
    }
    let key = loop_until(&mut shutdown, &readiness, "store", || {
        store.installation_key()
    })
    .await;
    let Some(key) = key else { return Ok(()) };
    let current = loop_until(&mut shutdown, &readiness, "store", || store.load_current()).await;
    let Some(current) = current else {
        return Ok(());
    };
    readiness.set("store", Health::Ok, "answering");
    tokio::spawn(watch_store(
        store.clone(),
        buffered.clone(),
        readiness.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    // drift_detection.redact was checked at load; an error here is a config built in code.
    let redact = config
        .drift_detection
        .redact_rules()
        .map_err(ServeError::Config)?;
    let hasher = SecretHasher::new(key).with_redact_rules(redact);

    // --- Kubernetes: client, discovery, watchers.
    let client = {
        let mut attempt = 0;
        loop {
            match driftguard_kube::connect(&config.kubernetes).await {
                Ok(client) => break client,
                Err(e) => {
                    let message = chain(&e);
                    readiness.set("kubernetes", Health::Pending, message.clone());
                    tracing::warn!(error = %message, "cannot build the Kubernetes client; retrying");
                    if !pause(backoff(attempt, Duration::from_secs(30)), &mut shutdown).await {
                        return Ok(());
                    }
                    attempt += 1;
                }
            }
        }
    };
    let discovery = {
        let mut attempt = 0;
        loop {
            match SharedDiscovery::new(client.clone()).await {
                Ok(d) => break d,
                Err(e) => {
                    let message = chain(&e);
                    readiness.set("kubernetes", Health::Pending, message.clone());
                    tracing::warn!(error = %message, "API discovery failed; retrying");
                    if !pause(backoff(attempt, Duration::from_secs(30)), &mut shutdown).await {
                        return Ok(());
                    }
                    attempt += 1;
                }
            }
        }
    };
    let (kinds, errors) = discovery
        .snapshot()
        .resolve_all(&config.kubernetes.resources);
    if !errors.is_empty() {
        let messages: Vec<String> = errors.iter().map(|e| chain(e)).collect();
        return Err(ServeError::Config(format!(
            "kubernetes.resources: {}",
            messages.join("; ")
        )));
    }
    readiness.set(
        "kubernetes",
        Health::Ok,
        format!("{} resource types", kinds.len()),
    );
    // Custom resources' schema defaults, read once at start (a CRD whose defaults change
    // takes effect at the next start).
    let engine = EngineConfig {
        crd_defaults: crate::crds::defaults_for(&client, kinds.iter().map(|k| k.group.as_str()))
            .await,
        ..engine
    };
    let _refresh = discovery.spawn_refresh(DISCOVERY_REFRESH_EVERY);
    for kind in &kinds {
        readiness.register(&component(kind), true, "listing");
    }
    let (live_tx, live_rx) = mpsc::channel(4096);
    let scope = WatchScope::from_config(&config.kubernetes);
    let watcher = LiveWatcher::start(
        client.clone(),
        &kinds,
        scope.clone(),
        hasher.clone(),
        live_tx,
    );
    // A frozen or partitioned API server leaves every watch silently waiting: the probe notices
    // it (readiness `kubernetes` degraded) and restarts the watches when it answers again.
    let _api_probe = {
        let readiness = readiness.clone();
        let answering = format!("{} resource types", kinds.len());
        driftguard_kube::ApiProbe::spawn(
            client.clone(),
            watcher.control(),
            driftguard_kube::ProbeOptions::default(),
            move |health| match health {
                driftguard_kube::ApiHealth::Answering => {
                    readiness.set("kubernetes", Health::Ok, answering.clone());
                }
                driftguard_kube::ApiHealth::NotAnswering(reason) => readiness.set(
                    "kubernetes",
                    Health::Degraded,
                    format!("API server not answering: {reason}"),
                ),
            },
        )
    };

    // --- Git: a blocking thread that fetches and builds snapshots.
    let (git_tx, git_rx) = mpsc::channel(8);
    let stop_git = Arc::new(AtomicBool::new(false));
    let git_thread = {
        let options = ReadOptions::from_config(
            &config.git,
            &config.kubernetes.default_namespace,
            hasher.clone(),
        )
        .map_err(|e| ServeError::Config(chain(&e)))?
        .with_scope_lookup(Arc::new(DiscoveryLookup(discovery.clone())));
        let source = GitSource::open_with(&config.git, options)
            .map_err(|e| ServeError::Config(chain(&e)))?;
        let poll = config.git.poll_interval;
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        let stop = stop_git.clone();
        std::thread::Builder::new()
            .name("driftguard-git".to_owned())
            .spawn(move || git_loop(source, poll, git_tx, readiness, metrics, stop))
            .map_err(|e| ServeError::Config(format!("cannot start the Git thread: {e}")))?
    };

    // --- The analyzer loop.
    let mut kind_map = HashMap::new();
    for kind in &kinds {
        kind_map.insert(kind.group_kind(), kind.clone());
    }
    let mut loop_state = Loop {
        analyzer: Analyzer::new(engine, config.drift_detection.report_unmanaged, current)
            .with_claim(Claim::new(
                scope.clone(),
                selector.clone(),
                &config.kubernetes.labels,
            )),
        snapshot: None,
        cache: watcher.cache(),
        kube_readiness: watcher.readiness(),
        kinds: kind_map,
        scope,
        selector,
        client,
        hasher,
        store,
        buffered,
        metrics,
        readiness,
        runs: runs.clone(),
    };
    runs.trigger(Trigger::Startup);
    let periodic = config
        .drift_detection
        .enable_periodic
        .then_some(config.drift_detection.interval);
    loop_state.run(live_rx, git_rx, periodic, shutdown).await;

    stop_git.store(true, Ordering::Relaxed);
    drop(watcher);
    let _ = tokio::task::spawn_blocking(move || git_thread.join()).await;
    Ok(())
}

/// Retries an operation that fails while the store is unreachable; `None` on shutdown.
async fn loop_until<T, F, Fut>(
    shutdown: &mut watch::Receiver<bool>,
    readiness: &Readiness,
    component: &str,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = driftguard_store::Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) => {
                let message = chain(&e);
                readiness.set(component, Health::Down, message.clone());
                tracing::warn!(error = %message, "store operation failed; retrying");
                if !pause(backoff(attempt, Duration::from_secs(30)), shutdown).await {
                    return None;
                }
                attempt += 1;
            }
        }
    }
}

/// Pings the store for readiness and exports the outage buffer's size.
async fn watch_store(
    store: Arc<dyn Store>,
    buffered: Arc<BufferedStore>,
    readiness: Arc<Readiness>,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let result = store.ping().await;
        metrics.store_op("ping", result.is_ok());
        let health = buffered.health();
        metrics
            .store_pending_writes
            .set(i64::try_from(health.pending).unwrap_or(i64::MAX));
        match result {
            Ok(()) if health.pending == 0 => readiness.set("store", Health::Ok, "answering"),
            Ok(()) if health.rejected > 0 => readiness.set(
                "store",
                Health::Degraded,
                format!(
                    "answering but refusing writes; {} record updates kept for retry",
                    health.pending
                ),
            ),
            Ok(()) => readiness.set(
                "store",
                Health::Degraded,
                format!(
                    "answering; {} buffered record updates draining",
                    health.pending
                ),
            ),
            Err(e) => readiness.set(
                "store",
                Health::Down,
                format!("{} ({} record updates buffered)", chain(&e), health.pending),
            ),
        }
        if !pause(STORE_PING_EVERY, &mut shutdown).await {
            return;
        }
    }
}

fn component(kind: &ResolvedKind) -> String {
    if kind.group.is_empty() {
        format!("watch/{}", kind.plural)
    } else {
        format!("watch/{}.{}", kind.plural, kind.group)
    }
}

/// Discovery as the Git reader's scope lookup (serve and check).
pub(crate) struct DiscoveryLookup(pub(crate) SharedDiscovery);

impl ScopeLookup for DiscoveryLookup {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.0.snapshot().is_namespaced(group, kind)
    }
}

/// A new Git snapshot for the analyzer.
struct GitUpdate {
    snapshot: Arc<Snapshot>,
    changed: Vec<ResourceKey>,
    first: bool,
}

fn git_loop(
    mut source: GitSource,
    poll: Duration,
    tx: mpsc::Sender<GitUpdate>,
    readiness: Arc<Readiness>,
    metrics: Arc<crate::metrics::Metrics>,
    stop: Arc<AtomicBool>,
) {
    let mut failures: u32 = 0;
    let mut have_snapshot = false;
    while !stop.load(Ordering::Relaxed) {
        match source.sync() {
            Ok(outcome) => {
                failures = 0;
                metrics
                    .git_syncs
                    .get_or_create(&ResultLabels {
                        result: "success".to_owned(),
                    })
                    .inc();
                metrics
                    .git_last_success
                    .set(Utc::now().timestamp_millis() as f64 / 1000.0);
                let snapshot = source.snapshot();
                metrics
                    .git_parse_errors
                    .set(i64::try_from(snapshot.errors.len()).unwrap_or(i64::MAX));
                metrics
                    .desired_objects
                    .set(i64::try_from(snapshot.objects.len()).unwrap_or(i64::MAX));
                let parse_note = if snapshot.errors.is_empty() {
                    String::new()
                } else {
                    format!("; {} files do not parse", snapshot.errors.len())
                };
                let status = if snapshot.errors.is_empty() {
                    Health::Ok
                } else {
                    Health::Degraded
                };
                readiness.set(
                    "git",
                    status,
                    format!(
                        "commit {}, {} objects{parse_note}",
                        short_commit(&snapshot.commit),
                        snapshot.objects.len()
                    ),
                );
                if let SyncOutcome::Updated {
                    previous_commit,
                    commit,
                    diff,
                } = outcome
                {
                    metrics.git_commit.clear();
                    metrics
                        .git_commit
                        .get_or_create(&CommitLabels {
                            commit: commit.clone(),
                        })
                        .set(1);
                    for error in &snapshot.errors {
                        tracing::warn!(error = %error, "manifest does not parse; its last good objects stay in force");
                    }
                    tracing::info!(
                        commit = %short_commit(&commit),
                        previous = %short_commit(&previous_commit),
                        objects = snapshot.objects.len(),
                        changed = diff.added.len() + diff.changed.len() + diff.removed.len(),
                        "🔀 desired state updated"
                    );
                    let changed = diff.keys().cloned().collect();
                    let update = GitUpdate {
                        snapshot: Arc::new(snapshot.clone()),
                        changed,
                        first: !have_snapshot,
                    };
                    have_snapshot = true;
                    if tx.blocking_send(update).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                metrics
                    .git_syncs
                    .get_or_create(&ResultLabels {
                        result: "error".to_owned(),
                    })
                    .inc();
                let message = chain(&e);
                let status = if have_snapshot {
                    Health::Degraded
                } else {
                    Health::Pending
                };
                // A budget is named on `/ready` (its key is ours, not repository text); the
                // path and commit go to the log only.
                let reason = match &e {
                    driftguard_git::Error::Budget { budget, .. } => {
                        format!("over budget {budget}, last good snapshot kept")
                    }
                    _ => "fetch failing, last good snapshot kept".to_owned(),
                };
                readiness.set("git", status, format!("{reason}: {message}"));
                tracing::warn!(error = %message, attempt = failures, "Git sync failed; the last good snapshot stays in force");
            }
        }
        let wait = if failures == 0 {
            poll
        } else {
            backoff(failures, poll)
        };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(wait));
        }
    }
}

/// Inputs of the analyzer loop.
enum Input {
    Live(LiveEvent),
    Git(GitUpdate),
    Run(RunInfo),
    Tick,
    Shutdown,
}

struct Loop {
    analyzer: Analyzer,
    snapshot: Option<Arc<Snapshot>>,
    cache: LiveCache,
    kube_readiness: driftguard_kube::Readiness,
    kinds: HashMap<GroupKind, ResolvedKind>,
    scope: WatchScope,
    selector: Selector,
    client: kube::Client,
    hasher: SecretHasher,
    store: Arc<dyn Store>,
    buffered: Arc<BufferedStore>,
    metrics: Arc<crate::metrics::Metrics>,
    readiness: Arc<Readiness>,
    runs: Arc<Runs>,
}

/// One evaluation that produced a write: (event, record after, resource id, type and severity
/// of the episode written).
type Evaluated = (
    Option<Event>,
    Option<DriftRecord>,
    String,
    Option<(String, String)>,
);

/// The writes and outcomes of evaluating a set of resources.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    outcomes: Vec<Evaluated>,
    /// Watch-event times of live changes in this batch, for the detection latency.
    seen: Vec<DateTime<Utc>>,
    evaluated: u64,
    errors: Vec<String>,
}

impl Loop {
    async fn run(
        &mut self,
        mut live_rx: mpsc::Receiver<LiveEvent>,
        mut git_rx: mpsc::Receiver<GitUpdate>,
        periodic: Option<Duration>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = periodic.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let runs = self.runs.clone();
        loop {
            let input = tokio::select! {
                biased;
                _ = shutdown.changed() => Input::Shutdown,
                Some(update) = git_rx.recv() => Input::Git(update),
                Some(event) = live_rx.recv() => Input::Live(event),
                run = runs.next(), if self.snapshot.is_some() => Input::Run(run),
                _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => Input::Tick,
            };
            match input {
                Input::Shutdown => return,
                Input::Tick => {
                    runs.trigger(Trigger::Periodic);
                }
                Input::Git(update) => self.on_git(update).await,
                Input::Live(first) => {
                    let mut events = vec![first];
                    while events.len() < LIVE_BATCH {
                        match live_rx.try_recv() {
                            Ok(e) => events.push(e),
                            Err(_) => break,
                        }
                    }
                    self.on_live(events).await;
                }
                Input::Run(run) => self.full_analysis(run).await,
            }
            if self.buffered.take_resync_needed() {
                tracing::warn!(
                    "writes were dropped during a store outage; the next full analysis rewrites every record"
                );
                self.analyzer.set_force_writes(true);
                runs.trigger(Trigger::Periodic);
            }
        }
    }

    async fn on_git(&mut self, update: GitUpdate) {
        let first = update.first;
        self.snapshot = Some(update.snapshot);
        if first {
            // The first snapshot: everything is evaluated by the startup run.
            return;
        }
        let mut batch = Batch::default();
        for key in &update.changed {
            self.evaluate_into(key, &mut batch, None).await;
        }
        self.commit_batch(batch).await;
    }

    async fn on_live(&mut self, events: Vec<LiveEvent>) {
        let mut batch = Batch::default();
        let mut seen_keys: HashSet<ResourceKey> = HashSet::new();
        for event in events {
            match event {
                // A key counts as seen only once it could be evaluated: an event that arrives
                // before its kind has listed is skipped, and the kind's `Synced` in the same
                // batch must still evaluate it.
                LiveEvent::Applied { object, seen_at } => {
                    if self.kind_trustworthy(&object.key) && seen_keys.insert(object.key.clone()) {
                        self.evaluate_into(&object.key, &mut batch, Some(seen_at))
                            .await;
                    }
                }
                LiveEvent::Deleted { key, seen_at } => {
                    if self.kind_trustworthy(&key) && seen_keys.insert(key.clone()) {
                        self.evaluate_into(&key, &mut batch, Some(seen_at)).await;
                    }
                }
                LiveEvent::Synced {
                    kind,
                    namespace,
                    keys,
                    ..
                } => {
                    self.metrics
                        .watched_objects
                        .get_or_create(&KindLabels {
                            kind: kind.kind.clone(),
                        })
                        .set(i64::try_from(self.cache.len(&kind)).unwrap_or(i64::MAX));
                    self.update_kind_readiness(&kind);
                    for key in self.keys_of_kind(&kind, namespace.as_deref(), keys) {
                        if seen_keys.insert(key.clone()) {
                            self.evaluate_into(&key, &mut batch, None).await;
                            if batch.writes.len() >= WRITE_CHUNK {
                                self.commit_batch(std::mem::take(&mut batch)).await;
                            }
                        }
                    }
                }
                LiveEvent::KindStatus { kind, .. } => self.update_kind_readiness(&kind),
            }
        }
        self.commit_batch(batch).await;
    }

    fn update_kind_readiness(&self, kind: &GroupKind) {
        let Some(resolved) = self.kinds.get(kind) else {
            return;
        };
        let name = component(resolved);
        let Some(state) = self.kube_readiness.kind(kind) else {
            return;
        };
        let (health, message, error) = match &state.state {
            KindState::Pending => (Health::Pending, "listing".to_owned(), false),
            KindState::Ready => (
                Health::Ok,
                format!("{} objects", self.cache.len(kind)),
                false,
            ),
            KindState::Forbidden(m) => (Health::Degraded, format!("forbidden: {m}"), true),
            KindState::Error(m) => (Health::Degraded, format!("failing: {m}"), true),
            KindState::Reconnecting(m) => (Health::Degraded, format!("reconnecting: {m}"), true),
        };
        if matches!(state.state, KindState::Forbidden(_)) {
            self.readiness.set_not_required(&name);
        }
        self.readiness.set(&name, health, message);
        self.metrics
            .watch_errors
            .get_or_create(&KindLabels {
                kind: kind.kind.clone(),
            })
            .set(i64::from(error));
    }

    /// Every identity of `kind` worth evaluating after a (re)list: desired objects, listed
    /// objects and records.
    fn keys_of_kind(
        &self,
        kind: &GroupKind,
        namespace: Option<&str>,
        listed: Vec<ResourceKey>,
    ) -> Vec<ResourceKey> {
        let in_ns = |k: &ResourceKey| namespace.is_none_or(|ns| k.namespace == ns);
        let mut keys: Vec<ResourceKey> = listed;
        if let Some(snapshot) = &self.snapshot {
            keys.extend(
                snapshot
                    .objects
                    .keys()
                    .filter(|k| k.group == kind.group && k.kind == kind.kind && in_ns(k))
                    .cloned(),
            );
        }
        keys.extend(
            self.analyzer
                .record_keys()
                .into_iter()
                .filter(|k| k.group == kind.group && k.kind == kind.kind && in_ns(k)),
        );
        keys
    }

    /// True when the kind of `key` is watched and its watch is healthy: otherwise nothing about
    /// it may change state (an unreachable API server never produces "missing").
    fn kind_trustworthy(&self, key: &ResourceKey) -> bool {
        let gk = GroupKind::new(key.group.clone(), key.kind.clone());
        if !self.kinds.contains_key(&gk) {
            return false;
        }
        self.kube_readiness
            .kind(&gk)
            .is_some_and(|r| r.listed_once && matches!(r.state, KindState::Ready))
    }

    async fn evaluate_into(
        &mut self,
        key: &ResourceKey,
        batch: &mut Batch,
        seen_at: Option<DateTime<Utc>>,
    ) {
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        if !self.kind_trustworthy(key) {
            return;
        }
        let desired = snapshot.get(key);
        if let Some(d) = desired
            && (!self.scope.allows_namespace(&d.key.namespace) || !self.selector.matches(&d.object))
        {
            return;
        }
        // An entry that cannot be read back is reported and the resource left as it is: taking
        // it for an absent object would report it missing.
        let mut live = match self.cache.lookup(key) {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(resource = %key.resource_id(), error = %e, "skipping evaluation");
                batch.errors.push(format!("{}: {e}", key.resource_id()));
                return;
            }
        };
        if let (Some(d), Some(l)) = (desired, live.as_ref())
            && d.api_version != l.api_version
        {
            match driftguard_kube::get_in_version(
                &self.client,
                &d.api_version,
                &key.kind,
                &key.namespace,
                &key.name,
                &self.hasher,
            )
            .await
            {
                Ok(fetched) => live = fetched,
                Err(e) => {
                    batch
                        .errors
                        .push(format!("{}: {}", key.resource_id(), chain(&e)));
                    return;
                }
            }
        }
        if let Some(l) = &live
            && desired.is_none()
            && (!self.scope.allows_namespace(&l.key.namespace) || !self.selector.matches(&l.object))
        {
            live = None;
        }
        batch.evaluated += 1;
        let commit = snapshot.commit.clone();
        let outcome: Outcome =
            self.analyzer
                .evaluate(key, desired, live.as_ref(), Some(&commit), Utc::now());
        if let Some(write) = outcome.write {
            let episode = match &write {
                Write::Upsert { episode, .. } => episode.as_ref(),
                Write::Remove {
                    closing_episode, ..
                } => closing_episode.as_ref(),
                Write::Episode { episode, .. } => Some(episode),
            };
            let headline = episode.map(|e| {
                (
                    e.drift_type
                        .map_or("none".to_owned(), |t| t.as_str().to_owned()),
                    e.severity
                        .map_or("none".to_owned(), |s| s.as_str().to_owned()),
                )
            });
            batch.writes.push(write);
            if let Some(seen) = seen_at {
                batch.seen.push(seen);
            }
            batch
                .outcomes
                .push((outcome.event, outcome.record, key.resource_id(), headline));
        }
    }

    async fn write(&mut self, writes: Vec<Write>) -> bool {
        if writes.is_empty() {
            return true;
        }
        let result = self.store.apply(&writes).await;
        self.metrics.store_op("apply", result.is_ok());
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %chain(&e), writes = writes.len(), "writing drift records failed");
                false
            }
        }
    }

    async fn commit_batch(&mut self, batch: Batch) -> RunCounts {
        let Batch {
            writes,
            outcomes,
            seen,
            evaluated,
            errors,
        } = batch;
        let written = writes.len() as u64;
        let stored = self.write(writes).await;
        let now = Utc::now();
        if stored {
            for seen_at in seen {
                let latency = (now - seen_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                self.metrics.detection_latency.observe(latency);
            }
        }
        let mut counts = RunCounts {
            evaluated,
            written,
            ..RunCounts::default()
        };
        for (event, record, id, episode) in outcomes {
            match (event, record.as_ref()) {
                (Some(Event::Detected), Some(r)) => {
                    counts.detected += 1;
                    let (t, s) = headline(r);
                    self.metrics
                        .detections
                        .get_or_create(&TypeLabels {
                            r#type: t.clone(),
                            severity: s.clone(),
                        })
                        .inc();
                    tracing::warn!(resource = %id, drift_type = %t, severity = %s, changes = r.drift_details.len(), fields = %fields(r), "⚠️ drift detected");
                }
                (Some(Event::Continued), Some(r)) => {
                    let (t, s) = headline(r);
                    tracing::info!(resource = %id, drift_type = %t, severity = %s, fields = %fields(r), "🔄 drift continued");
                }
                (Some(Event::Resolved), r) => {
                    counts.resolved += 1;
                    let message = r
                        .and_then(|r| r.resolution_message.clone())
                        .unwrap_or_else(|| "resource left the view".to_owned());
                    let t = r
                        .and_then(|r| r.first_detected.map(|f| (now - f).num_seconds()))
                        .unwrap_or(0);
                    if let Some((t, s)) = episode {
                        self.metrics
                            .resolutions
                            .get_or_create(&TypeLabels {
                                r#type: t,
                                severity: s,
                            })
                            .inc();
                    }
                    tracing::info!(resource = %id, message = %message, drift_seconds = t, "✅ drift resolved");
                }
                _ => {}
            }
        }
        for error in &errors {
            tracing::warn!(error = %error, "resource could not be evaluated");
        }
        if written > 0 {
            self.refresh_record_metrics();
        }
        counts.active = self
            .analyzer
            .records()
            .filter(|r| r.drift_status == DriftStatus::Active)
            .count() as u64;
        counts
    }

    fn refresh_record_metrics(&self) {
        let mut counts: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
        for r in self.analyzer.records() {
            let (t, s) = if r.drift_status == DriftStatus::Active {
                headline(r)
            } else {
                ("none".to_owned(), "none".to_owned())
            };
            *counts
                .entry((r.drift_status.as_str().to_owned(), s, t, r.kind.clone()))
                .or_default() += 1;
        }
        self.metrics.records.clear();
        for ((status, severity, r#type, kind), n) in counts {
            self.metrics
                .records
                .get_or_create(&RecordLabels {
                    status,
                    severity,
                    r#type,
                    kind,
                })
                .set(n);
        }
    }

    async fn full_analysis(&mut self, run: RunInfo) {
        let started = Instant::now();
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let mut keys: Vec<ResourceKey> = snapshot.objects.keys().cloned().collect();
        let mut seen: HashSet<ResourceKey> = keys.iter().cloned().collect();
        let mut more: Vec<ResourceKey> = self.analyzer.records().map(key_of).collect();
        for gk in self.kinds.keys() {
            more.extend(self.cache.keys(gk));
        }
        for key in more {
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let mut batch = Batch::default();
        let mut counts = RunCounts::default();
        let mut errors: Vec<String> = Vec::new();
        let mut untrusted = 0u64;
        for key in &keys {
            if !self.kind_trustworthy(key) && snapshot.objects.contains_key(key) {
                untrusted += 1;
            }
            self.evaluate_into(key, &mut batch, None).await;
            if batch.writes.len() >= WRITE_CHUNK {
                // Written as it goes: a first analysis of a large cluster (or the rewrite after
                // an outage) never holds every record twice, once in the view and once in a
                // batch.
                errors.extend(batch.errors.iter().cloned());
                let part = self.commit_batch(std::mem::take(&mut batch)).await;
                counts.add(&part);
            }
        }
        errors.extend(batch.errors.iter().cloned());
        for e in &snapshot.errors {
            errors.push(e.to_string());
        }
        for (gk, kind) in &self.kinds {
            if let Some(r) = self.kube_readiness.kind(gk)
                && let Some(m) = r.state.message()
            {
                errors.push(format!("{}: {}", kind.plural, m));
            }
        }
        let part = self.commit_batch(batch).await;
        counts.add(&part);
        self.analyzer.set_force_writes(false);
        let elapsed = started.elapsed();
        self.metrics
            .analysis_duration
            .get_or_create(&TriggerLabels {
                trigger: trigger_name(run.trigger).to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.metrics
            .analysis_runs
            .get_or_create(&ResultLabels {
                result: if errors.is_empty() {
                    "success"
                } else {
                    "error"
                }
                .to_owned(),
            })
            .inc();
        self.refresh_record_metrics();
        tracing::info!(
            run_id = %run.run_id,
            trigger = trigger_name(run.trigger),
            commit = %short_commit(&snapshot.commit),
            evaluated = counts.evaluated,
            active = counts.active,
            detected = counts.detected,
            resolved = counts.resolved,
            skipped_unwatched = untrusted,
            errors = errors.len(),
            duration_ms = elapsed.as_millis() as u64,
            "📊 analysis completed"
        );
        self.runs
            .finish(run.run_id, Some(snapshot.commit.clone()), counts, errors);
    }
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Periodic => "periodic",
        Trigger::Startup => "startup",
    }
}

fn headline(record: &DriftRecord) -> (String, String) {
    (
        record
            .drift_type
            .map_or("none".to_owned(), |t| t.as_str().to_owned()),
        record
            .severity
            .map_or("none".to_owned(), |s| s.as_str().to_owned()),
    )
}

fn fields(record: &DriftRecord) -> String {
    let fields: Vec<String> = record
        .drift_details
        .iter()
        .take(5)
        .map(|c| c.field.to_string())
        .collect();
    let more = record.drift_details.len().saturating_sub(5);
    if more > 0 {
        format!("{} (+{more} more)", fields.join(", "))
    } else {
        fields.join(", ")
    }
}

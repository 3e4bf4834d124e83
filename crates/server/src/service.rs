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
    let events = Arc::new(crate::api::events::EventHub::default());
    let api = ApiState {
        events: events.clone(),
        source_web: crate::ui::web_base(&config.git.repository_url).map(Arc::from),
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
    // Event streams end when the service stops, so the HTTP server can drain.
    {
        let events = events.clone();
        let mut stopping = shutdown.clone();
        tokio::spawn(async move {
            while !*stopping.borrow() {
                if stopping.changed().await.is_err() {
                    break;
                }
            }
            events.close();
        });
    }
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

    let mut sinks = Sinks::new(vec![
        Arc::new(LogSink) as Arc<dyn EventSink>,
        Arc::new(MetricsSink(metrics.clone())),
        events.clone(),
    ])
    .with(extra_sinks);
    // Notifications: the sink queues, the workers deliver once the store answers.
    let configured =
        crate::notify::deliver::Sink::all(&config.notifications).map_err(ServeError::Config)?;
    let notify_workers =
        match crate::notify::worker::notifier(configured, metrics.clone(), readiness.clone()) {
            Some((sink, workers)) => {
                sinks.push(sink);
                Some(workers)
            }
            None => None,
        };
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
        notify_workers,
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
    notify_workers: Option<crate::notify::worker::Workers>,
    shutdown: watch::Receiver<bool>,
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
        sinks,
        notify_workers,
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
                let wait = crate::retry::backoff(attempt, Duration::from_secs(30));
                if !crate::retry::pause(wait, &mut shutdown).await {
                    return Ok(());
                }
                attempt += 1;
            }
            Err(e) => return Err(ServeError::Store(e)),
        }
    }
    let Some(key) = until_ok(
        &mut shutdown,
        &readiness,
        "store",
        Health::Down,
        "reading the installation key",
        || store.installation_key(),
    )
    .await
    else {
        return Ok(());
    };
    let Some(current) = until_ok(
        &mut shutdown,
        &readiness,
        "store",
        Health::Down,
        "loading the current view",
        || store.load_current(),
    )
    .await
    else {
        return Ok(());
    };
    readiness.set("store", Health::Ok, "answering");
    tokio::spawn(crate::store_health::watch_store(
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

    if let Some(workers) = notify_workers {
        workers
            .start(store.clone(), &current, shutdown.clone())
            .map_err(ServeError::Config)?;
    }

    // --- Kubernetes: client, discovery, watchers.
    let Some(KubeStart {
        client,
        discovery,
        kinds,
    }) = crate::kube_start::connect(config, &readiness, &mut shutdown).await?
    else {
        return Ok(());
    };
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
    let watch_scope = WatchScope::from_config(&config.kubernetes);
    let watcher = LiveWatcher::start(
        client.clone(),
        &kinds,
        watch_scope.clone(),
        hasher.clone(),
        live_tx,
    );
    let _api_probe = crate::kube_start::probe(&client, &watcher, &readiness, kinds.len());

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
        let metrics = metrics.clone();
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
        selector.clone(),
        &config.kubernetes.labels,
    );
    let analyzer =
        Analyzer::new(engine, config.drift_detection.report_unmanaged, current).with_claim(claim);
    let live = WatchedLive::new(watcher, discovery, kind_map);
    let scope = Scope {
        watch: watch_scope,
        selector,
    };
    let mut pipeline = Pipeline::new(
        analyzer,
        live,
        scope,
        client,
        hasher,
        buffered,
        metrics,
        readiness,
        runs.clone(),
        sinks,
    );
    runs.trigger(Trigger::Startup);
    let periodic = config
        .drift_detection
        .enable_periodic
        .then_some(config.drift_detection.interval);
    pipeline.run(live_rx, git_rx, periodic, shutdown).await;

    stop_git.store(true, Ordering::Relaxed);
    drop(pipeline);
    let _ = tokio::task::spawn_blocking(move || git_thread.join()).await;
    Ok(())
}

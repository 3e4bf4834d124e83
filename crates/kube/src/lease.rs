//! Leader election on a `coordination.k8s.io/v1` Lease (issue 19).
//!
//! The protocol is client-go's `leaderelection`, written here rather than taken from a crate:
//! the maintained Rust crates we looked at judge expiry by comparing the Lease's timestamps with
//! the local clock (wrong under clock skew), have no renew deadline, and do not expose the
//! transition count we use as the fencing term.
//!
//! - **Acquire**: a candidate reads the Lease. It may take it when nobody holds it, or when the
//!   holder's record has not changed for `lease_duration` *as observed locally* (the local
//!   monotonic clock measures how long the record stayed the same, so skew between machines
//!   does not matter). Taking it is an update conditional on the `resourceVersion` it read
//!   (optimistic concurrency: of two candidates, one wins, the other gets a conflict), with
//!   `leaseTransitions` incremented — that count is the leader's **term**.
//! - **Renew**: the leader rewrites `renewTime` every `retry_period`. When it could not renew
//!   for `renew_deadline` (shorter than `lease_duration`), it stops leading, so it stops before
//!   any other candidate may start. [`LeaderGate::is_leading`] answers from the time of the last
//!   successful renewal, so a leader whose task is stuck (or a process that was paused) reads
//!   "not leading" the moment the deadline passes, whatever the task is doing.
//! - **Release**: on shutdown the leader clears `holderIdentity` (and sets a 1 s duration), so a
//!   follower takes over at once instead of waiting for the Lease to lapse. Followers watch the
//!   Lease, so they see the release within a round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use tokio::sync::{Notify, watch};

/// What the election needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (unique among candidates).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// The leader stops leading when it could not renew for this long.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

/// This candidate's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not leading; `holder` is the identity in the Lease (None: nobody holds it, or unknown).
    Following {
        /// The current holder as last read.
        holder: Option<String>,
    },
    /// Leading, with the Lease's transition count as the term.
    Leading {
        /// `leaseTransitions` when this candidate took the Lease.
        term: u64,
    },
}

impl Role {
    /// True when leading.
    pub fn is_leading(&self) -> bool {
        matches!(self, Role::Leading { .. })
    }
}

/// Answers "may I still act as leader?" from the time of the last successful renewal.
#[derive(Debug, Clone)]
pub struct LeaderGate {
    inner: Arc<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
}

impl LeaderGate {
    fn new(renew_deadline: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(None)),
            renew_deadline,
        }
    }

    /// A gate that is always open: a single replica without election.
    pub fn always() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Some(Instant::now()))),
            renew_deadline: Duration::MAX,
        }
    }

    /// A gate that is always closed: a replica that stepped down.
    pub fn closed() -> Self {
        Self::new(Duration::ZERO)
    }

    fn renewed(&self, at: Instant) {
        *lock(&self.inner) = Some(at);
    }

    fn close(&self) {
        *lock(&self.inner) = None;
    }

    /// True while leading and the last renewal is younger than `renew_deadline`.
    pub fn is_leading(&self) -> bool {
        match *lock(&self.inner) {
            Some(at) => at.elapsed() < self.renew_deadline,
            None => false,
        }
    }

    /// When leadership ends unless renewed (None when not leading).
    fn deadline(&self) -> Option<Instant> {
        (*lock(&self.inner)).and_then(|at| at.checked_add(self.renew_deadline))
    }
}

/// A running election: its role, the gate, and the release on drop of the stop signal.
pub struct Elector {
    role: watch::Receiver<Role>,
    gate: LeaderGate,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("role", &*self.role.borrow())
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// Starts campaigning.
    pub fn start(client: kube::Client, settings: LeaseSettings) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let gate = LeaderGate::new(settings.renew_deadline);
        let (role_tx, role) = watch::channel(Role::Following { holder: None });
        let (stop, stop_rx) = watch::channel(false);
        let changed = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_lease(
            api.clone(),
            settings.name.clone(),
            changed.clone(),
            stop_rx.clone(),
        ));
        let task = tokio::spawn(campaign(
            api,
            settings,
            gate.clone(),
            role_tx,
            changed,
            stop_rx,
        ));
        Self {
            role,
            gate,
            task,
            stop,
            watcher,
        }
    }

    /// The role, updated as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The gate writes check.
    pub fn gate(&self) -> LeaderGate {
        self.gate.clone()
    }

    /// Stops campaigning now, without waiting: a leader stops leading at once (the gate
    /// closes) and releases the Lease in the background, so a follower can take over while
    /// this process is still tearing down. [`Elector::release`] waits for it.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops campaigning; a leader releases the Lease (bounded by `timeout`).
    pub async fn release(self, timeout: Duration) {
        let _ = self.stop.send(true);
        self.watcher.abort();
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}

/// What one attempt found.
enum Attempt {
    /// This candidate holds the Lease (term).
    Holding(u64),
    /// Another candidate holds it.
    Held(Option<String>),
}

/// The record last read, and when it was first seen as it is.
struct Observed {
    version: String,
    holder: Option<String>,
    duration: Duration,
    since: Instant,
}

async fn campaign(
    api: Api<Lease>,
    settings: LeaseSettings,
    gate: LeaderGate,
    role: watch::Sender<Role>,
    changed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut observed: Option<Observed> = None;
    let mut leading = false;
    let mut logged_error = false;
    loop {
        if *stop.borrow() {
            break;
        }
        // An attempt never outlives the leader's deadline: when it passes, leadership ends.
        let budget = match gate.deadline() {
            Some(deadline) if leading => deadline.saturating_duration_since(Instant::now()),
            _ => settings.retry_period.max(Duration::from_secs(1)),
        };
        let started = Instant::now();
        let attempt =
            tokio::time::timeout(budget, try_acquire_or_renew(&api, &settings, &mut observed))
                .await;
        match attempt {
            Ok(Ok(Attempt::Holding(term))) => {
                logged_error = false;
                gate.renewed(started);
                if !leading {
                    leading = true;
                    tracing::info!(
                        lease = %settings.name,
                        identity = %settings.identity,
                        term,
                        "👑 leading: this replica watches, analyses and writes"
                    );
                    let _ = role.send(Role::Leading { term });
                }
            }
            Ok(Ok(Attempt::Held(holder))) => {
                logged_error = false;
                if leading {
                    leading = false;
                    gate.close();
                    tracing::warn!(
                        lease = %settings.name,
                        holder = holder.as_deref().unwrap_or(""),
                        "another replica took the Lease; stepping down"
                    );
                }
                role.send_if_modified(|r| {
                    let next = Role::Following { holder };
                    let modified = *r != next;
                    *r = next;
                    modified
                });
            }
            Ok(Err(e)) => {
                if !logged_error {
                    tracing::warn!(lease = %settings.name, error = %e, "Lease request failed; retrying");
                    logged_error = true;
                }
            }
            Err(_) => {}
        }
        if leading && !gate.is_leading() {
            leading = false;
            gate.close();
            tracing::warn!(
                lease = %settings.name,
                deadline_s = settings.renew_deadline.as_secs_f64(),
                "could not renew the Lease within the renew deadline; stepping down"
            );
            let _ = role.send(Role::Following { holder: None });
        }
        // Followers retry with jitter (client-go's 1.2 factor), and at once when the Lease
        // changes; the leader renews every retry_period.
        let wait = if leading {
            settings.retry_period
        } else {
            settings.retry_period.mul_f64(1.0 + 0.2 * jitter())
        };
        let wait = match gate.deadline() {
            Some(deadline) if leading => {
                wait.min(deadline.saturating_duration_since(Instant::now()))
            }
            _ => wait,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified(), if !leading => {}
            _ = stop.changed() => {}
        }
    }
    if leading && gate.is_leading() {
        gate.close();
        match release(&api, &settings).await {
            Ok(()) => tracing::info!(lease = %settings.name, "released the Lease"),
            Err(e) => {
                tracing::warn!(lease = %settings.name, error = %e, "could not release the Lease; it lapses after lease_duration")
            }
        }
    }
    gate.close();
    let _ = role.send(Role::Following { holder: None });
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<Attempt, kube::Error> {
    let now = Instant::now();
    let existing = api.get_opt(&settings.name).await?;
    let Some(lease) = existing else {
        let created = api
            .create(
                &PostParams::default(),
                &Lease {
                    metadata: ObjectMeta {
                        name: Some(settings.name.clone()),
                        namespace: Some(settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec_for(settings, None, 0)),
                },
            )
            .await;
        return match created {
            Ok(_) => Ok(Attempt::Holding(0)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held(None)),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    // The record changed since last read: the holder is alive (or someone else took it).
    if observed.as_ref().is_none_or(|o| o.version != version) {
        *observed = Some(Observed {
            version: version.clone(),
            holder: holder.clone(),
            duration,
            since: now,
        });
    }
    let transitions = u64::try_from(spec.lease_transitions.unwrap_or(0)).unwrap_or(0);
    let mine = holder.as_deref() == Some(settings.identity.as_str());
    if !mine
        && let Some(o) = observed.as_ref()
        && o.holder.is_some()
        && o.since.elapsed() < o.duration
    {
        return Ok(Attempt::Held(holder));
    }
    let (term, acquire) = if mine {
        (transitions, spec.acquire_time.clone())
    } else {
        (transitions + 1, None)
    };
    let mut next = lease.clone();
    next.spec = Some(spec_for(settings, acquire, term));
    match api
        .replace(&settings.name, &PostParams::default(), &next)
        .await
    {
        Ok(written) => {
            *observed = Some(Observed {
                version: written.metadata.resource_version.unwrap_or_default(),
                holder: Some(settings.identity.clone()),
                duration: settings.lease_duration,
                since: Instant::now(),
            });
            Ok(Attempt::Holding(term))
        }
        // Someone else wrote first (optimistic concurrency on resourceVersion).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held(holder)),
        Err(e) => Err(e),
    }
}

fn spec_for(settings: &LeaseSettings, acquire: Option<MicroTime>, term: u64) -> LeaseSpec {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(i32::try_from(term).unwrap_or(i32::MAX)),
        ..LeaseSpec::default()
    }
}

/// Clears the holder if it is still this candidate, so a follower takes over at once.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

/// Pings `changed` whenever the Lease changes, so followers react within a round trip.
async fn watch_lease(
    api: Api<Lease>,
    name: String,
    changed: Arc<Notify>,
    stop: watch::Receiver<bool>,
) {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(290);
    let mut version = "0".to_owned();
    while !*stop.borrow() {
        match api.watch(&params, &version).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(WatchEvent::Added(l) | WatchEvent::Modified(l)) => {
                            if let Some(v) = l.metadata.resource_version {
                                version = v;
                            }
                            changed.notify_one();
                        }
                        Ok(WatchEvent::Deleted(_)) => changed.notify_one(),
                        Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                        Ok(WatchEvent::Error(_)) => {
                            version = "0".to_owned();
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

fn jitter() -> f64 {
    // Sub-second clock noise is jitter enough to keep candidates from retrying in lockstep.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

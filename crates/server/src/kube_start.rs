//! The Kubernetes side of `serve`'s start: a client and discovery (retried until the API server
//! answers), the configured kinds, and the probe that notices a stalled API server.

use driftguard_config::Config;
use driftguard_kube::{
    ApiHealth, ApiProbe, LiveWatcher, ProbeOptions, ResolvedKind, SharedDiscovery,
};
use tokio::sync::watch;

use crate::errors::{ServeError, chain};
use crate::health::{Health, Readiness};
use crate::retry::until_ok;

/// What the service needs from the API server to start watching.
pub struct KubeStart {
    /// The client.
    pub client: kube::Client,
    /// Discovery, refreshed later.
    pub discovery: SharedDiscovery,
    /// The configured kinds, resolved.
    pub kinds: Vec<ResolvedKind>,
}

/// Connects (retrying while the API server does not answer); `None` on shutdown. A configured
/// kind the cluster does not serve is a configuration error.
pub async fn connect(
    config: &Config,
    readiness: &Readiness,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<KubeStart>, ServeError> {
    let Some(client) = until_ok(
        shutdown,
        readiness,
        "kubernetes",
        Health::Pending,
        "building the Kubernetes client",
        || driftguard_kube::connect(&config.kubernetes),
    )
    .await
    else {
        return Ok(None);
    };
    let Some(discovery) = until_ok(
        shutdown,
        readiness,
        "kubernetes",
        Health::Pending,
        "API discovery",
        || SharedDiscovery::new(client.clone()),
    )
    .await
    else {
        return Ok(None);
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
    Ok(Some(KubeStart {
        client,
        discovery,
        kinds,
    }))
}

/// A frozen or partitioned API server leaves every watch silently waiting: the probe notices
/// it (readiness `kubernetes` degraded) and restarts the watches when it answers again.
pub fn probe(
    client: &kube::Client,
    watcher: &LiveWatcher,
    readiness: &std::sync::Arc<Readiness>,
    kinds: usize,
) -> ApiProbe {
    let readiness = readiness.clone();
    let answering = format!("{kinds} resource types");
    ApiProbe::spawn(
        client.clone(),
        watcher.control(),
        ProbeOptions::default(),
        move |health| match health {
            ApiHealth::Answering => {
                readiness.set("kubernetes", Health::Ok, answering.clone());
            }
            ApiHealth::NotAnswering(reason) => readiness.set(
                "kubernetes",
                Health::Degraded,
                format!("API server not answering: {reason}"),
            ),
        },
    )
}

//! The configuration tree. Field names are the YAML keys.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Drift record store.
    pub database: DatabaseConfig,
    /// The watched cluster.
    pub kubernetes: KubernetesConfig,
    /// The desired-state repository.
    pub git: GitConfig,
    /// Detection behaviour.
    pub drift_detection: DriftDetectionConfig,
    /// Helm charts in the repository.
    pub helm: HelmConfig,
    /// Where drift is reported besides the API (Alertmanager, Slack, webhooks).
    pub notifications: NotificationsConfig,
    /// Several replicas: one leader on a Kubernetes Lease (contract §9).
    pub leader_election: LeaderElectionConfig,
    /// Logs.
    pub logging: LoggingConfig,
}

/// `leader_election.*`: several replicas, one of which (the holder of a
/// `coordination.k8s.io/v1` Lease) watches, analyses and writes; the others serve the API from
/// the shared store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Elect a leader (needs `database.driver: mongodb`).
    pub enabled: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease; empty means the namespace this pod runs in (read from the
    /// service account), else `default`.
    pub lease_namespace: String,
    /// This replica's name in the Lease; empty means the host name (the pod name).
    pub identity: String,
    /// How long a Lease holds without renewal; a follower takes over after it.
    #[serde(with = "crate::duration")]
    pub lease_duration: Duration,
    /// The leader stops acting as leader when it could not renew for this long (shorter than
    /// `lease_duration`, so it stops before anyone else may start).
    #[serde(with = "crate::duration")]
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    #[serde(with = "crate::duration")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            lease_name: "driftguard".to_owned(),
            lease_namespace: String::new(),
            identity: String::new(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `helm.*`: Helm charts in the repository as desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelmConfig {
    /// The `helm` program (a path, or a name looked up on `PATH`).
    pub binary: String,
    /// A directory under `git.path` holding `Chart.yaml` is a chart, rendered as release
    /// `<directory name>` in `kubernetes.default_namespace` with its own `values.yaml`.
    pub detect: bool,
    /// Keep hook objects (`helm.sh/hook`: tests, pre/post-install jobs) in the desired state.
    pub include_hooks: bool,
    /// Explicit releases; a chart named here is rendered only as these say.
    pub releases: Vec<HelmReleaseConfig>,
}

/// One entry of `helm.releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmReleaseConfig {
    /// Release name (`helm template <name>`).
    pub name: String,
    /// Chart directory, a path in the repository.
    pub chart: String,
    /// Release namespace; empty = `kubernetes.default_namespace`.
    #[serde(default)]
    pub namespace: String,
    /// Values files, paths in the repository, applied in order after the chart's `values.yaml`.
    #[serde(default)]
    pub values_files: Vec<String>,
    /// Inline values, applied last.
    #[serde(default = "empty_mapping")]
    pub values: serde_json::Value,
    /// Render the chart's `crds/` directory too.
    #[serde(default = "yes")]
    pub include_crds: bool,
}

fn empty_mapping() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn yes() -> bool {
    true
}

impl Default for HelmConfig {
    fn default() -> Self {
        Self {
            binary: "helm".to_owned(),
            detect: true,
            include_hooks: false,
            releases: Vec::new(),
        }
    }
}

/// `notifications.*`: sinks told when drift is detected, changes and is resolved (contract §9).
/// Every sink is off until configured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// The address DriftGuard is reached at from where notifications are read
    /// (`https://driftguard.example.com`): payloads link to records under it. Without it they
    /// carry no links.
    pub external_url: Option<String>,
    /// Alertmanager (API v2): one alert per active drift.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// A Slack-compatible incoming webhook: readable, grouped messages.
    pub slack: Option<SlackConfig>,
    /// Generic webhooks: a versioned JSON body, HMAC-signed when a secret is set.
    pub webhooks: Vec<WebhookConfig>,
}

/// The event kinds a sink can take (`notifications.*.events`).
pub const NOTIFICATION_EVENTS: &[&str] = &["detected", "changed", "resolved", "health"];

/// The events a sink takes when `events` is not given: the record events, not health.
pub const DEFAULT_NOTIFICATION_EVENTS: &[&str] = &["detected", "changed", "resolved"];

/// `notifications.alertmanager`
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://alertmanager:9093`); alerts go to `<url>/api/v2/alerts`.
    pub url: String,
    /// How often an active alert is sent again (must stay below Alertmanager's
    /// `resolve_timeout`, 5m by default).
    #[serde(with = "crate::duration", default = "one_minute")]
    pub resend_interval: Duration,
    /// Lowest severity sent: `low`, `medium` or `high`.
    #[serde(default = "lowest_severity")]
    pub min_severity: String,
    /// Only these namespaces (exact names); empty = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Only these kinds (exact, e.g. `Deployment`); empty = all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these drift types (contract §3 names, e.g. `Scaling`); empty = all.
    #[serde(default)]
    pub drift_types: Vec<String>,
    /// Event kinds sent: a subset of `detected`, `changed`, `resolved`, `health`.
    #[serde(default = "default_events")]
    pub events: Vec<String>,
}

/// `notifications.slack`
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (it holds a token: prefer `DRIFTGUARD_NOTIFICATIONS__SLACK`).
    pub webhook_url: String,
    /// Lowest severity sent: `low`, `medium` or `high`.
    #[serde(default = "lowest_severity")]
    pub min_severity: String,
    /// Only these namespaces (exact names); empty = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Only these kinds (exact); empty = all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these drift types; empty = all.
    #[serde(default)]
    pub drift_types: Vec<String>,
    /// Event kinds sent.
    #[serde(default = "default_events")]
    pub events: Vec<String>,
}

/// One entry of `notifications.webhooks`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A unique name (used in logs and metrics instead of the URL).
    pub name: String,
    /// Where the JSON body is POSTed.
    pub url: String,
    /// Signing secret: when set, `X-DriftGuard-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers (e.g. an `Authorization`); values are never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Lowest severity sent: `low`, `medium` or `high`.
    #[serde(default = "lowest_severity")]
    pub min_severity: String,
    /// Only these namespaces (exact names); empty = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Only these kinds (exact); empty = all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these drift types; empty = all.
    #[serde(default)]
    pub drift_types: Vec<String>,
    /// Event kinds sent.
    #[serde(default = "default_events")]
    pub events: Vec<String>,
}

/// The routing keys every sink has, borrowed from its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotificationFilter<'a> {
    /// `low`, `medium` or `high`.
    pub min_severity: &'a str,
    /// Exact namespaces; empty = all.
    pub namespaces: &'a [String],
    /// Exact kinds; empty = all.
    pub kinds: &'a [String],
    /// Drift type names; empty = all.
    pub drift_types: &'a [String],
    /// Event kinds.
    pub events: &'a [String],
}

macro_rules! filter_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// This sink's routing keys.
            pub fn filter(&self) -> NotificationFilter<'_> {
                NotificationFilter {
                    min_severity: &self.min_severity,
                    namespaces: &self.namespaces,
                    kinds: &self.kinds,
                    drift_types: &self.drift_types,
                    events: &self.events,
                }
            }
        }
    )*};
}
filter_of!(AlertmanagerConfig, SlackConfig, WebhookConfig);

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

fn lowest_severity() -> String {
    "low".to_owned()
}

fn default_events() -> Vec<String> {
    DEFAULT_NOTIFICATION_EVENTS
        .iter()
        .map(|e| (*e).to_owned())
        .collect()
}

/// A URL as it may be shown: scheme, host and port only — user info, path and query (where
/// webhook tokens live) become `…`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = authority.contains('@') || end < rest.len() && &rest[end..] != "/";
    format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field("url", &redacted_url(&self.url))
            .field("resend_interval", &self.resend_interval)
            .field("filter", &self.filter())
            .finish()
    }
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("webhook_url", &redacted_url(&self.webhook_url))
            .field("filter", &self.filter())
            .finish()
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("filter", &self.filter())
            .finish()
    }
}

/// `server.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listening port; 0 = any free port (logged at start).
    pub port: u16,
    /// Bind address. When not set anywhere, `0.0.0.0` with an `auth_token`, else `127.0.0.1`
    /// (resolved by [`crate::load`]).
    pub address: String,
    /// Time allowed to read a request (headers and body).
    #[serde(with = "crate::duration")]
    pub read_timeout: Duration,
    /// Time allowed to produce and write a response.
    #[serde(with = "crate::duration")]
    pub write_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// Bearer token protecting `/api/v1/*` (prefer `DRIFTGUARD_SERVER__AUTH_TOKEN`).
    pub auth_token: Option<String>,
    /// Allows listening on a non-loopback address without `auth_token` (contract §9).
    pub allow_unauthenticated: bool,
}

/// How `serve` would expose its API, from [`ServerConfig::exposure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A loopback address: only this machine can connect.
    Loopback,
    /// Any address, with a bearer token on `/api/v1/*`.
    Authenticated,
    /// A non-loopback address without a token, explicitly allowed
    /// (`server.allow_unauthenticated: true`): `serve` logs a warning.
    Unauthenticated,
}

impl ServerConfig {
    /// The bearer token, when one is configured (an empty string is none).
    pub fn token(&self) -> Option<&str> {
        self.auth_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The bind address the defaults give: `0.0.0.0` with a token, else `127.0.0.1`.
    pub fn default_address(&self) -> &'static str {
        if self.token().is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        }
    }

    /// Whether the API may listen on `address`. A non-loopback address without a token is
    /// refused unless `allow_unauthenticated` is set; the error names the keys to change.
    pub fn exposure(&self) -> Result<Exposure, String> {
        let loopback = self
            .address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
        if loopback {
            Ok(Exposure::Loopback)
        } else if self.token().is_some() {
            Ok(Exposure::Authenticated)
        } else if self.allow_unauthenticated {
            Ok(Exposure::Unauthenticated)
        } else {
            Err(format!(
                "refusing to serve the API without authentication on non-loopback address {}: \
                 set `server.auth_token` (DRIFTGUARD_SERVER__AUTH_TOKEN), or set `server.address` \
                 to a loopback address such as 127.0.0.1, or set \
                 `server.allow_unauthenticated: true` (DRIFTGUARD_SERVER__ALLOW_UNAUTHENTICATED) \
                 to accept an open API",
                self.address
            ))
        }
    }
}

/// Which store keeps the drift records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseDriver {
    /// Embedded SQLite file (the default).
    Sqlite,
    /// MongoDB, for several replicas sharing state.
    Mongodb,
}

/// `database.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Explicit driver; when absent see [`DatabaseConfig::effective_driver`].
    pub driver: Option<DatabaseDriver>,
    /// MongoDB host.
    pub host: Option<String>,
    /// MongoDB port.
    pub port: u16,
    /// MongoDB user.
    pub user: Option<String>,
    /// MongoDB password (prefer `DRIFTGUARD_DATABASE__PASSWORD`).
    pub password: Option<String>,
    /// Database name.
    pub dbname: String,
    /// Connection and operation timeout.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// SQLite file.
    pub path: String,
    /// Full MongoDB connection string (overrides host/port/user/password).
    pub uri: Option<String>,
}

/// `kubernetes.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Kubeconfig file; empty = `KUBECONFIG`, the default kubeconfig, or in-cluster.
    pub config_path: String,
    /// Context inside that kubeconfig; empty = its current context.
    pub context: String,
    /// Namespaces to watch; empty = all.
    pub namespaces: Vec<String>,
    /// Resource types to watch (plural, singular, kind, short name or `plural.group`).
    pub resources: Vec<String>,
    /// Skip kube-system, kube-public, kube-node-lease and `extra_system_namespaces`.
    pub skip_system_namespaces: bool,
    /// Label selector (`app=web,tier!=db`), or a map of required labels.
    #[serde(deserialize_with = "selector")]
    pub labels: String,
    /// Namespace given to manifests without one.
    pub default_namespace: String,
    /// Namespaces treated as system namespaces besides the built-in three.
    pub extra_system_namespaces: Vec<String>,
}

/// `git.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// Repository URL (`file://`, `https://`, `ssh://`, `git@host:path`) or a local path.
    pub repository_url: String,
    /// Branch, tag or commit to follow.
    pub default_branch: String,
    /// Time allowed for the first clone.
    #[serde(with = "crate::duration")]
    pub clone_timeout: Duration,
    /// Time allowed for each fetch.
    #[serde(with = "crate::duration")]
    pub pull_timeout: Duration,
    /// How often the remote is fetched.
    #[serde(with = "crate::duration")]
    pub poll_interval: Duration,
    /// Sub-paths inside the repository (a string or a list); empty = the whole repository.
    #[serde(deserialize_with = "one_or_many")]
    pub path: Vec<String>,
    /// Globs of files to read (relative to the repository root); empty = every manifest.
    pub include: Vec<String>,
    /// Globs of files to skip.
    pub exclude: Vec<String>,
    /// Where clones live; empty = a directory under the system temp dir.
    pub workdir: String,
    /// Files larger than this many bytes are reported and skipped.
    pub max_file_size: u64,
    /// Documents nested deeper than this are reported and skipped.
    pub max_depth: usize,
    /// Most files (manifests and Kustomize inputs) one snapshot may list.
    pub max_files: u64,
    /// Most bytes one snapshot may read (files parsed plus files written out for rendering).
    pub max_total_bytes: u64,
    /// Most tree entries one snapshot may visit (a repeated subtree counts every time).
    pub max_tree_entries: u64,
    /// Time allowed for building one snapshot.
    #[serde(with = "crate::duration")]
    pub snapshot_timeout: Duration,
}

/// `drift_detection.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftDetectionConfig {
    /// Full analysis period.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// Run the full analysis every `interval` (watch events are handled regardless).
    pub enable_periodic: bool,
    /// Ignore rules.
    pub ignore: Vec<IgnoreRuleConfig>,
    /// Values that are secrets outside Secrets, digested like Secret data.
    pub redact: Vec<crate::redact::RedactRuleConfig>,
    /// Field managers treated as the GitOps applier.
    pub appliers: Vec<String>,
    /// Field managers treated as controllers (their additions are not drift).
    pub controllers: Vec<String>,
    /// Report live objects absent from Git.
    pub report_unmanaged: bool,
}

/// One `drift_detection.ignore` entry; every present criterion must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnoreRuleConfig {
    /// Kind glob.
    pub kind: Option<String>,
    /// Namespace glob.
    pub namespace: Option<String>,
    /// Name glob.
    pub name: Option<String>,
    /// Field paths (contract §2.2 syntax, `*` allowed); empty = the whole resource.
    pub paths: Vec<String>,
    /// Field manager globs: the change is ignored only when its manager matches.
    pub managers: Vec<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, with the emoji events.
    Text,
    /// One JSON object per line.
    Json,
}

/// `logging.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or a `RUST_LOG`-style filter.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// The built-in appliers and controllers are the engine's (one list, in the core).
pub use driftguard_core::engine::{DEFAULT_APPLIERS, DEFAULT_CONTROLLERS};

/// The resource types watched when `kubernetes.resources` is empty.
pub const DEFAULT_RESOURCES: &[&str] = &["deployments", "services", "configmaps", "secrets"];

/// Namespaces always treated as system namespaces.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

// === impl defaults ===

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            address: "127.0.0.1".to_owned(),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            auth_token: None,
            allow_unauthenticated: false,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            driver: None,
            host: None,
            port: 27017,
            user: None,
            password: None,
            dbname: "driftguard".to_owned(),
            timeout: Duration::from_secs(10),
            path: "./driftguard.db".to_owned(),
            uri: None,
        }
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            config_path: String::new(),
            context: String::new(),
            namespaces: Vec::new(),
            resources: DEFAULT_RESOURCES.iter().map(|s| (*s).to_owned()).collect(),
            skip_system_namespaces: true,
            labels: String::new(),
            default_namespace: "default".to_owned(),
            extra_system_namespaces: Vec::new(),
        }
    }
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            repository_url: String::new(),
            default_branch: "main".to_owned(),
            clone_timeout: Duration::from_secs(300),
            pull_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(30),
            path: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            workdir: String::new(),
            max_file_size: 5 * 1024 * 1024,
            max_depth: 64,
            max_files: 20_000,
            max_total_bytes: 256 * 1024 * 1024,
            max_tree_entries: 200_000,
            snapshot_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for DriftDetectionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            enable_periodic: true,
            ignore: Vec::new(),
            redact: Vec::new(),
            appliers: DEFAULT_APPLIERS.iter().map(|s| (*s).to_owned()).collect(),
            controllers: DEFAULT_CONTROLLERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            report_unmanaged: false,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl DatabaseConfig {
    /// The driver in force: an explicit `driver` always wins; otherwise MongoDB when a URI or
    /// host is configured (file or `MONGODB_URI`/`MONGODB_HOST`), else SQLite.
    pub fn effective_driver(&self) -> DatabaseDriver {
        match self.driver {
            Some(driver) => driver,
            None if self.uri.as_deref().is_some_and(|u| !u.is_empty())
                || self.host.as_deref().is_some_and(|h| !h.is_empty()) =>
            {
                DatabaseDriver::Mongodb
            }
            None => DatabaseDriver::Sqlite,
        }
    }

    /// The MongoDB connection string: `uri` as given, or built from host/port/user/password with
    /// the credentials percent-encoded.
    pub fn mongodb_uri(&self) -> String {
        if let Some(uri) = self.uri.as_deref().filter(|u| !u.is_empty()) {
            return uri.to_owned();
        }
        let host = self.host.as_deref().unwrap_or("localhost");
        let credentials = match (&self.user, &self.password) {
            (Some(user), Some(password)) if !user.is_empty() => {
                format!("{}:{}@", percent_encode(user), percent_encode(password))
            }
            (Some(user), _) if !user.is_empty() => format!("{}@", percent_encode(user)),
            _ => String::new(),
        };
        format!("mongodb://{credentials}{host}:{}", self.port)
    }
}

impl KubernetesConfig {
    /// Every namespace treated as a system namespace.
    pub fn system_namespaces(&self) -> Vec<String> {
        SYSTEM_NAMESPACES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(self.extra_system_namespaces.iter().cloned())
            .collect()
    }

    /// True when objects of `namespace` are out of scope.
    pub fn namespace_skipped(&self, namespace: &str) -> bool {
        if namespace.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == namespace) {
            return true;
        }
        self.skip_system_namespaces
            && self.namespaces.is_empty()
            && self.system_namespaces().iter().any(|n| n == namespace)
    }
}

/// RFC 3986 unreserved characters pass; everything else is `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(de)? {
        None => Vec::new(),
        Some(Raw::One(s)) if s.is_empty() => Vec::new(),
        Some(Raw::One(s)) => vec![s],
        Some(Raw::Many(v)) => v,
    })
}

fn selector<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Map(std::collections::BTreeMap<String, String>),
    }
    Ok(match Option::<Raw>::deserialize(de)? {
        None => String::new(),
        Some(Raw::Text(s)) => s,
        Some(Raw::Map(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    })
}

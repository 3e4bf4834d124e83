//! Every configuration key, once: its section, name and kind. The environment overlay and the
//! docs are driven from this table, so a key cannot exist in one place and not the other.

/// How an environment variable's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Taken as text.
    String,
    /// `true`/`false`.
    Bool,
    /// An unsigned integer.
    Integer,
    /// `30s`, `5m`.
    Duration,
    /// Comma-separated (or a YAML flow list `[a, b]`).
    List,
    /// YAML/JSON text (structured values such as `ignore`).
    Yaml,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Section, e.g. `server`.
    pub section: &'static str,
    /// Key inside the section, e.g. `port`.
    pub key: &'static str,
    /// Value kind.
    pub kind: KeyKind,
    /// One line of documentation.
    pub doc: &'static str,
}

impl KeySpec {
    /// `DRIFTGUARD_<SECTION>__<KEY>`.
    pub fn env_var(&self) -> String {
        format!(
            "DRIFTGUARD_{}__{}",
            self.section.to_ascii_uppercase(),
            self.key.to_ascii_uppercase()
        )
    }

    /// `section.key`.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

const fn k(section: &'static str, key: &'static str, kind: KeyKind, doc: &'static str) -> KeySpec {
    KeySpec {
        section,
        key,
        kind,
        doc,
    }
}

/// Every key DriftGuard reads.
pub const KEYS: &[KeySpec] = &[
    k(
        "server",
        "port",
        KeyKind::Integer,
        "HTTP port; 0 = any free port (logged at start)",
    ),
    k(
        "server",
        "address",
        KeyKind::String,
        "bind address (default 0.0.0.0 with auth_token, else 127.0.0.1)",
    ),
    k(
        "server",
        "read_timeout",
        KeyKind::Duration,
        "time allowed to read a request",
    ),
    k(
        "server",
        "write_timeout",
        KeyKind::Duration,
        "time allowed to answer a request",
    ),
    k(
        "server",
        "idle_timeout",
        KeyKind::Duration,
        "idle keep-alive connections are closed after this",
    ),
    k(
        "server",
        "auth_token",
        KeyKind::String,
        "bearer token for /api/v1/*",
    ),
    k(
        "server",
        "allow_unauthenticated",
        KeyKind::Bool,
        "allow a non-loopback address without auth_token",
    ),
    k("database", "driver", KeyKind::String, "sqlite or mongodb"),
    k("database", "host", KeyKind::String, "MongoDB host"),
    k("database", "port", KeyKind::Integer, "MongoDB port"),
    k("database", "user", KeyKind::String, "MongoDB user"),
    k("database", "password", KeyKind::String, "MongoDB password"),
    k("database", "dbname", KeyKind::String, "database name"),
    k(
        "database",
        "timeout",
        KeyKind::Duration,
        "connection and operation timeout",
    ),
    k("database", "path", KeyKind::String, "SQLite file"),
    k(
        "database",
        "uri",
        KeyKind::String,
        "MongoDB connection string",
    ),
    k(
        "kubernetes",
        "config_path",
        KeyKind::String,
        "kubeconfig file",
    ),
    k(
        "kubernetes",
        "context",
        KeyKind::String,
        "kubeconfig context",
    ),
    k(
        "kubernetes",
        "namespaces",
        KeyKind::List,
        "namespaces to watch (empty = all)",
    ),
    k(
        "kubernetes",
        "resources",
        KeyKind::List,
        "resource types to watch",
    ),
    k(
        "kubernetes",
        "skip_system_namespaces",
        KeyKind::Bool,
        "skip kube-system and friends",
    ),
    k("kubernetes", "labels", KeyKind::String, "label selector"),
    k(
        "kubernetes",
        "default_namespace",
        KeyKind::String,
        "namespace for manifests without one",
    ),
    k(
        "kubernetes",
        "extra_system_namespaces",
        KeyKind::List,
        "more system namespaces",
    ),
    k(
        "git",
        "repository_url",
        KeyKind::String,
        "repository URL or local path",
    ),
    k(
        "git",
        "default_branch",
        KeyKind::String,
        "branch, tag or commit",
    ),
    k(
        "git",
        "clone_timeout",
        KeyKind::Duration,
        "time allowed for the first clone",
    ),
    k(
        "git",
        "pull_timeout",
        KeyKind::Duration,
        "time allowed for each fetch",
    ),
    k(
        "git",
        "poll_interval",
        KeyKind::Duration,
        "how often the remote is fetched",
    ),
    k(
        "git",
        "path",
        KeyKind::List,
        "sub-paths inside the repository",
    ),
    k("git", "include", KeyKind::List, "globs of files to read"),
    k("git", "exclude", KeyKind::List, "globs of files to skip"),
    k("git", "workdir", KeyKind::String, "where clones live"),
    k(
        "git",
        "max_file_size",
        KeyKind::Integer,
        "larger files are reported and skipped",
    ),
    k(
        "git",
        "max_depth",
        KeyKind::Integer,
        "deeper documents are reported and skipped",
    ),
    k(
        "git",
        "max_files",
        KeyKind::Integer,
        "most files one snapshot may list",
    ),
    k(
        "git",
        "max_total_bytes",
        KeyKind::Integer,
        "most bytes one snapshot may read",
    ),
    k(
        "git",
        "max_tree_entries",
        KeyKind::Integer,
        "most tree entries one snapshot may visit",
    ),
    k(
        "git",
        "snapshot_timeout",
        KeyKind::Duration,
        "time allowed for building one snapshot",
    ),
    k(
        "drift_detection",
        "interval",
        KeyKind::Duration,
        "full analysis period",
    ),
    k(
        "drift_detection",
        "enable_periodic",
        KeyKind::Bool,
        "run the periodic full analysis",
    ),
    k("drift_detection", "ignore", KeyKind::Yaml, "ignore rules"),
    k(
        "drift_detection",
        "redact",
        KeyKind::Yaml,
        "field paths whose values are digested like Secret data",
    ),
    k(
        "drift_detection",
        "appliers",
        KeyKind::List,
        "field managers of GitOps appliers",
    ),
    k(
        "drift_detection",
        "controllers",
        KeyKind::List,
        "field managers of controllers",
    ),
    k(
        "drift_detection",
        "report_unmanaged",
        KeyKind::Bool,
        "report live objects absent from Git",
    ),
    k(
        "helm",
        "binary",
        KeyKind::String,
        "the helm program (a path, or a name on PATH)",
    ),
    k(
        "helm",
        "detect",
        KeyKind::Bool,
        "render every directory holding Chart.yaml under git.path",
    ),
    k(
        "helm",
        "include_hooks",
        KeyKind::Bool,
        "keep helm.sh/hook objects in the desired state",
    ),
    k(
        "helm",
        "releases",
        KeyKind::Yaml,
        "explicit releases: name, chart, namespace, values_files, values, include_crds",
    ),
    k(
        "notifications",
        "external_url",
        KeyKind::String,
        "the address DriftGuard is reached at, for links in notifications",
    ),
    k(
        "notifications",
        "alertmanager",
        KeyKind::Yaml,
        "Alertmanager sink: url, resend_interval, min_severity, namespaces, kinds, drift_types, events",
    ),
    k(
        "notifications",
        "slack",
        KeyKind::Yaml,
        "Slack-compatible incoming webhook: webhook_url, min_severity, namespaces, kinds, drift_types, events",
    ),
    k(
        "notifications",
        "webhooks",
        KeyKind::Yaml,
        "generic webhooks: name, url, secret, headers, min_severity, namespaces, kinds, drift_types, events",
    ),
    k(
        "leader_election",
        "enabled",
        KeyKind::Bool,
        "run several replicas: one leader on a Lease writes, the others serve the API (needs MongoDB)",
    ),
    k(
        "leader_election",
        "lease_name",
        KeyKind::String,
        "name of the coordination.k8s.io/v1 Lease",
    ),
    k(
        "leader_election",
        "lease_namespace",
        KeyKind::String,
        "namespace of the Lease (default: the pod's own namespace, else default)",
    ),
    k(
        "leader_election",
        "identity",
        KeyKind::String,
        "this replica's name in the Lease (default: the host name)",
    ),
    k(
        "leader_election",
        "lease_duration",
        KeyKind::Duration,
        "how long the Lease holds without renewal",
    ),
    k(
        "leader_election",
        "renew_deadline",
        KeyKind::Duration,
        "the leader steps down when it could not renew for this long",
    ),
    k(
        "leader_election",
        "retry_period",
        KeyKind::Duration,
        "time between attempts to acquire or renew the Lease",
    ),
    k("logging", "level", KeyKind::String, "log level or filter"),
    k("logging", "format", KeyKind::String, "text or json"),
];

/// Looks a key up by section and name.
pub fn find(section: &str, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.section == section && s.key == key)
}

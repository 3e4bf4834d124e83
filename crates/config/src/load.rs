//! Loading: defaults < file < environment < flags, with errors that name the key and its origin.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use driftguard_yaml::{Limits, PathSegment, YamlError, parse_documents};
use serde_json::{Map, Value};

use crate::keys::{self, KEYS, KeyKind};
use crate::types::Config;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built in.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the built-in default"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration problem. Every message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, or exceeds the YAML reader's budgets.
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The reader's message, with its line.
        message: String,
    },
    /// A key DriftGuard does not know.
    #[error("unknown configuration key `{key}` in {origin}{hint}")]
    UnknownKey {
        /// The key, dotted.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// A suggestion, if one is close.
        hint: String,
    },
    /// A value of the wrong shape.
    #[error("invalid value for `{key}` in {origin}: {message}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// A required value is absent.
    #[error("`{key}` is required but not set ({where_to})")]
    Missing {
        /// The key, dotted.
        key: String,
        /// Where it can be set.
        where_to: String,
    },
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`; when `None`, `./driftguard.yaml` is read if present.
    pub file: Option<PathBuf>,
    /// The directory searched for `driftguard.yaml` when no file is given (default: cwd).
    pub search_dir: Option<PathBuf>,
    /// The environment to read (pass `std::env::vars()`; tests pass their own).
    pub env: Vec<(String, String)>,
    /// Flag overrides: (`section.key`, flag name, value).
    pub flags: Vec<(String, String, serde_json::Value)>,
}

/// A loaded configuration and where each set key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Origin of every key that is not a default (`section.key` → origin).
    pub origins: BTreeMap<String, Origin>,
}

impl Loaded {
    /// Where `section.key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Checks what `serve` (and `check` without `--repo`) needs: a repository.
    pub fn require_repository(&self) -> Result<(), ConfigError> {
        if self.config.git.repository_url.trim().is_empty() {
            let in_file = match &self.file {
                Some(path) => format!("set it in config file {}", path.display()),
                None => "no config file was read; pass --config FILE".to_owned(),
            };
            return Err(ConfigError::Missing {
                key: "git.repository_url".to_owned(),
                where_to: format!("{in_file}, or DRIFTGUARD_GIT__REPOSITORY_URL"),
            });
        }
        Ok(())
    }
}

/// Loads the configuration.
pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut tree = Map::new();
    let mut origins = BTreeMap::new();

    let file = match &options.file {
        Some(path) => Some(path.clone()),
        None => {
            let dir = options
                .search_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("."));
            let candidate = dir.join("driftguard.yaml");
            candidate.is_file().then_some(candidate)
        }
    };

    if let Some(path) = &file {
        let file_tree = read_file(path)?;
        for (section, keys) in &file_tree {
            for key in keys.keys() {
                origins.insert(format!("{section}.{key}"), Origin::File(path.clone()));
            }
        }
        for (section, keys) in file_tree {
            let entry = tree
                .entry(section)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                for (key, value) in keys {
                    map.insert(key, value);
                }
            }
        }
        // Errors in the file alone are reported against the file.
        deserialize(&tree, &origins)?;
    }

    // Legacy variables first, so the specific DRIFTGUARD_* ones win over them.
    for (var, target) in [
        ("MONGODB_URI", "database.uri"),
        ("MONGODB_HOST", "database.host"),
        ("KUBECONFIG", "kubernetes.config_path"),
    ] {
        if let Some((_, value)) = options.env.iter().find(|(k, _)| k == var)
            && !value.is_empty()
        {
            set(&mut tree, target, Value::String(value.clone()));
            origins.insert(target.to_owned(), Origin::Env(var.to_owned()));
        }
    }

    let mut env: Vec<_> = options
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("DRIFTGUARD_") && k.contains("__"))
        .collect();
    env.sort();
    for (var, text) in env {
        let rest = &var["DRIFTGUARD_".len()..];
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let origin = Origin::Env(var.clone());
        let Some(spec) = keys::find(&section, &key) else {
            return Err(unknown(&format!("{section}.{key}"), origin));
        };
        let value = env_value(spec.kind, text).map_err(|message| ConfigError::Invalid {
            key: spec.dotted(),
            origin: origin.clone(),
            message,
        })?;
        set(&mut tree, &spec.dotted(), value);
        origins.insert(spec.dotted(), origin);
    }

    for (dotted, flag, value) in &options.flags {
        set(&mut tree, dotted, value.clone());
        origins.insert(dotted.clone(), Origin::Flag(flag.clone()));
    }

    let mut config = deserialize(&tree, &origins)?;
    if !origins.contains_key("server.address") {
        // Open to the network only behind a token (contract §7).
        config.server.address = config.server.default_address().to_owned();
    }
    validate(&config, &origins)?;
    Ok(Loaded {
        config,
        file,
        origins,
    })
}

type FileTree = Vec<(String, Vec<(String, Value)>)>;

trait Keys {
    fn keys(&self) -> Vec<&String>;
}

impl Keys for Vec<(String, Value)> {
    fn keys(&self) -> Vec<&String> {
        self.iter().map(|(k, _)| k).collect()
    }
}

fn read_file(path: &Path) -> Result<FileTree, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = Origin::File(path.to_owned());
    let root = parse_yaml(&text).map_err(|message| ConfigError::Syntax {
        path: path.to_owned(),
        message,
    })?;
    let root = match root {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        _ => {
            return Err(ConfigError::Invalid {
                key: "(top level)".to_owned(),
                origin,
                message: "expected a mapping of sections (server, database, kubernetes, git, drift_detection, helm, notifications, leader_election, logging)".to_owned(),
            });
        }
    };
    let mut out = Vec::new();
    for (section, body) in root {
        if !KEYS.iter().any(|k| k.section == section) {
            return Err(unknown(&section, origin));
        }
        let mut keys_out = Vec::new();
        match body {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    if keys::find(&section, &key).is_none() {
                        return Err(unknown(&format!("{section}.{key}"), origin));
                    }
                    keys_out.push((key, value));
                }
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: section,
                    origin,
                    message: "expected a mapping of keys".to_owned(),
                });
            }
        }
        out.push((section, keys_out));
    }
    Ok(out)
}

/// The one document of a YAML text (`null` when there is none), read by DriftGuard's one YAML
/// reader — kubectl's scalar rules, merge keys and tags — within the same budgets as manifests.
/// A key written twice is refused (kubectl would silently keep the last value). The message
/// names the line.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let documents = parse_documents(text, &Limits::default()).map_err(|e| describe(&e))?;
    let mut documents = documents.into_iter();
    let Some(document) = documents.next() else {
        return Ok(Value::Null);
    };
    if let Some(extra) = documents.next() {
        return Err(format!(
            "line {}: a second YAML document (only one is read)",
            extra.line
        ));
    }
    if let Some(duplicate) = document.duplicates.first() {
        return Err(format!(
            "line {}: `{}` is written twice",
            duplicate.line,
            dotted(&duplicate.path)
        ));
    }
    Ok(document.value)
}

/// The reader's error as `line N: what` (without the reader's own `invalid YAML: ` prefix).
fn describe(error: &YamlError) -> String {
    let what = error
        .message
        .strip_prefix("invalid YAML: ")
        .unwrap_or(&error.message);
    match error.line {
        Some(line) => format!("line {line}: {what}"),
        None => what.to_owned(),
    }
}

/// A key path as the configuration writes it: `drift_detection.ignore[0].kind`.
fn dotted(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            PathSegment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

fn unknown(key: &str, origin: Origin) -> ConfigError {
    let best = KEYS
        .iter()
        .map(|k| k.dotted())
        .chain(
            [
                "server",
                "database",
                "kubernetes",
                "git",
                "drift_detection",
                "helm",
                "notifications",
                "leader_election",
                "logging",
            ]
            .into_iter()
            .map(|s: &str| s.to_owned()),
        )
        .map(|candidate| (edit_distance(&candidate, key), candidate))
        .min();
    let hint = match best {
        Some((distance, candidate)) if distance <= 3 => format!(" (did you mean `{candidate}`?)"),
        _ => String::new(),
    };
    ConfigError::UnknownKey {
        key: key.to_owned(),
        origin,
        hint,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

fn env_value(kind: KeyKind, text: &str) -> Result<Value, String> {
    match kind {
        KeyKind::String | KeyKind::Duration => Ok(Value::String(text.to_owned())),
        KeyKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            other => Err(format!("expected true or false, got {other:?}")),
        },
        KeyKind::Integer => text
            .trim()
            .parse::<u64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("expected a non-negative integer, got {text:?}")),
        KeyKind::List => {
            let trimmed = text.trim();
            if trimmed.starts_with('[') {
                parse_yaml(trimmed).map_err(|e| format!("invalid list: {e}"))
            } else {
                Ok(Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
        KeyKind::Yaml => parse_yaml(text).map_err(|e| format!("invalid YAML: {e}")),
    }
}

fn set(tree: &mut Map<String, Value>, dotted: &str, value: Value) {
    let (section, key) = dotted.split_once('.').unwrap_or((dotted, ""));
    let entry = tree
        .entry(section.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !matches!(entry, Value::Object(_)) {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(map) = entry {
        map.insert(key.to_owned(), value);
    }
}

fn deserialize(
    tree: &Map<String, Value>,
    origins: &BTreeMap<String, Origin>,
) -> Result<Config, ConfigError> {
    let value = Value::Object(tree.clone());
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let path = e.path().to_string();
        let mut parts = path.split('.');
        let key = match (parts.next(), parts.next()) {
            (Some(section), Some(key)) => {
                let key = key.split('[').next().unwrap_or(key);
                format!("{section}.{key}")
            }
            (Some(section), None) => section.to_owned(),
            _ => path.clone(),
        };
        let origin = origins.get(&key).cloned().unwrap_or(Origin::Default);
        let mut message = e.into_inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            return unknown(&format!("{path}.{field}"), origin);
        }
        let unquoted = ["boolean", "integer", "floating point", "null"]
            .iter()
            .any(|kind| message.starts_with(&format!("invalid type: {kind}")));
        if unquoted && message.ends_with("expected a string") {
            // YAML's (kubectl's) rules read these before the key's type is known.
            message.push_str(
                " (unquoted yes/no/on/off/y/n are booleans and 0755 or 1e3 are numbers in YAML: quote the value to keep it text)",
            );
        }
        ConfigError::Invalid {
            key: path,
            origin,
            message,
        }
    })
}

fn validate(config: &Config, origins: &BTreeMap<String, Origin>) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        origin: origin_of(origins, key),
        message,
    };
    if config.server.address.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(
            "server.address",
            format!("{:?} is not an IP address", config.server.address),
        ));
    }
    for (key, value) in [
        ("server.read_timeout", config.server.read_timeout),
        ("server.write_timeout", config.server.write_timeout),
        ("server.idle_timeout", config.server.idle_timeout),
        ("database.timeout", config.database.timeout),
        ("git.clone_timeout", config.git.clone_timeout),
        ("git.pull_timeout", config.git.pull_timeout),
        ("git.poll_interval", config.git.poll_interval),
        ("drift_detection.interval", config.drift_detection.interval),
    ] {
        if value.is_zero() {
            return Err(invalid(key, "must be greater than zero".to_owned()));
        }
    }
    if config.kubernetes.resources.is_empty() {
        return Err(invalid(
            "kubernetes.resources",
            "must name at least one resource type".to_owned(),
        ));
    }
    if config.kubernetes.default_namespace.is_empty() {
        return Err(invalid(
            "kubernetes.default_namespace",
            "must not be empty".to_owned(),
        ));
    }
    if config.git.max_depth == 0 || config.git.max_file_size == 0 {
        let key = if config.git.max_depth == 0 {
            "git.max_depth"
        } else {
            "git.max_file_size"
        };
        return Err(invalid(key, "must be greater than zero".to_owned()));
    }
    for (key, value) in [
        ("git.max_files", config.git.max_files),
        ("git.max_total_bytes", config.git.max_total_bytes),
        ("git.max_tree_entries", config.git.max_tree_entries),
        (
            "git.snapshot_timeout",
            config.git.snapshot_timeout.as_millis() as u64,
        ),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be greater than zero".to_owned()));
        }
    }
    // The same function both commands build their engine with: parsed once, checked here.
    if let Err(e) = config.drift_detection.engine_config() {
        return Err(invalid("drift_detection.ignore", e));
    }
    validate_helm(&config.helm).map_err(|(key, message)| invalid(&key, message))?;
    validate_notifications(&config.notifications)
        .map_err(|(key, message)| invalid(&key, message))?;
    validate_leader_election(config).map_err(|(key, message)| invalid(&key, message))?;
    if config.logging.level.trim().is_empty() {
        return Err(invalid("logging.level", "must not be empty".to_owned()));
    }
    Ok(())
}

/// `leader_election.*`: durations ordered as the Lease protocol needs them. (That leader election
/// needs the shared store is checked by `serve`, the one command it concerns.)
fn validate_leader_election(config: &Config) -> Result<(), (String, String)> {
    let le = &config.leader_election;
    for (key, value) in [
        ("leader_election.lease_duration", le.lease_duration),
        ("leader_election.renew_deadline", le.renew_deadline),
        ("leader_election.retry_period", le.retry_period),
    ] {
        if value.is_zero() {
            return Err((key.to_owned(), "must be greater than zero".to_owned()));
        }
    }
    if !le.enabled {
        return Ok(());
    }
    if le.renew_deadline >= le.lease_duration {
        return Err((
            "leader_election.renew_deadline".to_owned(),
            format!(
                "must be shorter than leader_election.lease_duration ({}s), so a leader stops \
                 before another replica may take over",
                le.lease_duration.as_secs_f64()
            ),
        ));
    }
    if le.retry_period >= le.renew_deadline {
        return Err((
            "leader_election.retry_period".to_owned(),
            format!(
                "must be shorter than leader_election.renew_deadline ({}s), so a leader gets \
                 more than one try to renew",
                le.renew_deadline.as_secs_f64()
            ),
        ));
    }
    if le.lease_name.trim().is_empty() {
        return Err((
            "leader_election.lease_name".to_owned(),
            "must not be empty".to_owned(),
        ));
    }
    Ok(())
}

/// `helm.*`: releases are named, unique, point inside the repository and take mapping values.
fn validate_helm(helm: &crate::HelmConfig) -> Result<(), (String, String)> {
    if helm.binary.trim().is_empty() {
        return Err(("helm.binary".to_owned(), "must not be empty".to_owned()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, release) in helm.releases.iter().enumerate() {
        let key = |field: &str| format!("helm.releases[{i}].{field}");
        // Helm's own rule for release names (DNS-1123 label, at most 53 characters).
        let valid_name = !release.name.is_empty()
            && release.name.len() <= 53
            && release
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !release.name.starts_with('-')
            && !release.name.ends_with('-');
        if !valid_name {
            return Err((
                key("name"),
                format!(
                    "{:?} is not a release name (lower-case letters, digits and '-', at most 53)",
                    release.name
                ),
            ));
        }
        if !seen.insert((release.name.as_str(), release.namespace.as_str())) {
            return Err((
                key("name"),
                format!("release {:?} is listed twice", release.name),
            ));
        }
        for (field, path) in std::iter::once(("chart", &release.chart))
            .chain(release.values_files.iter().map(|p| ("values_files", p)))
        {
            if let Some(problem) = repository_path_problem(path) {
                return Err((key(field), format!("{path:?} {problem}")));
            }
        }
        if !release.values.is_object() {
            return Err((key("values"), "must be a mapping".to_owned()));
        }
    }
    Ok(())
}

/// Why `path` is not a path inside the repository, if it is not.
fn repository_path_problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        Some("is empty")
    } else if path.contains("://") || path.starts_with("oci:") {
        Some("is a URL; charts and values files are read from the repository only")
    } else if path.starts_with('/') {
        Some("is absolute; give a path relative to the repository root")
    } else if path.split('/').any(|part| part == "..") {
        Some("leaves the repository (`..`)")
    } else {
        None
    }
}

/// Where the key holding `key` came from: `helm.releases[1].name` is in `helm.releases`.
fn origin_of(origins: &BTreeMap<String, Origin>, key: &str) -> Origin {
    let mut parts = key.splitn(3, '.');
    let top = match (parts.next(), parts.next()) {
        (Some(section), Some(rest)) => {
            let rest = rest.split('[').next().unwrap_or(rest);
            format!("{section}.{rest}")
        }
        _ => key.to_owned(),
    };
    origins
        .get(key)
        .or_else(|| origins.get(&top))
        .cloned()
        .unwrap_or(Origin::Default)
}

/// `notifications.*`: URLs are http(s), filters name known values, webhook names are unique.
/// Messages never repeat a URL, a secret or a header value (they may hold tokens).
fn validate_notifications(n: &crate::NotificationsConfig) -> Result<(), (String, String)> {
    if let Some(url) = &n.external_url {
        check_url(url).map_err(|m| ("notifications.external_url".to_owned(), m))?;
    }
    if let Some(am) = &n.alertmanager {
        let key = |field: &str| format!("notifications.alertmanager.{field}");
        check_url(&am.url).map_err(|m| (key("url"), m))?;
        if am.resend_interval.is_zero() {
            return Err((
                key("resend_interval"),
                "must be greater than zero".to_owned(),
            ));
        }
        check_filter(&am.filter(), &key)?;
    }
    if let Some(slack) = &n.slack {
        let key = |field: &str| format!("notifications.slack.{field}");
        check_url(&slack.webhook_url).map_err(|m| (key("webhook_url"), m))?;
        check_filter(&slack.filter(), &key)?;
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, hook) in n.webhooks.iter().enumerate() {
        let key = |field: &str| format!("notifications.webhooks[{i}].{field}");
        if hook.name.trim().is_empty() {
            return Err((key("name"), "must not be empty".to_owned()));
        }
        if !names.insert(hook.name.as_str()) {
            return Err((
                key("name"),
                format!(
                    "webhook {:?} is listed twice (names must be unique)",
                    hook.name
                ),
            ));
        }
        check_url(&hook.url).map_err(|m| (key("url"), m))?;
        if hook.secret.as_deref().is_some_and(|s| s.is_empty()) {
            return Err((
                key("secret"),
                "must not be empty (leave it out to send unsigned)".to_owned(),
            ));
        }
        for name in hook.headers.keys() {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err((key("headers"), format!("{name:?} is not a header name")));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "content-type"
                || lower == "content-length"
                || lower.starts_with("x-driftguard-")
            {
                return Err((
                    key("headers"),
                    format!("{name:?} is set by DriftGuard and cannot be overridden"),
                ));
            }
        }
        if hook.headers.values().any(|v| v.contains(['\r', '\n'])) {
            return Err((
                key("headers"),
                "a header value holds a line break".to_owned(),
            ));
        }
        check_filter(&hook.filter(), &key)?;
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host. The message does not repeat the URL.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| {
        let authority = &r[..r.find(['/', '?', '#']).unwrap_or(r.len())];
        authority.rsplit_once('@').map_or(authority, |(_, h)| h)
    });
    match host {
        None => Err("must be an http:// or https:// URL".to_owned()),
        Some(host) if host.is_empty() || host.starts_with(':') => {
            Err("must be an http:// or https:// URL with a host".to_owned())
        }
        Some(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err("must be a URL without spaces".to_owned())
        }
        Some(_) => Ok(()),
    }
}

fn check_filter(
    filter: &crate::NotificationFilter<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<(), (String, String)> {
    if filter
        .min_severity
        .parse::<driftguard_core::Severity>()
        .is_err()
    {
        return Err((
            key("min_severity"),
            format!(
                "{:?} is not a severity (expected low, medium or high)",
                filter.min_severity
            ),
        ));
    }
    for (field, list) in [("namespaces", filter.namespaces), ("kinds", filter.kinds)] {
        if list.iter().any(|v| v.trim().is_empty()) {
            return Err((key(field), "holds an empty entry".to_owned()));
        }
    }
    for name in filter.drift_types {
        if name.parse::<driftguard_core::DriftType>().is_err() {
            return Err((
                key("drift_types"),
                format!(
                    "{name:?} is not a drift type (expected one of {})",
                    driftguard_core::DriftType::ALL
                        .map(|t| t.as_str())
                        .join(", ")
                ),
            ));
        }
    }
    if filter.events.is_empty() {
        return Err((
            key("events"),
            "must name at least one of detected, changed, resolved, health".to_owned(),
        ));
    }
    for event in filter.events {
        if !crate::NOTIFICATION_EVENTS.contains(&event.as_str()) {
            return Err((
                key("events"),
                format!(
                    "{event:?} is not an event (expected detected, changed, resolved or health)"
                ),
            ));
        }
    }
    Ok(())
}

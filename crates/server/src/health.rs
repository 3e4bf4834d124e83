//! Readiness (contract §5): one entry per component.
//!
//! Not ready (503) until the store answers, a first Git snapshot exists and every permitted
//! watcher has listed once, and whenever the store is unreachable. After that, a failing
//! component makes the service `degraded` (still 200).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet ready for the first time.
    Pending,
    /// Working.
    Ok,
    /// Failing after having worked (or a non-blocking failure such as a forbidden kind).
    Degraded,
    /// Failing in a way that makes the service unusable (the store).
    Down,
}

/// One component as `/ready` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// State.
    pub status: Health,
    /// What is going on.
    pub message: String,
    /// Since when this state holds.
    pub since: DateTime<Utc>,
    /// True when the component must have been ready once before the service is ready.
    #[serde(skip)]
    pub required: bool,
    /// True once the component has been `Ok` at least once.
    #[serde(skip)]
    pub was_ready: bool,
}

/// The answer of `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    /// `ready`, `degraded` or `not ready`.
    pub status: &'static str,
    /// Per component.
    pub components: BTreeMap<String, Component>,
    /// HTTP status to answer with.
    #[serde(skip)]
    pub http_ok: bool,
}

/// Called with `(component, status, message)` when a component's status changes.
pub type ChangeListener = Box<dyn Fn(&str, Health, &str) + Send + Sync>;

/// Shared readiness state.
#[derive(Default)]
pub struct Readiness {
    components: Mutex<BTreeMap<String, Component>>,
    listener: std::sync::OnceLock<ChangeListener>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("components", &*lock(&self.components))
            .finish_non_exhaustive()
    }
}

// === impl Readiness ===

impl Readiness {
    /// Declares a component (pending). `required` components must be ready once before the
    /// service is.
    pub fn register(&self, name: &str, required: bool, message: &str) {
        let mut map = lock(&self.components);
        map.entry(name.to_owned()).or_insert_with(|| Component {
            status: Health::Pending,
            message: message.to_owned(),
            since: Utc::now(),
            required,
            was_ready: false,
        });
    }

    /// Calls `listener` (outside the lock) whenever a component's status changes; set once.
    pub fn on_change(&self, listener: ChangeListener) {
        let _ = self.listener.set(listener);
    }

    /// Sets a component's state (the time changes only when the state does).
    pub fn set(&self, name: &str, status: Health, message: impl Into<String>) {
        let message = message.into();
        let changed = {
            let mut map = lock(&self.components);
            let mut changed = false;
            let entry = map.entry(name.to_owned()).or_insert_with(|| {
                changed = true;
                Component {
                    status,
                    message: message.clone(),
                    since: Utc::now(),
                    required: false,
                    was_ready: false,
                }
            });
            if entry.status != status {
                entry.since = Utc::now();
                changed = true;
            }
            entry.status = status;
            entry.message.clone_from(&message);
            if status == Health::Ok {
                entry.was_ready = true;
            }
            changed
        };
        if changed && let Some(listener) = self.listener.get() {
            listener(name, status, &message);
        }
    }

    /// Marks a component as not blocking readiness any more (a forbidden kind: it will never
    /// list, and must not hold the service back).
    pub fn set_not_required(&self, name: &str) {
        if let Some(c) = lock(&self.components).get_mut(name) {
            c.required = false;
        }
    }

    /// Removes a component (a kind no longer watched).
    pub fn remove(&self, name: &str) {
        lock(&self.components).remove(name);
    }

    /// The current state of one component.
    pub fn get(&self, name: &str) -> Option<Component> {
        lock(&self.components).get(name).cloned()
    }

    /// The report `/ready` serves.
    pub fn report(&self) -> ReadinessReport {
        let components = lock(&self.components).clone();
        let store_down = components
            .get("store")
            .is_none_or(|c| c.status != Health::Ok);
        let waiting = components.values().any(|c| c.required && !c.was_ready);
        let any_down = components.values().any(|c| c.status == Health::Down);
        let any_failing = components
            .values()
            .any(|c| matches!(c.status, Health::Degraded | Health::Down | Health::Pending));
        let (status, http_ok) = if store_down || waiting || any_down {
            ("not ready", false)
        } else if any_failing {
            ("degraded", true)
        } else {
            ("ready", true)
        };
        ReadinessReport {
            status,
            components,
            http_ok,
        }
    }
}

/// Messages every component may show as they are: fixed texts.
const FIXED_MESSAGES: &[&str] = &[
    "answering",
    "connecting",
    "connecting to the API server",
    "waiting for the first fetch",
    "listing",
    "leader",
    "follower",
];

/// Prefixes of detailed messages (`<prefix>: <detail>`) whose prefix alone is a safe reason.
const SAFE_PREFIXES: &[&str] = &[
    "fetch failing, last good snapshot kept",
    "API server not answering",
    "forbidden",
    "failing",
    "reconnecting",
];

/// The message `/ready` shows for a component: `message` itself when it is one of the texts
/// the service builds from counts and commits only, else a short reason without paths, hosts
/// or error chains (those are logged where they happen). `/ready` needs no authentication, so
/// nothing that is not known to be safe passes through.
pub fn public_message(component: &str, status: Health, message: &str) -> String {
    if is_safe(message) {
        return message.to_owned();
    }
    if let Some((prefix, _)) = message.split_once(':')
        && (SAFE_PREFIXES.contains(&prefix) || is_budget_prefix(prefix))
    {
        return prefix.to_owned();
    }
    let reason = match (component, status) {
        ("store", Health::Down | Health::Pending) => "unreachable",
        ("store", _) => "failing",
        ("git", _) => "fetch failing",
        ("kubernetes", Health::Pending) => "waiting for the API server",
        ("kubernetes", _) => "API server failing",
        (_, Health::Ok) => "ok",
        (_, Health::Pending) => "waiting",
        (_, Health::Degraded | Health::Down) => "failing",
    };
    reason.to_owned()
}

/// `over budget git.<key>, last good snapshot kept`: the key is one of ours.
fn is_budget_prefix(prefix: &str) -> bool {
    prefix
        .strip_prefix("over budget git.")
        .and_then(|m| m.strip_suffix(", last good snapshot kept"))
        .is_some_and(|key| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
}

/// A message made only of fixed words, counts and a commit.
fn is_safe(message: &str) -> bool {
    let count = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let commit = |text: &str| {
        !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
    };
    let objects = |text: &str| text.strip_suffix(" objects").is_some_and(count);
    if FIXED_MESSAGES.contains(&message) {
        return true;
    }
    if message.strip_suffix(" resource types").is_some_and(count) || objects(message) {
        return true;
    }
    if message
        .strip_prefix("answering; ")
        .and_then(|m| m.strip_suffix(" buffered record updates draining"))
        .is_some_and(count)
        || message
            .strip_prefix("answering but refusing writes; ")
            .and_then(|m| m.strip_suffix(" record updates kept for retry"))
            .is_some_and(count)
    {
        return true;
    }
    // Git: `commit <sha>, <n> objects[; <n> files do not parse]`.
    if let Some((sha, rest)) = message
        .strip_prefix("commit ")
        .and_then(|m| m.split_once(", "))
    {
        let counts = match rest.split_once("; ") {
            Some((a, b)) => objects(a) && b.strip_suffix(" files do not parse").is_some_and(count),
            None => objects(rest),
        };
        return commit(sha) && counts;
    }
    false
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_contract() {
        let r = Readiness::default();
        r.register("store", true, "connecting");
        r.register("git", true, "first fetch");
        r.register("watch/deployments", true, "listing");
        assert_eq!(r.report().status, "not ready");
        r.set("store", Health::Ok, "ok");
        r.set("git", Health::Ok, "commit abc");
        assert_eq!(
            r.report().status,
            "not ready",
            "a watcher has not listed yet"
        );
        r.set("watch/deployments", Health::Ok, "listed");
        let report = r.report();
        assert_eq!(report.status, "ready");
        assert!(report.http_ok);
        r.set("git", Health::Degraded, "fetch failed");
        let report = r.report();
        assert_eq!(report.status, "degraded");
        assert!(report.http_ok);
        r.set("store", Health::Down, "unreachable");
        let report = r.report();
        assert_eq!(report.status, "not ready");
        assert!(!report.http_ok);
    }

    #[test]
    fn public_messages_keep_counts_and_commits_and_drop_details() {
        for safe in [
            "answering",
            "connecting to the API server",
            "12 resource types",
            "340 objects",
            "answering but refusing writes; 3 record updates kept for retry",
            "commit 3f2a9c1, 12 objects",
            "commit 3f2a9c1, 12 objects; 2 files do not parse",
            "answering; 17 buffered record updates draining",
        ] {
            assert_eq!(public_message("git", Health::Ok, safe), safe);
        }
        for (component, status, detailed, short) in [
            (
                "store",
                Health::Down,
                "cannot open SQLite database /var/lib/secret/driftguard.db: unable to open",
                "unreachable",
            ),
            (
                "store",
                Health::Down,
                "server selection timeout: mongodb.internal.example:27017 (3 record updates buffered)",
                "unreachable",
            ),
            (
                "git",
                Health::Degraded,
                "fetch failing, last good snapshot kept: https://git.example.com/x.git: 403",
                "fetch failing, last good snapshot kept",
            ),
            (
                "git",
                Health::Degraded,
                "over budget git.max_files, last good snapshot kept: git.max_files (100000) exceeded at \"x/y\"",
                "over budget git.max_files, last good snapshot kept",
            ),
            (
                "git",
                Health::Degraded,
                "over budget git.Evil/../x, last good snapshot kept: x",
                "fetch failing",
            ),
            (
                "watch/secrets",
                Health::Degraded,
                "forbidden: secrets is forbidden: User \"system:serviceaccount:x\" cannot list",
                "forbidden",
            ),
            (
                "kubernetes",
                Health::Pending,
                "error trying to connect: tcp connect error 10.0.0.1:6443",
                "waiting for the API server",
            ),
            (
                "watch/deployments",
                Health::Degraded,
                "reconnecting: https://10.0.0.1:6443/apis/apps/v1",
                "reconnecting",
            ),
            (
                "git",
                Health::Ok,
                "commit /etc/passwd, 1 objects",
                "fetch failing",
            ),
        ] {
            assert_eq!(
                public_message(component, status, detailed),
                short,
                "{detailed}"
            );
        }
    }

    #[test]
    fn a_forbidden_kind_degrades_without_blocking() {
        let r = Readiness::default();
        r.register("store", true, "");
        r.register("watch/secrets", true, "");
        r.set("store", Health::Ok, "ok");
        r.set("watch/secrets", Health::Degraded, "forbidden");
        r.set_not_required("watch/secrets");
        assert_eq!(r.report().status, "degraded");
    }
}

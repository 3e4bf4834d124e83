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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Shared readiness state.
#[derive(Debug, Default)]
pub struct Readiness {
    components: Mutex<BTreeMap<String, Component>>,
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

    /// Sets a component's state (the time changes only when the state does).
    pub fn set(&self, name: &str, status: Health, message: impl Into<String>) {
        let message = message.into();
        let mut map = lock(&self.components);
        let entry = map.entry(name.to_owned()).or_insert_with(|| Component {
            status,
            message: message.clone(),
            since: Utc::now(),
            required: false,
            was_ready: false,
        });
        if entry.status != status {
            entry.since = Utc::now();
        }
        entry.status = status;
        entry.message = message;
        if status == Health::Ok {
            entry.was_ready = true;
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

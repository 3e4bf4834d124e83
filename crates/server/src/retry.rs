//! Retrying an edge that fails: backoff, a shutdown-aware pause, and a loop for store reads.

use std::time::Duration;

use tokio::sync::watch;

use crate::errors::chain;
use crate::health::{Health, Readiness};

/// Backoff: 0.5 s doubling to `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(10));
    base.min(max)
}

/// Sleeps unless shutdown comes first; returns false on shutdown.
pub async fn pause(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = shutdown.changed() => false,
    }
}

/// Retries `op` with backoff until it succeeds, reporting each failure on `component` with
/// `status`; `None` on shutdown.
pub async fn until_ok<T, E, F, Fut>(
    shutdown: &mut watch::Receiver<bool>,
    readiness: &Readiness,
    component: &str,
    status: Health,
    what: &str,
    mut op: F,
) -> Option<T>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) => {
                let message = chain(&e);
                readiness.set(component, status, message.clone());
                tracing::warn!(error = %message, "{what} failed; retrying");
                if !pause(backoff(attempt, Duration::from_secs(30)), shutdown).await {
                    return None;
                }
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(
            backoff(0, Duration::from_secs(30)),
            Duration::from_millis(500)
        );
        assert_eq!(backoff(2, Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(
            backoff(30, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}

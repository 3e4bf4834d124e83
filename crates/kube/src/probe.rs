//! Is the API server answering? A cheap request with a short deadline, every few seconds.
//!
//! A watch over a connection the server stopped answering on (a frozen process, a network
//! partition) never fails: kube-rs sets no read timeout, so the stream just waits, and nothing
//! says the live view went stale. The probe notices within `interval + timeout` (6 s by
//! default): it reports [`ApiHealth::NotAnswering`], marks every listed watch `Reconnecting` (so
//! nothing is evaluated against a view that may be stale), and once the server answers again it
//! restarts every watch — a fresh list — so a change made meanwhile is seen even when the old
//! connection is dead for good.
//!
//! The request is `GET /readyz`, which every authenticated client may read
//! (`system:public-info-viewer`). An answer that refuses us (401, 403, 404) still proves the
//! server is alive; a 5xx (e.g. while it drains on SIGTERM) or no answer in time does not.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::error::describe;
use crate::watch::WatchControl;

/// Tuning of the API server probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Time between two probes.
    pub interval: Duration,
    /// How long a probe waits for an answer before the server counts as not answering.
    pub timeout: Duration,
}

/// What the probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiHealth {
    /// The API server answers.
    Answering,
    /// It does not: a short reason without hosts or paths (details are logged).
    NotAnswering(String),
}

/// The running probe; dropping it stops it.
#[derive(Debug)]
pub struct ApiProbe {
    task: JoinHandle<()>,
}

// === impl ProbeOptions ===

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(4),
        }
    }
}

// === impl ApiProbe ===

impl ApiProbe {
    /// Starts probing. `on_change` is called on every transition (never repeatedly for the same
    /// state); the server is assumed to answer at start. While it does not, the watches behind
    /// `control` are marked stalled; when it answers again they are restarted.
    /// Must be called inside a tokio runtime.
    pub fn spawn(
        client: kube::Client,
        control: WatchControl,
        options: ProbeOptions,
        on_change: impl FnMut(&ApiHealth) + Send + 'static,
    ) -> Self {
        Self {
            task: tokio::spawn(supervise(client, control, options, on_change)),
        }
    }
}

impl Drop for ApiProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(
    client: kube::Client,
    control: WatchControl,
    options: ProbeOptions,
    mut on_change: impl FnMut(&ApiHealth) + Send + 'static,
) {
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<Instant> = None;
    loop {
        ticker.tick().await;
        match probe_once(&client, options.timeout).await {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        after_secs = since.elapsed().as_secs(),
                        "API server answering again; restarting the watches"
                    );
                    control.resume();
                    on_change(&ApiHealth::Answering);
                }
            }
            Err((reason, detail)) => {
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    tracing::warn!(
                        reason = %reason,
                        error = %detail,
                        "API server not answering; live state may be stale"
                    );
                    control.stalled(format!("API server not answering ({reason})"));
                    on_change(&ApiHealth::NotAnswering(reason));
                }
            }
        }
    }
}

/// One `GET /readyz` bounded by `timeout`. `Err((short reason, detail for the log))`.
pub async fn probe_once(client: &kube::Client, timeout: Duration) -> Result<(), (String, String)> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| ("cannot build the request".to_owned(), e.to_string()))?;
    match tokio::time::timeout(timeout, client.request_text(request)).await {
        Err(_) => Err((
            format!("no answer within {} s", timeout.as_secs_f64()),
            format!("GET /readyz timed out after {timeout:?}"),
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => match describe(&error) {
            // The server answered, it only will not tell us: it is alive.
            (Some(401 | 403 | 404), _) => Ok(()),
            (Some(code), message) => Err((format!("answered HTTP {code}"), message)),
            (None, message) => Err(("unreachable".to_owned(), message)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn client_for(port: u16) -> kube::Client {
        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        kube::Client::try_from(kube::Config::new(url)).unwrap()
    }

    /// Accepts connections and answers each request with `status` (or never, when `None`),
    /// keeping every connection open.
    async fn server(status: Option<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                if let Some(status) = status {
                    let mut buf = [0_u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let body = "ok";
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                }
                open.push(socket);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_silent_server_fails_within_the_timeout() {
        let port = server(None).await;
        let started = Instant::now();
        let result = probe_once(&client_for(port), Duration::from_millis(300)).await;
        let elapsed = started.elapsed();
        let (reason, _) = result.unwrap_err();
        assert_eq!(reason, "no answer within 0.3 s");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn answers_count_as_alive_unless_they_are_errors() {
        let ok = server(Some("200 OK")).await;
        assert_eq!(
            probe_once(&client_for(ok), Duration::from_secs(5)).await,
            Ok(())
        );
        let forbidden = server(Some("403 Forbidden")).await;
        assert_eq!(
            probe_once(&client_for(forbidden), Duration::from_secs(5)).await,
            Ok(())
        );
        let draining = server(Some("500 Internal Server Error")).await;
        let (reason, _) = probe_once(&client_for(draining), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(reason, "answered HTTP 500");
    }
}

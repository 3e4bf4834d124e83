//! `GET /metrics` follows the Prometheus conventions: `promtool check metrics` finds no problem
//! in what the service serves after some activity, the content type is negotiated (OpenMetrics
//! for Prometheus, the text format 0.0.4 otherwise), and gauges are named as states.
//!
//! Needs `promtool` (Debian's `prometheus` package; `scripts/test.sh` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use driftguard_server::api::{self, ApiState};
use driftguard_server::health::Readiness;
use driftguard_server::metrics::{
    CommitLabels, KindLabels, Metrics, OPENMETRICS_CONTENT_TYPE, RecordLabels, TEXT_CONTENT_TYPE,
    TriggerLabels,
};
use driftguard_server::runs::Runs;
use driftguard_store::SqliteStore;
use tempfile::TempDir;
use tower::ServiceExt;

/// What Prometheus 2.x/3.x sends when scraping.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Service {
    router: Router,
    metrics: Arc<Metrics>,
    _dir: TempDir,
}

/// The API router over an empty SQLite store, after requests of every kind and with every
/// metric family holding series.
async fn busy_service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("metrics.db"), Duration::from_secs(5))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = ApiState {
        store: Arc::new(store),
        runs: Arc::new(Runs::default()),
        readiness: Arc::new(Readiness::default()),
        metrics: Arc::clone(&metrics),
        auth_token: None,
        events: Arc::default(),
        source_web: None,
        leadership: std::sync::Arc::new(driftguard_server::leader::Leadership::single()),
    };
    let router = api::router(state);
    for uri in [
        "/health",
        "/ready",
        "/api/v1/drift-records?limit=5",
        "/api/v1/drift-records/active",
        "/api/v1/drift-records/Deployment:prod:web",
        "/api/v1/drift-records/Deployment:prod:web/history",
        "/api/v1/statistics",
        "/api/v1/drift-records?limit=0",
        "/no/such/route",
    ] {
        get(&router, uri, None).await;
    }
    // What the analysis loop fills, so no family is empty.
    let m = &metrics;
    m.records
        .get_or_create(&RecordLabels {
            status: "active".into(),
            severity: "high".into(),
            r#type: "Scaling".into(),
            kind: "Deployment".into(),
        })
        .set(2);
    m.analysis_duration
        .get_or_create(&TriggerLabels {
            trigger: "startup".into(),
        })
        .observe(1.5);
    m.detection_latency.observe(0.02);
    m.git_last_success.set(1_700_000_000.0);
    m.git_commit
        .get_or_create(&CommitLabels {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        })
        .set(1);
    m.git_parse_errors.set(1);
    m.desired_objects.set(12);
    for (kind, failing) in [("Deployment", 0), ("Secret", 1)] {
        let labels = KindLabels { kind: kind.into() };
        m.watched_objects.get_or_create(&labels).set(3);
        m.watch_errors.get_or_create(&labels).set(failing);
    }
    m.store_pending_writes.set(0);
    Service {
        router,
        metrics,
        _dir: dir,
    }
}

async fn get(router: &Router, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut request = Request::builder().method(Method::GET).uri(uri);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn promtool() -> &'static str {
    ["/usr/bin/promtool", "promtool"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed: install Debian's `prometheus` package \
                 (`apt-get install prometheus`; scripts/test.sh's tools stage does)"
            )
        })
}

/// `promtool check metrics` on `exposition`: (success, everything it printed).
fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics_without_problems() {
    let service = busy_service().await;
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (status, content_type, text) = get(&service.router, "/metrics", accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, TEXT_CONTENT_TYPE, "Accept: {accept:?}");
        let (ok, printed) = promtool_check(&text);
        assert!(
            ok && printed.trim().is_empty(),
            "promtool check metrics found problems (Accept: {accept:?}):\n{printed}\n--- exposition:\n{text}"
        );
        assert!(!text.contains("# EOF"));
        for line in [
            "# TYPE driftguard_http_requests_total counter",
            "# TYPE driftguard_watch_failing gauge",
            "driftguard_watch_failing{kind=\"Secret\"} 1",
            "# TYPE driftguard_git_unparsable_files gauge",
            "driftguard_git_unparsable_files 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}

#[tokio::test]
async fn metrics_serve_openmetrics_to_prometheus() {
    let service = busy_service().await;
    let (status, content_type, om) =
        get(&service.router, "/metrics", Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        om.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{om}"
    );
    assert_eq!(om.matches("# EOF").count(), 1);
    assert!(om.contains("# TYPE driftguard_http_requests counter\n"));
    // Both formats carry the same samples.
    let samples = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("driftguard_http_request"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let text = service.metrics.encode_text();
    assert_eq!(samples(&om), samples(&text));
    let (_, content_type, _) = get(
        &service.router,
        "/metrics",
        Some("application/openmetrics-text"),
    )
    .await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
}

#[tokio::test]
async fn metrics_gauges_are_named_as_states_not_events() {
    let service = busy_service().await;
    let (_, _, text) = get(&service.router, "/metrics", None).await;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        if kind == "gauge" {
            for suffix in ["_total", "_errors", "_count", "_sum", "_bucket"] {
                assert!(
                    !name.ends_with(suffix),
                    "gauge {name} is named like a counter"
                );
            }
        }
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name}");
        }
    }
    for old in ["driftguard_watch_errors", "driftguard_git_parse_errors"] {
        assert!(!text.contains(old), "{old} is renamed");
    }
}

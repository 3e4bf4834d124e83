//! Serves only the HTTP API over a throw-away SQLite store filled with sample records, for
//! poking at the API by hand and for `scripts/schemathesis.sh`.
//!
//! ```text
//! cargo run -p driftguard-server --example api_only -- 8089
//! scripts/schemathesis.sh http://127.0.0.1:8089
//! ```
//!
//! Listens on 127.0.0.1 only (port 0 = any free port, printed). `DRIFTGUARD_SERVER__AUTH_TOKEN`
//! sets the bearer token. A stand-in analyzer completes each requested run after 100 ms.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use driftguard_core::{
    Change, DriftRecord, DriftStatus, DriftType, Episode, FieldPath, Op, Severity,
};
use driftguard_server::api::{self, ApiState};
use driftguard_server::health::{Health, Readiness};
use driftguard_server::metrics::Metrics;
use driftguard_server::runs::{RunCounts, Runs};
use driftguard_store::{SqliteStore, Store, Write};
use serde_json::json;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse()?,
        None => 8089,
    };
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("api-only.db"), Duration::from_secs(5)).await?;
    store.apply(&sample()?).await?;

    let readiness = Arc::new(Readiness::default());
    readiness.register("store", true, "connecting");
    readiness.set("store", Health::Ok, "sqlite answers");
    let runs = Arc::new(Runs::default());
    tokio::spawn(stand_in_analyzer(runs.clone()));

    let state = ApiState {
        store: Arc::new(store),
        runs,
        readiness,
        metrics: Arc::new(Metrics::new()),
        auth_token: std::env::var("DRIFTGUARD_SERVER__AUTH_TOKEN")
            .ok()
            .map(Arc::from),
        events: Arc::default(),
        source_web: None,
        leadership: std::sync::Arc::new(driftguard_server::leader::Leadership::single()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn stand_in_analyzer(runs: Arc<Runs>) {
    loop {
        let run = runs.next().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let counts = RunCounts {
            evaluated: 6,
            active: 3,
            ..RunCounts::default()
        };
        runs.finish(run.run_id, Some("c".repeat(40)), counts, Vec::new());
    }
}

fn sample() -> Result<Vec<Write>, Box<dyn Error>> {
    let day = |d: u32| {
        Utc.with_ymd_and_hms(2024, 5, d, 0, 0, 0)
            .single()
            .ok_or("bad date")
    };
    let replicas = Change {
        field: FieldPath::parse("spec.replicas")?,
        op: Op::Changed,
        from: Some(json!(2)),
        to: Some(json!(4)),
        drift_type: DriftType::Scaling,
        severity: Severity::High,
        manager: None,
        changed_at: None,
        source_line: None,
    };
    let env = Change {
        field: FieldPath::parse("spec.template.spec.containers[name=web].env[name=NEWVAR]")?,
        op: Op::Added,
        from: None,
        to: Some(json!({"name": "NEWVAR", "value": "x"})),
        drift_type: DriftType::ConfigurationChange,
        severity: Severity::Medium,
        manager: Some("kubectl-set".into()),
        changed_at: Some(day(2)?),
        source_line: None,
    };
    let missing = Change {
        field: FieldPath::root(),
        op: Op::Removed,
        from: None,
        to: None,
        drift_type: DriftType::MissingResource,
        severity: Severity::High,
        manager: None,
        changed_at: None,
        source_line: None,
    };
    let mut writes = Vec::new();
    let specs: [(&str, DriftStatus, Vec<Change>); 6] = [
        (
            "Deployment:shop:web",
            DriftStatus::Active,
            vec![replicas.clone(), env],
        ),
        ("Service:shop:web", DriftStatus::None, Vec::new()),
        ("ConfigMap:shop:settings", DriftStatus::Resolved, Vec::new()),
        (
            "ClusterRole::view-drift",
            DriftStatus::Active,
            vec![missing],
        ),
        ("Deployment:ops:worker", DriftStatus::Active, vec![replicas]),
        ("Secret:ops:creds", DriftStatus::None, Vec::new()),
    ];
    for (resource_id, status, changes) in specs {
        let mut parts = resource_id.splitn(3, ':');
        let kind = parts.next().unwrap_or_default().to_owned();
        let namespace = parts.next().unwrap_or_default().to_owned();
        let name = parts.next().unwrap_or_default().to_owned();
        let active = status == DriftStatus::Active;
        let headline = changes.first().filter(|_| active).cloned();
        let episode = (status != DriftStatus::None).then(|| Episode {
            first_detected: day(1).unwrap_or_default(),
            resolved_at: (!active).then(|| day(2).unwrap_or_default()),
            resolution_message: (!active).then(|| "live state matches Git again".to_owned()),
            drift_type: headline.as_ref().map(|c| c.drift_type),
            severity: headline.as_ref().map(|c| c.severity),
            changes: changes.clone(),
            git_commit: Some("c".repeat(40)),
        });
        let record = DriftRecord {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, resource_id.as_bytes()),
            resource_id: resource_id.to_owned(),
            kind,
            namespace,
            name,
            api_version: "v1".into(),
            drift_detected: active,
            drift_status: status,
            drift_details: if active { changes } else { Vec::new() },
            warnings: Vec::new(),
            drift_type: headline.as_ref().map(|c| c.drift_type),
            severity: headline.as_ref().map(|c| c.severity),
            desired_state: Some(json!({"spec": {"replicas": 2}})),
            live_state: active.then(|| json!({"spec": {"replicas": 4}})),
            last_known_good_hash: Some(format!("sha256:{}", "a".repeat(64))),
            live_hash: active.then(|| format!("sha256:{}", "b".repeat(64))),
            git_commit: Some("c".repeat(40)),
            source_path: Some("apps/shop.yaml#0".into()),
            source_line: None,
            helm_release: None,
            managed: true,
            first_detected: episode.as_ref().map(|e| e.first_detected),
            resolved_at: episode.as_ref().and_then(|e| e.resolved_at),
            resolution_message: episode.as_ref().and_then(|e| e.resolution_message.clone()),
            last_updated: day(3)?,
            created_at: day(1)?,
        };
        writes.push(Write::Upsert { record, episode });
    }
    Ok(writes)
}

//! Notifications end to end (issue 17): `serve` against the real control plane
//! (`DRIFTGUARD_TEST_KUBECONFIG`), a real Git repository, a private Debian Alertmanager and a
//! local HTTP receiver standing in for Slack and webhooks.
//!
//! - `kubectl scale` → an alert with the contract labels is listed by Alertmanager; a silence
//!   on our labels suppresses it; re-applying Git resolves it.
//! - The receiver down for a minute, `serve` killed with `kill -9` meanwhile and restarted:
//!   every event arrives once the receiver is back, none twice.
//! - 500 ConfigMaps deleted in one call → a handful of messages per sink.
//! - A Secret's values, the webhook token and the signing secret appear in no payload, log,
//!   `/metrics` or `/ready`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use driftguard_test_support::alertmanager::PrivateAlertmanager;
use driftguard_test_support::cluster::{TestCluster, TestNamespace};
use driftguard_test_support::git::TestRepo;
use driftguard_test_support::receiver::Receiver;
use driftguard_test_support::serve::ServeProcess;
use serde_json::Value;

const SECRET: &str = "whsec-e2e-signing";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_driftguard"))
}

fn deployment(ns: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n        env:\n        - name: MODE\n          value: normal\n"
    )
}

fn config(ns: &TestNamespace, repo: &TestRepo, db: &Path, resources: &str, notify: &str) -> String {
    format!(
        "database:\n  driver: sqlite\n  path: {db}\nkubernetes:\n  config_path: {kc}\n  namespaces: [{ns}]\n  resources: [{resources}]\ngit:\n  repository_url: \"{url}\"\n  default_branch: main\n  poll_interval: 1s\n  workdir: {wd}\nnotifications:\n{notify}",
        db = db.display(),
        kc = ns.kubeconfig().display(),
        ns = ns.name(),
        url = repo.url(),
        wd = db.parent().unwrap().join("git").display(),
    )
}

fn record(serve: &ServeProcess, id: &str) -> Option<Value> {
    let (status, body) = serve.get(&format!("/api/v1/drift-records/{id}")).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn wait_record(serve: &mut ServeProcess, id: &str, status: &str) {
    serve
        .wait_for(Duration::from_secs(60), |p| {
            Ok(p.get_json("/ready")?["status"] != "not ready"
                && record(p, id).is_some_and(|r| r["drift_status"] == status))
        })
        .unwrap_or_else(|e| panic!("{id} never {status}: {e:#}\n{}", serve.log()));
}

fn metric(serve: &ServeProcess, name: &str, labels: &str) -> f64 {
    let (_, text) = serve.get("/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn alert_for<'a>(alerts: &'a Value, resource_id: &str) -> Option<&'a Value> {
    alerts
        .as_array()?
        .iter()
        .find(|a| a["labels"]["resource_id"] == resource_id)
}

/// Polls Alertmanager (30 s at most) until `done` holds for the alert of `resource_id` (`None`
/// while it is not listed); returns every alert listed then.
fn wait_alert(
    am: &PrivateAlertmanager,
    serve: &ServeProcess,
    resource_id: &str,
    what: &str,
    done: impl Fn(Option<&Value>) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = am.alerts().unwrap();
        if done(alert_for(&alerts, resource_id)) {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "the alert of {resource_id} was not {what} within 30 s: {alerts:#}\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cluster_notify_alertmanager_lists_the_alert_honours_a_silence_and_ends_it() {
    let am = PrivateAlertmanager::start().unwrap();
    let ns = TestCluster::shared().namespace("notify-am").unwrap();
    let yaml = deployment(ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("web.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "  external_url: https://driftguard.example.com\n  alertmanager:\n    url: {}\n    resend_interval: 2s\n",
        am.url()
    );
    let mut serve = ServeProcess::start(
        binary(),
        &config(
            &ns,
            &repo,
            &dir.path().join("dg.db"),
            "deployments",
            &notify,
        ),
        &[],
    )
    .unwrap();
    let id = format!("Deployment:{}:web", ns.name());
    wait_record(&mut serve, &id, "none");

    let scaled = Instant::now();
    ns.scale("deployment/web", 5).unwrap();
    let mut alerts = wait_alert(&am, &serve, &id, "listed", |a| a.is_some());
    eprintln!(
        "kubectl scale → alert listed by Alertmanager after {:?}",
        scaled.elapsed()
    );
    let alert = alert_for(&alerts, &id).unwrap().clone();
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "KubernetesDrift", "{alert:#}");
    assert_eq!(labels["namespace"], ns.name());
    assert_eq!(labels["kind"], "Deployment");
    assert_eq!(labels["name"], "web");
    assert_eq!(labels["drift_type"], "Scaling");
    let drift = record(&serve, &id).unwrap();
    assert_eq!(
        labels["severity"], drift["severity"],
        "{alert:#}\n{drift:#}"
    );
    let annotations = &alert["annotations"];
    assert!(
        annotations["changed_fields"]
            .as_str()
            .unwrap()
            .contains("spec.replicas"),
        "{alert:#}"
    );
    assert!(
        annotations["description"]
            .as_str()
            .unwrap()
            .contains("2 → 5"),
        "{alert:#}"
    );
    // The manager, when the API server recorded one for the change.
    match drift["drift_details"][0]["manager"].as_str() {
        Some(manager) => assert_eq!(annotations["manager"], manager, "{alert:#}"),
        None => assert!(annotations.get("manager").is_none(), "{alert:#}"),
    }
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("https://driftguard.example.com/api/v1/drift-records/Deployment:"),
        "{alert:#}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");

    // A silence on our labels is Alertmanager's job; it must work with them, also while the
    // alert keeps being re-sent.
    let silence = am
        .silence(
            &[("alertname", "KubernetesDrift"), ("resource_id", &id)],
            Duration::from_secs(600),
        )
        .unwrap();
    alerts = wait_alert(&am, &serve, &id, "suppressed by the silence", |a| {
        a.is_some_and(|a| a["status"]["state"] == "suppressed")
    });
    let a = alert_for(&alerts, &id).unwrap();
    assert_eq!(a["status"]["silencedBy"][0], silence.as_str(), "{a:#}");
    // Re-sent every 2 s and still suppressed.
    std::thread::sleep(Duration::from_secs(5));
    alerts = am.alerts().unwrap();
    assert_eq!(
        alert_for(&alerts, &id).unwrap()["status"]["state"],
        "suppressed"
    );

    // Git re-applied: the drift is resolved and Alertmanager ends the alert.
    ns.apply_yaml(&yaml).unwrap();
    wait_record(&mut serve, &id, "resolved");
    wait_alert(&am, &serve, &id, "ended", |a| a.is_none());
    assert!(
        metric(
            &serve,
            "driftguard_notifications_total",
            "sink=\"alertmanager\",result=\"delivered\""
        ) >= 2.0
    );
    let ready = serve.get_json("/ready").unwrap();
    assert_eq!(
        ready["components"]["notify/alertmanager"]["status"], "ok",
        "{ready:#}"
    );
}

#[test]
fn cluster_notify_receiver_down_a_minute_and_kill_9_deliver_everything_once() {
    let receiver = Receiver::start().unwrap();
    receiver.stop();
    let ns = TestCluster::shared().namespace("notify-down").unwrap();
    let yaml = deployment(ns.name());
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("web.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "  slack:\n    webhook_url: {}\n  webhooks:\n    - name: ops\n      url: {}\n      secret: {SECRET}\n",
        receiver.url("/slack"),
        receiver.url("/hook")
    );
    let config = config(
        &ns,
        &repo,
        &dir.path().join("dg.db"),
        "deployments",
        &notify,
    );
    let mut first = ServeProcess::start(binary(), &config, &[]).unwrap();
    let id = format!("Deployment:{}:web", ns.name());
    wait_record(&mut first, &id, "none");

    ns.scale("deployment/web", 4).unwrap();
    wait_record(&mut first, &id, "active");
    let down_since = Instant::now();
    first
        .wait_for(Duration::from_secs(30), |p| {
            Ok(metric(
                p,
                "driftguard_notifications_total",
                "sink=\"webhook/ops\",result=\"retried\"",
            ) >= 1.0
                && metric(
                    p,
                    "driftguard_notification_queue_depth",
                    "sink=\"webhook/ops\"",
                ) >= 1.0)
        })
        .unwrap_or_else(|e| panic!("no failed attempt: {e:#}\n{}", first.log()));
    // Killed with undelivered events: they are in the outbox.
    let status = Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));

    let mut second = ServeProcess::start(binary(), &config, &[]).unwrap();
    // A second change while the receiver is still down.
    ns.set_env("deployment/web", &[("MODE", "debug")]).unwrap();
    second
        .wait_for(Duration::from_secs(60), |p| {
            Ok(record(p, &id)
                .is_some_and(|r| r["drift_details"].as_array().is_some_and(|c| c.len() >= 2)))
        })
        .unwrap_or_else(|e| panic!("the second change was not seen: {e:#}\n{}", second.log()));
    // Down for a minute in all.
    let minute = Duration::from_secs(60);
    if let Some(rest) = minute.checked_sub(down_since.elapsed()) {
        std::thread::sleep(rest);
    }
    let ready = second.get_json("/ready").unwrap();
    assert_eq!(
        ready["components"]["notify/webhook/ops"]["status"], "degraded",
        "{ready:#}"
    );
    assert_ne!(
        ready["status"], "not ready",
        "a sink never fails readiness: {ready:#}"
    );
    receiver.restart().unwrap();
    let back = Instant::now();

    // Both events (detected before the kill, changed after the restart) arrive.
    receiver
        .wait_for(Duration::from_secs(120), |got| {
            let keys: Vec<String> = got
                .iter()
                .filter(|r| r.path == "/hook")
                .flat_map(|r| r.idempotency_keys())
                .collect();
            keys.iter().any(|k| k.ends_with(":detected"))
                && keys.iter().any(|k| k.contains(":changed:"))
                && got.iter().any(|r| r.path == "/slack")
        })
        .unwrap_or_else(|e| panic!("not delivered after the outage: {e:#}\n{}", second.log()));
    eprintln!(
        "receiver back → everything delivered after {:?}",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    let got = receiver.requests();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for request in got.iter().filter(|r| r.path == "/hook") {
        assert!(request.signature_valid(SECRET.as_bytes()), "{request:?}");
        for key in request.idempotency_keys() {
            *seen.entry(key).or_default() += 1;
        }
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a key was delivered twice: {seen:#?}"
    );
    assert!(got.len() >= 2, "{got:?}");
    assert!(
        got.iter()
            .filter(|r| r.path == "/slack")
            .any(|r| r.text().contains(&format!("Deployment/{}/web", ns.name()))),
        "{got:?}"
    );
    assert!(
        second
            .log()
            .contains("delivering notifications left in the outbox"),
        "{}",
        second.log()
    );
    second
        .wait_for(Duration::from_secs(10), |p| {
            Ok(p.get_json("/ready")?["components"]["notify/webhook/ops"]["status"] == "ok")
        })
        .unwrap();
    assert_eq!(
        metric(
            &second,
            "driftguard_notification_queue_depth",
            "sink=\"webhook/ops\""
        ),
        0.0
    );
}

#[test]
fn cluster_notify_500_configmaps_deleted_at_once_are_a_handful_of_messages() {
    let receiver = Receiver::start().unwrap();
    let ns = TestCluster::shared().namespace("notify-burst").unwrap();
    let mut yaml = String::new();
    for i in 0..500 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n  namespace: {}\ndata:\n  n: \"{i}\"\n",
            ns.name()
        ));
    }
    ns.apply_yaml(&yaml).unwrap();
    let repo = TestRepo::with_files(&[("cms.yaml", &yaml)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "  alertmanager:\n    url: {}\n    resend_interval: 1h\n  slack:\n    webhook_url: {}\n  webhooks:\n    - name: ops\n      url: {}\n",
        receiver.url("/am"),
        receiver.url("/slack"),
        receiver.url("/hook")
    );
    let mut serve = ServeProcess::start(
        binary(),
        &config(&ns, &repo, &dir.path().join("dg.db"), "configmaps", &notify),
        &[],
    )
    .unwrap();
    let last = format!("ConfigMap:{}:cm-499", ns.name());
    wait_record(&mut serve, &last, "none");
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());

    // One DELETE of the collection: 500 resources go missing within a second.
    ns.kubectl(&[
        "delete",
        "--raw",
        &format!("/api/v1/namespaces/{}/configmaps", ns.name()),
    ])
    .unwrap();
    receiver
        .wait_for(Duration::from_secs(60), |got| {
            got.iter()
                .filter(|r| r.path == "/hook")
                .map(|r| r.idempotency_keys().len())
                .sum::<usize>()
                >= 500
                && got.iter().any(|r| r.path.starts_with("/am"))
                && got.iter().any(|r| r.path == "/slack")
        })
        .unwrap_or_else(|e| panic!("not all 500 arrived: {e:#}\n{}", serve.log()));
    std::thread::sleep(Duration::from_secs(3));
    let got = receiver.requests();
    let count = |path: &str| got.iter().filter(|r| r.path.starts_with(path)).count();
    let alerts: usize = got
        .iter()
        .filter(|r| r.path.starts_with("/am"))
        .map(|r| r.json().as_array().unwrap().len())
        .sum();
    eprintln!(
        "500 ConfigMaps deleted: {} Alertmanager POSTs ({alerts} alerts), {} Slack messages, {} webhook requests",
        count("/am"),
        count("/slack"),
        count("/hook")
    );
    assert_eq!(alerts, 500);
    for path in ["/am", "/slack", "/hook"] {
        assert!(
            (1..=5).contains(&count(path)),
            "{path}: {} messages for one burst",
            count(path)
        );
    }
    let first = got
        .iter()
        .find(|r| r.path.starts_with("/am"))
        .unwrap()
        .json();
    assert_eq!(
        first[0]["labels"]["drift_type"], "MissingResource",
        "{first:#}"
    );
}

#[test]
fn cluster_notify_no_secret_value_or_token_leaves_the_process() {
    let receiver = Receiver::start().unwrap();
    // The first attempts fail, so the failure paths (logs, /ready) are exercised too.
    receiver.set_status(500);
    let ns = TestCluster::shared().namespace("notify-canary").unwrap();
    let old = "canary-old-7c1e55d2";
    let new = "canary-new-93bd0a4f";
    let token = "TOKEN-canary-51f0e2";
    let signing = "signing-canary-a83c1d";
    let secret_yaml = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {}\ntype: Opaque\nstringData:\n  password: {value}\n",
            ns.name()
        )
    };
    ns.apply_yaml(&secret_yaml(old)).unwrap();
    let repo = TestRepo::with_files(&[("secret.yaml", &secret_yaml(old))]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "  alertmanager:\n    url: {}\n  slack:\n    webhook_url: {}\n  webhooks:\n    - name: ops\n      url: {}\n      secret: {signing}\n      headers: {{Authorization: Bearer {token}}}\n",
        receiver.url(&format!("/am/{token}")),
        receiver.url(&format!("/slack/{token}")),
        receiver.url(&format!("/hook/{token}"))
    );
    let mut serve = ServeProcess::start(
        binary(),
        &config(&ns, &repo, &dir.path().join("dg.db"), "secrets", &notify),
        &[],
    )
    .unwrap();
    let id = format!("Secret:{}:db", ns.name());
    wait_record(&mut serve, &id, "none");
    ns.apply_yaml(&secret_yaml(new)).unwrap();
    wait_record(&mut serve, &id, "active");
    serve
        .wait_for(Duration::from_secs(30), |p| {
            Ok(metric(p, "driftguard_notifications_total", "result=\"retried\"") >= 3.0)
        })
        .unwrap();
    receiver.set_status(200);
    receiver
        .wait_for(Duration::from_secs(60), |got| {
            ["/am/", "/slack/", "/hook/"].iter().all(|p| {
                got.iter()
                    .any(|r| r.path.starts_with(p) && r.text().contains("SecretChange"))
            })
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", serve.log()));

    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let canaries = [
        old.to_owned(),
        new.to_owned(),
        b64(old),
        b64(new),
        signing.to_owned(),
    ];
    for request in receiver.requests() {
        let body = request.text();
        for canary in &canaries {
            assert!(
                !body.contains(canary.as_str()),
                "{canary} in a payload to {}: {body}",
                request.path
            );
        }
        assert!(!body.contains(token), "the URL token in a payload: {body}");
        assert!(
            body.contains("hmac-sha256:"),
            "Secret changes travel as digests: {body}"
        );
    }
    let (_, metrics) = serve.get("/metrics").unwrap();
    let (_, ready) = serve.get("/ready").unwrap();
    let log = serve.log();
    assert!(log.contains("notification delivery failed"), "{log}");
    for (what, text) in [("log", &log), ("/metrics", &metrics), ("/ready", &ready)] {
        for canary in canaries.iter().map(String::as_str).chain([token]) {
            assert!(!text.contains(canary), "{canary} in the {what}: {text}");
        }
    }
}

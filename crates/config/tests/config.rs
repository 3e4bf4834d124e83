//! Every configuration key loads from file, environment and flag with the right precedence, and
//! every configuration error names the key and where it came from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use driftguard_config::{
    ConfigError, DatabaseDriver, KEYS, KeyKind, KeySpec, LoadOptions, Loaded, Origin, load,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("driftguard.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn options(file: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        file,
        search_dir: Some(PathBuf::from("/nonexistent-driftguard-dir")),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    }
}

fn value_of(loaded: &Loaded, spec: &KeySpec) -> Value {
    let tree = serde_json::to_value(&loaded.config).unwrap();
    tree[spec.section][spec.key].clone()
}

/// Three distinct valid values per key: (file YAML text, env text, flag JSON), and the value each
/// must produce in the serialised config.
struct Samples {
    file: (&'static str, Value),
    env: (&'static str, Value),
    flag: (Value, Value),
}

fn samples(spec: &KeySpec) -> Samples {
    match (spec.section, spec.key) {
        ("server", "address") => Samples {
            file: ("127.0.0.2", json!("127.0.0.2")),
            env: ("127.0.0.3", json!("127.0.0.3")),
            flag: (json!("::1"), json!("::1")),
        },
        ("database", "driver") => Samples {
            file: ("mongodb", json!("mongodb")),
            env: ("sqlite", json!("sqlite")),
            flag: (json!("mongodb"), json!("mongodb")),
        },
        ("logging", "format") => Samples {
            file: ("json", json!("json")),
            env: ("text", json!("text")),
            flag: (json!("json"), json!("json")),
        },
        ("drift_detection", "ignore") => Samples {
            file: (
                "[{kind: Deployment}]",
                json!([{"kind": "Deployment", "namespace": null, "name": null, "paths": [], "managers": []}]),
            ),
            env: (
                "[{kind: Service, paths: [spec.ports]}]",
                json!([{"kind": "Service", "namespace": null, "name": null, "paths": ["spec.ports"], "managers": []}]),
            ),
            flag: (
                json!([{"name": "web-*", "managers": ["hpa"]}]),
                json!([{"kind": null, "namespace": null, "name": "web-*", "paths": [], "managers": ["hpa"]}]),
            ),
        },
        ("drift_detection", "redact") => Samples {
            file: ("[data.password]", json!(["data.password"])),
            env: (
                "[{kind: ConfigMap, paths: [data.token]}]",
                json!([{"kind": "ConfigMap", "paths": ["data.token"]}]),
            ),
            flag: (json!(["spec.x"]), json!(["spec.x"])),
        },
        ("helm", "releases") => Samples {
            file: (
                "[{name: web, chart: charts/web}]",
                json!([{"name": "web", "chart": "charts/web", "namespace": "", "values_files": [], "values": {}, "include_crds": true}]),
            ),
            env: (
                "[{name: api, chart: charts/api, namespace: prod, values_files: [env/prod.yaml], values: {replicaCount: 3}, include_crds: false}]",
                json!([{"name": "api", "chart": "charts/api", "namespace": "prod", "values_files": ["env/prod.yaml"], "values": {"replicaCount": 3}, "include_crds": false}]),
            ),
            flag: (
                json!([{"name": "db", "chart": "db"}]),
                json!([{"name": "db", "chart": "db", "namespace": "", "values_files": [], "values": {}, "include_crds": true}]),
            ),
        },
        ("notifications", "external_url") => Samples {
            file: ("https://dg.example.com", json!("https://dg.example.com")),
            env: ("http://127.0.0.1:8080", json!("http://127.0.0.1:8080")),
            flag: (
                json!("https://drift.example.org/"),
                json!("https://drift.example.org/"),
            ),
        },
        ("notifications", "alertmanager") => Samples {
            file: (
                "{url: 'http://127.0.0.1:9093'}",
                json!({"url": "http://127.0.0.1:9093", "resend_interval": "1m", "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["detected", "changed", "resolved"]}),
            ),
            env: (
                "{url: 'https://am.example.com', resend_interval: 2m, min_severity: high, namespaces: [prod], kinds: [Deployment], drift_types: [Scaling], events: [detected, resolved]}",
                json!({"url": "https://am.example.com", "resend_interval": "2m", "min_severity": "high", "namespaces": ["prod"], "kinds": ["Deployment"], "drift_types": ["Scaling"], "events": ["detected", "resolved"]}),
            ),
            flag: (
                json!({"url": "http://am:9093", "resend_interval": "30s", "events": ["health"]}),
                json!({"url": "http://am:9093", "resend_interval": "30s", "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["health"]}),
            ),
        },
        ("notifications", "slack") => Samples {
            file: (
                "{webhook_url: 'https://hooks.slack.com/services/T/B/x'}",
                json!({"webhook_url": "https://hooks.slack.com/services/T/B/x", "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["detected", "changed", "resolved"]}),
            ),
            env: (
                "{webhook_url: 'http://127.0.0.1:1/hook', min_severity: medium, kinds: [Secret]}",
                json!({"webhook_url": "http://127.0.0.1:1/hook", "min_severity": "medium", "namespaces": [], "kinds": ["Secret"], "drift_types": [], "events": ["detected", "changed", "resolved"]}),
            ),
            flag: (
                json!({"webhook_url": "https://chat.example.com/hooks/abc", "namespaces": ["a"]}),
                json!({"webhook_url": "https://chat.example.com/hooks/abc", "min_severity": "low", "namespaces": ["a"], "kinds": [], "drift_types": [], "events": ["detected", "changed", "resolved"]}),
            ),
        },
        ("notifications", "webhooks") => Samples {
            file: (
                "[{name: audit, url: 'https://hooks.example.com/dg'}]",
                json!([{"name": "audit", "url": "https://hooks.example.com/dg", "secret": null, "headers": {}, "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["detected", "changed", "resolved"]}]),
            ),
            env: (
                "[{name: a, url: 'http://127.0.0.1:8081/in', secret: s3, headers: {Authorization: Bearer t}, events: [resolved]}, {name: b, url: 'http://127.0.0.1:8082/'}]",
                json!([
                    {"name": "a", "url": "http://127.0.0.1:8081/in", "secret": "s3", "headers": {"Authorization": "Bearer t"}, "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["resolved"]},
                    {"name": "b", "url": "http://127.0.0.1:8082/", "secret": null, "headers": {}, "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": [], "events": ["detected", "changed", "resolved"]}
                ]),
            ),
            flag: (
                json!([{"name": "c", "url": "https://c.example.com", "drift_types": ["SecretChange"]}]),
                json!([{"name": "c", "url": "https://c.example.com", "secret": null, "headers": {}, "min_severity": "low", "namespaces": [], "kinds": [], "drift_types": ["SecretChange"], "events": ["detected", "changed", "resolved"]}]),
            ),
        },
        _ => match spec.kind {
            KeyKind::String => Samples {
                file: ("from-file", json!("from-file")),
                env: ("from-env", json!("from-env")),
                flag: (json!("from-flag"), json!("from-flag")),
            },
            KeyKind::Integer => Samples {
                file: ("1001", json!(1001)),
                env: ("1002", json!(1002)),
                flag: (json!(1003), json!(1003)),
            },
            KeyKind::Duration => Samples {
                file: ("11s", json!("11s")),
                env: ("2m", json!("2m")),
                flag: (json!("13s"), json!("13s")),
            },
            KeyKind::Bool => Samples {
                file: ("false", json!(false)),
                env: ("true", json!(true)),
                flag: (json!(false), json!(false)),
            },
            KeyKind::List => Samples {
                file: ("[from-file]", json!(["from-file"])),
                env: ("env-a, env-b", json!(["env-a", "env-b"])),
                flag: (json!(["from-flag"]), json!(["from-flag"])),
            },
            KeyKind::Yaml => unreachable!("every YAML-typed key has its own samples above"),
        },
    }
}

#[test]
fn the_original_products_config_file_loads() {
    let path = fixture("seed-config.yaml");
    let loaded = load(&options(Some(path.clone()), &[])).unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.server.read_timeout, Duration::from_secs(30));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.database.host.as_deref(), Some("localhost"));
    assert_eq!(c.database.timeout, Duration::from_secs(10));
    // A host is configured, so the original's MongoDB store is used.
    assert_eq!(c.database.effective_driver(), DatabaseDriver::Mongodb);
    assert_eq!(c.database.mongodb_uri(), "mongodb://localhost:27017");
    assert_eq!(c.kubernetes.namespaces, vec!["driftguard"]);
    assert_eq!(c.kubernetes.resources.len(), 4);
    assert_eq!(c.git.clone_timeout, Duration::from_secs(300));
    assert_eq!(c.git.pull_timeout, Duration::from_secs(120));
    assert_eq!(c.drift_detection.interval, Duration::from_secs(30));
    assert!(c.drift_detection.enable_periodic);
    assert_eq!(loaded.origin("server.port"), Origin::File(path));
    assert_eq!(loaded.origin("server.address"), Origin::Default);
}

#[test]
fn every_key_obeys_file_env_flag_precedence() {
    assert!(KEYS.len() >= 40, "the key table lost entries");
    for spec in KEYS {
        let s = samples(spec);
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            &format!("{}:\n  {}: {}\n", spec.section, spec.key, s.file.0),
        );
        let env_var = spec.env_var();
        let ctx = spec.dotted();

        let from_file = load(&options(Some(path.clone()), &[]))
            .unwrap_or_else(|e| panic!("{ctx} from file: {e}"));
        assert_eq!(value_of(&from_file, spec), s.file.1, "{ctx} from file");
        assert_eq!(from_file.origin(&ctx), Origin::File(path.clone()), "{ctx}");

        let env = [(env_var.as_str(), s.env.0)];
        let from_env = load(&options(Some(path.clone()), &env))
            .unwrap_or_else(|e| panic!("{ctx} from env: {e}"));
        assert_eq!(
            value_of(&from_env, spec),
            s.env.1,
            "{ctx}: environment beats file"
        );
        assert_eq!(from_env.origin(&ctx), Origin::Env(env_var.clone()), "{ctx}");

        let mut opts = options(Some(path.clone()), &env);
        opts.flags
            .push((ctx.clone(), "--flag".to_owned(), s.flag.0.clone()));
        let from_flag = load(&opts).unwrap_or_else(|e| panic!("{ctx} from flag: {e}"));
        assert_eq!(
            value_of(&from_flag, spec),
            s.flag.1,
            "{ctx}: flag beats environment"
        );
        assert_eq!(
            from_flag.origin(&ctx),
            Origin::Flag("--flag".to_owned()),
            "{ctx}"
        );
    }
}

#[test]
fn defaults_apply_without_any_source() {
    let loaded = load(&options(None, &[])).unwrap();
    let c = &loaded.config;
    assert!(loaded.file.is_none());
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.server.address, "127.0.0.1", "no token: loopback only");
    assert_eq!(c.database.effective_driver(), DatabaseDriver::Sqlite);
    assert_eq!(c.database.path, "./driftguard.db");
    assert_eq!(c.kubernetes.default_namespace, "default");
    assert_eq!(
        c.kubernetes.resources,
        vec!["deployments", "services", "configmaps", "secrets"]
    );
    assert!(!c.drift_detection.report_unmanaged);
    assert!(
        c.drift_detection
            .appliers
            .contains(&"kubectl-client-side-apply".to_owned())
    );
}

#[test]
fn driftguard_yaml_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "server:\n  port: 9999\n");
    let mut opts = options(None, &[]);
    opts.search_dir = Some(dir.path().to_owned());
    let loaded = load(&opts).unwrap();
    assert_eq!(loaded.config.server.port, 9999);
    assert_eq!(loaded.file, Some(path));
}

#[test]
fn legacy_environment_variables_are_honoured_and_specific_ones_win() {
    let loaded = load(&options(
        None,
        &[
            ("MONGODB_URI", "mongodb://db:27017"),
            ("KUBECONFIG", "/k/config"),
        ],
    ))
    .unwrap();
    assert_eq!(
        loaded.config.database.uri.as_deref(),
        Some("mongodb://db:27017")
    );
    assert_eq!(
        loaded.config.database.effective_driver(),
        DatabaseDriver::Mongodb
    );
    assert_eq!(loaded.config.kubernetes.config_path, "/k/config");
    assert_eq!(
        loaded.origin("database.uri"),
        Origin::Env("MONGODB_URI".to_owned())
    );

    let loaded = load(&options(None, &[("MONGODB_HOST", "mongo.internal")])).unwrap();
    assert_eq!(
        loaded.config.database.mongodb_uri(),
        "mongodb://mongo.internal:27017"
    );

    let loaded = load(&options(
        None,
        &[
            ("MONGODB_URI", "mongodb://legacy"),
            ("DRIFTGUARD_DATABASE__URI", "mongodb://specific"),
        ],
    ))
    .unwrap();
    assert_eq!(
        loaded.config.database.uri.as_deref(),
        Some("mongodb://specific")
    );

    // An explicit driver always wins.
    let loaded = load(&options(
        None,
        &[
            ("MONGODB_HOST", "h"),
            ("DRIFTGUARD_DATABASE__DRIVER", "sqlite"),
        ],
    ))
    .unwrap();
    assert_eq!(
        loaded.config.database.effective_driver(),
        DatabaseDriver::Sqlite
    );
}

#[test]
fn mongodb_credentials_are_url_escaped() {
    let loaded = load(&options(
        None,
        &[
            ("DRIFTGUARD_DATABASE__HOST", "db"),
            ("DRIFTGUARD_DATABASE__USER", "ops@team"),
            ("DRIFTGUARD_DATABASE__PASSWORD", "p:ss/w@rd"),
        ],
    ))
    .unwrap();
    assert_eq!(
        loaded.config.database.mongodb_uri(),
        "mongodb://ops%40team:p%3Ass%2Fw%40rd@db:27017"
    );
}

#[test]
fn git_path_accepts_a_string_or_a_list_and_labels_a_map_or_selector() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "git:\n  path: apps/prod\nkubernetes:\n  labels: {app: web, tier: fe}\n",
    );
    let loaded = load(&options(Some(path), &[])).unwrap();
    assert_eq!(loaded.config.git.path, vec!["apps/prod"]);
    assert_eq!(loaded.config.kubernetes.labels, "app=web,tier=fe");
}

fn error_for(file_text: Option<&str>, env: &[(&str, &str)]) -> (String, Option<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = file_text.map(|t| write(&dir, t));
    let err = load(&options(path.clone(), env)).expect_err("must fail");
    (err.to_string(), path)
}

#[test]
fn errors_name_the_key_and_the_file() {
    let cases: &[(&str, &[&str])] = &[
        (
            "server:\n  prot: 80\n",
            &["server.prot", "did you mean `server.port`"],
        ),
        ("servr:\n  port: 80\n", &["servr", "did you mean `server`"]),
        (
            "server:\n  read_timeout: 30x\n",
            &["server.read_timeout", "invalid duration \"30x\""],
        ),
        ("server:\n  port: eighty\n", &["server.port"]),
        ("server:\n  port: 70000\n", &["server.port"]),
        (
            "server:\n  address: not-an-ip\n",
            &["server.address", "not an IP address"],
        ),
        (
            "database:\n  driver: postgres\n",
            &["database.driver", "postgres"],
        ),
        (
            "kubernetes:\n  skip_system_namespaces: maybe\n",
            &["kubernetes.skip_system_namespaces"],
        ),
        (
            "kubernetes:\n  resources: []\n",
            &["kubernetes.resources", "at least one"],
        ),
        (
            "drift_detection:\n  interval: 0s\n",
            &["drift_detection.interval", "greater than zero"],
        ),
        (
            "drift_detection:\n  ignore: [{paths: ['spec..replicas']}]\n",
            &["drift_detection.ignore", "invalid field path"],
        ),
        (
            "drift_detection:\n  ignore: [{}]\n",
            &["drift_detection.ignore", "no criteria"],
        ),
        (
            "drift_detection:\n  ignore: [{kind: A, colour: red}]\n",
            &["colour"],
        ),
        ("logging:\n  format: xml\n", &["logging.format", "xml"]),
        ("- just\n- a list\n", &["top level", "mapping"]),
    ];
    for (text, needles) in cases {
        let (message, path) = error_for(Some(text), &[]);
        let file = path.unwrap().display().to_string();
        assert!(
            message.contains(&file),
            "{message:?} should name the file {file}"
        );
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{message:?} should contain {needle:?}"
            );
        }
    }
}

#[test]
fn yaml_syntax_errors_name_file_and_line() {
    let (message, path) = error_for(Some("server:\n  port: 80\n  address: [unclosed\n"), &[]);
    assert!(
        message.contains(&path.unwrap().display().to_string()),
        "{message}"
    );
    assert!(message.contains("line"), "{message}");
}

#[test]
fn environment_errors_name_the_variable() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "DRIFTGUARD_SERVER__PROT",
            "1",
            &["server.prot", "DRIFTGUARD_SERVER__PROT"],
        ),
        (
            "DRIFTGUARD_SERVER__PORT",
            "x",
            &["server.port", "DRIFTGUARD_SERVER__PORT", "integer"],
        ),
        (
            "DRIFTGUARD_SERVER__READ_TIMEOUT",
            "soon",
            &[
                "server.read_timeout",
                "DRIFTGUARD_SERVER__READ_TIMEOUT",
                "invalid duration",
            ],
        ),
        (
            "DRIFTGUARD_KUBERNETES__SKIP_SYSTEM_NAMESPACES",
            "perhaps",
            &[
                "DRIFTGUARD_KUBERNETES__SKIP_SYSTEM_NAMESPACES",
                "true or false",
            ],
        ),
        (
            "DRIFTGUARD_DRIFT_DETECTION__IGNORE",
            "[{",
            &["drift_detection.ignore", "invalid YAML"],
        ),
    ];
    for (var, value, needles) in cases {
        let (message, _) = error_for(None, &[(var, value)]);
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{message:?} should contain {needle:?}"
            );
        }
    }
}

#[test]
fn unrelated_driftguard_variables_are_not_config_keys() {
    // Test hand-over variables and credentials have no `__` and must not be taken as keys.
    let loaded = load(&options(
        None,
        &[
            ("DRIFTGUARD_TEST_KUBECONFIG", "/x"),
            ("DRIFTGUARD_GIT_TOKEN", "t"),
            ("DRIFTGUARD_CORPUS_DIR", "/c"),
        ],
    ));
    assert!(loaded.is_ok());
}

#[test]
fn a_missing_file_and_a_missing_repository_are_clear() {
    let err = load(&options(
        Some(PathBuf::from("/nonexistent/driftguard.yaml")),
        &[],
    ))
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/driftguard.yaml"),
        "{err}"
    );

    let path = fixture("seed-config.yaml");
    let dir = tempfile::tempdir().unwrap();
    let no_repo = write(&dir, "server:\n  port: 8080\n");
    let loaded = load(&options(Some(no_repo.clone()), &[])).unwrap();
    let err = loaded.require_repository().unwrap_err().to_string();
    assert!(err.contains("git.repository_url"), "{err}");
    assert!(err.contains(&no_repo.display().to_string()), "{err}");
    assert!(
        load(&options(Some(path), &[]))
            .unwrap()
            .require_repository()
            .is_ok()
    );
}

#[test]
fn every_key_has_an_environment_variable_and_docs() {
    for spec in KEYS {
        assert!(spec.env_var().starts_with("DRIFTGUARD_"));
        assert!(spec.env_var().contains("__"));
        assert!(!spec.doc.is_empty(), "{} has no doc", spec.dotted());
    }
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../driftguard.example.yaml"),
    )
    .expect("the commented example config exists at the repository root");
    for spec in KEYS {
        assert!(
            example.contains(&format!("{}:", spec.key)),
            "example config does not mention {}",
            spec.dotted()
        );
    }
    let loaded = load(&options(
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../driftguard.example.yaml")),
        &[],
    ));
    assert!(
        loaded.is_ok(),
        "the example config must load: {:?}",
        loaded.err()
    );
}

#[test]
fn bad_helm_releases_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key, words) in [
        (
            "helm:\n  releases: [{name: Web_1, chart: charts/web}]\n",
            "helm.releases[0].name",
            "not a release name",
        ),
        (
            "helm:\n  releases: [{name: web, chart: 'https://charts.example.com/web'}]\n",
            "helm.releases[0].chart",
            "is a URL",
        ),
        (
            "helm:\n  releases: [{name: web, chart: web}, {name: api, chart: api, values_files: [../secrets.yaml]}]\n",
            "helm.releases[1].values_files",
            "leaves the repository",
        ),
        (
            "helm:\n  releases: [{name: web, chart: web}, {name: web, chart: other}]\n",
            "helm.releases[1].name",
            "listed twice",
        ),
        (
            "helm:\n  releases: [{name: web, chart: web, values: [1, 2]}]\n",
            "helm.releases[0].values",
            "must be a mapping",
        ),
    ] {
        let err = load(&options(Some(write(&dir, text)), &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(words), "{text}: {err}");
    }
    let ok = load(&options(
        Some(write(
            &dir,
            "helm:\n  releases: [{name: web, chart: charts/web, values_files: [env/prod.yaml]}]\n",
        )),
        &[],
    ))
    .unwrap();
    assert_eq!(ok.config.helm.releases[0].chart, "charts/web");
    assert!(ok.config.helm.releases[0].include_crds);
}

#[test]
fn bad_notifications_are_named_by_key_without_repeating_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let hook = |extra: &str| {
        format!(
            "notifications:\n  webhooks: [{{name: a, url: 'https://a.example.com/x'}}, {{name: b, url: 'https://b.example.com/TOKEN123'{extra}}}]\n"
        )
    };
    for (text, key, words) in [
        (
            "notifications:\n  webhooks: [{name: a, url: 'https://a.example.com'}, {name: b, url: 'ftp://host/TOKEN123'}]\n".to_owned(),
            "notifications.webhooks[1].url",
            "http:// or https://",
        ),
        (
            "notifications:\n  webhooks: [{name: a, url: 'https://a.example.com'}, {name: b, url: 'https:///TOKEN123'}]\n".to_owned(),
            "notifications.webhooks[1].url",
            "with a host",
        ),
        (
            "notifications:\n  webhooks: [{name: a, url: 'https://a.example.com'}, {name: a, url: 'https://b.example.com/TOKEN123'}]\n".to_owned(),
            "notifications.webhooks[1].name",
            "listed twice",
        ),
        (hook(", min_severity: critical"), "notifications.webhooks[1].min_severity", "not a severity"),
        (hook(", events: [detected, deleted]"), "notifications.webhooks[1].events", "not an event"),
        (hook(", events: []"), "notifications.webhooks[1].events", "at least one"),
        (hook(", drift_types: [Scale]"), "notifications.webhooks[1].drift_types", "not a drift type"),
        (hook(", secret: ''"), "notifications.webhooks[1].secret", "must not be empty"),
        (
            hook(", headers: {X-DriftGuard-Signature: TOKEN123}"),
            "notifications.webhooks[1].headers",
            "cannot be overridden",
        ),
        (hook(", namespaces: ['']"), "notifications.webhooks[1].namespaces", "empty entry"),
        (
            "notifications:\n  alertmanager: {url: 'http://am:9093', resend_interval: 0s}\n".to_owned(),
            "notifications.alertmanager.resend_interval",
            "greater than zero",
        ),
        (
            "notifications:\n  alertmanager: {url: 'am:9093/TOKEN123'}\n".to_owned(),
            "notifications.alertmanager.url",
            "http:// or https://",
        ),
        (
            "notifications:\n  slack: {webhook_url: 'hooks.slack.com/services/TOKEN123'}\n".to_owned(),
            "notifications.slack.webhook_url",
            "http:// or https://",
        ),
        (
            "notifications:\n  slack: {webhook_url: 'https://hooks.slack.com/x', kinds: [Deployment], min_severity: urgent}\n".to_owned(),
            "notifications.slack.min_severity",
            "not a severity",
        ),
        (
            "notifications:\n  slack: {webhook_url: 'https://hooks.slack.com/x', channel: '#ops'}\n".to_owned(),
            "notifications.slack.channel",
            "unknown configuration key",
        ),
        (
            "notifications:\n  external_url: 'driftguard.example.com/TOKEN123'\n".to_owned(),
            "notifications.external_url",
            "http:// or https://",
        ),
        (
            "notifications:\n  pagerduty: {}\n".to_owned(),
            "notifications.pagerduty",
            "unknown configuration key",
        ),
    ] {
        let path = write(&dir, &text);
        let err = load(&options(Some(path.clone()), &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(words), "{text}: {err}");
        assert!(err.contains(&path.display().to_string()), "{text}: {err}");
        assert!(!err.contains("TOKEN123"), "a URL or secret is repeated: {err}");
    }
    // From the environment, the variable is named.
    let err = load(&options(
        None,
        &[(
            "DRIFTGUARD_NOTIFICATIONS__SLACK",
            "{webhook_url: 'https://hooks.slack.com/TOKEN123', events: [resolvd]}",
        )],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("notifications.slack.events")
            && err.contains("DRIFTGUARD_NOTIFICATIONS__SLACK")
            && !err.contains("TOKEN123"),
        "{err}"
    );
}

#[test]
fn notification_defaults_and_debug_output_hide_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&options(Some(write(&dir, "server:\n  port: 1\n")), &[])).unwrap();
    assert_eq!(loaded.config.notifications.alertmanager, None);
    assert_eq!(loaded.config.notifications.slack, None);
    assert!(loaded.config.notifications.webhooks.is_empty());

    let text = "notifications:\n  alertmanager: {url: 'http://am:9093'}\n  slack: {webhook_url: 'https://hooks.slack.com/services/T0/B0/SLACKTOKEN'}\n  webhooks:\n    - name: audit\n      url: 'https://user:URLPASS@hooks.example.com/in?token=QUERYTOKEN'\n      secret: SIGNINGSECRET\n      headers: {Authorization: Bearer HEADERTOKEN}\n";
    let loaded = load(&options(Some(write(&dir, text)), &[])).unwrap();
    let n = &loaded.config.notifications;
    let am = n.alertmanager.as_ref().unwrap();
    assert_eq!(am.resend_interval, Duration::from_secs(60));
    assert_eq!(am.min_severity, "low");
    assert_eq!(am.events, ["detected", "changed", "resolved"]);
    assert_eq!(n.webhooks[0].secret.as_deref(), Some("SIGNINGSECRET"));
    let debug = format!("{:?}", loaded.config);
    for secret in [
        "SLACKTOKEN",
        "URLPASS",
        "QUERYTOKEN",
        "SIGNINGSECRET",
        "HEADERTOKEN",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug output: {debug}");
    }
    assert!(debug.contains("https://hooks.slack.com/…"), "{debug}");
    assert!(debug.contains("http://am:9093"), "{debug}");
    assert!(debug.contains("Authorization"), "{debug}");
}

#[test]
fn leader_election_durations_are_ordered_as_the_lease_protocol_needs() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = load(&options(None, &[])).unwrap().config.leader_election;
    assert!(!defaults.enabled);
    assert_eq!(defaults.lease_name, "driftguard");
    assert_eq!(defaults.lease_duration, Duration::from_secs(15));
    assert_eq!(defaults.renew_deadline, Duration::from_secs(10));
    assert_eq!(defaults.retry_period, Duration::from_secs(2));
    for (text, key, words) in [
        (
            "leader_election:\n  enabled: true\n  renew_deadline: 15s\n",
            "leader_election.renew_deadline",
            "shorter than leader_election.lease_duration",
        ),
        (
            "leader_election:\n  enabled: true\n  retry_period: 10s\n",
            "leader_election.retry_period",
            "shorter than leader_election.renew_deadline",
        ),
        (
            "leader_election:\n  lease_duration: 0s\n",
            "leader_election.lease_duration",
            "greater than zero",
        ),
        (
            "leader_election:\n  enabled: true\n  lease_name: ' '\n",
            "leader_election.lease_name",
            "must not be empty",
        ),
    ] {
        let err = load(&options(Some(write(&dir, text)), &[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(key), "{text}: {message}");
        assert!(message.contains(words), "{text}: {message}");
    }
    // Durations only have to be ordered when the election runs.
    let off = load(&options(
        Some(write(&dir, "leader_election:\n  renew_deadline: 20s\n")),
        &[],
    ))
    .unwrap();
    assert_eq!(
        off.config.leader_election.renew_deadline,
        Duration::from_secs(20)
    );
}

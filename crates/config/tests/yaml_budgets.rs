//! The configuration file and YAML-typed environment values are read by DriftGuard's one YAML
//! reader: the same budgets as manifests (an alias bomb is an error naming the budget and the
//! line, never an allocation), and the same merge keys, tags and scalar rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use driftguard_config::{ConfigError, LoadOptions, Loaded, load};
use driftguard_yaml::{Limits, parse_documents};
use serde_json::{Value, json};

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

fn load_text(text: &str) -> (Result<Loaded, ConfigError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driftguard.yaml");
    std::fs::write(&path, text).unwrap();
    (load(&options(Some(path.clone()), &[])), path, dir)
}

/// Peak resident memory of this process, in bytes (`VmHWM`; each test is its own process
/// under nextest).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `items` elements under an anchor, then `aliases` aliases to it, all on one line.
fn bomb(items: usize, aliases: usize) -> String {
    format!(
        "[[{}], [{}]]",
        vec!["x"; items].join(", "),
        vec!["*a"; aliases].join(", ")
    )
    .replacen("[[", "[&a [", 1)
}

#[test]
fn an_alias_bomb_in_the_config_file_is_refused_by_the_node_budget() {
    // The file of the issue: a bracket only the repair reads, then the bomb.
    let text = format!(
        "s:\n  q: [\n    1\n]\ndrift_detection:\n  appliers: {}\n",
        bomb(100_000, 200_000)
    );
    let before = peak_rss();
    let (result, path, _dir) = load_text(&text);
    let grown = peak_rss().saturating_sub(before);
    let err = result.expect_err("must be refused");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "config file {} is not valid YAML: line 6: more than 500000 nodes (alias expansion?)",
            path.display()
        )
    );
    assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
}

#[test]
fn an_alias_bomb_in_a_yaml_environment_value_is_refused_by_the_node_budget() {
    let value = bomb(100_000, 200_000);
    let before = peak_rss();
    let err = load(&options(
        None,
        &[("DRIFTGUARD_DRIFT_DETECTION__IGNORE", value.as_str())],
    ))
    .expect_err("must be refused")
    .to_string();
    let grown = peak_rss().saturating_sub(before);
    assert!(err.contains("DRIFTGUARD_DRIFT_DETECTION__IGNORE"), "{err}");
    assert!(
        err.contains("invalid YAML: line 1: more than 500000 nodes"),
        "{err}"
    );
    assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
}

#[test]
fn merge_keys_anchors_and_tags_read_as_in_manifests() {
    let text = "server:\n  read_timeout: &t 45s\n  write_timeout: *t\n\
                git:\n  default_branch: !!str 0755\n  max_depth: !!int \"12\"\n\
                drift_detection:\n  enable_periodic: yes\n  ignore:\n\
                \x20 - &base {kind: Deployment, paths: [spec.replicas]}\n\
                \x20 - <<: *base\n    namespace: kube-system\n    kind: StatefulSet\n";
    let (result, _path, _dir) = load_text(text);
    let loaded = result.unwrap();
    let config = &loaded.config;
    assert_eq!(config.server.read_timeout, Duration::from_secs(45));
    assert_eq!(config.server.write_timeout, Duration::from_secs(45));
    assert_eq!(config.git.default_branch, "0755");
    assert_eq!(config.git.max_depth, 12);
    assert!(config.drift_detection.enable_periodic);
    let ignore = &config.drift_detection.ignore;
    assert_eq!(ignore.len(), 2);
    assert_eq!(ignore[1].kind.as_deref(), Some("StatefulSet"));
    assert_eq!(ignore[1].namespace.as_deref(), Some("kube-system"));
    assert_eq!(ignore[1].paths, vec!["spec.replicas".to_owned()]);
    // Exactly what the manifest reader builds from the same text.
    let manifest = parse_documents(text, &Limits::default()).unwrap();
    let rules = &manifest[0].value["drift_detection"]["ignore"];
    assert_eq!(
        rules[1],
        json!({"kind": "StatefulSet", "paths": ["spec.replicas"], "namespace": "kube-system"})
    );
    assert_eq!(
        ignore[1].kind.as_deref(),
        rules[1]["kind"].as_str(),
        "{rules}"
    );
}

#[test]
fn a_layout_kubectl_accepts_is_read_and_other_errors_name_line_and_key() {
    let (result, _path, _dir) =
        load_text("kubernetes:\n  namespaces: [\n    team-a,\n    team-b\n]\n");
    assert_eq!(
        result.unwrap().config.kubernetes.namespaces,
        vec!["team-a".to_owned(), "team-b".to_owned()]
    );

    let (result, path, _dir) = load_text("server:\n  port: 8080\n  port: 9090\n");
    let err = result.expect_err("a key written twice").to_string();
    assert_eq!(
        err,
        format!(
            "config file {} is not valid YAML: line 3: `server.port` is written twice",
            path.display()
        )
    );

    let (result, _path, _dir) = load_text("server:\n  port: 8080\n---\nserver:\n  port: 1\n");
    let err = result.expect_err("two documents").to_string();
    assert!(err.contains("line 4: a second YAML document"), "{err}");

    // YAML reads `off` as a boolean: the message says how to keep it text.
    let (result, _path, _dir) = load_text("logging:\n  level: off\n");
    let err = result.expect_err("a boolean level").to_string();
    assert!(err.contains("logging.level"), "{err}");
    assert!(err.contains("quote the value"), "{err}");
    let (result, _path, _dir) = load_text("logging:\n  level: 'off'\n");
    assert_eq!(result.unwrap().config.logging.level, "off");

    // A scalar the reader refuses names its line.
    let (result, _path, _dir) = load_text("server:\n  port: 8080\n  read_timeout: .inf\n");
    let err = result.expect_err("infinity").to_string();
    assert!(err.contains("line 3:"), "{err}");
}

#[test]
fn an_empty_or_comment_only_file_is_the_defaults() {
    for text in ["", "# nothing yet\n", "---\n"] {
        let (result, _path, _dir) = load_text(text);
        let loaded = result.unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(loaded.config.server.port, 8080, "{text:?}");
        assert!(loaded.origins.is_empty(), "{text:?}");
    }
    let (result, _path, _dir) = load_text("server:\n");
    assert!(result.is_ok());
    let value: Value = serde_json::to_value(&load_text("{}").0.unwrap().config).unwrap();
    assert!(value.get("server").is_some());
}

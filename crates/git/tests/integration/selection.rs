//! Which files are read, Kustomize, Lists, namespaces, duplicates, PEM blocks.

use std::path::PathBuf;
use std::sync::Arc;

use driftguard_core::ResourceKey;
use driftguard_git::{GitSource, Kustomize, ReadOptions, ScopeLookup, Snapshot};

use crate::support::{DEPLOY, Remote, TRANSPORTS, configmap, hasher};

fn synced(remote: &Remote, edit: impl FnOnce(&mut driftguard_config::GitConfig)) -> Snapshot {
    let workdir = tempfile::tempdir().unwrap();
    let mut cfg = remote.config(workdir.path());
    edit(&mut cfg);
    let mut source = GitSource::open(&cfg, "apps", hasher()).unwrap();
    source.sync().unwrap();
    source.snapshot().clone()
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.keys().map(String::as_str).collect()
}

#[test]
fn sub_paths_and_globs() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        remote.write("apps/web.yaml", DEPLOY);
        remote.write("apps/cm.yml", configmap("a", "1"));
        remote.write(
            "apps/data.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"},"data":{"n":"1"}}"#,
        );
        remote.write("apps/test/skip-me.yaml", configmap("skipped", "1"));
        remote.write("apps/README.md", "# not a manifest");
        remote.write(
            "infra/ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
        );
        remote.write("infra/other.yaml", configmap("other", "1"));
        remote.write("docs/example.yaml", configmap("doc", "1"));
        remote.commit("tree");

        let all = synced(&remote, |_| {});
        assert_eq!(all.stats.files_listed, 7, "{:?}", paths(&all));
        assert_eq!(all.objects.len(), 7);

        let some = synced(&remote, |cfg| {
            cfg.path = vec!["apps".into(), "./infra/ns.yaml".into()];
            cfg.exclude = vec!["apps/test".into()];
        });
        assert_eq!(
            paths(&some),
            [
                "apps/cm.yml",
                "apps/data.json",
                "apps/web.yaml",
                "infra/ns.yaml"
            ]
        );
        assert_eq!(some.objects.len(), 4);
        assert_eq!(some.stats.files_read, 4);
        assert!(
            some.get(&ResourceKey::new("", "Namespace", "", "apps"))
                .is_some()
        );

        let included = synced(&remote, |cfg| {
            cfg.include = vec!["**/*.yml".into(), "infra/*".into()];
            cfg.exclude = vec!["infra/other.yaml".into()];
        });
        assert_eq!(paths(&included), ["apps/cm.yml", "infra/ns.yaml"]);
    }
}

#[test]
fn kustomize_directories_are_rendered() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        remote.write(
            "base/kustomization.yaml",
            "resources:\n- deploy.yaml\n- cm.yaml\n",
        );
        remote.write("base/deploy.yaml", DEPLOY);
        remote.write("base/cm.yaml", configmap("settings", "1"));
        remote.write(
            "overlays/prod/kustomization.yaml",
            "namespace: prod\nnamePrefix: prod-\nresources:\n- ../../base\npatches:\n- path: replicas.yaml\n",
        );
        remote.write(
            "overlays/prod/replicas.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n",
        );
        remote.write("plain/cm.yaml", configmap("plain", "1"));
        remote.commit("kustomize");

        let workdir = tempfile::tempdir().unwrap();
        let mut cfg = remote.config(workdir.path());
        cfg.path = vec!["overlays/prod".into(), "plain".into()];
        let mut source = GitSource::open(&cfg, "apps", hasher()).unwrap();
        source.sync().unwrap();
        let snap = source.snapshot();
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
        assert_eq!(
            paths(snap),
            ["overlays/prod/kustomization.yaml", "plain/cm.yaml"]
        );
        assert_eq!(snap.stats.kustomizations_rendered, 1);
        assert_eq!(snap.objects.len(), 3);
        let web = snap
            .get(&ResourceKey::new("apps", "Deployment", "prod", "prod-web"))
            .expect("overlay deployment");
        assert_eq!(web.object.value()["spec"]["replicas"], 5);
        assert!(web.object.value()["spec"]["replicas"].is_i64());
        assert!(
            web.source
                .source_path()
                .starts_with("overlays/prod/kustomization.yaml#")
        );
        assert_eq!(web.source.line, None);
        // The patch file is not read on its own.
        assert!(
            snap.get(&ResourceKey::new("apps", "Deployment", "apps", "web"))
                .is_none()
        );

        // Whole repository: base and overlay are each rendered; their files are not read.
        let all = synced(&remote, |_| {});
        assert_eq!(
            paths(&all),
            [
                "base/kustomization.yaml",
                "overlays/prod/kustomization.yaml",
                "plain/cm.yaml"
            ]
        );
        assert_eq!(all.objects.len(), 5);

        // An unchanged commit costs nothing; a change elsewhere re-renders (the overlay
        // reaches outside its directory).
        remote.write("plain/cm.yaml", configmap("plain", "2"));
        remote.commit("plain change");
        source.sync().unwrap();
        assert_eq!(source.snapshot().stats.kustomizations_rendered, 1);
        assert_eq!(source.snapshot().stats.files_parsed, 1);
    }
}

#[test]
fn kustomize_missing_is_a_clear_error() {
    let remote = Remote::new(crate::support::Transport::File);
    remote.write("k/kustomization.yaml", "resources:\n- cm.yaml\n");
    remote.write("k/cm.yaml", configmap("a", "1"));
    remote.write("plain.yaml", DEPLOY);
    remote.commit("k");
    let workdir = tempfile::tempdir().unwrap();
    let cfg = remote.config(workdir.path());
    let mut options = ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    options.kustomize = Kustomize::Command {
        program: PathBuf::from("/nonexistent/kustomize"),
        args: vec!["build".into()],
    };
    let mut source = GitSource::open_with(&cfg, options).unwrap();
    source.sync().unwrap();
    let snap = source.snapshot();
    assert_eq!(snap.objects.len(), 1);
    assert_eq!(snap.errors.len(), 1);
    assert_eq!(snap.errors[0].path, "k/kustomization.yaml");
    assert!(
        snap.errors[0].message.contains("/nonexistent/kustomize"),
        "{}",
        snap.errors[0]
    );
}

#[test]
fn kustomize_errors_never_quote_secret_generator_values() {
    // kustomize answers `invalid literal source hunter2pass, expected key=value`: the value of a
    // mistyped literal, here and in an included base, must not reach the error.
    let remote = Remote::new(crate::support::Transport::File);
    remote.write(
        "app/kustomization.yaml",
        "resources:\n- ../base\nsecretGenerator:\n- name: db\n  literals:\n  - hunter2pass\n",
    );
    remote.write(
        "base/kustomization.yaml",
        "secretGenerator:\n- name: api\n  literals:\n  - tok3n-in-base\n  envs:\n  - api.env\n",
    );
    remote.write("base/api.env", "API_KEY=zz9-plural-z-alpha\n");
    remote.write("plain.yaml", DEPLOY);
    remote.commit("broken generators");
    let workdir = tempfile::tempdir().unwrap();
    let mut cfg = remote.config(workdir.path());
    cfg.path = vec!["app".into(), "plain.yaml".into()];
    let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
    source.sync().unwrap();
    let snap = source.snapshot();
    assert_eq!(snap.objects.len(), 1, "the rest is still analysed");
    assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
    let message = snap.errors[0].to_string();
    assert!(message.contains("invalid literal source"), "{message}");
    assert!(message.contains("***"), "{message}");
    for secret in ["hunter2pass", "tok3n-in-base", "zz9-plural-z-alpha"] {
        assert!(!message.contains(secret), "{secret} leaked: {message}");
    }
}

struct Discovery;

impl ScopeLookup for Discovery {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        (group == "example.com" && kind == "Widget").then_some(false)
    }
}

#[test]
fn lists_namespaces_and_scopes() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        remote.write(
            "list.yaml",
            "# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n---\n\
apiVersion: v1\nkind: List\nitems:\n\
- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: in-list\n    namespace: explicit\n\
- apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRole\n  metadata:\n    name: viewer\n    namespace: ignored\n  rules: []\n\
- apiVersion: example.com/v1\n  kind: Widget\n  metadata:\n    name: w\n\
---\nfoo: not a manifest\n---\n",
        );
        remote.commit("list");
        let workdir = tempfile::tempdir().unwrap();
        let cfg = remote.config(workdir.path());
        let options = ReadOptions::from_config(&cfg, "team", hasher())
            .unwrap()
            .with_scope_lookup(Arc::new(Discovery));
        let mut source = GitSource::open_with(&cfg, options).unwrap();
        source.sync().unwrap();
        let snap = source.snapshot();
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
        assert_eq!(
            snap.objects.len(),
            4,
            "{:?}",
            snap.objects.keys().collect::<Vec<_>>()
        );
        let first = snap
            .get(&ResourceKey::new("", "ConfigMap", "team", "first"))
            .unwrap();
        assert_eq!(first.source.source_path(), "list.yaml#0");
        assert_eq!(first.source.line, Some(2));
        assert_eq!(first.object.value()["metadata"]["namespace"], "team");
        let in_list = snap
            .get(&ResourceKey::new("", "ConfigMap", "explicit", "in-list"))
            .unwrap();
        assert_eq!(in_list.source.source_path(), "list.yaml#1");
        assert_eq!(in_list.source.line, Some(10));
        let role = snap
            .get(&ResourceKey::new(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "",
                "viewer",
            ))
            .unwrap();
        assert_eq!(role.source.source_path(), "list.yaml#1");
        assert_eq!(role.source.line, Some(15));
        assert!(role.object.value()["metadata"].get("namespace").is_none());
        assert!(
            snap.get(&ResourceKey::new("example.com", "Widget", "", "w"))
                .is_some()
        );
    }
}

#[test]
fn duplicates_name_both_places_and_keep_the_first() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        remote.write("a.yaml", DEPLOY);
        remote.write(
            "b.yaml",
            format!(
                "{}---\n{}",
                configmap("x", "1"),
                DEPLOY.replace("replicas: 2", "replicas: 9")
            ),
        );
        remote.commit("dup");
        let snap = synced(&remote, |_| {});
        assert_eq!(snap.objects.len(), 2);
        assert_eq!(snap.errors.len(), 1);
        let err = &snap.errors[0];
        assert_eq!(err.path, "b.yaml");
        assert_eq!(err.line, Some(8));
        assert!(err.message.contains("Deployment.apps:apps:web"), "{err}");
        assert!(err.message.contains("a.yaml#0"), "{err}");
        let kept = snap
            .get(&ResourceKey::new("apps", "Deployment", "apps", "web"))
            .unwrap();
        assert_eq!(kept.source.path, "a.yaml");
        assert_eq!(kept.object.value()["spec"]["replicas"], 2);
    }
}

const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGUtLS0tLS0tLS0tLS0tLTAKBggqhkjO
---
--- not a separator
-----END CERTIFICATE-----
";

#[test]
fn pem_blocks_and_separators_in_block_scalars() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        let indented: String = CERT.lines().map(|l| format!("    {l}\n")).collect();
        remote.write(
            "tls.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{indented}  tls.key: canary-private-key\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\ndata:\n  run.sh: |\n    echo start\n    ---\n    echo '---'\n  ca.pem: |\n{indented}---\n{}",
                configmap("after", "z")
            ),
        );
        remote.commit("pem");
        let snap = synced(&remote, |_| {});
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
        assert_eq!(snap.objects.len(), 3);
        let script = snap
            .get(&ResourceKey::new("", "ConfigMap", "apps", "script"))
            .unwrap();
        assert_eq!(
            script.object.value()["data"]["run.sh"],
            "echo start\n---\necho '---'\n"
        );
        assert_eq!(script.object.value()["data"]["ca.pem"], CERT);
        assert_eq!(script.source.source_path(), "tls.yaml#1");
        let after = snap
            .get(&ResourceKey::new("", "ConfigMap", "apps", "after"))
            .unwrap();
        assert_eq!(after.source.source_path(), "tls.yaml#2");
        let secret = snap
            .get(&ResourceKey::new("", "Secret", "apps", "tls"))
            .unwrap();
        let object = secret.object.value();
        let digest = object["data"]["tls.crt"].as_str().unwrap();
        assert!(digest.starts_with("hmac-sha256:"), "{digest}");
        assert!(secret.object.value().get("stringData").is_none());
        let everything = format!("{snap:?}");
        assert!(!everything.contains("canary-private-key"));
        assert!(!format!("{secret:?}").contains("MIIB"));
    }
}

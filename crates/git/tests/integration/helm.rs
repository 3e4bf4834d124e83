//! Helm charts as desired state (issue 16), rendered by the real, pinned `helm` from charts
//! committed to real repositories: sources, hooks, values, non-deterministic output,
//! incremental re-rendering, and bad charts that keep the last good objects.

use std::net::TcpListener;
use std::path::Path;

use driftguard_git::{GitSource, HelmOptions, ReadOptions, Release, Snapshot, load_local};

use crate::support::{Remote, Transport, configmap, hasher};

fn helm(detect: bool, releases: Vec<Release>) -> HelmOptions {
    HelmOptions {
        binary: driftguard_test_support::helm_binary().display().to_string(),
        detect,
        include_hooks: false,
        releases,
    }
}

fn release(name: &str, chart: &str, values_files: &[&str]) -> Release {
    Release {
        name: name.into(),
        chart: chart.into(),
        namespace: Some("prod".into()),
        values_files: values_files.iter().map(|s| (*s).to_owned()).collect(),
        values: String::new(),
        include_crds: true,
    }
}

/// Copies `from` (a directory) into the remote's work tree at `to`.
fn copy_dir(remote: &Remote, from: &Path, to: &str) {
    for entry in walkdir(from) {
        let relative = entry.strip_prefix(from).unwrap();
        remote.write(
            &format!("{to}/{}", relative.display()),
            std::fs::read(&entry).unwrap(),
        );
    }
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn source(remote: &Remote, workdir: &Path, helm: HelmOptions) -> GitSource {
    let cfg = remote.config(workdir);
    let options = ReadOptions::from_config(&cfg, "default", hasher())
        .unwrap()
        .with_helm(helm);
    GitSource::open_with(&cfg, options).unwrap()
}

fn ids(snapshot: &Snapshot) -> Vec<String> {
    let mut ids: Vec<String> = snapshot
        .objects
        .values()
        .map(|o| format!("{} {}", o.key.resource_id(), o.source.source_path()))
        .collect();
    ids.sort();
    ids
}

/// A small chart: a ConfigMap with a value, a Secret with a generated password and a
/// Deployment stamped with its checksum, and a hook Job.
fn write_own_chart(remote: &Remote, dir: &str) {
    remote.write(
        &format!("{dir}/Chart.yaml"),
        "apiVersion: v2\nname: own\nversion: 0.1.0\n",
    );
    remote.write(
        &format!("{dir}/values.yaml"),
        "replicaCount: 1\ncolour: blue\n",
    );
    remote.write(
        &format!("{dir}/templates/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  colour: {{ .Values.colour | quote }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-second\ndata:\n  n: \"2\"\n",
    );
    remote.write(
        &format!("{dir}/templates/secret.yaml"),
        "{{- $password := randAlphaNum 16 -}}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-auth\ntype: Opaque\ndata:\n  password: {{ $password | b64enc | quote }}\n  user: {{ \"admin\" | b64enc | quote }}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels: {app: own}\n  template:\n    metadata:\n      labels: {app: own}\n      annotations:\n        checksum/auth: {{ $password | sha256sum }}\n    spec:\n      containers:\n      - name: app\n        image: nginx:1.25\n",
    );
    remote.write(
        &format!("{dir}/templates/hook.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-migrate\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: busybox\n",
    );
}

#[test]
fn charts_render_with_template_sources_releases_and_no_hooks() {
    let remote = Remote::new(Transport::File);
    let workdir = tempfile::tempdir().unwrap();
    copy_dir(
        &remote,
        &driftguard_test_support::charts_dir().join("podinfo"),
        "charts/podinfo",
    );
    write_own_chart(&remote, "apps/own");
    remote.write("plain/cm.yaml", configmap("plain", "1"));
    remote.commit("charts");
    let mut source = source(&remote, workdir.path(), helm(true, Vec::new()));
    source.sync().unwrap();
    let snap = source.snapshot();
    assert!(snap.errors.is_empty(), "{:#?}", snap.errors);
    assert_eq!(
        ids(snap),
        [
            "ConfigMap:default:own-config apps/own/templates/config.yaml#0",
            "ConfigMap:default:own-second apps/own/templates/config.yaml#1",
            "ConfigMap:default:plain plain/cm.yaml#0",
            "Deployment:default:own apps/own/templates/secret.yaml#1",
            "Deployment:default:podinfo charts/podinfo/templates/deployment.yaml#0",
            "Secret:default:own-auth apps/own/templates/secret.yaml#0",
            "Service:default:podinfo charts/podinfo/templates/service.yaml#0",
        ],
        "podinfo's test Pods and the own chart's hook Job are hooks: left out"
    );
    let deployment = snap
        .objects
        .values()
        .find(|o| o.key.name == "podinfo")
        .unwrap();
    assert_eq!(deployment.source.helm_release.as_deref(), Some("podinfo"));
    assert!(deployment.source.line.is_none());

    // The generated password and its checksum are left out of the comparison, named.
    let secret = snap
        .objects
        .values()
        .find(|o| o.key.kind == "Secret")
        .unwrap();
    let unstable: Vec<String> = secret.unstable.iter().map(ToString::to_string).collect();
    assert_eq!(unstable, ["data.password"]);
    assert_eq!(secret.warnings[0].code, "non-deterministic");
    // Pinned, so the next render of the same inputs is the same desired object.
    assert_eq!(
        secret.object.value()["data"]["password"],
        "(non-deterministic)"
    );
    // Secret values are digested at the edge, generated or not.
    let object = secret.object.value();
    let user = object["data"]["user"].as_str().unwrap();
    assert!(user.starts_with("hmac-sha256:"), "{user}");
    let own = snap.objects.values().find(|o| o.key.name == "own").unwrap();
    let unstable: Vec<String> = own.unstable.iter().map(ToString::to_string).collect();
    assert_eq!(
        unstable,
        ["spec.template.metadata.annotations[\"checksum/auth\"]"]
    );
    let config = snap
        .objects
        .values()
        .find(|o| o.key.name == "own-config")
        .unwrap();
    assert!(config.unstable.is_empty() && config.warnings.is_empty());

    // With hooks kept, the fixed-name hook Job is desired state; podinfo's randomly named test
    // Pods still cannot be matched between two renders and stay out.
    let workdir = tempfile::tempdir().unwrap();
    let mut with_hooks = helm(true, Vec::new());
    with_hooks.include_hooks = true;
    let mut source = self::source(&remote, workdir.path(), with_hooks);
    source.sync().unwrap();
    let ids = ids(source.snapshot());
    assert!(
        ids.contains(&"Job:default:own-migrate apps/own/templates/hook.yaml#0".to_owned()),
        "{ids:#?}"
    );
    assert!(!ids.iter().any(|id| id.starts_with("Pod:")), "{ids:#?}");

    // check's PATH mode renders the same objects.
    let options = ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        hasher(),
    )
    .unwrap()
    .with_helm(helm(true, Vec::new()));
    let local = load_local(&remote.work, &options, None).unwrap();
    assert_eq!(
        local.objects.keys().collect::<Vec<_>>(),
        source
            .snapshot()
            .objects
            .keys()
            .filter(|k| k.kind != "Job")
            .collect::<Vec<_>>()
    );
}

#[test]
fn only_a_changed_chart_or_values_file_is_rendered_again() {
    let remote = Remote::new(Transport::File);
    let workdir = tempfile::tempdir().unwrap();
    write_own_chart(&remote, "charts/own");
    write_own_chart(&remote, "charts/other");
    remote.write("env/prod.yaml", "replicaCount: 2\n");
    remote.write("plain/cm.yaml", configmap("plain", "1"));
    remote.commit("two charts");
    let releases = vec![
        release("own", "charts/own", &["env/prod.yaml"]),
        release("other", "charts/other", &[]),
    ];
    let mut source = source(&remote, workdir.path(), helm(false, releases));
    source.sync().unwrap();
    assert_eq!(source.snapshot().stats.releases_rendered, 2);
    let replicas = |source: &GitSource| {
        source
            .snapshot()
            .objects
            .values()
            .find(|o| o.key.kind == "Deployment" && o.key.name == "own")
            .map(|o| o.object.value()["spec"]["replicas"].clone())
    };
    assert_eq!(replicas(&source), Some(serde_json::json!(2)));
    assert_eq!(
        source
            .snapshot()
            .objects
            .values()
            .find(|o| o.key.name == "own")
            .unwrap()
            .key
            .namespace,
        "prod"
    );

    // A commit that touches no chart renders nothing.
    remote.write("plain/cm.yaml", configmap("plain", "2"));
    remote.commit("plain only");
    source.sync().unwrap();
    assert_eq!(source.snapshot().stats.releases_rendered, 0);

    // A values file commit re-renders only the release that reads it, and moves its state.
    remote.write("env/prod.yaml", "replicaCount: 5\n");
    remote.commit("scale in values");
    let outcome = source.sync().unwrap();
    assert_eq!(source.snapshot().stats.releases_rendered, 1);
    assert_eq!(replicas(&source), Some(serde_json::json!(5)));
    let driftguard_git::SyncOutcome::Updated { diff, .. } = outcome else {
        panic!("a new commit updates the snapshot: {outcome:?}");
    };
    // Only the Deployment's desired state moved: the generated password is not a change.
    let changed: Vec<String> = diff.changed.iter().map(|k| k.resource_id()).collect();
    assert_eq!(changed, ["Deployment:prod:own"]);

    // A template change in the other chart re-renders that one only.
    remote.write(
        "charts/other/templates/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata: {}\n",
    );
    remote.commit("other chart grows");
    source.sync().unwrap();
    assert_eq!(source.snapshot().stats.releases_rendered, 1);
    assert!(
        source
            .snapshot()
            .objects
            .keys()
            .any(|k| k.resource_id() == "ConfigMap:prod:extra")
    );
}

/// Each bad chart is an error naming the release, chart and file, and the release keeps its
/// last good objects; a passwords in values never reaches the message, and nothing is fetched.
#[test]
fn bad_charts_are_named_and_keep_the_last_good_objects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let remote = Remote::new(Transport::File);
    let workdir = tempfile::tempdir().unwrap();
    write_own_chart(&remote, "charts/own");
    remote.write("env/prod.yaml", "replicaCount: 2\n");
    remote.commit("good");
    let mut source = source(
        &remote,
        workdir.path(),
        helm(
            false,
            vec![release("own", "charts/own", &["env/prod.yaml"])],
        ),
    );
    source.sync().unwrap();
    let good = source.snapshot().objects.len();
    assert_eq!(good, 4, "{:#?}", ids(source.snapshot()));

    let password = "pa55-word-never-shown";
    type Case<'a> = (&'a str, Box<dyn Fn(&Remote)>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "template error",
            Box::new(|r: &Remote| {
                r.write(
                    "charts/own/templates/broken.yaml",
                    "{{ .Values.missing.deeper.field }}\n",
                );
            }),
            vec!["templates/broken.yaml".into(), "nil pointer".into()],
        ),
        (
            "a failing template quoting a password from values",
            Box::new(move |r: &Remote| {
                r.remove("charts/own/templates/broken.yaml");
                r.write(
                    "env/prod.yaml",
                    format!("replicaCount: 2\ndb:\n  password: {password}\n"),
                );
                r.write(
                    "charts/own/templates/broken.yaml",
                    "{{ fail (printf \"cannot connect with %s\" .Values.db.password) }}\n",
                );
            }),
            vec!["cannot connect with ***".into()],
        ),
        (
            "values violating values.schema.json",
            Box::new(|r: &Remote| {
                r.remove("charts/own/templates/broken.yaml");
                r.write(
                    "charts/own/values.schema.json",
                    r#"{"type": "object", "properties": {"replicaCount": {"type": "integer", "maximum": 3}}}"#,
                );
                r.write("env/prod.yaml", "replicaCount: 9\n");
            }),
            vec!["schema".into(), "replicaCount".into()],
        ),
        (
            "a dependency that is not vendored (and would be fetched from the network)",
            Box::new(move |r: &Remote| {
                r.remove("charts/own/values.schema.json");
                r.write("env/prod.yaml", "replicaCount: 2\n");
                r.write(
                    "charts/own/Chart.yaml",
                    format!("apiVersion: v2\nname: own\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.0.0\n  repository: http://127.0.0.1:{port}/charts\n"),
                );
            }),
            vec!["redis".into(), "helm dependency build".into()],
        ),
    ];
    for (what, change, expected) in cases {
        change(&remote);
        remote.commit(what);
        source.sync().unwrap();
        let snap = source.snapshot();
        assert_eq!(snap.errors.len(), 1, "{what}: {:#?}", snap.errors);
        let error = snap.errors[0].to_string();
        assert!(
            error.starts_with("charts/own/Chart.yaml: release own (chart charts/own): "),
            "{what}: {error}"
        );
        for words in &expected {
            assert!(error.contains(words.as_str()), "{what}: {error}");
        }
        assert!(!error.contains(password), "{what}: {error}");
        assert_eq!(
            snap.objects.len(),
            good,
            "{what}: the last good objects stay"
        );
    }
    // The values file goes away.
    remote.git(&["checkout", "HEAD~4", "--", "charts/own/Chart.yaml"]);
    remote.remove("env/prod.yaml");
    remote.commit("values file removed");
    source.sync().unwrap();
    let error = source.snapshot().errors[0].to_string();
    assert!(
        error.contains("values file env/prod.yaml does not exist"),
        "{error}"
    );
    assert_eq!(source.snapshot().objects.len(), good);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the chart repository was reached: {other:?}"),
    }
    // Fixed: rendered again, no error.
    remote.write("env/prod.yaml", "replicaCount: 3\n");
    remote.commit("values file back");
    source.sync().unwrap();
    assert!(
        source.snapshot().errors.is_empty(),
        "{:#?}",
        source.snapshot().errors
    );
}

#[test]
fn a_missing_helm_is_an_error_naming_the_setting() {
    let remote = Remote::new(Transport::File);
    let workdir = tempfile::tempdir().unwrap();
    write_own_chart(&remote, "own");
    remote.commit("chart");
    let mut options = helm(true, Vec::new());
    options.binary = "helm-that-does-not-exist".into();
    let mut source = source(&remote, workdir.path(), options);
    source.sync().unwrap();
    let errors: Vec<String> = source
        .snapshot()
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("own/Chart.yaml: ") && errors[0].contains("helm.binary"),
        "{errors:#?}"
    );
    // The chart's templates are never read as manifests.
    assert!(source.snapshot().objects.is_empty());
}

/// The pinned Helm 3 (`DRIFTGUARD_TEST_HELM3`, set by `scripts/test.sh`): Kustomize's chart
/// inflator refuses Helm 4.
fn helm3() -> String {
    match std::env::var("DRIFTGUARD_TEST_HELM3") {
        Ok(path) if Path::new(&path).is_file() => path,
        _ => panic!(
            "Helm 3 is not installed for the tests: run `bash scripts/helm.sh install --helm3` and \
             export DRIFTGUARD_TEST_HELM3=<the path it prints> (or run scripts/test.sh)"
        ),
    }
}

/// Kustomize's `helmCharts`, for a chart in the repository: inflated (with the configured Helm
/// 3) and then transformed by the kustomization; a chart repository is refused before anything
/// runs, and never contacted; Helm 4 is named as the reason Kustomize refuses.
#[test]
fn kustomize_helm_charts_render_from_the_repository_only() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let remote = Remote::new(Transport::File);
    write_own_chart(&remote, "k/charts/own");
    remote.write(
        "k/kustomization.yaml",
        "namespace: shop\nhelmCharts:\n- name: own\n  releaseName: web\n  valuesInline:\n    replicaCount: 4\ncommonLabels:\n  team: shop\n",
    );
    remote.commit("helmCharts");
    let workdir = tempfile::tempdir().unwrap();
    let mut with_helm3 = helm(true, Vec::new());
    with_helm3.binary = helm3();
    let mut source = source(&remote, workdir.path(), with_helm3.clone());
    source.sync().unwrap();
    let snap = source.snapshot();
    assert!(snap.errors.is_empty(), "{:#?}", snap.errors);
    let deployment = snap
        .objects
        .values()
        .find(|o| o.key.kind == "Deployment")
        .unwrap();
    assert_eq!(deployment.key.resource_id(), "Deployment:shop:web");
    assert_eq!(deployment.object.value()["spec"]["replicas"], 4);
    assert_eq!(
        deployment.object.value()["metadata"]["labels"]["team"],
        "shop"
    );
    assert_eq!(deployment.source.path, "k/kustomization.yaml");
    // The chart inside the Kustomize directory is the kustomization's, not a release of its own.
    assert!(
        snap.objects
            .values()
            .all(|o| o.source.helm_release.is_none())
    );

    // Helm 4: Kustomize's refusal is explained.
    let workdir = tempfile::tempdir().unwrap();
    let mut source = self::source(&remote, workdir.path(), helm(true, Vec::new()));
    source.sync().unwrap();
    let error = source.snapshot().errors[0].to_string();
    assert!(error.contains("needs Helm 3"), "{error}");

    // A chart repository is refused with the line, before rendering.
    remote.write(
        "k/kustomization.yaml",
        format!("helmCharts:\n- name: own\n  releaseName: web\n  repo: http://127.0.0.1:{port}/charts\n  version: 0.1.0\n"),
    );
    remote.commit("a chart repository");
    let workdir = tempfile::tempdir().unwrap();
    let mut source = self::source(&remote, workdir.path(), with_helm3);
    source.sync().unwrap();
    let errors = &source.snapshot().errors;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].location(), "k/kustomization.yaml:4");
    assert!(
        errors[0].message.contains("never downloads charts"),
        "{}",
        errors[0]
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the chart repository was reached: {other:?}"),
    }
}

/// The cluster as discovery sees it: v1.20 with a custom resource and no `policy/v1`.
struct OldCluster;

impl driftguard_core::ScopeLookup for OldCluster {
    fn is_namespaced(&self, _group: &str, _kind: &str) -> Option<bool> {
        None
    }

    fn capabilities(&self) -> Option<driftguard_core::Capabilities> {
        Some(driftguard_core::Capabilities {
            kube_version: "v1.20.2".into(),
            api_versions: vec![
                "example.com/v1".into(),
                "example.com/v1/Widget".into(),
                "policy/v1beta1".into(),
                "policy/v1beta1/PodDisruptionBudget".into(),
                "v1".into(),
            ],
        })
    }
}

/// `.Capabilities` are the watched cluster's: its version, and its kinds for `Has` checks.
#[test]
fn charts_see_the_watched_clusters_capabilities() {
    let remote = Remote::new(Transport::File);
    remote.write(
        "caps/Chart.yaml",
        "apiVersion: v2\nname: caps\nversion: 0.1.0\n",
    );
    remote.write(
        "caps/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  widget: {{ .Capabilities.APIVersions.Has \"example.com/v1/Widget\" | quote }}\n  pdb: {{ if .Capabilities.APIVersions.Has \"policy/v1/PodDisruptionBudget\" }}policy/v1{{ else }}policy/v1beta1{{ end }}\n",
    );
    remote.commit("caps");
    let data = |scope: Option<std::sync::Arc<dyn driftguard_core::ScopeLookup>>| {
        let workdir = tempfile::tempdir().unwrap();
        let cfg = remote.config(workdir.path());
        let mut options = ReadOptions::from_config(&cfg, "default", hasher())
            .unwrap()
            .with_helm(helm(true, Vec::new()));
        if let Some(scope) = scope {
            options = options.with_scope_lookup(scope);
        }
        let mut source = GitSource::open_with(&cfg, options).unwrap();
        source.sync().unwrap();
        let snap = source.snapshot();
        assert!(snap.errors.is_empty(), "{:#?}", snap.errors);
        snap.objects.values().next().unwrap().object.value()["data"].clone()
    };
    let seen = data(Some(std::sync::Arc::new(OldCluster)));
    assert_eq!(seen["kube"], "v1.20.2");
    assert_eq!(seen["widget"], "true");
    assert_eq!(seen["pdb"], "policy/v1beta1");
    // Without a cluster, Helm's defaults: a newer version and no custom kinds.
    let offline = data(None);
    assert_ne!(offline["kube"], "v1.20.2");
    assert_eq!(offline["widget"], "false");
}

//! Cloning, following the branch, force-pushes, deleted branches, unreachable remotes.

use std::time::{Duration, Instant};

use driftguard_core::ResourceKey;
use driftguard_git::{Error, GitSource, SyncOutcome};

use crate::support::{DEPLOY, Remote, TRANSPORTS, Transport, configmap, hasher};

fn deploy_key() -> ResourceKey {
    ResourceKey::new("apps", "Deployment", "default", "web")
}

fn cm_key(name: &str) -> ResourceKey {
    ResourceKey::new("", "ConfigMap", "default", name)
}

#[test]
fn clone_new_commit_and_force_push() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        let workdir = tempfile::tempdir().unwrap();
        remote.write("a.yaml", DEPLOY);
        remote.write(
            "b.yaml",
            format!("{}---\n{}", configmap("one", "1"), configmap("two", "2")),
        );
        let first = remote.commit("first");

        let mut source =
            GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
        assert!(!source.snapshot().is_built());
        match source.sync().unwrap() {
            SyncOutcome::Updated {
                previous_commit,
                commit,
                diff,
            } => {
                assert_eq!(previous_commit, "");
                assert_eq!(commit, first);
                assert_eq!(diff.added.len(), 3, "{transport:?}");
            }
            other => panic!("{other:?}"),
        }
        let snap = source.snapshot();
        assert_eq!(snap.commit, first);
        assert_eq!(snap.objects.len(), 3);
        assert_eq!(snap.stats.files_listed, 2);
        assert_eq!(snap.stats.files_read, 2);
        assert_eq!(snap.stats.files_parsed, 2);
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
        let web = snap.get(&deploy_key()).unwrap();
        assert_eq!(web.api_version, "apps/v1");
        assert_eq!(web.source.source_path(), "a.yaml#0");
        assert_eq!(web.source.line, Some(1));
        assert_eq!(web.source.commit, first);
        assert_eq!(web.object.value()["metadata"]["namespace"], "default");
        assert!(web.object.value()["spec"]["replicas"].is_i64());
        assert!(web.hash.starts_with("sha256:"));
        let two = snap.get(&cm_key("two")).unwrap();
        assert_eq!(two.source.source_path(), "b.yaml#1");
        assert_eq!(two.source.line, Some(8));

        // Nothing moved: only the fetch is paid.
        assert_eq!(
            source.sync().unwrap(),
            SyncOutcome::Unchanged {
                commit: first.clone()
            }
        );

        // One file changes: only it is parsed again.
        remote.write(
            "b.yaml",
            format!("{}---\n{}", configmap("one", "1"), configmap("two", "22")),
        );
        let second = remote.commit("second");
        let SyncOutcome::Updated { diff, commit, .. } = source.sync().unwrap() else {
            panic!("expected an update");
        };
        assert_eq!(commit, second);
        assert_eq!(diff.changed, vec![cm_key("two")]);
        assert!(diff.added.is_empty() && diff.removed.is_empty());
        let stats = source.snapshot().stats;
        assert_eq!(
            (stats.files_read, stats.files_parsed, stats.files_reused),
            (1, 1, 1)
        );
        assert_eq!(source.counters().files_parsed, 3);

        // Rewritten history: drop the last commit, commit something else, force-push.
        remote.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
        remote.remove("a.yaml");
        remote.write("c.yaml", configmap("three", "3"));
        let rewritten = remote.commit("rewritten");
        let SyncOutcome::Updated { diff, commit, .. } = source.sync().unwrap() else {
            panic!("expected an update after the force-push");
        };
        assert_eq!(commit, rewritten);
        assert_eq!(diff.added, vec![cm_key("three")]);
        assert_eq!(diff.removed, vec![deploy_key()]);
        assert_eq!(diff.changed, vec![cm_key("two")]);
        assert_eq!(source.snapshot().objects.len(), 3);
        assert_eq!(
            source
                .snapshot()
                .get(&cm_key("two"))
                .unwrap()
                .object
                .value()["data"]["key"],
            "2"
        );
    }
}

#[test]
fn deleted_branch_keeps_the_last_snapshot_and_recreation_works() {
    for transport in TRANSPORTS {
        let remote = Remote::new(transport);
        let workdir = tempfile::tempdir().unwrap();
        remote.write("a.yaml", DEPLOY);
        remote.commit("first");
        remote.write("b.yaml", configmap("x", "1"));
        let on_release = remote.commit_to("release", "release");
        let mut cfg = remote.config(workdir.path());
        cfg.default_branch = "release".into();
        let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
        source.sync().unwrap();
        assert_eq!(source.snapshot().objects.len(), 2);

        remote.git(&["push", "--quiet", "origin", "--delete", "release"]);
        let err = source.sync().unwrap_err();
        assert!(matches!(err, Error::ReferenceNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("release"), "{err}");
        assert_eq!(source.snapshot().commit, on_release);
        assert_eq!(source.snapshot().objects.len(), 2);

        remote.remove("b.yaml");
        let recreated = remote.commit_to("release", "recreated");
        let SyncOutcome::Updated { commit, diff, .. } = source.sync().unwrap() else {
            panic!("expected an update after recreation ({transport:?})");
        };
        assert_eq!(commit, recreated);
        assert_eq!(diff.removed, vec![cm_key("x")]);
    }
}

#[test]
fn unreachable_remote_keeps_the_last_snapshot() {
    for transport in TRANSPORTS {
        let mut remote = Remote::new(transport);
        let workdir = tempfile::tempdir().unwrap();
        remote.write("a.yaml", DEPLOY);
        let first = remote.commit("first");
        let mut source =
            GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
        source.sync().unwrap();
        match transport {
            Transport::Daemon => remote.stop_daemon(),
            Transport::File => std::fs::rename(
                remote.base.path().join("origin.git"),
                remote.base.path().join("moved.git"),
            )
            .unwrap(),
        }
        let err = source.sync().unwrap_err();
        assert!(matches!(err, Error::Fetch { .. }), "{err:?}");
        assert_eq!(err.metric_label(), "fetch");
        assert_eq!(source.snapshot().commit, first);
        assert_eq!(source.snapshot().objects.len(), 1);
        assert_eq!(source.counters().fetch_failures, 1);
    }
}

#[test]
fn a_silent_server_times_out() {
    // Accepts connections and never answers: no libgit2 callback ever runs, so only the
    // wall-clock deadline can stop the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2) {
            held.push(stream);
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let workdir = tempfile::tempdir().unwrap();
    let cfg = driftguard_config::GitConfig {
        repository_url: format!("git://127.0.0.1:{port}/silent.git"),
        workdir: workdir.path().display().to_string(),
        clone_timeout: Duration::from_secs(1),
        pull_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
    let started = Instant::now();
    let err = source.sync().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The stuck fetch is still running: the next sync says so at once.
    let err = source.sync().unwrap_err();
    assert!(matches!(err, Error::FetchInProgress { .. }), "{err:?}");
    drop(holder);
}

#[test]
fn credentials_never_appear_in_errors() {
    let workdir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = driftguard_config::GitConfig {
        repository_url: format!("http://alice:s3cr3t-pw@127.0.0.1:{port}/repo.git"),
        workdir: workdir.path().display().to_string(),
        clone_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
    assert_eq!(
        source.display_url(),
        format!("http://127.0.0.1:{port}/repo.git")
    );
    let err = source.sync().unwrap_err();
    let mut chain = format!("{err} / {err:?}");
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!(" / {c}"));
        cause = c.source();
    }
    assert!(!chain.contains("s3cr3t-pw"), "{chain}");
    assert!(chain.contains(&format!("127.0.0.1:{port}")), "{chain}");
    assert!(!format!("{source:?}").contains("s3cr3t-pw"));
}

#[test]
fn follows_a_tag_or_a_commit_and_reuses_the_clone() {
    let remote = Remote::new(Transport::Daemon);
    let workdir = tempfile::tempdir().unwrap();
    remote.write("a.yaml", DEPLOY);
    let first = remote.commit("first");
    remote.git(&["tag", "-a", "v1", "-m", "v1"]);
    remote.git(&["push", "--quiet", "origin", "v1"]);
    remote.write("b.yaml", configmap("later", "x"));
    let second = remote.commit("second");

    let mut cfg = remote.config(workdir.path());
    cfg.default_branch = "v1".into();
    let mut by_tag = GitSource::open(&cfg, "default", hasher()).unwrap();
    by_tag.sync().unwrap();
    assert_eq!(by_tag.snapshot().commit, first);
    assert_eq!(by_tag.snapshot().objects.len(), 1);

    cfg.default_branch = first.clone();
    let mut by_sha = GitSource::open(&cfg, "default", hasher()).unwrap();
    // Same URL, same workdir: the clone is shared and the commit is already there.
    assert_eq!(by_sha.clone_dir(), by_tag.clone_dir());
    by_sha.sync().unwrap();
    assert_eq!(by_sha.snapshot().commit, first);
    assert_eq!(by_sha.counters().fetches, 0);

    cfg.default_branch = "main".into();
    let mut restarted = GitSource::open(&cfg, "default", hasher()).unwrap();
    restarted.sync().unwrap();
    assert_eq!(restarted.snapshot().commit, second);
    assert_eq!(restarted.snapshot().objects.len(), 2);

    cfg.default_branch = "no-such-branch".into();
    let mut missing = GitSource::open(&cfg, "default", hasher()).unwrap();
    assert!(matches!(
        missing.sync().unwrap_err(),
        Error::ReferenceNotFound { .. }
    ));
}

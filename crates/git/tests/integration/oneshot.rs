//! `check`'s one load of a URL: a shallow fetch into a temporary directory that is gone when
//! the load fails or its snapshot is dropped, and stale directories of killed runs removed at
//! start.

use std::path::Path;
use std::time::{Duration, SystemTime};

use driftguard_config::GitConfig;
use driftguard_git::{Error, ONESHOT_PREFIX, ReadOptions, fetch_into, load_once};
use git2::{ObjectType, Repository};

use crate::support::{DEPLOY, Remote, TRANSPORTS, Transport, configmap, hasher};

fn options(cfg: &GitConfig) -> ReadOptions {
    ReadOptions::from_config(cfg, "default", hasher()).unwrap()
}

/// The `driftguard-check-*` entries under `dir`.
pub(crate) fn oneshot_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(ONESHOT_PREFIX))
        .collect();
    names.sort();
    names
}

/// The only clone (`repo-*`) under `workdir`.
fn clone_in(workdir: &Path) -> Repository {
    let dirs: Vec<_> = std::fs::read_dir(workdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    Repository::open_bare(&dirs[0]).unwrap()
}

/// How many commit objects the clone holds.
fn commits_in(repo: &Repository) -> usize {
    let odb = repo.odb().unwrap();
    let mut ids = Vec::new();
    odb.foreach(|id| {
        ids.push(*id);
        true
    })
    .unwrap();
    ids.into_iter()
        .filter(|id| odb.read_header(*id).unwrap().1 == ObjectType::Commit)
        .count()
}

#[test]
fn oneshot_clone_dir_is_gone_after_success_and_after_errors() {
    for transport in TRANSPORTS {
        let mut remote = Remote::new(transport);
        remote.write("app.yaml", DEPLOY);
        let head = remote.commit("first");
        let parent = tempfile::tempdir().unwrap();
        let cfg = remote.config(parent.path());

        let snapshot = load_once(&cfg, options(&cfg)).unwrap();
        assert_eq!(snapshot.commit, head, "{transport:?}");
        assert_eq!(snapshot.objects.len(), 1);
        // The clone is read again for the lines of drifted fields while the snapshot lives.
        drop(snapshot);
        assert_eq!(
            oneshot_dirs(parent.path()),
            Vec::<String>::new(),
            "{transport:?}"
        );

        // A branch the remote does not have.
        let missing = GitConfig {
            default_branch: "nope".into(),
            ..cfg.clone()
        };
        let err = load_once(&missing, options(&missing)).unwrap_err();
        assert!(
            matches!(err, Error::ReferenceNotFound { .. }),
            "{transport:?}: {err}"
        );
        assert_eq!(
            oneshot_dirs(parent.path()),
            Vec::<String>::new(),
            "{transport:?}"
        );

        // An unreachable remote.
        let unreachable = match transport {
            Transport::Daemon => {
                remote.stop_daemon();
                cfg.clone()
            }
            Transport::File => GitConfig {
                repository_url: format!("file://{}/missing.git", parent.path().display()),
                ..cfg.clone()
            },
        };
        assert!(load_once(&unreachable, options(&unreachable)).is_err());
        assert_eq!(
            oneshot_dirs(parent.path()),
            Vec::<String>::new(),
            "{transport:?}"
        );
    }
}

#[test]
fn oneshot_fetches_a_branch_of_50_commits_with_depth_1() {
    let remote = Remote::new(Transport::Daemon);
    let mut commits = Vec::new();
    for i in 0..50 {
        remote.write("cm.yaml", configmap("settings", &i.to_string()));
        commits.push(remote.commit(&format!("commit {i}")));
    }
    let head = commits.last().unwrap().clone();

    let workdir = tempfile::tempdir().unwrap();
    let cfg = remote.config(workdir.path());
    let snapshot = fetch_into(&cfg, options(&cfg), workdir.path()).unwrap();
    assert_eq!(snapshot.commit, head);
    let cm = snapshot.objects.values().next().unwrap();
    assert_eq!(cm.object.value()["data"]["key"], "49");
    let clone = clone_in(workdir.path());
    assert!(clone.is_shallow(), "a depth-1 fetch leaves a shallow clone");
    assert_eq!(commits_in(&clone), 1, "only the tip commit is fetched");

    // A commit SHA may lie anywhere in the history: fetched in full, and read.
    let workdir = tempfile::tempdir().unwrap();
    let pinned = GitConfig {
        default_branch: commits[10].clone(),
        ..remote.config(workdir.path())
    };
    let snapshot = fetch_into(&pinned, options(&pinned), workdir.path()).unwrap();
    assert_eq!(snapshot.commit, commits[10]);
    assert_eq!(commits_in(&clone_in(workdir.path())), 50);
}

#[test]
fn oneshot_over_file_urls_fetches_in_full() {
    // libgit2's local transport refuses shallow fetches (while negotiating, before anything is
    // sent): the fetch is retried in full. (`load_once` reads a `file://` branch in place; a
    // fetch is what a commit SHA or an unusual URL gets.)
    let remote = Remote::new(Transport::File);
    for i in 0..3 {
        remote.write("cm.yaml", configmap("settings", &i.to_string()));
        remote.commit(&format!("commit {i}"));
    }
    let workdir = tempfile::tempdir().unwrap();
    let cfg = remote.config(workdir.path());
    let snapshot = fetch_into(&cfg, options(&cfg), workdir.path()).unwrap();
    assert_eq!(snapshot.objects.len(), 1);
    let clone = clone_in(workdir.path());
    assert!(!clone.is_shallow());
    assert_eq!(commits_in(&clone), 3);
}

#[test]
fn oneshot_reads_a_file_url_in_place_with_the_snapshot_a_fetch_builds() {
    // Three commits, a tag on the first, a broken file and a duplicate at the tip.
    let remote = Remote::new(Transport::File);
    remote.write("app.yaml", DEPLOY);
    let first = remote.commit("first");
    remote.git(&["tag", "-a", "v1", "-m", "v1"]);
    remote.git(&["push", "--quiet", "origin", "v1"]);
    for i in 0..2 {
        remote.write("cm.yaml", configmap("settings", &i.to_string()));
        remote.commit(&format!("commit {i}"));
    }
    remote.write("broken.yaml", "apiVersion: [\n");
    remote.write("again.yaml", configmap("settings", "other"));
    let head = remote.commit("broken and duplicated");

    for (reference, commit) in [("main", &head), ("v1", &first)] {
        let parent = tempfile::tempdir().unwrap();
        let cfg = GitConfig {
            default_branch: reference.into(),
            ..remote.config(parent.path())
        };
        let in_place = load_once(&cfg, options(&cfg)).unwrap();
        assert_eq!(
            oneshot_dirs(parent.path()),
            Vec::<String>::new(),
            "{reference}: nothing cloned"
        );
        let workdir = tempfile::tempdir().unwrap();
        let fetched = fetch_into(&cfg, options(&cfg), workdir.path()).unwrap();
        assert_eq!(&in_place.commit, commit, "{reference}");
        assert_eq!(in_place.commit, fetched.commit, "{reference}");
        assert_eq!(in_place.objects, fetched.objects, "{reference}");
        assert_eq!(in_place.errors, fetched.errors, "{reference}");
        assert_eq!(in_place.files, fetched.files, "{reference}");
        if reference == "main" {
            assert_eq!(
                in_place.errors.len(),
                2,
                "the broken file and the duplicate"
            );
        }
    }
    // A missing branch is the error a fetch gives.
    let parent = tempfile::tempdir().unwrap();
    let missing = GitConfig {
        default_branch: "nope".into(),
        ..remote.config(parent.path())
    };
    let err = load_once(&missing, options(&missing)).unwrap_err();
    assert!(matches!(err, Error::ReferenceNotFound { .. }), "{err}");
}

#[test]
fn oneshot_removes_stale_dirs_of_dead_runs_at_start() {
    let remote = Remote::new(Transport::File);
    remote.write("app.yaml", DEPLOY);
    remote.commit("first");
    let parent = tempfile::tempdir().unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let make = |name: &str, old: bool| {
        let dir = parent.path().join(name);
        std::fs::create_dir_all(dir.join("repo-x/objects")).unwrap();
        std::fs::write(dir.join("repo-x/HEAD"), "ref: refs/heads/main\n").unwrap();
        if old {
            std::fs::File::open(&dir)
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
    };
    // 999999999 is beyond any pid_max: that process is gone.
    let stale = format!("{ONESHOT_PREFIX}999999999-kill9");
    let young = format!("{ONESHOT_PREFIX}999999999-young");
    let alive = format!("{ONESHOT_PREFIX}{}-running", std::process::id());
    make(&stale, true);
    make(&young, false);
    make(&alive, true);
    make("unrelated-dir", true);

    let cfg = remote.config(parent.path());
    load_once(&cfg, options(&cfg)).unwrap();

    assert_eq!(
        oneshot_dirs(parent.path()),
        vec![alive, young],
        "only the old directory of a dead process is removed"
    );
    assert!(parent.path().join("unrelated-dir").is_dir());
}

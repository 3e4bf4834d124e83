//! A hostile repository (issue 14): each attack is a real repository served over `git daemon`
//! (or a working tree, for `check`'s PATH mode), and each is refused with an error naming the
//! budget or the file, the last good snapshot staying in force.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use driftguard_git::{Error, GitSource, Kustomize, ReadOptions, load_local};

use crate::support::{Remote, Transport, configmap, hasher};

/// Runs `git args…` in `dir` with `input` on stdin; returns trimmed stdout.
fn git_in(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes `content` as a blob; its id.
fn write_blob(dir: &Path, content: &[u8]) -> String {
    git_in(dir, &["hash-object", "-w", "--stdin"], content)
}

/// Writes a blob of `size` zero bytes, streamed (this process never holds it).
fn hash_zeros(dir: &Path, size: usize) -> String {
    let mut child = Command::new("git")
        .args(["hash-object", "-w", "--stdin"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A tree of `entries` (`mode type oid name`), written with `git mktree`.
fn mktree(dir: &Path, entries: &[String]) -> String {
    let mut input = entries.join("\n");
    input.push('\n');
    git_in(dir, &["mktree"], input.as_bytes())
}

/// Pushes a commit of `tree` (parent: the remote's current `main`) to `main`.
fn push_tree(remote: &Remote, tree: &str) -> String {
    let parent = remote.git(&["rev-parse", "HEAD"]);
    let commit = git_in(
        &remote.work,
        &["commit-tree", tree, "-p", &parent, "-m", "hostile"],
        b"",
    );
    remote.git(&[
        "push",
        "--quiet",
        "--force",
        "origin",
        &format!("{commit}:refs/heads/main"),
    ]);
    commit
}

/// A remote over `git daemon` with one good commit, and a source synced to it.
fn good_remote() -> (Remote, tempfile::TempDir, String) {
    let remote = Remote::new(Transport::Daemon);
    remote.write("good.yaml", configmap("good", "1"));
    let good = remote.commit("good");
    let workdir = tempfile::tempdir().unwrap();
    (remote, workdir, good)
}

fn assert_budget(error: &Error, budget: &str) {
    match error {
        Error::Budget {
            budget: b, path, ..
        } => {
            assert_eq!(*b, budget, "{error}");
            assert!(!path.is_empty(), "{error}");
            assert!(error.to_string().contains(budget), "{error}");
        }
        other => panic!("expected {budget}, got {other}"),
    }
}

fn real_kustomize_available() -> bool {
    Kustomize::Auto.resolve().is_ok()
}

#[test]
fn a_remote_base_is_refused_before_rendering_and_never_fetched() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let kustomization = format!("resources:\n- cm.yaml\n- http://127.0.0.1:{port}/base.yaml\n");

    // Served over git daemon (serve).
    let (remote, workdir, _) = good_remote();
    remote.write("k/kustomization.yaml", &kustomization);
    remote.write("k/cm.yaml", configmap("k", "1"));
    remote.commit("remote base");
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    let snap = source.snapshot();
    assert_eq!(snap.errors.len(), 1, "{:#?}", snap.errors);
    let error = &snap.errors[0];
    assert_eq!(error.path, "k/kustomization.yaml");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.message.contains("remote"), "{error}");

    // The same directory on disk (check's PATH mode).
    let options = ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        hasher(),
    )
    .unwrap();
    let local = load_local(&remote.work, &options, None).unwrap();
    assert_eq!(local.errors.len(), 1, "{:#?}", local.errors);
    assert_eq!(local.errors[0].location(), "k/kustomization.yaml:3");

    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the local listener was reached: {other:?}"),
    }
    // A remote base in a base reached through `../` is refused too, naming that file.
    let (remote, workdir, _) = good_remote();
    remote.write("base/kustomization.yaml", &kustomization);
    remote.write("base/cm.yaml", configmap("b", "1"));
    remote.write("overlay/kustomization.yaml", "resources:\n- ../base\n");
    remote.commit("remote base in a base");
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    let messages: Vec<String> = source
        .snapshot()
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("overlay/kustomization.yaml: base/kustomization.yaml:3:")),
        "{messages:#?}"
    );
    assert!(listener.accept().is_err());
}

const CANARY_VAR: &str = "DRIFTGUARD_GIT_TOKEN";
const CANARY: &str = "canary-4f1d9c-never-rendered";

/// Set in the child process that runs [`renderer_environment_child`] with the canaries.
const CHILD: &str = "DRIFTGUARD_TEST_CANARY_CHILD";

#[test]
fn the_renderer_never_sees_our_environment() {
    // The canaries must be in this process's environment, which a test may not change (no
    // unsafe code): the check runs in a child copy of this test binary started with them.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "hostile::renderer_environment_child",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env(CANARY_VAR, CANARY)
        .env("DRIFTGUARD_TEST_CANARY", CANARY)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert!(!text.contains(CANARY), "{text}");
}

#[test]
fn renderer_environment_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert_eq!(std::env::var(CANARY_VAR).unwrap(), CANARY);
    let (remote, workdir, _) = good_remote();
    remote.write(
        "k/kustomization.yaml",
        "configMapGenerator:\n- name: env\n  envs:\n  - vars.env\n",
    );
    remote.write(
        "k/vars.env",
        format!("{CANARY_VAR}\nDRIFTGUARD_TEST_CANARY\n"),
    );
    remote.commit("env file naming our variables");
    let cfg = remote.config(workdir.path());

    // The real kustomize: no canary in what it rendered.
    if real_kustomize_available() {
        let mut source = GitSource::open(&cfg, "default", hasher()).unwrap();
        source.sync().unwrap();
        let snap = source.snapshot();
        assert!(snap.errors.is_empty(), "{:#?}", snap.errors);
        assert_eq!(snap.objects.len(), 2);
        assert!(!format!("{snap:?}").contains(CANARY));
    } else {
        eprintln!("NOTE: kustomize/kubectl not installed; only the stand-in renderer ran");
    }

    // A renderer that reads the environment, as older kustomize builds do for bare keys.
    let mut options = ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    options.kustomize = Kustomize::Command {
        program: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".into(),
            format!(
                "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: leak\\ndata:\\n  \
                 token: \"%s\"\\n  canary: \"%s\"\\n  home: \"%s\"\\n' \"${CANARY_VAR}\" \
                 \"$DRIFTGUARD_TEST_CANARY\" \"$HOME\""
            ),
            "sh".into(),
        ],
    };
    let mut source = GitSource::open_with(&cfg, options).unwrap();
    source.sync().unwrap();
    let snap = source.snapshot();
    assert!(snap.errors.is_empty(), "{:#?}", snap.errors);
    let leak = snap
        .objects
        .values()
        .find(|o| o.key.name == "leak")
        .expect("the stand-in rendered");
    assert_eq!(leak.object.value()["data"]["token"], "");
    assert_eq!(leak.object.value()["data"]["canary"], "");
    let object = leak.object.value();
    let home = object["data"]["home"].as_str().unwrap();
    assert!(home.contains("driftguard-sandbox-"), "{home}");
    assert!(!format!("{snap:?}").contains(CANARY));
}

#[test]
fn paths_and_symlinks_leaving_the_repository_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("cm.yaml"), configmap("stolen", "secret")).unwrap();
    std::fs::write(
        outside.join("kustomization.yaml"),
        "resources:\n- cm.yaml\n",
    )
    .unwrap();
    let repo = base.path().join("repo");
    std::fs::create_dir_all(repo.join("up")).unwrap();
    std::fs::create_dir_all(repo.join("link")).unwrap();
    std::fs::write(repo.join("good.yaml"), configmap("good", "1")).unwrap();
    std::fs::write(
        repo.join("up/kustomization.yaml"),
        "resources:\n- ../../outside\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("link/kustomization.yaml"),
        "resources:\n- stolen.yaml\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("cm.yaml"), repo.join("link/stolen.yaml")).unwrap();

    let options = ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        hasher(),
    )
    .unwrap();
    let snap = load_local(&repo, &options, None).unwrap();
    let messages: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[0].starts_with(
            "link/kustomization.yaml: link/stolen.yaml: symbolic link pointing outside"
        ),
        "{messages:#?}"
    );
    assert!(
        messages[1].starts_with("up/kustomization.yaml:2:")
            && messages[1].contains("leaves the repository"),
        "{messages:#?}"
    );
    assert_eq!(snap.objects.len(), 1);
    assert!(snap.objects.keys().all(|k| k.name != "stolen"));

    // In Git, `../` above the repository root is refused the same way.
    let (remote, workdir, _) = good_remote();
    remote.write("up/kustomization.yaml", "resources:\n- ../../outside\n");
    remote.commit("escape");
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    let errors = &source.snapshot().errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location(), "up/kustomization.yaml:2");
}

#[test]
fn a_git_bomb_is_refused_by_the_tree_entry_budget() {
    let (remote, workdir, good) = good_remote();
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();

    // 10 levels of 10 copies of the same subtree: 10^10 directories from 11 objects (no file,
    // so only the tree-entry budget can stop the walk).
    let mut tree = git_in(
        &remote.work,
        &["hash-object", "-t", "tree", "-w", "--stdin"],
        b"",
    );
    for _ in 0..10 {
        tree = mktree(
            &remote.work,
            &(0..10)
                .map(|i| format!("040000 tree {tree}\td{i}"))
                .collect::<Vec<_>>(),
        );
    }
    push_tree(&remote, &tree);
    let started = std::time::Instant::now();
    let error = source.sync().unwrap_err();
    assert_budget(&error, "git.max_tree_entries");
    assert!(started.elapsed().as_secs() < 60);
    // The last good snapshot stays in force.
    assert_eq!(source.snapshot().commit, good);
    assert_eq!(source.snapshot().objects.len(), 1);
}

#[test]
fn files_over_the_files_budget_are_refused() {
    let (remote, workdir, good) = good_remote();
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    // 100 directories of the same 1,000 files: 100,000 files (default budget 20,000).
    let blob = write_blob(&remote.work, configmap("many", "1").as_bytes());
    let thousand = mktree(
        &remote.work,
        &(0..1000)
            .map(|i| format!("100644 blob {blob}\tcm{i:04}.yaml"))
            .collect::<Vec<_>>(),
    );
    let tree = mktree(
        &remote.work,
        &(0..100)
            .map(|i| format!("040000 tree {thousand}\td{i:03}"))
            .collect::<Vec<_>>(),
    );
    push_tree(&remote, &tree);
    let error = source.sync().unwrap_err();
    assert_budget(&error, "git.max_files");
    assert!(error.to_string().contains("20000"), "{error}");
    assert_eq!(source.snapshot().commit, good);
}

/// Peak resident memory of this process, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_large_zero_blob_is_refused_from_its_header() {
    const SIZE: usize = 200 << 20;
    let (remote, workdir, _) = good_remote();
    // Written straight into the object database: the work tree never holds 200 MB.
    let blob = hash_zeros(&remote.work, SIZE);
    let good_blob = write_blob(&remote.work, configmap("good", "1").as_bytes());
    let k = mktree(
        &remote.work,
        &[
            format!("100644 blob {good_blob}\tcm.yaml"),
            format!("100644 blob {blob}\tzero.bin"),
            format!(
                "100644 blob {}\tkustomization.yaml",
                write_blob(&remote.work, b"resources:\n- cm.yaml\n")
            ),
        ],
    );
    let tree = mktree(
        &remote.work,
        &[
            format!("100644 blob {good_blob}\tgood.yaml"),
            format!("100644 blob {blob}\tzero.yaml"),
            format!("040000 tree {k}\tk"),
        ],
    );
    push_tree(&remote, &tree);
    let before = peak_rss();
    let mut source = GitSource::open(&remote.config(workdir.path()), "default", hasher()).unwrap();
    source.sync().unwrap();
    let snap = source.snapshot();
    let messages: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("k/kustomization.yaml: k/zero.bin: ")
                && m.contains("git.max_file_size")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("zero.yaml") && m.contains("git.max_file_size")),
        "{messages:#?}"
    );
    assert_eq!(snap.objects.len(), 1);
    // Never inflated: the peak stays far below the blob's size.
    let peak = peak_rss();
    assert!(
        peak < before.max(1) + (SIZE as u64) / 2,
        "peak RSS grew from {before} to {peak}"
    );
}

/// The same blob read in place (`check --repo file://…`): pushed alone, it stays a loose object
/// in the bare repository, whose size is read as it is opened.
#[test]
fn a_large_loose_blob_read_in_place_is_refused_from_its_size() {
    const SIZE: usize = 200 << 20;
    let remote = Remote::new(Transport::File);
    remote.write("good.yaml", configmap("good", "1"));
    remote.commit("good");
    let blob = hash_zeros(&remote.work, SIZE);
    let good_blob = write_blob(&remote.work, configmap("good", "1").as_bytes());
    let tree = mktree(
        &remote.work,
        &[
            format!("100644 blob {good_blob}\tgood.yaml"),
            format!("100644 blob {blob}\tzero.yaml"),
        ],
    );
    let commit = push_tree(&remote, &tree);
    let workdir = tempfile::tempdir().unwrap();
    let cfg = remote.config(workdir.path());
    let origin = PathBuf::from(cfg.repository_url.trim_start_matches("file://"));
    assert!(
        origin
            .join("objects")
            .join(&blob[..2])
            .join(&blob[2..])
            .is_file(),
        "the blob is loose in {}",
        origin.display()
    );
    let before = peak_rss();
    let options = ReadOptions::from_config(&cfg, "default", hasher()).unwrap();
    let snap = driftguard_git::load_once(&cfg, options).unwrap();
    assert_eq!(snap.commit, commit);
    let messages: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].starts_with("zero.yaml") && messages[0].contains("git.max_file_size"),
        "{messages:#?}"
    );
    assert_eq!(snap.objects.len(), 1);
    // Read in place: nothing was cloned into the work directory.
    assert_eq!(std::fs::read_dir(workdir.path()).unwrap().count(), 0);
    let peak = peak_rss();
    assert!(
        peak < before.max(1) + (SIZE as u64) / 2,
        "peak RSS grew from {before} to {peak}"
    );
}

#[test]
fn a_kustomization_that_cannot_be_checked_is_not_rendered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    // A flow sequence closed below its key's indentation: go-yaml (Kustomize) reads it, and so
    // does our reader (it repairs the layout), so the URL inside is found and refused.
    std::fs::create_dir_all(root.join("quirk")).unwrap();
    std::fs::write(
        root.join("quirk/kustomization.yaml"),
        format!("resources: [\n  http://127.0.0.1:{port}/base.yaml\n]\nx:\n  q: [\n    1\n]\n"),
    )
    .unwrap();
    // A kustomization that is a link to another file of the repository is checked too.
    std::fs::create_dir_all(root.join("linked")).unwrap();
    std::fs::write(
        root.join("remote.txt"),
        format!("resources:\n- http://127.0.0.1:{port}/base.yaml\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        root.join("remote.txt"),
        root.join("linked/kustomization.yaml"),
    )
    .unwrap();
    // An alias bomb cannot be checked within the reader's budget: it is not rendered, and
    // reading it does not blow up memory.
    std::fs::create_dir_all(root.join("bomb")).unwrap();
    let mut bomb = format!("resources:\n- http://127.0.0.1:{port}/base.yaml\na: &a [");
    bomb.push_str(&vec!["x"; 10_000].join(", "));
    bomb.push_str("]\nb: [");
    bomb.push_str(&vec!["*a"; 20_000].join(", "));
    bomb.push_str("]\n");
    std::fs::write(root.join("bomb/kustomization.yaml"), bomb).unwrap();
    let before = peak_rss();
    std::fs::create_dir_all(root.join("top")).unwrap();
    std::fs::write(
        root.join("top/kustomization.yaml"),
        "resources:\n- ../linked\n",
    )
    .unwrap();
    let options = ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        hasher(),
    )
    .unwrap();
    let snap = load_local(root, &options, None).unwrap();
    let messages: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
    assert!(
        messages.iter().any(|m| m.starts_with(
            "top/kustomization.yaml: linked/kustomization.yaml:2: remote resources entry"
        )),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m
            .starts_with("quirk/kustomization.yaml:2: remote resources entry \"http://127.0.0.1:")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("bomb/kustomization.yaml")
                && m.contains("cannot be checked before rendering")
                && m.contains("nodes")),
        "{messages:#?}"
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 200 << 20,
        "reading the bomb grew the peak RSS by {grown} bytes"
    );
    assert!(listener.accept().is_err());
}

#[test]
fn an_alias_bomb_behind_a_layout_only_kubectl_reads_is_refused_by_the_node_budget() {
    // The file of the issue: `s: {q: [1]}` with its bracket at column 0, then 100,000 items
    // aliased 200,000 times. The lenient fallback that once read it took 2.3 GB.
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("good.yaml"), configmap("good", "1")).unwrap();
    let mut bomb = String::from("s:\n  q: [\n    1\n]\n");
    bomb.push_str("a: &a [");
    bomb.push_str(&vec!["x"; 100_000].join(", "));
    bomb.push_str("]\nb: [");
    bomb.push_str(&vec!["*a"; 200_000].join(", "));
    bomb.push_str("]\n");
    std::fs::write(repo.path().join("bomb.yaml"), bomb).unwrap();
    let options = ReadOptions::from_config(
        &driftguard_config::GitConfig::default(),
        "default",
        hasher(),
    )
    .unwrap();
    let before = peak_rss();
    let snap = load_local(repo.path(), &options, None).unwrap();
    let grown = peak_rss().saturating_sub(before);
    let messages: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec!["bomb.yaml:6: more than 500000 nodes (alias expansion?)".to_owned()]
    );
    assert_eq!(snap.objects.len(), 1);
    assert!(grown < 200 << 20, "peak RSS grew by {grown} bytes");
}

//! Real Git repositories for the tests, driven through the `git` CLI, and a `git daemon` on
//! loopback for a real network protocol.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftguard_config::GitConfig;
use driftguard_core::SecretHasher;
use tempfile::TempDir;

/// How the test reaches the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `file://`
    File,
    /// `git://127.0.0.1:<port>/` served by `git daemon`.
    Daemon,
}

pub const TRANSPORTS: [Transport; 2] = [Transport::File, Transport::Daemon];

/// A bare "origin" repository, a working clone to commit from, and (optionally) a daemon.
pub struct Remote {
    pub base: TempDir,
    pub work: PathBuf,
    daemon: Option<Daemon>,
    transport: Transport,
}

struct Daemon {
    child: Child,
    port: u16,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Remote {
    pub fn new(transport: Transport) -> Self {
        let base = tempfile::tempdir().unwrap();
        let origin = base.path().join("origin.git");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "--quiet", "--bare", "-b", "main"]);
        let work = base.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        let daemon = (transport == Transport::Daemon).then(|| Daemon::start(base.path()));
        Self {
            base,
            work,
            daemon,
            transport,
        }
    }

    pub fn url(&self) -> String {
        match (&self.daemon, self.transport) {
            (Some(d), _) => format!("git://127.0.0.1:{}/origin.git", d.port),
            _ => format!("file://{}", self.base.path().join("origin.git").display()),
        }
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let target = self.work.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, content).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.work.join(path)).unwrap();
    }

    /// Commits everything and pushes (forced) to `main`; returns the commit SHA.
    pub fn commit(&self, message: &str) -> String {
        self.commit_to("main", message)
    }

    pub fn commit_to(&self, branch: &str, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }

    /// Stops the daemon (the remote becomes unreachable over git://).
    pub fn stop_daemon(&mut self) {
        self.daemon = None;
    }

    pub fn config(&self, workdir: &Path) -> GitConfig {
        GitConfig {
            repository_url: self.url(),
            default_branch: "main".into(),
            workdir: workdir.display().to_string(),
            clone_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(30),
            ..GitConfig::default()
        }
    }
}

impl Daemon {
    fn start(base: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Run `git-daemon` itself: `git daemon` is a wrapper process, and killing it would
        // leave the real daemon behind.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--export-all",
                &format!("--base-path={}", base.display()),
                &format!("--port={port}"),
                "--listen=127.0.0.1",
                "--reuseaddr",
                "--informative-errors",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "git daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only the daemon this test started, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hasher() -> SecretHasher {
    SecretHasher::new(vec![7u8; 32])
}

pub const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
";

pub fn configmap(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value:?}\n")
}

//! Authenticated Git servers, for the https and ssh paths users take:
//!
//! - [`HttpsPeer`]: `git http-backend` behind HTTP basic authentication and TLS
//!   (`scripts/git-https-peer.py`), with a throwaway self-signed certificate;
//! - [`SshPeer`]: OpenSSH's `sshd` accepting one throwaway key, with a throwaway host key.
//!
//! Both serve the bare remote of a [`TestRepo`] on a free loopback port and stop when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result, bail};

use crate::git::TestRepo;
use crate::process::{path_str, run, spawn_listening};

/// Where Debian's `openssh-server` puts the daemon (`scripts/test.sh` installs it).
const SSHD: &str = "/usr/sbin/sshd";

/// A smart-HTTPS Git server for one repository, needing `user` and `token`.
pub struct HttpsPeer {
    child: Child,
    _dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/remote.git` (no credentials in it).
    pub url: String,
    /// The server's self-signed certificate: what `SSL_CERT_FILE` must name for it to be trusted.
    pub ca_file: PathBuf,
}

/// An SSH Git server for one repository, accepting one key.
pub struct SshPeer {
    child: Child,
    dir: tempfile::TempDir,
    /// `ssh://USER@127.0.0.1:PORT/…/remote.git`.
    pub url: String,
    /// The private key the server accepts (no passphrase).
    pub key: PathBuf,
}

// === impl HttpsPeer ===

impl HttpsPeer {
    /// Serves `repo` over HTTPS, accepting only basic authentication as `user`/`token`.
    pub fn start(repo: &TestRepo, user: &str, token: &str) -> Result<HttpsPeer> {
        let dir = tempfile::Builder::new()
            .prefix("driftguard-https-")
            .tempdir()
            .context("could not create a directory for the HTTPS peer")?;
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        run(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            None,
        )
        .context("could not make the HTTPS peer's certificate")?;
        let script = crate::repo_root().join("scripts/git-https-peer.py");
        let root = repo
            .bare_path()
            .parent()
            .map(Path::to_path_buf)
            .context("the bare repository has no parent directory")?;
        let log = dir.path().join("server.log");
        let (child, port) = spawn_listening("the HTTPS Git peer", &log, |port| {
            let mut command = Command::new("python3");
            command
                .arg(&script)
                .arg("--root")
                .arg(&root)
                .args([
                    "--port",
                    &port.to_string(),
                    "--user",
                    user,
                    "--token",
                    token,
                ])
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key);
            command
        })?;
        Ok(HttpsPeer {
            child,
            _dir: dir,
            url: format!("https://127.0.0.1:{port}/remote.git"),
            ca_file: cert,
        })
    }
}

impl Drop for HttpsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === impl SshPeer ===

impl SshPeer {
    /// Serves `repo` over SSH to the current user, accepting only [`SshPeer::key`].
    pub fn start(repo: &TestRepo) -> Result<SshPeer> {
        if !Path::new(SSHD).is_file() {
            bail!("{SSHD} is missing: scripts/test.sh installs Debian's openssh-server");
        }
        let dir = tempfile::Builder::new()
            .prefix("driftguard-ssh-")
            .tempdir()
            .context("could not create a directory for the SSH peer")?;
        let host_key = dir.path().join("host_key");
        let key = dir.path().join("client_key");
        for file in [&host_key, &key] {
            run(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(file),
                None,
            )?;
        }
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized)
            .context("could not write authorized_keys")?;
        let user = run(Command::new("id").arg("-un"), None)?.trim().to_owned();
        let root = run(Command::new("id").arg("-u"), None)?.trim() == "0";
        if root {
            // sshd's privilege separation directory (absent where sshd never ran).
            std::fs::create_dir_all("/run/sshd").context("could not create /run/sshd")?;
        }
        let config = dir.path().join("sshd_config");
        let log = dir.path().join("sshd.log");
        let (child, port) = spawn_listening("sshd", &log, |port| {
            let text = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
                host_key.display(),
                authorized.display(),
                dir.path().join("sshd.pid").display(),
            );
            // A failed write shows as sshd refusing its configuration.
            let _ = std::fs::write(&config, text);
            let mut command = Command::new(SSHD);
            command.args(["-D", "-e", "-f"]).arg(&config);
            command
        })?;
        let peer = SshPeer {
            child,
            url: format!(
                "ssh://{user}@127.0.0.1:{port}{}",
                path_str(&repo.bare_path())?
            ),
            key,
            dir,
        };
        let host = std::fs::read_to_string(host_key.with_extension("pub"))
            .context("could not read the host key")?;
        let mut fields = host.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default()
        );
        let ssh_dir = peer.home().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).context("could not create .ssh")?;
        std::fs::write(ssh_dir.join("known_hosts"), line).context("could not write known_hosts")?;
        Ok(peer)
    }

    /// A home directory whose `.ssh/known_hosts` holds the server's host key (what `HOME` must
    /// be for the host to be known).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

impl Drop for SshPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

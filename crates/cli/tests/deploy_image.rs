//! The container image recipe (`Dockerfile`), checked without a Docker engine (none exists on
//! these machines, so the image itself is never built or run here):
//!
//! - every shared library the `driftguard` binary loads (`ldd`) is provided by the runtime base
//!   image or copied into it by the Dockerfile — the expected list, with the reason, is below;
//! - the Dockerfile's user, paths, entrypoint and command match the Kubernetes manifests and the
//!   configuration the image and the ConfigMap carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use driftguard_test_support::repo_root;
use serde_json::Value;

/// The runtime base image of the Dockerfile's last stage.
const RUNTIME_BASE: &str = "gcr.io/distroless/cc-debian12:nonroot";

/// The runtime user (distroless `nonroot`).
const RUNTIME_UID: u64 = 65532;

/// Where each library the binary needs comes from in the image.
enum Source {
    /// Part of the runtime base image (Debian 12 package named).
    Base(&'static str),
    /// Copied from the Debian 12 builder by the Dockerfile (Debian 12 package named).
    Copied(&'static str),
}

/// Every shared library the binary may load, by soname.
///
/// Why this list: the Rust standard library needs glibc (`libc`, `libm`, the loader) and
/// `libgcc_s` (unwinding) — the distroless `cc` image exists for exactly these;
/// `libgit2`/`libssh2` link zlib dynamically, and zlib1g is not part of what distroless promises,
/// so the Dockerfile copies `libz.so.1` from the Debian 12 builder. libgit2, libssh2, OpenSSL
/// (built from source: `git2`'s `vendored-openssl`) and SQLite are compiled into the binary, so
/// neither `libssl.so.3` nor `libcrypto.so.3` may appear.
fn expected_libraries() -> BTreeMap<&'static str, Source> {
    BTreeMap::from([
        ("libc.so.6", Source::Base("libc6")),
        ("libm.so.6", Source::Base("libc6")),
        ("libdl.so.2", Source::Base("libc6")),
        ("libpthread.so.0", Source::Base("libc6")),
        ("librt.so.1", Source::Base("libc6")),
        ("ld-linux-x86-64.so.2", Source::Base("libc6")),
        ("ld-linux-aarch64.so.1", Source::Base("libc6")),
        ("libgcc_s.so.1", Source::Base("libgcc-s1")),
        ("libz.so.1", Source::Copied("zlib1g")),
    ])
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile"))
        .expect("Dockerfile at the repository root")
}

/// The binaries to inspect: this build's, and the release one when it was built beside it.
fn binaries() -> Vec<PathBuf> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_driftguard"));
    let mut out = vec![built.clone()];
    if let Some(profile_dir) = built.parent()
        && let Some(target) = profile_dir.parent()
    {
        let release = target.join("release").join("driftguard");
        if release.is_file() && release != built {
            out.push(release);
        }
    }
    out
}

/// (soname, resolved path) of every library `ldd` lists.
fn ldd(binary: &Path) -> Vec<(String, Option<String>)> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd (Debian's libc-bin) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ldd {} failed: {text}",
        binary.display()
    );
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("linux-vdso") || line.is_empty() {
            continue;
        }
        assert!(!line.contains("not found"), "{}: {line}", binary.display());
        let (name, path) = match line.split_once(" => ") {
            Some((name, rest)) => (name.trim(), rest.split_whitespace().next()),
            None => (
                line.split_whitespace().next().unwrap_or(line),
                line.split_whitespace().next(),
            ),
        };
        let soname = Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_owned());
        libs.push((soname, path.map(str::to_owned)));
    }
    libs
}

/// The Debian package owning a file (`dpkg -S`), resolving the /lib → /usr/lib merge.
fn debian_package(path: &str) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    for candidate in [real.to_string_lossy().into_owned(), path.to_owned()] {
        let out = Command::new("dpkg")
            .args(["-S", &candidate])
            .output()
            .ok()?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let package = text.split(':').next()?.trim().to_owned();
            return Some(package);
        }
    }
    None
}

/// The last `FROM` line's image.
fn runtime_from(dockerfile: &str) -> String {
    let args: BTreeMap<String, String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let image = from.split_whitespace().nth(1).unwrap();
    if let Some(var) = image.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        args.get(var).cloned().unwrap_or_else(|| image.to_owned())
    } else {
        image.to_owned()
    }
}

#[test]
fn deploy_image_runtime_libraries_come_with_the_runtime_base() {
    let dockerfile = dockerfile();
    assert_eq!(
        runtime_from(&dockerfile),
        RUNTIME_BASE,
        "the runtime base changed: update this test's list"
    );
    let expected = expected_libraries();
    for binary in binaries() {
        let libs = ldd(&binary);
        assert!(!libs.is_empty(), "{}: ldd listed nothing", binary.display());
        for (soname, path) in libs {
            let source = expected.get(soname.as_str()).unwrap_or_else(|| {
                panic!(
                    "{} needs {soname} ({path:?}), which the runtime image ({RUNTIME_BASE}) is not known to provide: add it to the Dockerfile and to expected_libraries()",
                    binary.display()
                )
            });
            let package = match source {
                Source::Base(p) => p,
                Source::Copied(p) => {
                    assert!(
                        dockerfile.contains(&soname),
                        "the Dockerfile must copy {soname} into the runtime image"
                    );
                    p
                }
            };
            // The build machine is Debian 12 like the builder and the base: the library really
            // comes from that package.
            if let Some(path) = path.as_deref()
                && let Some(owner) = debian_package(path)
            {
                assert_eq!(
                    &owner, package,
                    "{soname} ({path}) belongs to {owner}, expected {package}"
                );
            }
        }
    }
}

fn parse(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    driftguard_git::manifest::parse_documents(&text, &driftguard_git::manifest::Limits::default())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// The JSON array of an exec-form instruction (`ENTRYPOINT ["…"]`).
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    let json = line[instruction.len()..].trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{instruction} is not exec form: {e}"))
}

fn load_config(path: &Path) -> driftguard_config::Config {
    let options = driftguard_config::LoadOptions {
        file: Some(path.to_owned()),
        search_dir: None,
        env: Vec::new(),
        flags: Vec::new(),
    };
    driftguard_config::load(&options)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
        .config
}

#[test]
fn deploy_image_dockerfile_matches_the_manifests() {
    let dockerfile = dockerfile();
    let root = repo_root();

    // The build: the pinned toolchain, the one binary.
    let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml")).unwrap();
    let rust_version = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .expect("channel in rust-toolchain.toml");
    let minor: String = rust_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    assert!(
        dockerfile.contains(&format!("rust:{minor}-bookworm")),
        "the builder must use the pinned toolchain {rust_version} on Debian 12 (bookworm, like the runtime base)"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p driftguard"));

    // The runtime: non-root, entrypoint and command.
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER")
        .trim_start_matches("USER ")
        .trim()
        .to_owned();
    assert_eq!(user, format!("{RUNTIME_UID}:{RUNTIME_UID}"));
    assert_eq!(exec_form(&dockerfile, "ENTRYPOINT"), ["driftguard"]);
    let cmd = exec_form(&dockerfile, "CMD");
    assert_eq!(
        cmd,
        ["serve", "--config", "/etc/driftguard/driftguard.yaml"]
    );
    // Everything the runtime needs on PATH or on disk is copied in.
    for needle in [
        "/rootfs/usr/local/bin/driftguard",
        "/rootfs/usr/local/bin/kustomize",
        "/rootfs/etc/driftguard/driftguard.yaml",
        "install -d -o 65532 -g 65532 -m 0750 /rootfs/var/lib/driftguard /rootfs/var/lib/driftguard/git",
        "COPY --from=builder /rootfs/ /",
    ] {
        assert!(
            dockerfile.contains(needle),
            "the Dockerfile lacks `{needle}`"
        );
    }
    // The image's default configuration loads and writes only under the data directory.
    let image_config = load_config(&root.join("deploy/image/driftguard.yaml"));
    assert!(
        image_config
            .database
            .path
            .starts_with("/var/lib/driftguard/")
    );
    assert!(image_config.git.workdir.starts_with("/var/lib/driftguard/"));
    assert_eq!(image_config.server.port, 8080);
    assert!(dockerfile.contains("EXPOSE 8080"));
    // The files the build context must hold are not ignored.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for line in ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        for needed in [
            "deploy",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
            "rust-toolchain.toml",
            ".git",
        ] {
            assert_ne!(
                line.trim_end_matches('/'),
                needed,
                ".dockerignore excludes {needed}"
            );
        }
    }

    // The Deployment runs the image the way the Dockerfile expects.
    let deployment = parse(&root.join("deploy/base/deployment.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], RUNTIME_UID);
    assert_eq!(pod["securityContext"]["runAsGroup"], RUNTIME_UID);
    assert_eq!(pod["securityContext"]["fsGroup"], RUNTIME_UID);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["runAsUser"], RUNTIME_UID);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["args"],
        serde_json::json!(cmd),
        "the Deployment runs the image's CMD"
    );
    let mounts: BTreeMap<String, String> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Every path the image writes to is a volume (read-only root filesystem); the configuration
    // directory is the ConfigMap.
    for (path, volume) in [
        ("/var/lib/driftguard", "data"),
        ("/tmp", "tmp"),
        ("/etc/driftguard", "config"),
    ] {
        assert_eq!(
            mounts.get(path).map(String::as_str),
            Some(volume),
            "mount {path}"
        );
    }
    assert_eq!(
        container["ports"][0]["containerPort"],
        image_config.server.port
    );

    // The ConfigMap's configuration agrees with the image's on every path.
    let base_config = load_config(&root.join("deploy/base/driftguard.yaml"));
    assert_eq!(base_config.database.path, image_config.database.path);
    assert_eq!(base_config.git.workdir, image_config.git.workdir);
    assert_eq!(base_config.server.port, image_config.server.port);
}

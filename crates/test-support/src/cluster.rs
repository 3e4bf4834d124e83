//! The local Kubernetes control plane: a real etcd and kube-apiserver started by
//! `scripts/control-plane.sh`.
//!
//! Each test takes a fresh namespace from the shared plane ([`TestCluster::namespace`]) and
//! changes objects in it with the real `kubectl`, so field managers, defaults and
//! `managedFields` are exactly what users produce. Namespaces are never deleted: without a
//! controller-manager they would stay `Terminating` anyway. The plane has no scheduler or
//! controllers: Deployments get no ReplicaSets or Pods and no status.
//!
//! Tests that stop the API server use their own [`PrivateCluster`], never the shared one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process::{path_str, run, run_script};

/// The message of every failure caused by a missing `DRIFTGUARD_TEST_KUBECONFIG`.
pub const NOT_RUNNING: &str = "the local control plane is not running: run \
    `scripts/control-plane.sh up` and export DRIFTGUARD_TEST_KUBECONFIG (or run scripts/test.sh)";

/// Bound on every kubectl call, so a dead API server fails a test instead of hanging it.
const REQUEST_TIMEOUT: &str = "--request-timeout=60s";

/// A control plane reachable through a kubeconfig file.
#[derive(Debug, Clone)]
pub struct TestCluster {
    kubeconfig: PathBuf,
}

/// A fresh namespace on a [`TestCluster`], with `kubectl` helpers scoped to it.
///
/// Resources are named the kubectl way: `deployment/nginx-app`, `configmap/app-config`.
#[derive(Debug, Clone)]
pub struct TestNamespace {
    name: String,
    kubeconfig: PathBuf,
}

/// The patch flavours of `kubectl patch --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `--type strategic`: strategic merge patch (kubectl's default; lists merged by key).
    Strategic,
    /// `--type merge`: JSON merge patch (RFC 7386; lists replaced whole).
    Merge,
    /// `--type json`: JSON patch (RFC 6902), a list of operations.
    Json,
}

/// A control plane of its own (fresh etcd, the cached kube-apiserver) in a temporary state
/// directory, for tests that stop or restart the API server. Stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    state: tempfile::TempDir,
    cluster: TestCluster,
}

// === impl TestCluster ===

impl TestCluster {
    /// The shared plane named by `DRIFTGUARD_TEST_KUBECONFIG`.
    ///
    /// # Panics
    ///
    /// When the variable is unset or names no file, with [`NOT_RUNNING`]: tests are never
    /// silently skipped.
    pub fn shared() -> TestCluster {
        match TestCluster::try_shared() {
            Ok(cluster) => cluster,
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Like [`TestCluster::shared`], returning the problem instead of panicking.
    pub fn try_shared() -> Result<TestCluster> {
        let path = match std::env::var_os("DRIFTGUARD_TEST_KUBECONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => bail!("{NOT_RUNNING}"),
        };
        if !path.is_file() {
            bail!(
                "{NOT_RUNNING} (DRIFTGUARD_TEST_KUBECONFIG names {}, which does not exist)",
                path.display()
            );
        }
        Ok(TestCluster::from_kubeconfig(path))
    }

    /// A plane reachable through the given kubeconfig file.
    pub fn from_kubeconfig(kubeconfig: impl Into<PathBuf>) -> TestCluster {
        TestCluster {
            kubeconfig: kubeconfig.into(),
        }
    }

    /// The kubeconfig file (cluster-admin token; the plane's CA, which signed the API server's
    /// certificate for `127.0.0.1`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Creates a namespace named `prefix` plus a random suffix, and returns it.
    pub fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let name = crate::unique_name(prefix);
        self.kubectl(&["create", "namespace", &name])
            .with_context(|| format!("could not create namespace {name}"))?;
        Ok(TestNamespace {
            name,
            kubeconfig: self.kubeconfig.clone(),
        })
    }

    /// Runs `kubectl --kubeconfig <this plane> <args>` (no namespace) and returns its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&mut self.command(None, args)?, None)
    }

    /// Like [`TestCluster::kubectl`], with `stdin` fed to the command (for `-f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        run(&mut self.command(None, args)?, Some(stdin))
    }

    fn command(&self, namespace: Option<&str>, args: &[&str]) -> Result<Command> {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(path_str(&self.kubeconfig)?)
            .arg(REQUEST_TIMEOUT);
        if let Some(namespace) = namespace {
            command.arg("--namespace").arg(namespace);
        }
        command.args(args);
        // The caller's own cluster settings must never leak into a test.
        command.env_remove("KUBECONFIG");
        Ok(command)
    }
}

// === impl TestNamespace ===

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kubeconfig file of the plane this namespace lives on.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The plane this namespace lives on.
    pub fn cluster(&self) -> TestCluster {
        TestCluster::from_kubeconfig(self.kubeconfig.clone())
    }

    /// Runs `kubectl --kubeconfig … --namespace <ns> <args>` and returns its stdout; a failure
    /// carries kubectl's stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&mut self.cluster().command(Some(&self.name), args)?, None)
    }

    /// Like [`TestNamespace::kubectl`], with `stdin` fed to the command (for `-f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        run(
            &mut self.cluster().command(Some(&self.name), args)?,
            Some(stdin),
        )
    }

    /// `kubectl apply -f -` (client-side apply, manager `kubectl-client-side-apply`).
    ///
    /// Documents without `metadata.namespace` land in this namespace; a document naming another
    /// namespace is refused by kubectl.
    pub fn apply_yaml(&self, yaml: &str) -> Result<String> {
        self.kubectl_with_stdin(&["apply", "-f", "-"], yaml)
    }

    /// `kubectl apply --field-manager <manager> -f -`, to act as a named applier.
    pub fn apply_yaml_as(&self, yaml: &str, field_manager: &str) -> Result<String> {
        self.kubectl_with_stdin(
            &["apply", "--field-manager", field_manager, "-f", "-"],
            yaml,
        )
    }

    /// `kubectl apply -f <path>` (a file or a directory).
    pub fn apply_file(&self, path: impl AsRef<Path>) -> Result<String> {
        self.kubectl(&["apply", "-f", path_str(path.as_ref())?])
    }

    /// `kubectl replace -f -`: the whole object replaced by `yaml`.
    pub fn replace_yaml(&self, yaml: &str) -> Result<String> {
        self.kubectl_with_stdin(&["replace", "-f", "-"], yaml)
    }

    /// A `POST` of `object` to its collection in this namespace with `?fieldManager=<manager>`,
    /// the way a client other than kubectl creates objects (an operator through client-go,
    /// Helm 3): `kubectl create --raw <collection>?fieldManager=<manager> -f -`. `plural` is the
    /// resource's plural name (`deployments`); the API group and version come from
    /// `object.apiVersion`. Returns the stored object.
    pub fn create_raw(&self, plural: &str, object: &Value, field_manager: &str) -> Result<Value> {
        let api_version = object["apiVersion"]
            .as_str()
            .context("the object has no apiVersion")?;
        let root = if api_version.contains('/') {
            "apis"
        } else {
            "api"
        };
        let uri = format!(
            "/{root}/{api_version}/namespaces/{}/{plural}?fieldManager={field_manager}",
            self.name
        );
        let body = serde_json::to_string(object).context("the object as JSON")?;
        let out = self
            .cluster()
            .kubectl_with_stdin(&["create", "--raw", &uri, "-f", "-"], &body)?;
        serde_json::from_str(&out).with_context(|| format!("POST {uri} answered no JSON: {out}"))
    }

    /// `kubectl scale <resource> --replicas=<replicas>` (through the `scale` subresource).
    pub fn scale(&self, resource: &str, replicas: u32) -> Result<String> {
        self.kubectl(&["scale", resource, &format!("--replicas={replicas}")])
    }

    /// `kubectl set image <resource> <container>=<image>` (manager `kubectl-set`).
    pub fn set_image(&self, resource: &str, container: &str, image: &str) -> Result<String> {
        self.kubectl(&["set", "image", resource, &format!("{container}={image}")])
    }

    /// `kubectl set env <resource> NAME=VALUE…` (manager `kubectl-set`); adds or changes
    /// variables in every container.
    pub fn set_env(&self, resource: &str, vars: &[(&str, &str)]) -> Result<String> {
        let pairs: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["set", "env", resource];
        args.extend(pairs.iter().map(String::as_str));
        self.kubectl(&args)
    }

    /// `kubectl set env <resource> NAME-`: removes a variable from every container.
    pub fn unset_env(&self, resource: &str, name: &str) -> Result<String> {
        self.kubectl(&["set", "env", resource, &format!("{name}-")])
    }

    /// `kubectl patch <resource> --type <type> -p <patch> [--field-manager <manager>]`
    /// (kubectl's default manager is `kubectl-patch`).
    pub fn patch(
        &self,
        resource: &str,
        patch_type: PatchType,
        patch: &str,
        field_manager: Option<&str>,
    ) -> Result<String> {
        let mut args = vec![
            "patch",
            resource,
            "--type",
            patch_type.as_str(),
            "-p",
            patch,
        ];
        if let Some(manager) = field_manager {
            args.extend(["--field-manager", manager]);
        }
        self.kubectl(&args)
    }

    /// `kubectl label --overwrite <resource> key=value` (`key-` removes the label).
    pub fn label(&self, resource: &str, label: &str) -> Result<String> {
        self.kubectl(&["label", "--overwrite", resource, label])
    }

    /// `kubectl annotate --overwrite <resource> key=value` (`key-` removes the annotation).
    pub fn annotate(&self, resource: &str, annotation: &str) -> Result<String> {
        self.kubectl(&["annotate", "--overwrite", resource, annotation])
    }

    /// `kubectl delete <resource>`, waiting (at most 60 s) until it is gone.
    pub fn delete(&self, resource: &str) -> Result<String> {
        self.kubectl(&["delete", resource, "--timeout=60s"])
    }

    /// Whether `<resource>` exists (`kubectl get --ignore-not-found`).
    pub fn exists(&self, resource: &str) -> Result<bool> {
        let out = self.kubectl(&["get", resource, "--ignore-not-found", "-o", "name"])?;
        Ok(!out.trim().is_empty())
    }

    /// The live object as JSON, `metadata.managedFields` included.
    pub fn get_json(&self, resource: &str) -> Result<Value> {
        let out = match self.kubectl(&["get", resource, "-o", "json", "--show-managed-fields"]) {
            Ok(out) => out,
            // kubectl 1.20 (Debian's kubernetes-client) has no such flag and always shows them.
            Err(error) if format!("{error:#}").contains("unknown flag: --show-managed-fields") => {
                self.kubectl(&["get", resource, "-o", "json"])?
            }
            Err(error) => return Err(error),
        };
        serde_json::from_str(&out)
            .with_context(|| format!("kubectl get {resource} -o json printed no JSON"))
    }
}

// === impl PatchType ===

impl PatchType {
    /// The value of `kubectl patch --type`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchType::Strategic => "strategic",
            PatchType::Merge => "merge",
            PatchType::Json => "json",
        }
    }
}

// === impl PrivateCluster ===

impl PrivateCluster {
    /// Starts a private plane: `scripts/control-plane.sh up --state-dir <temp dir>`. Takes
    /// about 10–15 s (longer on the very first run, which builds kube-apiserver).
    pub fn start() -> Result<PrivateCluster> {
        let state = tempfile::Builder::new()
            .prefix("driftguard-plane-")
            .tempdir()
            .context("could not create a state directory for a private control plane")?;
        let dir = path_str(state.path())?.to_owned();
        run_script("control-plane.sh", &["up", "--state-dir", &dir])
            .context("could not start a private control plane")?;
        let cluster = TestCluster::from_kubeconfig(state.path().join("kubeconfig"));
        Ok(PrivateCluster { state, cluster })
    }

    /// The kubeconfig file of this plane.
    pub fn kubeconfig(&self) -> &Path {
        self.cluster.kubeconfig()
    }

    /// This plane as a [`TestCluster`] (for namespaces and kubectl).
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// Stops the API server (etcd keeps running, with all objects).
    pub fn stop_apiserver(&self) -> Result<()> {
        run_script(
            "control-plane.sh",
            &["stop-apiserver", "--state-dir", self.dir()?],
        )
        .context("could not stop the private API server")?;
        Ok(())
    }

    /// Starts the API server again on the same port and etcd, and waits until it is ready.
    pub fn start_apiserver(&self) -> Result<()> {
        run_script("control-plane.sh", &["up", "--state-dir", self.dir()?])
            .context("could not restart the private API server")?;
        Ok(())
    }

    fn dir(&self) -> Result<&str> {
        path_str(self.state.path())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Ok(dir) = self.dir()
            && let Err(error) = run_script("control-plane.sh", &["down", "--state-dir", dir])
        {
            eprintln!("stopping a private control plane failed: {error:#}");
        }
    }
}

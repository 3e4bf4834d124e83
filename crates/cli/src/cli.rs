//! The command line (contract §6).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use driftguard_config::{LoadOptions, Loaded, load};
use serde_json::{Value, json};

/// DriftGuard watches a Kubernetes cluster, compares every resource with the manifests in a Git
/// repository, and reports what drifted, how bad it is, who changed it and when it was put right.
#[derive(Debug, Parser)]
#[command(name = "driftguard", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: watch the cluster and the repository, keep drift records, serve the REST
    /// API, /metrics, /health and /ready.
    Serve(ServeArgs),
    /// Analyse once and print the result (for CI pipelines and laptops). Exit 0: no drift at or
    /// above --fail-on; 1: drift at or above it (or, with --fail-on-warnings, any warning); 2: an
    /// error (after printing what could be analysed).
    Check(CheckArgs),
    /// Print the version and the commit it was built from.
    Version,
}

/// Options shared by `serve` and `check`.
#[derive(Debug, Args)]
pub struct Common {
    /// Configuration file (default: ./driftguard.yaml when present, else defaults and environment).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level or filter (overrides logging.level and RUST_LOG), e.g. debug.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// `driftguard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Port to listen on (overrides server.port; 0 = any free port).
    #[arg(long, short = 'p', value_name = "N")]
    pub port: Option<u16>,
}

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table grouped by severity (coloured on a terminal).
    Table,
    /// The JSON document of contract §6.
    Json,
}

/// Severities for `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any drift fails.
    Low,
    /// Medium or high drift fails.
    Medium,
    /// Only high drift fails.
    High,
}

/// `driftguard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Repository URL (cloned at --branch) or a local directory (read as it is on disk, no Git
    /// needed). Overrides git.repository_url.
    #[arg(long, value_name = "URL|PATH")]
    pub repo: Option<String>,
    /// Branch, tag or commit to check out (overrides git.default_branch).
    #[arg(long, value_name = "B")]
    pub branch: Option<String>,
    /// Sub-path inside the repository (overrides git.path).
    #[arg(long, value_name = "DIR")]
    pub path: Option<String>,
    /// Kubeconfig file (overrides kubernetes.config_path and KUBECONFIG).
    #[arg(long, value_name = "F")]
    pub kubeconfig: Option<String>,
    /// Kubeconfig context (overrides kubernetes.context).
    #[arg(long, value_name = "C")]
    pub context: Option<String>,
    /// Namespace to analyse; repeat for several (overrides kubernetes.namespaces).
    #[arg(long = "namespace", short = 'n', value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
    /// Lowest severity that makes the exit code 1.
    #[arg(long, value_enum, default_value = "low")]
    pub fail_on: FailOn,
    /// Also exit 1 when a record has a warning (something Git asks for that the server will
    /// never store). Without it, warnings are printed but never change the exit code.
    #[arg(long)]
    pub fail_on_warnings: bool,
}

impl ServeArgs {
    /// Flag overrides for the configuration loader.
    pub fn flags(&self) -> Vec<(String, String, Value)> {
        let mut flags = Vec::new();
        if let Some(port) = self.port {
            flags.push(("server.port".to_owned(), "--port".to_owned(), json!(port)));
        }
        if let Some(level) = &self.common.log_level {
            flags.push((
                "logging.level".to_owned(),
                "--log-level".to_owned(),
                json!(level),
            ));
        }
        flags
    }
}

impl CheckArgs {
    /// Flag overrides for the configuration loader.
    pub fn flags(&self) -> Vec<(String, String, Value)> {
        let mut flags = Vec::new();
        let mut push = |key: &str, flag: &str, value: Value| {
            flags.push((key.to_owned(), flag.to_owned(), value));
        };
        if let Some(repo) = &self.repo {
            push("git.repository_url", "--repo", json!(repo));
        }
        if let Some(branch) = &self.branch {
            push("git.default_branch", "--branch", json!(branch));
        }
        if let Some(path) = &self.path {
            push("git.path", "--path", json!([path]));
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            push("kubernetes.config_path", "--kubeconfig", json!(kubeconfig));
        }
        if let Some(context) = &self.context {
            push("kubernetes.context", "--context", json!(context));
        }
        if !self.namespaces.is_empty() {
            push(
                "kubernetes.namespaces",
                "--namespace",
                json!(self.namespaces),
            );
        }
        if let Some(level) = &self.common.log_level {
            push("logging.level", "--log-level", json!(level));
        }
        flags
    }
}

/// Loads the configuration from file, the process environment and `flags`.
pub fn load_config(common: &Common, flags: Vec<(String, String, Value)>) -> Result<Loaded, String> {
    let options = LoadOptions {
        file: common.config.clone(),
        search_dir: None,
        env: std::env::vars().collect(),
        flags,
    };
    load(&options).map_err(|e| e.to_string())
}

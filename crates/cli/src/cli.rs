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
    /// error (after printing what could be analysed). It sends no notifications (the
    /// `notifications` section is for `serve`) and writes no records.
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
    /// When to colour output: auto (only on a terminal, and not when NO_COLOR is set and not
    /// empty), always or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: Color,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour on a terminal, unless `NO_COLOR` is set and not empty (<https://no-color.org>).
    Auto,
    /// Always colour (overrides `NO_COLOR`, as a command-line flag should).
    Always,
    /// Never colour.
    Never,
}

impl Color {
    /// Whether to colour a stream; `terminal` says whether that stream is a terminal.
    pub fn enabled(self, terminal: bool) -> bool {
        self.decide(terminal, std::env::var_os("NO_COLOR"))
    }

    /// [`Color::enabled`] with the value of `NO_COLOR` given.
    fn decide(self, terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
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
    /// Kubeconfig file (overrides kubernetes.config_path and KUBECONFIG).
    #[arg(long, value_name = "F")]
    pub kubeconfig: Option<String>,
    /// Kubeconfig context (overrides kubernetes.context).
    #[arg(long, value_name = "C")]
    pub context: Option<String>,
}

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table grouped by severity (coloured on a terminal).
    Table,
    /// The JSON document of contract §6.
    Json,
    /// The same document as YAML.
    Yaml,
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
#[command(
    after_help = "check never notifies: Alertmanager, Slack and webhooks configured under `notifications` are told only by `serve`."
)]
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
    /// Analyse every namespace (overrides kubernetes.namespaces with the empty list).
    #[arg(long, short = 'A', conflicts_with = "namespaces")]
    pub all_namespaces: bool,
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
        let mut push = |key: &str, flag: &str, value: Value| {
            flags.push((key.to_owned(), flag.to_owned(), value));
        };
        if let Some(port) = self.port {
            push("server.port", "--port", json!(port));
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            push("kubernetes.config_path", "--kubeconfig", json!(kubeconfig));
        }
        if let Some(context) = &self.context {
            push("kubernetes.context", "--context", json!(context));
        }
        if let Some(level) = &self.common.log_level {
            push("logging.level", "--log-level", json!(level));
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
        if self.all_namespaces {
            push(
                "kubernetes.namespaces",
                "--all-namespaces",
                json!(Vec::<String>::new()),
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
    load(&options).map_err(|e| driftguard_server::errors::chain(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags_of(args: &[&str]) -> Vec<(String, String, Value)> {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Serve(a) => a.flags(),
            Command::Check(a) => a.flags(),
            Command::Version => Vec::new(),
        }
    }

    #[test]
    fn no_color_and_the_color_flag() {
        let set = Some(std::ffi::OsString::from("1"));
        let empty = Some(std::ffi::OsString::new());
        assert!(Color::Auto.decide(true, None));
        assert!(!Color::Auto.decide(false, None), "not a terminal");
        assert!(!Color::Auto.decide(true, set.clone()), "NO_COLOR=1");
        assert!(
            Color::Auto.decide(true, empty),
            "an empty NO_COLOR is unset"
        );
        assert!(Color::Always.decide(false, set.clone()), "the flag wins");
        assert!(!Color::Never.decide(true, None));
        let cli = Cli::try_parse_from(["driftguard", "check", "--color", "never"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("check")
        };
        assert_eq!(args.common.color, Color::Never);
        assert!(Cli::try_parse_from(["driftguard", "serve", "--color", "sometimes"]).is_err());
    }

    #[test]
    fn all_namespaces_empties_the_namespace_list() {
        let flags = flags_of(&["driftguard", "check", "-A"]);
        assert_eq!(
            flags,
            vec![(
                "kubernetes.namespaces".to_owned(),
                "--all-namespaces".to_owned(),
                json!([])
            )]
        );
        assert_eq!(
            flags_of(&["driftguard", "check", "--all-namespaces"]),
            flags
        );
        assert!(
            Cli::try_parse_from(["driftguard", "check", "-A", "-n", "shop"]).is_err(),
            "-A and -n conflict"
        );
        let cli = Cli::try_parse_from(["driftguard", "check", "-o", "yaml"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("check")
        };
        assert_eq!(args.output, Output::Yaml);
    }

    #[test]
    fn serve_takes_kubeconfig_and_context() {
        let flags = flags_of(&[
            "driftguard",
            "serve",
            "--kubeconfig",
            "/etc/kube/config",
            "--context",
            "prod",
        ]);
        assert_eq!(
            flags,
            vec![
                (
                    "kubernetes.config_path".to_owned(),
                    "--kubeconfig".to_owned(),
                    json!("/etc/kube/config")
                ),
                (
                    "kubernetes.context".to_owned(),
                    "--context".to_owned(),
                    json!("prod")
                ),
            ]
        );
        // The keys exist: the loader takes them as flags.
        let common = Common {
            config: None,
            log_level: None,
            color: Color::Auto,
        };
        let loaded = load_config(&common, flags).unwrap();
        assert_eq!(loaded.config.kubernetes.config_path, "/etc/kube/config");
        assert_eq!(loaded.config.kubernetes.context, "prod");
    }
}

//! Log output: a human format carrying the emoji events, or JSON lines.
//!
//! The level comes from `--log-level`, else `RUST_LOG`, else `logging.level`.

use driftguard_config::{LogFormat, LoggingConfig};
use tracing_subscriber::EnvFilter;

/// Keeps logging alive for the process's lifetime (nothing to flush today; kept for symmetry).
pub struct Guard;

fn filter(config: &LoggingConfig, flag: Option<&str>) -> EnvFilter {
    let directive = match (flag, std::env::var("RUST_LOG").ok()) {
        (Some(flag), _) => flag.to_owned(),
        (None, Some(env)) if !env.is_empty() => env,
        _ => config.level.clone(),
    };
    // kube-client logs whole response bodies (which may hold Secrets) when decoding fails: keep
    // it to errors unless the filter names it explicitly.
    let directive = if directive.contains("kube_client") {
        directive
    } else {
        format!("{directive},kube_client=error")
    };
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info,kube_client=error"))
}

/// Logging for `serve`: to stdout; `ansi` colours the text format (`--color`, `NO_COLOR`).
pub fn init(config: &LoggingConfig, flag: Option<&str>, ansi: bool) -> Guard {
    install(config, flag, false, ansi);
    Guard
}

/// Logging for `check`: to stderr, so stdout carries only the report; `ansi` as for [`init`].
pub fn init_for_check(config: &LoggingConfig, flag: Option<&str>, ansi: bool) -> Guard {
    // `check` prints a report; only warnings and worse go to stderr unless asked otherwise.
    let quiet = LoggingConfig {
        level: if flag.is_none() && std::env::var_os("RUST_LOG").is_none() {
            "warn".to_owned()
        } else {
            config.level.clone()
        },
        format: config.format,
    };
    install(&quiet, flag, true, ansi);
    Guard
}

fn install(config: &LoggingConfig, flag: Option<&str>, to_stderr: bool, ansi: bool) {
    let filter = filter(config, flag);
    let result = match (config.format, to_stderr) {
        (LogFormat::Json, false) => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .try_init(),
        (LogFormat::Json, true) => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Text, false) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_target(false)
            .try_init(),
        (LogFormat::Text, true) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_target(false)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
}

//! `driftguard`: parse the command line, load the configuration, hand over.
//!
//! Exit codes: 0 success (for `check`: no drift at or above `--fail-on`); 1 drift found by
//! `check`; 2 any error (bad configuration, unreachable Git or cluster, …).

mod check;
mod cli;
mod logging;
mod report;
mod yaml_out;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use driftguard_server::errors::chain;

use crate::cli::{Cli, Command};

/// mimalloc rather than glibc's malloc: `serve` keeps small texts per watched object and record,
/// and allocates and frees the trees of every list, event and comparison; with mimalloc start-up
/// and full analyses were about a third faster and detection p99 half (see README,
/// Performance). Its arenas commit on demand (`.cargo/config.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "driftguard {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("DRIFTGUARD_BUILD_COMMIT")
            );
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            let loaded = match cli::load_config(&args.common, args.flags()) {
                Ok(loaded) => loaded,
                Err(message) => return fail(&message),
            };
            if let Err(e) = loaded.require_repository() {
                return fail(&chain(&e));
            }
            let ansi = args.common.color.enabled(std::io::stdout().is_terminal());
            let _guard = logging::init(
                &loaded.config.logging,
                args.common.log_level.as_deref(),
                ansi,
            );
            match runtime() {
                Ok(rt) => match rt.block_on(driftguard_server::serve(loaded)) {
                    Ok(()) => ExitCode::SUCCESS,
                    // Every cause: "cannot listen on …: Address already in use".
                    Err(e) => fail(&chain(&e)),
                },
                Err(message) => fail(&message),
            }
        }
        Command::Check(args) => {
            let loaded = match cli::load_config(&args.common, args.flags()) {
                Ok(loaded) => loaded,
                Err(message) => return fail(&message),
            };
            let ansi = args.common.color.enabled(std::io::stderr().is_terminal());
            let _guard = logging::init_for_check(
                &loaded.config.logging,
                args.common.log_level.as_deref(),
                ansi,
            );
            match runtime() {
                Ok(rt) => rt.block_on(check::run(loaded, &args)),
                Err(message) => fail(&message),
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

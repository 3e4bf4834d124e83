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
/// Performance). On Linux it asks for transparent huge pages for its arenas: `serve` turns them
/// off for itself ([`restart_with_serve_memory_settings`]), `check` keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator's purge delay `serve` runs with, unless `MIMALLOC_PURGE_DELAY` is set.
const PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "0");

/// Sets `serve`'s memory up: transparent huge pages off, and freed pages returned at once.
///
/// With 2 MiB pages, memory the service touched once, or freed into pages still partly in use,
/// stays resident by the huge page: `serve` at 10,000 objects held 107 MiB against 88 MiB with
/// 4 KiB pages, for the same full-analysis time (scripts/bench/scale.py, the settings run in
/// turn). A one-shot `check` is the other way round: it touches its memory once, and huge pages
/// spare it most of its page faults (about a tenth of its wall time at 1,000 objects).
///
/// mimalloc returns memory it no longer uses to the system a second after it was freed (its
/// purge delay), and only as its threads come back to it: after a full analysis or a burst of
/// events, what was freed stays resident. With a delay of 0 it is returned as it is freed
/// ([`PURGE_DELAY`]): resident at 100,000 objects 429–465 → 385 MiB, at 10,000 87–93 → 73–75 MiB,
/// for the same full-analysis time (scripts/bench/scale.py, the settings run in turn).
///
/// The allocator has touched its first arena before `main` runs, in huge pages, and reads its
/// options once, from the environment. So the process starts itself again in place (`exec`,
/// same PID and arguments, the environment plus [`PURGE_DELAY`]), which keeps both settings from
/// its first allocation. Returns what to log once logging is set up, if that could not be done.
fn restart_with_serve_memory_settings() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let purge_set = std::env::var_os(PURGE_DELAY.0).is_some();
        let mut warning = None;
        let thp_turned_off = match rustix::thread::transparent_huge_pages_are_disabled() {
            Ok(true) => false,
            Ok(false) => match rustix::thread::disable_transparent_huge_pages(true) {
                Ok(()) => true,
                Err(e) => {
                    warning = Some(format!(
                        "cannot turn transparent huge pages off (resident memory may be higher): {e}"
                    ));
                    false
                }
            },
            Err(e) => {
                warning = Some(format!(
                    "cannot read the transparent huge pages setting: {e}"
                ));
                false
            }
        };
        // Once started again both hold (the setting survives `exec`), so this never loops.
        if !thp_turned_off && purge_set {
            return warning;
        }
        let mut args = std::env::args_os();
        let started_again = std::env::current_exe().map(|exe| {
            let mut command = std::process::Command::new(exe);
            if let Some(arg0) = args.next() {
                command.arg0(arg0);
            }
            if !purge_set {
                command.env(PURGE_DELAY.0, PURGE_DELAY.1);
            }
            command.args(args).exec()
        });
        let e = match started_again {
            Ok(e) | Err(e) => e,
        };
        Some(format!(
            "cannot start again with small pages and the allocator's purge delay at 0 (resident memory may be higher): {e}"
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

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
            let memory_warning = restart_with_serve_memory_settings();
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
            if let Some(warning) = memory_warning {
                tracing::warn!("{warning}");
            }
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

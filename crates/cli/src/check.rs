//! `driftguard check`: one analysis, printed; exit 0 / 1 / 2 (contract §6).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use driftguard_config::Loaded;
use driftguard_core::{DriftStatus, Severity};
use driftguard_server::oneshot;

use crate::cli::{CheckArgs, FailOn, Output};
use crate::report::{self, ReportError};

/// Runs the check and prints the report.
pub async fn run(loaded: Loaded, args: &CheckArgs) -> ExitCode {
    let outcome = oneshot::check(&loaded.config).await;
    let errors: Vec<ReportError> = outcome
        .errors
        .iter()
        .map(|e| ReportError {
            source: e.source.clone(),
            message: e.message.clone(),
        })
        .collect();
    let text = match args.output {
        Output::Json => report::json(outcome.git_commit.as_deref(), &outcome.records, &errors),
        Output::Table => report::table(
            outcome.git_commit.as_deref(),
            &outcome.records,
            &errors,
            std::io::stdout().is_terminal(),
        ),
    };
    println!("{text}");
    let threshold = match args.fail_on {
        FailOn::Low => Severity::Low,
        FailOn::Medium => Severity::Medium,
        FailOn::High => Severity::High,
    };
    if !errors.is_empty() {
        return ExitCode::from(2);
    }
    let failing = outcome.records.iter().any(|r| {
        r.drift_status == DriftStatus::Active && r.severity.is_some_and(|s| s >= threshold)
    });
    if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

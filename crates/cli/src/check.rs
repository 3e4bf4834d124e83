//! `driftguard check`: one analysis, printed; exit 0 / 1 / 2 (contract §6).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use driftguard_config::Loaded;
use driftguard_core::{DriftRecord, DriftStatus, Severity};
use driftguard_server::oneshot;

use crate::cli::{CheckArgs, FailOn, Output};
use crate::report;

/// Runs the check and prints the report.
pub async fn run(loaded: Loaded, args: &CheckArgs) -> ExitCode {
    let outcome = oneshot::check(&loaded.config).await;
    let errors = &outcome.errors;
    let commit = outcome.git_commit.as_deref();
    let text = match args.output {
        Output::Json => report::json(commit, &outcome.records, errors),
        Output::Yaml => report::yaml(commit, &outcome.records, errors),
        Output::Table => report::table(
            commit,
            &outcome.records,
            errors,
            args.common.color.enabled(std::io::stdout().is_terminal()),
        ),
    };
    println!("{text}");
    let threshold = match args.fail_on {
        FailOn::Low => Severity::Low,
        FailOn::Medium => Severity::Medium,
        FailOn::High => Severity::High,
    };
    let code = ExitCode::from(exit_code(
        &outcome.records,
        !errors.is_empty(),
        threshold,
        args.fail_on_warnings,
    ));
    // The process ends here: freeing every record and its states one by one would only delay
    // the exit (a few milliseconds at 1,000 resources).
    std::mem::forget(outcome);
    code
}

/// The exit code of a check (contract §6, §9): 2 on any error; 1 on an active drift at or above
/// `threshold`, or — only when `fail_on_warnings` — on any record with a warning; else 0.
/// Warnings never set the exit code otherwise.
pub fn exit_code(
    records: &[DriftRecord],
    any_error: bool,
    threshold: Severity,
    fail_on_warnings: bool,
) -> u8 {
    if any_error {
        return 2;
    }
    let drifted = records.iter().any(|r| {
        r.drift_status == DriftStatus::Active && r.severity.is_some_and(|s| s >= threshold)
    });
    let warned = fail_on_warnings && records.iter().any(|r| !r.warnings.is_empty());
    u8::from(drifted || warned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftguard_core::state::{self, Observation};
    use driftguard_core::{Change, DriftType, FieldPath, Op, ResourceKey, Warning};

    /// A check record: in sync or drifted (medium), with or without a warning.
    fn record(drifted: bool, warned: bool) -> DriftRecord {
        let key = ResourceKey::from_api_version("apps/v1", "Deployment", "shop", "web");
        let changes = if drifted {
            vec![Change {
                field: FieldPath::parse("spec.replicas").unwrap(),
                op: Op::Changed,
                from: Some(serde_json::json!(2)),
                to: Some(serde_json::json!(3)),
                drift_type: DriftType::Scaling,
                severity: Severity::Medium,
                manager: None,
                changed_at: None,
                source_line: None,
            }]
        } else {
            Vec::new()
        };
        let warnings = if warned {
            vec![Warning::new(
                FieldPath::parse("spec.template.spec.serviceAccount").unwrap(),
                driftguard_core::warning::SERVER_REWRITES,
                "Git can never match: the server rewrites this field",
            )]
        } else {
            Vec::new()
        };
        let observation = Observation {
            key,
            api_version: "apps/v1".into(),
            managed: true,
            changes,
            warnings,
            desired_state: None,
            live_state: None,
            desired_hash: None,
            live_hash: None,
            git_commit: None,
            source_path: Some("web.yaml#0".into()),
            source_line: None,
            helm_release: None,
            cause: None,
        };
        state::advance(None, observation, chrono::Utc::now()).record
    }

    #[test]
    fn warnings_fail_only_with_fail_on_warnings() {
        let warned = [record(false, true)];
        assert_eq!(
            warned[0].drift_status,
            DriftStatus::None,
            "a warning is not drift"
        );
        assert_eq!(exit_code(&warned, false, Severity::Low, false), 0);
        assert_eq!(exit_code(&warned, false, Severity::Low, true), 1);
        let clean = [record(false, false)];
        assert_eq!(exit_code(&clean, false, Severity::Low, true), 0);
        // An error wins over everything; drift fails with or without the flag.
        assert_eq!(exit_code(&warned, true, Severity::Low, true), 2);
        let drifted = [record(true, false)];
        assert_eq!(exit_code(&drifted, false, Severity::Medium, false), 1);
        assert_eq!(exit_code(&drifted, false, Severity::High, false), 0);
        assert_eq!(exit_code(&drifted, false, Severity::High, true), 0);
        let both = [record(true, true)];
        assert_eq!(exit_code(&both, false, Severity::High, true), 1);
    }

    #[test]
    fn the_table_prints_warnings_escaped_and_json_carries_them() {
        let mut warned = record(false, true);
        warned.warnings.push(Warning::new(
            FieldPath::root(),
            driftguard_core::warning::DUPLICATE_KEY,
            "key \"x\u{1b}[31m\" appears twice\u{202e}; the last value was kept",
        ));
        warned.warnings.sort(); // as the state machine keeps them
        let drifted = record(true, true);
        let mut drifted = drifted;
        drifted.resource_id = "Deployment:shop:api".into();
        let records = [drifted, warned];
        let text = report::table(None, &records, &[], false);
        assert!(
            text.contains(
                "warning  server-rewrites spec.template.spec.serviceAccount: Git can never match"
            ),
            "{text}"
        );
        assert!(
            text.contains("WARNINGS (1)"),
            "the in-sync record is listed: {text}"
        );
        assert!(
            text.contains(
                "duplicate-key (whole manifest): key \"x\\u{1b}[31m\" appears twice\\u{202e};"
            ),
            "{text}"
        );
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert!(
            text.contains("1 drifted, 1 in sync, 0 errors, 3 warnings"),
            "{text}"
        );
        // The API's shape in `--output json`.
        let doc: serde_json::Value =
            serde_json::from_str(&report::json(None, &records, &[])).unwrap();
        let w = &doc["drift_records"][1]["warnings"];
        assert_eq!(w[0]["code"], "duplicate-key");
        assert_eq!(w[0]["field"], "");
        assert_eq!(w[1]["field"], "spec.template.spec.serviceAccount");
        assert_eq!(doc["drift_records"][1]["drift_detected"], false);
        let clean = [record(false, false)];
        let text = report::table(None, &clean, &[], false);
        assert!(
            !text.contains("WARNINGS") && !text.contains("warning"),
            "{text}"
        );
        assert_eq!(
            doc["drift_records"][0]["warnings"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn yaml_output_is_the_json_document() {
        let mut warned = record(true, true);
        warned.warnings.push(Warning::new(
            FieldPath::root(),
            driftguard_core::warning::DUPLICATE_KEY,
            "key \"yes\" appears twice: 0755 ~ null\n\u{1b}[31m",
        ));
        let records = [warned, record(false, false)];
        let errors = [driftguard_server::oneshot::CheckError {
            source: "deploy/app.yaml:3".into(),
            message: "mapping values are not allowed here: a: b: c".into(),
        }];
        for commit in [None, Some("0123456789abcdef0123456789abcdef01234567")] {
            let json: serde_json::Value =
                serde_json::from_str(&report::json(commit, &records, &errors)).unwrap();
            let yaml = report::yaml(commit, &records, &errors);
            let docs = driftguard_yaml::parse_documents(&yaml, &driftguard_yaml::Limits::default())
                .unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
            assert_eq!(docs.len(), 1);
            assert_eq!(docs[0].value, json, "{yaml}");
        }
    }
}

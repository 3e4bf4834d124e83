//! `check` output: a table grouped by severity, or the JSON document of contract §6 (as JSON or
//! as YAML).

use std::fmt::Write as _;

use driftguard_core::{DriftRecord, DriftStatus, Severity};
use driftguard_server::oneshot::CheckError;
use serde::Serialize;

/// The JSON document.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// Commit analysed (`null` for a working tree read from disk).
    pub git_commit: Option<&'a str>,
    /// Records printed.
    pub count: usize,
    /// Every managed resource (active or none) plus unmanaged ones when reported.
    pub drift_records: &'a [DriftRecord],
    /// Errors.
    pub errors: &'a [CheckError],
}

impl<'a> Report<'a> {
    /// The document of one check.
    pub fn new(
        git_commit: Option<&'a str>,
        records: &'a [DriftRecord],
        errors: &'a [CheckError],
    ) -> Self {
        Report {
            git_commit,
            count: records.len(),
            drift_records: records,
            errors,
        }
    }
}

/// Renders the JSON document.
pub fn json(git_commit: Option<&str>, records: &[DriftRecord], errors: &[CheckError]) -> String {
    serde_json::to_string_pretty(&Report::new(git_commit, records, errors))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Renders the same document as YAML (without the trailing newline, like [`json`]).
pub fn yaml(git_commit: Option<&str>, records: &[DriftRecord], errors: &[CheckError]) -> String {
    match serde_json::to_value(Report::new(git_commit, records, errors)) {
        Ok(value) => {
            let mut text = crate::yaml_out::to_yaml(&value);
            text.truncate(text.trim_end_matches('\n').len());
            text
        }
        Err(e) => crate::yaml_out::to_yaml(&serde_json::json!({ "error": e.to_string() })),
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn severity(&self, severity: Severity) -> String {
        let code = match severity {
            Severity::High => "1;31",
            Severity::Medium => "33",
            Severity::Low => "36",
        };
        self.wrap(code, &severity.as_str().to_ascii_uppercase())
    }
}

/// Renders the human table: drifted resources grouped by headline severity (high first), each
/// change on its own line, then a summary and the errors.
pub fn table(
    git_commit: Option<&str>,
    records: &[DriftRecord],
    errors: &[CheckError],
    colour: bool,
) -> String {
    let paint = Paint { on: colour };
    let mut out = String::new();
    let commit = git_commit.map_or("working tree".to_owned(), |c| c.chars().take(12).collect());
    let _ = writeln!(
        out,
        "DriftGuard check — {} resources, desired state at {commit}",
        records.len()
    );
    let drifted: Vec<&DriftRecord> = records
        .iter()
        .filter(|r| r.drift_status == DriftStatus::Active)
        .collect();
    for severity in [Severity::High, Severity::Medium, Severity::Low] {
        let group: Vec<&&DriftRecord> = drifted
            .iter()
            .filter(|r| r.severity == Some(severity))
            .collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({})", paint.severity(severity), group.len());
        for record in group {
            let headline = record.drift_type.map_or("", |t| t.as_str());
            let _ = writeln!(
                out,
                "  {}  {}",
                paint.wrap("1", &record.resource_id),
                headline
            );
            write_source(&mut out, record);
            write_warnings(&mut out, record, &paint);
            for change in &record.drift_details {
                let field = if change.field.is_root() {
                    "(whole resource)".to_owned()
                } else {
                    change.field.to_string()
                };
                let values = match (&change.from, &change.to) {
                    (Some(from), Some(to)) => format!("{} → {}", short(from), short(to)),
                    (None, Some(to)) => format!("+ {}", short(to)),
                    (Some(from), None) => format!("- {}", short(from)),
                    (None, None) => String::new(),
                };
                let by = change
                    .manager
                    .as_deref()
                    .map(|m| format!("  (by {m})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {:<8} {:<10} {field}: {values}{by}",
                    change.op.as_str(),
                    change.severity.as_str(),
                );
            }
        }
    }
    // Warnings of records that did not drift (those that did have them under their changes).
    let warned: Vec<&DriftRecord> = records
        .iter()
        .filter(|r| r.drift_status != DriftStatus::Active && !r.warnings.is_empty())
        .collect();
    if !warned.is_empty() {
        let _ = writeln!(out, "\n{} ({})", paint.wrap("35", "WARNINGS"), warned.len());
        for record in warned {
            let _ = writeln!(out, "  {}", paint.wrap("1", &record.resource_id));
            write_source(&mut out, record);
            write_warnings(&mut out, record, &paint);
        }
    }
    let in_sync = records.len() - drifted.len();
    let warnings: usize = records.iter().map(|r| r.warnings.len()).sum();
    let _ = write!(
        out,
        "\n{} drifted, {} in sync, {} errors",
        drifted.len(),
        in_sync,
        errors.len()
    );
    if warnings > 0 {
        let _ = write!(
            out,
            ", {warnings} warning{}",
            if warnings == 1 { "" } else { "s" }
        );
    }
    out.push('\n');
    for error in errors {
        let _ = writeln!(
            out,
            "{} {}: {}",
            paint.wrap("31", "error"),
            error.source,
            error.message
        );
    }
    out
}

/// One line per warning of `record`: `warning  <code>  <field>: <message>`.
fn write_warnings(out: &mut String, record: &DriftRecord, paint: &Paint) {
    for warning in &record.warnings {
        let field = if warning.field.is_root() {
            "(whole manifest)".to_owned()
        } else {
            warning.field.to_string()
        };
        let _ = writeln!(
            out,
            "    {} {:<10} {}: {}",
            paint.wrap("35", &format!("{:<8}", "warning")),
            escape(&warning.code),
            escape(&field),
            escape(&warning.message)
        );
    }
}

/// Text from a manifest made safe for a terminal: control characters (and the Unicode
/// direction overrides) are printed escaped, `\u{1b}` rather than an escape sequence.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// `    source: <path>#N` (and the Helm release that rendered it).
fn write_source(out: &mut String, record: &DriftRecord) {
    if let Some(source) = &record.source_path {
        let release = record
            .helm_release
            .as_deref()
            .map(|r| format!(" (Helm release {})", escape(r)))
            .unwrap_or_default();
        let _ = writeln!(out, "    source: {}{release}", escape(source));
    }
}

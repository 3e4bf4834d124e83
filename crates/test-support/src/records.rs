//! `driftguard check -o json` as a subprocess, and drift records in a form that compares
//! between `check` and `serve`.
//!
//! Test helpers: they panic on what makes a test meaningless (output that is not JSON, a record
//! without a `resource_id`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

/// Runs `binary check <args> --output json` the way a user does, outside any checkout (working
/// directory: the temp dir) and without `KUBECONFIG` or `RUST_LOG` from the test's environment;
/// returns the process output and the JSON document it printed.
///
/// # Panics
///
/// When the process cannot start or its stdout is not one JSON document (the message holds
/// stdout and stderr).
///
/// ```no_run
/// # use std::path::Path;
/// let (output, doc) = driftguard_test_support::records::run_check_json(
///     Path::new("target/debug/driftguard"),
///     ["--config", "driftguard.yaml"],
/// );
/// assert!(output.status.code().is_some());
/// assert!(doc["drift_records"].is_array());
/// ```
pub fn run_check_json<I, S>(binary: &Path, args: I) -> (Output, Value)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(binary)
        .arg("check")
        .args(args)
        .args(["--output", "json"])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("starting {} check: {e}", binary.display()));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, doc)
}

/// What must agree between `check` and `serve` for one record (JSON as both print it).
///
/// Secret digests are keyed per installation (`check` draws a fresh key per run), so digest
/// values (`hmac-sha256:…` in a change's `from`/`to`, shown as `<digest>`) and the hashes of
/// Secrets are left out; everything else is kept as it is.
pub fn comparable(record: &Value) -> Value {
    let secret = record["kind"] == "Secret";
    let details: Vec<Value> = record["drift_details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            for side in ["from", "to"] {
                if c[side]
                    .as_str()
                    .is_some_and(|v| v.starts_with("hmac-sha256:"))
                {
                    c[side] = json!("<digest>");
                }
            }
            c
        })
        .collect();
    json!({
        "api_version": record["api_version"],
        "drift_detected": record["drift_detected"],
        "drift_status": record["drift_status"],
        "drift_type": record["drift_type"],
        "severity": record["severity"],
        "drift_details": details,
        "warnings": record["warnings"],
        "managed": record["managed"],
        "source_path": record["source_path"],
        "git_commit": record["git_commit"],
        "live_hash": if secret { Value::Null } else { record["live_hash"].clone() },
        "last_known_good_hash": if secret { Value::Null } else { record["last_known_good_hash"].clone() },
    })
}

/// `records` keyed by `resource_id`, each made [`comparable`].
///
/// # Panics
///
/// When a record has no string `resource_id`.
pub fn by_id(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| {
            let id = r["resource_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a record without resource_id: {r}"));
            (id.to_owned(), comparable(r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_digests_and_hashes_are_masked() {
        let record = json!({
            "resource_id": "Secret:ns:creds",
            "kind": "Secret",
            "drift_details": [{"field": "data.password", "op": "changed",
                               "from": "hmac-sha256:aa", "to": "hmac-sha256:bb"}],
            "live_hash": "x",
            "last_known_good_hash": "y",
        });
        let by = by_id(&[record]);
        let c = &by["Secret:ns:creds"];
        assert_eq!(c["drift_details"][0]["from"], "<digest>");
        assert_eq!(c["drift_details"][0]["to"], "<digest>");
        assert_eq!(c["live_hash"], Value::Null);
        assert_eq!(c["last_known_good_hash"], Value::Null);
    }
}

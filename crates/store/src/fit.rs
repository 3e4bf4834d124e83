//! Records and episodes too large for a store are cut to fit, never dropped.
//!
//! MongoDB refuses a document over 16 MiB, and a refused write used to drop the verdict with it.
//! Both backends encode through [`encode_record`] and [`encode_episode`], so the rule is the
//! same everywhere: past [`MAX_DOCUMENT_JSON`] bytes of JSON, the record is stored with
//!
//! 1. its `desired_state` and `live_state` left out,
//! 2. then, if still too large, the `from`/`to` values of its changes replaced by a short
//!    marker,
//! 3. then, if still too large, only as many changes as fit,
//!
//! and a `truncated` warning saying what was cut and how large it was. The verdict (status,
//! type, severity, the changed paths, timestamps) always survives. The in-memory record keeps
//! everything; only the stored copy is cut.

use driftguard_core::{DriftRecord, Episode, FieldPath, Warning};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// Largest JSON text stored for one record or episode: 15 MiB, leaving room under MongoDB's
/// 16 MiB document limit for the indexed fields stored beside it.
pub const MAX_DOCUMENT_JSON: usize = 15 * 1024 * 1024;

/// Warning code on a record whose stored copy was cut.
pub const TRUNCATED: &str = "truncated";

/// The marker that replaces a change value cut out of a stored record.
pub const CUT_VALUE: &str = "<value cut to fit the store's document limit>";

/// The JSON stored for `record`, cut to at most `limit` bytes when it is larger.
pub(crate) fn encode_record(record: &DriftRecord, limit: usize) -> Result<String> {
    let json = to_json(record, "encoding a record")?;
    if json.len() <= limit {
        return Ok(json);
    }
    let full = json.len();
    let mut cut = record.clone();
    cut.desired_state = None;
    cut.live_state = None;
    let note = |what: &str| {
        Warning::new(
            FieldPath::root(),
            TRUNCATED,
            format!(
                "the stored copy of this record was {full} bytes, over the store's {limit}-byte \
                 limit: {what} left out (the service still compares the whole objects)"
            ),
        )
    };
    cut.warnings.push(note("desired_state and live_state"));
    let json = to_json(&cut, "encoding a record")?;
    if json.len() <= limit {
        return Ok(json);
    }
    cut.warnings.pop();
    cut.warnings
        .push(note("desired_state, live_state and the changed values"));
    for change in &mut cut.drift_details {
        cut_values(&mut change.from, &mut change.to);
    }
    let json = to_json(&cut, "encoding a record")?;
    if json.len() <= limit {
        return Ok(json);
    }
    let total = cut.drift_details.len();
    let mut keep = total;
    cut.warnings.pop();
    loop {
        keep /= 2;
        cut.drift_details.truncate(keep);
        cut.warnings.truncate(cut.warnings.len().min(16));
        cut.warnings.push(note(&format!(
            "desired_state, live_state, the changed values and {} of {total} changes",
            total - keep
        )));
        let json = to_json(&cut, "encoding a record")?;
        if json.len() <= limit || keep == 0 {
            return Ok(json);
        }
        cut.warnings.pop();
    }
}

/// The JSON stored for `episode`, its change values (then changes) cut when over `limit`.
pub(crate) fn encode_episode(episode: &Episode, limit: usize) -> Result<String> {
    let json = to_json(episode, "encoding an episode")?;
    if json.len() <= limit {
        return Ok(json);
    }
    let mut cut = episode.clone();
    for change in &mut cut.changes {
        cut_values(&mut change.from, &mut change.to);
    }
    loop {
        let json = to_json(&cut, "encoding an episode")?;
        if json.len() <= limit || cut.changes.is_empty() {
            return Ok(json);
        }
        let keep = cut.changes.len() / 2;
        cut.changes.truncate(keep);
    }
}

fn cut_values(from: &mut Option<Value>, to: &mut Option<Value>) {
    for value in [from, to] {
        if value.is_some() {
            *value = Some(Value::String(CUT_VALUE.to_owned()));
        }
    }
}

fn to_json(value: &impl Serialize, operation: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend {
        operation,
        source: Box::new(e),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use driftguard_core::state::Observation;
    use driftguard_core::state::{self, Event};
    use driftguard_core::{Change, DriftType, Op, ResourceKey, Severity};
    use serde_json::json;

    fn big_record(state_bytes: usize, changes: usize, value_bytes: usize) -> DriftRecord {
        let key = ResourceKey::new("", "ConfigMap", "shop", "big");
        let big = "x".repeat(state_bytes);
        let value = "v".repeat(value_bytes);
        let details = (0..changes)
            .map(|i| Change {
                field: FieldPath::parse(&format!("data.k{i}")).unwrap(),
                op: Op::Changed,
                from: Some(json!(value)),
                to: Some(json!(format!("{value}!"))),
                drift_type: DriftType::ConfigMapChange,
                severity: Severity::Medium,
                manager: None,
                changed_at: None,
                source_line: None,
            })
            .collect();
        let obs = Observation {
            key,
            api_version: "v1".to_owned(),
            managed: true,
            changes: details,
            warnings: Vec::new(),
            desired_state: Some(json!({ "data": { "blob": big } })),
            live_state: Some(json!({ "data": { "blob": big } })),
            desired_hash: Some("sha256:d".to_owned()),
            live_hash: Some("sha256:l".to_owned()),
            git_commit: None,
            source_path: None,
            source_line: None,
            helm_release: None,
            cause: None,
        };
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let step = state::advance(None, obs, t);
        assert_eq!(step.event, Some(Event::Detected));
        step.record
    }

    fn stored(json: &str) -> DriftRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_record_under_the_limit_is_stored_whole() {
        let r = big_record(1_000, 3, 10);
        let json = encode_record(&r, 10_000).unwrap();
        assert_eq!(stored(&json), r);
    }

    #[test]
    fn states_go_first_and_the_verdict_stays() {
        let r = big_record(20_000, 3, 10);
        let json = encode_record(&r, 10_000).unwrap();
        assert!(json.len() <= 10_000, "{}", json.len());
        let s = stored(&json);
        assert_eq!(s.desired_state, None);
        assert_eq!(s.live_state, None);
        assert_eq!(s.drift_details, r.drift_details, "changes kept whole");
        assert_eq!(
            (s.drift_status, s.drift_type, s.severity),
            (r.drift_status, r.drift_type, r.severity)
        );
        let w = s.warnings.iter().find(|w| w.code == TRUNCATED).unwrap();
        assert!(w.message.contains("desired_state and live_state"), "{w:?}");
    }

    #[test]
    fn then_change_values_then_changes() {
        let r = big_record(100, 20, 2_000);
        let json = encode_record(&r, 10_000).unwrap();
        let s = stored(&json);
        assert_eq!(s.drift_details.len(), 20, "paths kept, values cut");
        assert!(
            s.drift_details
                .iter()
                .all(|c| c.from == Some(json!(CUT_VALUE)))
        );
        let many = big_record(100, 5_000, 10);
        let json = encode_record(&many, 50_000).unwrap();
        assert!(json.len() <= 50_000, "{}", json.len());
        let s = stored(&json);
        assert!(!s.drift_details.is_empty() && s.drift_details.len() < 5_000);
        let w = s.warnings.iter().find(|w| w.code == TRUNCATED).unwrap();
        assert!(w.message.contains("of 5000 changes"), "{w:?}");
    }

    #[test]
    fn episodes_are_cut_the_same_way() {
        let r = big_record(100, 200, 1_000);
        let episode = Episode {
            first_detected: r.first_detected.unwrap(),
            resolved_at: None,
            resolution_message: None,
            drift_type: r.drift_type,
            severity: r.severity,
            changes: r.drift_details.clone(),
            git_commit: None,
        };
        let json = encode_episode(&episode, 20_000).unwrap();
        assert!(json.len() <= 20_000, "{}", json.len());
        let back: Episode = serde_json::from_str(&json).unwrap();
        assert_eq!(back.first_detected, episode.first_detected);
        assert!(!back.changes.is_empty());
    }
}

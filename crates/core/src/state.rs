//! The drift state machine (contract §4): how one observation of a resource moves its record
//! between `none`, `active` and `resolved`, and which history episode that opens, updates or
//! closes.
//!
//! Pure: the caller supplies the previous record (from the store's current view), what the
//! analysis found now, and the clock. The result says what to write — and whether anything needs
//! writing at all, so an unchanged verdict costs no database write.
//!
//! ```text
//!   none ──changes──▶ active ──no change──▶ resolved ──changes──▶ active (new episode)
//!                      │  ▲
//!                      └──┘ changes remain (same episode)
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::change::{self, Change};
use crate::identity::ResourceKey;
use crate::path::FieldPath;
use crate::record::{DriftRecord, DriftStatus, Episode};
use crate::warning::Warning;

/// What one analysis found for one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Identity.
    pub key: ResourceKey,
    /// The API version compared (the Git manifest's, or the live object's when unmanaged).
    pub api_version: String,
    /// True when the resource is in Git.
    pub managed: bool,
    /// The changes found now (any order; they are sorted here).
    pub changes: Vec<Change>,
    /// Warnings found now (any order; they are sorted here).
    pub warnings: Vec<Warning>,
    /// Normalised desired object.
    pub desired_state: Option<Value>,
    /// Normalised live object.
    pub live_state: Option<Value>,
    /// `sha256:` hash of the desired object.
    pub desired_hash: Option<String>,
    /// `sha256:` hash of the live object.
    pub live_hash: Option<String>,
    /// Full commit SHA of the desired state.
    pub git_commit: Option<String>,
    /// `path#N` of the manifest.
    pub source_path: Option<String>,
    /// 1-based line of the document in that file, when known.
    pub source_line: Option<usize>,
    /// The Helm release that rendered the desired object.
    pub helm_release: Option<String>,
    /// Why the drift went away, when the caller knows better than the hashes tell (an ignore
    /// rule that now matches, a recreated object). Only consulted on `active` → `resolved`.
    pub cause: Option<ResolutionCause>,
}

/// Why an active drift ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolutionCause {
    /// The live object was changed back (re-apply, manual revert).
    LiveMatches,
    /// A new commit adopted the live value.
    CommitAdopted,
    /// An ignore rule now covers the drifted fields.
    IgnoreRule,
    /// The resource was removed from Git.
    RemovedFromGit,
    /// The resource was deleted and created again from Git.
    Recreated,
}

/// A lifecycle event worth a log line (⚠️ detected, 🔄 continued, ✅ resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A new episode started.
    Detected,
    /// Still drifted, and the set of changed fields differs from before.
    Continued,
    /// The episode ended.
    Resolved,
}

/// The outcome of [`advance`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The record as it should be now (the previous one, untouched, when nothing changed).
    pub record: DriftRecord,
    /// The event to log, if any.
    pub event: Option<Event>,
    /// The history episode to write (opened, updated or closed), if any.
    pub episode: Option<Episode>,
    /// True when the verdict changed and the record (and `episode`) must be written.
    pub changed: bool,
}

// === impl ResolutionCause ===

impl ResolutionCause {
    /// The human message stored in `resolution_message`, naming the commit where one is
    /// involved (abbreviated to 7 characters, as Git does).
    pub fn message(self, commit: Option<&str>) -> String {
        let short = commit.filter(|c| !c.is_empty()).map(short_commit);
        match (self, short) {
            (ResolutionCause::LiveMatches, Some(c)) => {
                format!("live state matches Git again at commit {c}")
            }
            (ResolutionCause::LiveMatches, None) => "live state matches Git again".to_owned(),
            (ResolutionCause::CommitAdopted, Some(c)) => {
                format!("commit {c} adopts the live value")
            }
            (ResolutionCause::CommitAdopted, None) => "Git now adopts the live value".to_owned(),
            (ResolutionCause::IgnoreRule, _) => "an ignore rule now covers it".to_owned(),
            (ResolutionCause::RemovedFromGit, Some(c)) => {
                format!("resource removed from Git at commit {c}")
            }
            (ResolutionCause::RemovedFromGit, None) => "resource removed from Git".to_owned(),
            (ResolutionCause::Recreated, Some(c)) => {
                format!("resource recreated from Git at commit {c}")
            }
            (ResolutionCause::Recreated, None) => "resource recreated".to_owned(),
        }
    }
}

// === impl Event ===

impl Event {
    /// `detected`, `continued` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Detected => "detected",
            Event::Continued => "continued",
            Event::Resolved => "resolved",
        }
    }
}

/// Moves a resource's record one step (contract §4).
///
/// `previous` is the record in the current view (`None` for a resource never seen). The returned
/// [`Transition::changed`] is false when the verdict — status, changes, hashes, commit, source,
/// `managed`, API version — is identical to `previous`; then nothing should be written and
/// `last_updated` keeps its value.
pub fn advance(
    previous: Option<&DriftRecord>,
    mut obs: Observation,
    now: DateTime<Utc>,
) -> Transition {
    let mut changes = std::mem::take(&mut obs.changes);
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    let mut warnings = std::mem::take(&mut obs.warnings);
    warnings.sort();
    warnings.dedup();
    let was_active = previous.is_some_and(|p| p.drift_status == DriftStatus::Active);

    let mut event = None;
    let mut episode = None;
    let status;
    let first_detected: Option<DateTime<Utc>>;
    let resolved_at;
    let resolution_message;

    if !changes.is_empty() {
        status = DriftStatus::Active;
        resolved_at = None;
        resolution_message = None;
        let start = match previous.filter(|_| was_active) {
            Some(prev) => {
                if field_set(&prev.drift_details) != field_set(&changes) {
                    event = Some(Event::Continued);
                }
                prev.first_detected.unwrap_or(now)
            }
            None => {
                event = Some(Event::Detected);
                now
            }
        };
        first_detected = Some(start);
        episode = Some(episode_of(
            start,
            None,
            None,
            &changes,
            obs.git_commit.clone(),
        ));
    } else if let Some(prev) = previous.filter(|_| was_active) {
        status = DriftStatus::Resolved;
        let start = prev.first_detected.unwrap_or(now);
        first_detected = Some(start);
        let cause = obs.cause.unwrap_or_else(|| infer_cause(prev, &obs));
        let message = cause.message(obs.git_commit.as_deref());
        resolved_at = Some(now);
        event = Some(Event::Resolved);
        episode = Some(episode_of(
            start,
            Some(now),
            Some(message.clone()),
            &prev.drift_details,
            prev.git_commit.clone(),
        ));
        resolution_message = Some(message);
    } else {
        // No change now and none before: `resolved` stays resolved (with its episode's dates),
        // everything else is `none`.
        match previous.filter(|p| p.drift_status == DriftStatus::Resolved) {
            Some(prev) => {
                status = DriftStatus::Resolved;
                first_detected = prev.first_detected;
                resolved_at = prev.resolved_at;
                resolution_message = prev.resolution_message.clone();
            }
            None => {
                status = DriftStatus::None;
                first_detected = previous.and_then(|p| p.first_detected);
                resolved_at = previous.and_then(|p| p.resolved_at);
                resolution_message = previous.and_then(|p| p.resolution_message.clone());
            }
        }
    }

    let (drift_type, severity) = match change::headline(&changes) {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    let record = DriftRecord {
        id: obs.key.record_uuid(),
        resource_id: obs.key.resource_id(),
        kind: obs.key.kind.clone(),
        namespace: obs.key.namespace.clone(),
        name: obs.key.name.clone(),
        api_version: obs.api_version,
        drift_detected: status == DriftStatus::Active,
        drift_status: status,
        drift_details: changes,
        warnings,
        drift_type,
        severity,
        desired_state: obs.desired_state,
        live_state: obs.live_state,
        last_known_good_hash: obs.desired_hash,
        live_hash: obs.live_hash,
        git_commit: obs.git_commit,
        source_path: obs.source_path,
        source_line: obs.source_line,
        helm_release: obs.helm_release,
        managed: obs.managed,
        first_detected,
        resolved_at,
        resolution_message,
        last_updated: now,
        created_at: previous.map_or(now, |p| p.created_at),
    };

    match previous {
        Some(prev) if same_verdict(prev, &record) => Transition {
            record: prev.clone(),
            event: None,
            episode: None,
            changed: false,
        },
        _ => Transition {
            record,
            event,
            episode,
            changed: true,
        },
    }
}

/// A resource gone from both Git and the cluster leaves the current view (contract §4). Returns
/// the episode to close when it was still drifting; its history stays. `git_commit` is the
/// commit the analysis ran at, named in the message.
pub fn leave_view(
    previous: &DriftRecord,
    git_commit: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Episode> {
    if previous.drift_status != DriftStatus::Active {
        return None;
    }
    let message = match git_commit.filter(|c| !c.is_empty()) {
        Some(c) => format!(
            "resource removed from Git at commit {} and deleted from the cluster",
            short_commit(c)
        ),
        None => "resource removed from Git and deleted from the cluster".to_owned(),
    };
    Some(episode_of(
        previous.first_detected.unwrap_or(now),
        Some(now),
        Some(message),
        &previous.drift_details,
        previous.git_commit.clone(),
    ))
}

/// The first 7 characters of a commit SHA.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn episode_of(
    first_detected: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    resolution_message: Option<String>,
    changes: &[Change],
    git_commit: Option<String>,
) -> Episode {
    let headline = change::headline(changes);
    Episode {
        first_detected,
        resolved_at,
        resolution_message,
        drift_type: headline.map(|(t, _)| t),
        severity: headline.map(|(_, s)| s),
        changes: changes.to_vec(),
        git_commit,
    }
}

fn field_set(changes: &[Change]) -> BTreeSet<&FieldPath> {
    changes.iter().map(|c| &c.field).collect()
}

/// Which side moved since the drifting verdict tells why it ended.
fn infer_cause(prev: &DriftRecord, obs: &Observation) -> ResolutionCause {
    if !obs.managed || obs.desired_hash.is_none() {
        return ResolutionCause::RemovedFromGit;
    }
    if prev.live_hash.is_none() && obs.live_hash.is_some() {
        return ResolutionCause::Recreated;
    }
    let desired_moved = prev.last_known_good_hash != obs.desired_hash;
    let live_moved = prev.live_hash != obs.live_hash;
    match (desired_moved, live_moved) {
        (_, true) => ResolutionCause::LiveMatches,
        (true, false) => ResolutionCause::CommitAdopted,
        // Neither side moved, yet the changes are gone: a rule now hides them.
        (false, false) => ResolutionCause::IgnoreRule,
    }
}

fn same_verdict(prev: &DriftRecord, next: &DriftRecord) -> bool {
    prev.drift_status == next.drift_status
        && prev.drift_details == next.drift_details
        && prev.warnings == next.warnings
        && prev.last_known_good_hash == next.last_known_good_hash
        && prev.live_hash == next.live_hash
        && prev.git_commit == next.git_commit
        && prev.source_path == next.source_path
        && prev.source_line == next.source_line
        && prev.helm_release == next.helm_release
        && prev.managed == next.managed
        && prev.api_version == next.api_version
        && prev.first_detected == next.first_detected
        && prev.resolved_at == next.resolved_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{DriftType, Op, Severity};
    use chrono::TimeZone;

    const C1: &str = "3f2a9c1d0e5b6a7980112233445566778899aabb";
    const C2: &str = "9be0d11f00112233445566778899aabbccddeeff";

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 4, minute, 0)
            .single()
            .unwrap_or_default()
    }

    fn replicas(from: i64, to: i64) -> Change {
        Change {
            field: FieldPath::parse("spec.replicas").unwrap_or_default(),
            op: Op::Changed,
            from: Some(from.into()),
            to: Some(to.into()),
            drift_type: DriftType::Scaling,
            severity: if to > from * 3 / 2 {
                Severity::High
            } else {
                Severity::Medium
            },
            manager: Some("kubectl".into()),
            changed_at: None,
            source_line: None,
        }
    }

    fn label() -> Change {
        Change {
            field: FieldPath::parse("metadata.labels.hotfix").unwrap_or_default(),
            op: Op::Added,
            from: None,
            to: Some("true".into()),
            drift_type: DriftType::LabelChange,
            severity: Severity::Low,
            manager: None,
            changed_at: None,
            source_line: None,
        }
    }

    fn obs(changes: Vec<Change>, desired: &str, live: &str, commit: &str) -> Observation {
        Observation {
            key: ResourceKey::new("apps", "Deployment", "shop", "web"),
            api_version: "apps/v1".into(),
            managed: true,
            changes,
            warnings: Vec::new(),
            desired_state: Some(serde_json::json!({"d": desired})),
            live_state: Some(serde_json::json!({"l": live})),
            desired_hash: Some(format!("sha256:{desired}")),
            live_hash: Some(format!("sha256:{live}")),
            git_commit: Some(commit.into()),
            source_path: Some("apps/web.yaml#0".into()),
            source_line: None,
            helm_release: None,
            cause: None,
        }
    }

    /// An active record at minute 1 with replicas 2→3 against desired `d1` / live `l2`.
    fn active() -> DriftRecord {
        let t = advance(None, obs(vec![replicas(2, 3)], "d1", "l2", C1), at(1));
        assert_eq!(t.record.drift_status, DriftStatus::Active);
        t.record
    }

    #[test]
    fn new_clean_resource_is_none_and_written_once() {
        let t = advance(None, obs(vec![], "d1", "l1", C1), at(0));
        assert!(t.changed);
        assert_eq!(t.event, None);
        assert_eq!(t.episode, None);
        let r = &t.record;
        assert_eq!(r.drift_status, DriftStatus::None);
        assert!(!r.drift_detected);
        assert!(r.drift_details.is_empty());
        assert_eq!((r.drift_type, r.severity), (None, None));
        assert_eq!(r.first_detected, None);
        assert_eq!(r.resource_id, "Deployment:shop:web");
        assert_eq!(r.created_at, at(0));
        assert_eq!(r.last_updated, at(0));

        let again = advance(Some(r), obs(vec![], "d1", "l1", C1), at(5));
        assert!(!again.changed, "an identical verdict is not rewritten");
        assert_eq!(again.record.last_updated, at(0));
    }

    #[test]
    fn none_to_active_opens_an_episode() {
        let clean = advance(None, obs(vec![], "d1", "l1", C1), at(0)).record;
        let t = advance(
            Some(&clean),
            obs(vec![label(), replicas(2, 4)], "d1", "l2", C1),
            at(1),
        );
        assert!(t.changed);
        assert_eq!(t.event, Some(Event::Detected));
        let r = &t.record;
        assert!(r.drift_detected);
        assert_eq!(r.drift_status, DriftStatus::Active);
        assert_eq!(r.first_detected, Some(at(1)));
        assert_eq!(r.resolved_at, None);
        assert_eq!(r.created_at, at(0));
        assert_eq!(r.drift_type, Some(DriftType::Scaling));
        assert_eq!(r.severity, Some(Severity::High));
        // sorted by field: metadata… before spec…
        assert_eq!(r.drift_details[0].drift_type, DriftType::LabelChange);
        let e = t.episode.unwrap_or_else(|| panic!("episode"));
        assert_eq!(e.first_detected, at(1));
        assert_eq!(e.resolved_at, None);
        assert_eq!(e.changes.len(), 2);
        assert_eq!(e.git_commit.as_deref(), Some(C1));
    }

    #[test]
    fn active_unchanged_is_not_written() {
        let a = active();
        let t = advance(Some(&a), obs(vec![replicas(2, 3)], "d1", "l2", C1), at(9));
        assert!(!t.changed);
        assert_eq!(t.event, None);
        assert_eq!(t.episode, None);
        assert_eq!(t.record, a);
    }

    #[test]
    fn active_with_other_value_same_fields_is_written_silently() {
        let a = active();
        let t = advance(Some(&a), obs(vec![replicas(2, 5)], "d1", "l3", C1), at(2));
        assert!(t.changed);
        assert_eq!(t.event, None, "same set of fields: no 'continued' log");
        assert_eq!(t.record.first_detected, Some(at(1)));
        assert_eq!(t.record.last_updated, at(2));
        let e = t.episode.unwrap_or_else(|| panic!("episode"));
        assert_eq!(e.first_detected, at(1), "same episode");
        assert_eq!(e.severity, Some(Severity::High));
    }

    #[test]
    fn active_with_other_fields_continues() {
        let a = active();
        let t = advance(
            Some(&a),
            obs(vec![replicas(2, 3), label()], "d1", "l3", C1),
            at(2),
        );
        assert_eq!(t.event, Some(Event::Continued));
        assert_eq!(t.record.first_detected, Some(at(1)));
        assert_eq!(t.record.drift_details.len(), 2);
    }

    #[test]
    fn resolved_by_live_revert_names_the_commit() {
        let a = active();
        let t = advance(Some(&a), obs(vec![], "d1", "l1", C1), at(3));
        assert!(t.changed);
        assert_eq!(t.event, Some(Event::Resolved));
        let r = &t.record;
        assert_eq!(r.drift_status, DriftStatus::Resolved);
        assert!(!r.drift_detected);
        assert!(r.drift_details.is_empty());
        assert_eq!((r.drift_type, r.severity), (None, None));
        assert_eq!(r.first_detected, Some(at(1)), "kept after resolution");
        assert_eq!(r.resolved_at, Some(at(3)));
        assert_eq!(
            r.resolution_message.as_deref(),
            Some("live state matches Git again at commit 3f2a9c1")
        );
        let e = t.episode.unwrap_or_else(|| panic!("episode"));
        assert_eq!(e.first_detected, at(1));
        assert_eq!(e.resolved_at, Some(at(3)));
        assert_eq!(e.duration(), Some(chrono::Duration::minutes(2)));
        assert_eq!(
            e.changes, a.drift_details,
            "the changes seen before resolution"
        );
        assert_eq!(e.drift_type, Some(DriftType::Scaling));
    }

    #[test]
    fn resolved_by_commit_adopting_the_live_value() {
        let a = active();
        let t = advance(Some(&a), obs(vec![], "d2", "l2", C2), at(3));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("commit 9be0d11 adopts the live value")
        );
        assert_eq!(t.record.git_commit.as_deref(), Some(C2));
        let e = t.episode.unwrap_or_else(|| panic!("episode"));
        assert_eq!(
            e.git_commit.as_deref(),
            Some(C1),
            "measured against the old commit"
        );
    }

    #[test]
    fn resolved_by_ignore_rule() {
        let a = active();
        let t = advance(Some(&a), obs(vec![], "d1", "l2", C1), at(3));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("an ignore rule now covers it")
        );
        let mut hinted = obs(vec![], "d1", "l1", C1);
        hinted.cause = Some(ResolutionCause::IgnoreRule);
        let t = advance(Some(&a), hinted, at(3));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("an ignore rule now covers it"),
            "the caller's hint wins over the hashes"
        );
    }

    #[test]
    fn resolved_by_removal_from_git() {
        let a = active();
        let mut o = obs(vec![], "d1", "l2", C2);
        o.managed = false;
        o.desired_hash = None;
        o.desired_state = None;
        let t = advance(Some(&a), o, at(3));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("resource removed from Git at commit 9be0d11")
        );
        assert!(!t.record.managed);
    }

    #[test]
    fn resolved_by_recreation() {
        let mut missing = obs(vec![replicas(2, 3)], "d1", "l2", C1);
        missing.changes[0].drift_type = DriftType::MissingResource;
        missing.live_hash = None;
        missing.live_state = None;
        let a = advance(None, missing, at(1)).record;
        let t = advance(Some(&a), obs(vec![], "d1", "l1", C1), at(4));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("resource recreated from Git at commit 3f2a9c1")
        );
        let mut hinted = obs(vec![], "d1", "l1", C1);
        hinted.cause = Some(ResolutionCause::Recreated);
        hinted.git_commit = None;
        let t = advance(Some(&active()), hinted, at(4));
        assert_eq!(
            t.record.resolution_message.as_deref(),
            Some("resource recreated")
        );
    }

    #[test]
    fn resolved_stays_resolved_until_it_drifts_again() {
        let a = active();
        let r = advance(Some(&a), obs(vec![], "d1", "l1", C1), at(3)).record;
        let same = advance(Some(&r), obs(vec![], "d1", "l1", C1), at(4));
        assert!(!same.changed);
        assert_eq!(same.record.drift_status, DriftStatus::Resolved);

        // A new commit that changes nothing relevant: still resolved, dates kept, written.
        let moved = advance(Some(&r), obs(vec![], "d3", "l3", C2), at(5));
        assert!(moved.changed);
        assert_eq!(moved.event, None);
        assert_eq!(moved.episode, None);
        assert_eq!(moved.record.drift_status, DriftStatus::Resolved);
        assert_eq!(moved.record.resolved_at, Some(at(3)));
        assert_eq!(moved.record.first_detected, Some(at(1)));
        assert_eq!(moved.record.resolution_message, r.resolution_message);
        assert_eq!(moved.record.last_updated, at(5));
    }

    #[test]
    fn resolved_that_drifts_again_starts_a_new_episode() {
        let a = active();
        let r = advance(Some(&a), obs(vec![], "d1", "l1", C1), at(3)).record;
        let t = advance(Some(&r), obs(vec![label()], "d1", "l4", C1), at(7));
        assert_eq!(t.event, Some(Event::Detected));
        assert_eq!(t.record.first_detected, Some(at(7)));
        assert_eq!(t.record.resolved_at, None);
        assert_eq!(t.record.resolution_message, None);
        assert_eq!(t.record.created_at, at(1));
        let e = t.episode.unwrap_or_else(|| panic!("episode"));
        assert_eq!(e.first_detected, at(7));
        assert_eq!(e.resolved_at, None);
    }

    #[test]
    fn drift_found_by_a_new_commit() {
        let clean = advance(None, obs(vec![], "d1", "l1", C1), at(0)).record;
        let t = advance(
            Some(&clean),
            obs(vec![replicas(3, 2)], "d2", "l1", C2),
            at(2),
        );
        assert_eq!(t.event, Some(Event::Detected));
        assert_eq!(t.record.git_commit.as_deref(), Some(C2));
    }

    #[test]
    fn leaving_the_view_closes_an_open_episode_only() {
        let a = active();
        let e = leave_view(&a, Some(C2), at(6)).unwrap_or_else(|| panic!("episode"));
        assert_eq!(e.first_detected, at(1));
        assert_eq!(e.resolved_at, Some(at(6)));
        assert_eq!(
            e.resolution_message.as_deref(),
            Some("resource removed from Git at commit 9be0d11 and deleted from the cluster")
        );
        let r = advance(Some(&a), obs(vec![], "d1", "l1", C1), at(3)).record;
        assert_eq!(leave_view(&r, Some(C2), at(6)), None);
        let clean = advance(None, obs(vec![], "d1", "l1", C1), at(0)).record;
        assert_eq!(leave_view(&clean, None, at(6)), None);
    }

    #[test]
    fn messages_without_commit_and_short_commits() {
        assert_eq!(short_commit("abc"), "abc");
        assert_eq!(short_commit(C1), "3f2a9c1");
        assert_eq!(
            ResolutionCause::LiveMatches.message(Some("")),
            "live state matches Git again"
        );
        assert_eq!(
            ResolutionCause::RemovedFromGit.message(None),
            "resource removed from Git"
        );
        assert_eq!(Event::Continued.as_str(), "continued");
    }
}

//! Query and path parsing of the record listings and lookups; every refusal is a 400 naming
//! the parameter.

use std::collections::HashSet;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use chrono::{DateTime, Utc};
use driftguard_core::{DriftStatus, DriftType, Severity};
use driftguard_store::{DEFAULT_LIMIT, MAX_LIMIT, RecordQuery};

use super::error::{ApiError, echo};
use crate::openapi::{LIST_PARAMETERS, MAX_OFFSET};

pub(super) fn parse_list_query(
    pairs: Vec<(String, String)>,
    forced: Option<DriftStatus>,
) -> Result<RecordQuery, ApiError> {
    let mut query = RecordQuery {
        limit: DEFAULT_LIMIT,
        ..RecordQuery::default()
    };
    let mut seen = HashSet::new();
    for (key, value) in pairs {
        if !LIST_PARAMETERS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {}; accepted: {}",
                    echo(&key),
                    LIST_PARAMETERS.join(", ")
                ),
            ));
        }
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("query parameter `{key}` is given more than once"),
            ));
        }
        match key.as_str() {
            "namespace" => query.namespace = Some(value),
            "kind" => query.kind = Some(value),
            "drift_detected" => {
                query.drift_detected = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::invalid("drift_detected", "true or false")),
                });
            }
            "status" => {
                let status: DriftStatus = value
                    .parse()
                    .map_err(|_| ApiError::invalid("status", "active, resolved or none"))?;
                if let Some(forced) = forced
                    && forced != status
                {
                    return Err(ApiError::bad_request(
                        "conflicting_parameter",
                        format!(
                            "this endpoint lists only `{forced}` records; `status` cannot be `{status}`"
                        ),
                    ));
                }
                query.status = Some(status);
            }
            "severity" => {
                query.severity = Some(
                    value
                        .parse::<Severity>()
                        .map_err(|_| ApiError::invalid("severity", "low, medium or high"))?,
                );
            }
            "type" => {
                query.drift_type = Some(value.parse::<DriftType>().map_err(|_| {
                    ApiError::invalid("type", "a drift type such as Scaling or VersionChange")
                })?);
            }
            "since" => {
                let since = parse_since(&value).ok_or_else(|| {
                    ApiError::invalid("since", "an RFC 3339 time such as 2024-05-01T12:00:00Z")
                })?;
                // The stores count nanoseconds in an i64 (1678–2262); every record is younger
                // than the lower bound, so an earlier `since` is no filter at all.
                let before_range = since.timestamp_nanos_opt().is_none() && since.timestamp() < 0;
                query.since = (!before_range).then_some(since);
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", &format!("an integer from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "offset" => {
                query.offset = value
                    .parse::<u64>()
                    .ok()
                    .filter(|o| *o <= MAX_OFFSET)
                    .ok_or_else(|| {
                        ApiError::invalid("offset", &format!("an integer from 0 to {MAX_OFFSET}"))
                    })?;
            }
            "after" => query.after = Some(value),
            _ => {}
        }
    }
    if seen.contains("after") && seen.contains("offset") {
        return Err(ApiError::bad_request(
            "conflicting_parameter",
            "`after` and `offset` cannot be combined: page by position (`offset`) or after a \
             resource id (`after`, the last `resource_id` of the previous page)",
        ));
    }
    if forced.is_some() {
        query.status = forced;
    }
    Ok(query)
}

/// An RFC 3339 time, `None` when unparsable.
fn parse_since(value: &str) -> Option<DateTime<Utc>> {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok();
    let parsed = parse(value).or_else(|| {
        // `+01:00` sent without percent-encoding arrives as ` 01:00`.
        let at = value.rfind(' ')?;
        parse(&format!("{}+{}", &value[..at], &value[at + 1..]))
    })?;
    Some(parsed.with_timezone(&Utc))
}

pub(super) fn path_value(
    value: Result<Path<String>, PathRejection>,
    name: &str,
) -> Result<String, ApiError> {
    value.map(|Path(v)| v).map_err(|_| {
        ApiError::bad_request(
            "invalid_path",
            format!("the `{name}` path segment is not valid percent-encoded UTF-8"),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn since_accepts_rfc3339_and_repairs_an_unencoded_plus() {
        let q = parse_list_query(pairs(&[("since", "2024-05-01T12:00:00 02:00")]), None).unwrap();
        assert_eq!(q.since.unwrap().to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let q = parse_list_query(pairs(&[("since", "0001-01-01T00:00:00Z")]), None).unwrap();
        assert_eq!(q.since, None, "before the store's range selects everything");
        assert!(parse_list_query(pairs(&[("since", "yesterday")]), None).is_err());
    }

    #[test]
    fn forced_status_wins_and_conflicts_are_rejected() {
        let q = parse_list_query(Vec::new(), Some(DriftStatus::Active)).unwrap();
        assert_eq!(q.status, Some(DriftStatus::Active));
        assert!(
            parse_list_query(pairs(&[("status", "active")]), Some(DriftStatus::Active)).is_ok()
        );
        let err =
            parse_list_query(pairs(&[("status", "none")]), Some(DriftStatus::Active)).unwrap_err();
        assert_eq!(err.code, "conflicting_parameter");
    }

    #[test]
    fn after_is_keyset_paging_and_excludes_offset() {
        let q = parse_list_query(pairs(&[("after", "Deployment:prod:api")]), None).unwrap();
        assert_eq!(q.after.as_deref(), Some("Deployment:prod:api"));
        assert_eq!(q.offset, 0);
        let err = parse_list_query(pairs(&[("offset", "0"), ("after", "a")]), None).unwrap_err();
        assert_eq!(err.code, "conflicting_parameter");
        assert!(err.message.contains("`after`") && err.message.contains("`offset`"));
    }
}

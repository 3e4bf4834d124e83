//! Which events a sink takes: minimum severity, namespaces, kinds, drift types and event kinds
//! (`notifications.*`). Names match exactly (no globs); an empty list takes everything.

use std::collections::BTreeSet;

use driftguard_config::NotificationFilter;
use driftguard_core::{DriftType, Severity};

use super::{EventKind, Notice};

/// One sink's routing, parsed from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    min_severity: Severity,
    namespaces: BTreeSet<String>,
    kinds: BTreeSet<String>,
    drift_types: BTreeSet<DriftType>,
    events: BTreeSet<EventKind>,
}

impl Route {
    /// Parses a sink's filter (the configuration has validated it; the error names the field).
    pub fn new(filter: &NotificationFilter<'_>) -> Result<Self, String> {
        let min_severity = filter
            .min_severity
            .parse()
            .map_err(|e| format!("min_severity: {e}"))?;
        let drift_types = filter
            .drift_types
            .iter()
            .map(|t| t.parse().map_err(|e| format!("drift_types: {e}")))
            .collect::<Result<_, _>>()?;
        let events = filter
            .events
            .iter()
            .map(|e| e.parse().map_err(|e| format!("events: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            min_severity,
            namespaces: filter.namespaces.iter().cloned().collect(),
            kinds: filter.kinds.iter().cloned().collect(),
            drift_types,
            events,
        })
    }

    /// Whether the sink takes this record event. An event whose episode has no severity or
    /// type (it should not happen) passes only filters that do not ask for one.
    pub fn accepts(&self, notice: &Notice) -> bool {
        let record = &notice.record;
        self.events.contains(&notice.event)
            && notice
                .severity
                .map_or(self.min_severity == Severity::Low, |s| {
                    s >= self.min_severity
                })
            && (self.namespaces.is_empty() || self.namespaces.contains(&record.namespace))
            && (self.kinds.is_empty() || self.kinds.contains(&record.kind))
            && (self.drift_types.is_empty()
                || notice
                    .drift_type
                    .is_some_and(|t| self.drift_types.contains(&t)))
    }

    /// Whether the sink takes component health events (only `events` applies to them).
    pub fn accepts_health(&self) -> bool {
        self.events.contains(&EventKind::Health)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::*;
    use super::*;

    fn route(
        min_severity: &str,
        namespaces: &[&str],
        kinds: &[&str],
        drift_types: &[&str],
        events: &[&str],
    ) -> Route {
        let own = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (namespaces, kinds, drift_types, events) =
            (own(namespaces), own(kinds), own(drift_types), own(events));
        Route::new(&NotificationFilter {
            min_severity,
            namespaces: &namespaces,
            kinds: &kinds,
            drift_types: &drift_types,
            events: &events,
        })
        .unwrap()
    }

    fn notice(
        event: EventKind,
        namespace: &str,
        kind: &str,
        severity: Severity,
        drift_type: DriftType,
    ) -> Notice {
        let mut n = Notice::new(event, record(kind, namespace, "x"), at(3));
        n.severity = Some(severity);
        n.drift_type = Some(drift_type);
        n
    }

    const RECORD_EVENTS: &[&str] = &["detected", "changed", "resolved"];

    #[test]
    fn routing_matrix() {
        use DriftType::*;
        use EventKind::*;
        use Severity::*;
        let everything = route("low", &[], &[], &[], RECORD_EVENTS);
        let high_only = route("high", &[], &[], &[], RECORD_EVENTS);
        let medium_up = route("medium", &[], &[], &[], RECORD_EVENTS);
        let prod = route("low", &["prod"], &[], &[], RECORD_EVENTS);
        let deployments = route("low", &[], &["Deployment"], &[], RECORD_EVENTS);
        let secrets = route("low", &[], &[], &["SecretChange"], RECORD_EVENTS);
        let resolved_only = route("low", &[], &[], &[], &["resolved"]);
        let combined = route(
            "medium",
            &["prod", "payments"],
            &["Deployment"],
            &["Scaling", "VersionChange"],
            &["detected", "resolved"],
        );
        // (route, event, namespace, kind, severity, type, expected)
        let cases = [
            (
                &everything,
                Detected,
                "dev",
                "ConfigMap",
                Low,
                LabelChange,
                true,
            ),
            (
                &everything,
                Changed,
                "prod",
                "Secret",
                High,
                SecretChange,
                true,
            ),
            (
                &everything,
                Resolved,
                "",
                "ClusterRole",
                Medium,
                SecurityChange,
                true,
            ),
            (
                &high_only,
                Detected,
                "prod",
                "Deployment",
                Medium,
                Scaling,
                false,
            ),
            (
                &high_only,
                Detected,
                "prod",
                "Deployment",
                High,
                Scaling,
                true,
            ),
            (
                &medium_up,
                Detected,
                "prod",
                "Deployment",
                Low,
                Scaling,
                false,
            ),
            (
                &medium_up,
                Resolved,
                "prod",
                "Deployment",
                Medium,
                Scaling,
                true,
            ),
            (&prod, Detected, "prod", "Deployment", Low, Scaling, true),
            (
                &prod,
                Detected,
                "production",
                "Deployment",
                Low,
                Scaling,
                false,
            ),
            (
                &prod,
                Detected,
                "",
                "ClusterRole",
                High,
                SecurityChange,
                false,
            ),
            (
                &deployments,
                Detected,
                "prod",
                "Deployment",
                Low,
                Scaling,
                true,
            ),
            (
                &deployments,
                Detected,
                "prod",
                "deployment",
                Low,
                Scaling,
                false,
            ),
            (
                &deployments,
                Detected,
                "prod",
                "StatefulSet",
                Low,
                Scaling,
                false,
            ),
            (
                &secrets,
                Changed,
                "prod",
                "Secret",
                High,
                SecretChange,
                true,
            ),
            (
                &secrets,
                Changed,
                "prod",
                "Deployment",
                High,
                SecretChange,
                true,
            ),
            (
                &secrets,
                Changed,
                "prod",
                "Secret",
                High,
                LabelChange,
                false,
            ),
            (
                &resolved_only,
                Detected,
                "prod",
                "Deployment",
                High,
                Scaling,
                false,
            ),
            (
                &resolved_only,
                Changed,
                "prod",
                "Deployment",
                High,
                Scaling,
                false,
            ),
            (
                &resolved_only,
                Resolved,
                "prod",
                "Deployment",
                Low,
                Scaling,
                true,
            ),
            (
                &combined,
                Detected,
                "payments",
                "Deployment",
                High,
                VersionChange,
                true,
            ),
            (
                &combined,
                Resolved,
                "prod",
                "Deployment",
                Medium,
                Scaling,
                true,
            ),
            (
                &combined,
                Changed,
                "prod",
                "Deployment",
                Medium,
                Scaling,
                false,
            ),
            (
                &combined,
                Detected,
                "dev",
                "Deployment",
                High,
                Scaling,
                false,
            ),
            (&combined, Detected, "prod", "Service", High, Scaling, false),
            (
                &combined,
                Detected,
                "prod",
                "Deployment",
                Low,
                Scaling,
                false,
            ),
            (
                &combined,
                Detected,
                "prod",
                "Deployment",
                High,
                PortChange,
                false,
            ),
        ];
        for (i, (route, event, namespace, kind, severity, drift_type, expected)) in
            cases.into_iter().enumerate()
        {
            let n = notice(event, namespace, kind, severity, drift_type);
            assert_eq!(route.accepts(&n), expected, "case {i}: {route:?} {n:?}");
        }
    }

    #[test]
    fn an_episode_without_severity_or_type_passes_only_open_filters() {
        let mut n = Notice::new(
            EventKind::Detected,
            record("Deployment", "prod", "x"),
            at(3),
        );
        n.severity = None;
        n.drift_type = None;
        assert!(route("low", &[], &[], &[], RECORD_EVENTS).accepts(&n));
        assert!(!route("medium", &[], &[], &[], RECORD_EVENTS).accepts(&n));
        assert!(!route("low", &[], &[], &["Scaling"], RECORD_EVENTS).accepts(&n));
    }

    #[test]
    fn health_is_opt_in() {
        assert!(!route("low", &[], &[], &[], RECORD_EVENTS).accepts_health());
        assert!(route("high", &["prod"], &[], &[], &["health"]).accepts_health());
    }

    #[test]
    fn the_configured_defaults_parse_and_bad_values_name_the_field() {
        let config = driftguard_config::WebhookConfig {
            name: "a".to_owned(),
            url: "https://a.example.com".to_owned(),
            secret: None,
            headers: Default::default(),
            min_severity: "low".to_owned(),
            namespaces: vec![],
            kinds: vec![],
            drift_types: vec![],
            events: driftguard_config::DEFAULT_NOTIFICATION_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        };
        let r = Route::new(&config.filter()).unwrap();
        assert_eq!(r, route("low", &[], &[], &[], RECORD_EVENTS));
        let bad = driftguard_config::WebhookConfig {
            min_severity: "critical".to_owned(),
            ..config.clone()
        };
        assert!(
            Route::new(&bad.filter())
                .unwrap_err()
                .starts_with("min_severity")
        );
        let bad = driftguard_config::WebhookConfig {
            drift_types: vec!["Scale".to_owned()],
            ..config
        };
        assert!(
            Route::new(&bad.filter())
                .unwrap_err()
                .starts_with("drift_types")
        );
    }
}

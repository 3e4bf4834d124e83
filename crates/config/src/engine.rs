//! `drift_detection.*` as the engine's types, built in one place: the load checks it (so an
//! error names the key and its origin) and both commands use it.

use driftguard_core::FieldPath;
use driftguard_core::engine::{EngineConfig, IgnoreRule};

use crate::types::DriftDetectionConfig;

impl DriftDetectionConfig {
    /// The engine configuration: appliers, controllers and compiled ignore rules. The error
    /// names the rule (`rule <i>: …`); on a loaded configuration it cannot fail.
    pub fn engine_config(&self) -> Result<EngineConfig, String> {
        let mut ignore = Vec::with_capacity(self.ignore.len());
        for (i, rule) in self.ignore.iter().enumerate() {
            if rule.kind.is_none()
                && rule.namespace.is_none()
                && rule.name.is_none()
                && rule.paths.is_empty()
                && rule.managers.is_empty()
            {
                return Err(format!(
                    "rule {i} has no criteria and would ignore everything"
                ));
            }
            let paths = rule
                .paths
                .iter()
                .map(|p| FieldPath::parse(p).map_err(|e| format!("rule {i}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let compiled = IgnoreRule::new(
                rule.kind.clone(),
                rule.namespace.clone(),
                rule.name.clone(),
                paths,
                rule.managers.clone(),
            )
            .map_err(|e| format!("rule {i}: {e}"))?;
            ignore.push(compiled);
        }
        Ok(EngineConfig {
            appliers: self.appliers.clone(),
            controllers: self.controllers.clone(),
            ignore,
            crd_defaults: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::types::{DriftDetectionConfig, IgnoreRuleConfig};

    #[test]
    fn ignore_rules_compile_once_and_errors_name_the_rule() {
        let mut dd = DriftDetectionConfig::default();
        dd.ignore.push(IgnoreRuleConfig {
            kind: Some("Deployment".to_owned()),
            paths: vec!["spec.replicas".to_owned()],
            ..IgnoreRuleConfig::default()
        });
        assert_eq!(dd.engine_config().map(|e| e.ignore.len()), Ok(1));
        dd.ignore.push(IgnoreRuleConfig::default());
        let error = dd.engine_config().err().unwrap_or_default();
        assert!(error.starts_with("rule 1 has no criteria"), "{error}");
        dd.ignore[1].paths = vec!["spec.[".to_owned()];
        let error = dd.engine_config().err().unwrap_or_default();
        assert!(error.starts_with("rule 1: "), "{error}");
    }
}

//! `drift_detection.redact`: values that are secrets outside Secrets.
//!
//! Each entry is either a field-path pattern applying to every kind, or a mapping
//! `{kind: <glob>, paths: [..]}`:
//!
//! ```yaml
//! drift_detection:
//!   redact:
//!     - spec.template.spec.containers[*].env[name=*PASSWORD*].value
//!     - kind: ConfigMap
//!       paths: [data.password]
//! ```
//!
//! Entries are checked while the configuration is read (a pattern that does not parse is an
//! error naming `drift_detection.redact[<index>]` and its origin), so
//! [`DriftDetectionConfig::redact_rules`] cannot fail on a loaded configuration.

use std::fmt;

use driftguard_core::{RedactRule, RedactRules};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::DriftDetectionConfig;

/// One `drift_detection.redact` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactRuleConfig {
    /// A path pattern applying to objects of every kind.
    Path(String),
    /// Path patterns applying to the kinds matching `kind` (every kind when absent).
    Rule {
        /// Kind glob (`ConfigMap`, `*Config`).
        kind: Option<String>,
        /// Path patterns (contract §2.2 syntax, `*` inside names and values, `[*]`).
        paths: Vec<String>,
    },
}

// === impl RedactRuleConfig ===

impl RedactRuleConfig {
    /// The core rule this entry describes; the error says what is wrong with it.
    pub fn to_rule(&self) -> Result<RedactRule, String> {
        match self {
            Self::Path(path) => RedactRule::parse(None, std::slice::from_ref(path)),
            Self::Rule { kind, paths } => RedactRule::parse(kind.clone(), paths),
        }
    }
}

impl DriftDetectionConfig {
    /// The `redact` entries as the core's rules. Fails only for entries that were not checked
    /// at load (a configuration built in code); the error names the key and the entry.
    pub fn redact_rules(&self) -> Result<RedactRules, String> {
        self.redact
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                entry
                    .to_rule()
                    .map_err(|e| format!("drift_detection.redact[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(RedactRules::new)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFields {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
}

impl Serialize for RedactRuleConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Path(path) => serializer.serialize_str(path),
            Self::Rule { kind, paths } => RuleFields {
                kind: kind.clone(),
                paths: paths.clone(),
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RedactRuleConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RedactRuleConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field path or a mapping {kind, paths}")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                let entry = RedactRuleConfig::Path(text.to_owned());
                entry.to_rule().map_err(E::custom)?;
                Ok(entry)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let fields = RuleFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let entry = RedactRuleConfig::Rule {
                    kind: fields.kind,
                    paths: fields.paths,
                };
                entry.to_rule().map_err(de::Error::custom)?;
                Ok(entry)
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let entries: Vec<RedactRuleConfig> = serde_json::from_str(
            r#"["data.password", {"kind": "Deploy*", "paths": ["spec.template.spec.containers[*].env[name=*PASSWORD*].value"]}]"#,
        )
        .unwrap();
        assert_eq!(entries[0], RedactRuleConfig::Path("data.password".into()));
        let back = serde_json::to_value(&entries).unwrap();
        assert_eq!(back[0], "data.password");
        assert_eq!(back[1]["kind"], "Deploy*");
        let again: Vec<RedactRuleConfig> = serde_json::from_value(back).unwrap();
        assert_eq!(again, entries);
    }

    #[test]
    fn bad_entries_are_refused_while_reading() {
        for bad in [
            r#"["spec..x"]"#,
            r#"[""]"#,
            r#"[{"kind": "[", "paths": ["a"]}]"#,
            r#"[{"kind": "ConfigMap"}]"#,
            r#"[{"kind": "ConfigMap", "paths": ["a"], "name": "x"}]"#,
            "[5]",
        ] {
            assert!(
                serde_json::from_str::<Vec<RedactRuleConfig>>(bad).is_err(),
                "{bad}"
            );
        }
    }
}

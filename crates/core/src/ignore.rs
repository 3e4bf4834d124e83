//! Ignore rules (Argo-CD-like): suppress changes by resource (kind/namespace/name globs), by
//! field path (contract §2.2 syntax with `*`) and by field manager (globs).

use globset::{Glob, GlobMatcher};

use crate::change::Change;
use crate::identity::ResourceKey;
use crate::path::FieldPath;

/// One ignore rule. Every criterion that is set must match. Build it with [`IgnoreRule::new`]
/// (which compiles the globs); the public fields are for reading.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// Kind glob (`Deployment`, `*`); `None` = any kind.
    pub kind: Option<String>,
    /// Namespace glob; `None` = any namespace.
    pub namespace: Option<String>,
    /// Name glob; `None` = any name.
    pub name: Option<String>,
    /// Field path patterns; a pattern also covers everything below it. Empty = the whole
    /// resource (every change, and the `MissingResource`/`UnmanagedResource` verdicts).
    pub paths: Vec<FieldPath>,
    /// Field-manager globs; when set, only changes whose manager matches are ignored (a change
    /// without a known manager never matches).
    pub managers: Vec<String>,
    compiled: Compiled,
}

#[derive(Debug, Clone)]
struct Compiled {
    kind: Option<GlobMatcher>,
    namespace: Option<GlobMatcher>,
    name: Option<GlobMatcher>,
    managers: Vec<GlobMatcher>,
}

// === impl IgnoreRule ===

impl IgnoreRule {
    /// Builds a rule, compiling its globs. The error names the glob that does not compile.
    pub fn new(
        kind: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
        paths: Vec<FieldPath>,
        managers: Vec<String>,
    ) -> Result<Self, String> {
        let compiled = Compiled {
            kind: compile_opt(kind.as_deref(), "kind")?,
            namespace: compile_opt(namespace.as_deref(), "namespace")?,
            name: compile_opt(name.as_deref(), "name")?,
            managers: managers
                .iter()
                .map(|m| compile(m, "manager"))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            kind,
            namespace,
            name,
            paths,
            managers,
            compiled,
        })
    }

    /// Like [`IgnoreRule::new`], with the paths given as text (contract §2.2 syntax).
    pub fn parse(
        kind: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
        paths: &[impl AsRef<str>],
        managers: Vec<String>,
    ) -> Result<Self, String> {
        let paths = paths
            .iter()
            .map(|p| FieldPath::parse(p.as_ref()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Self::new(kind, namespace, name, paths, managers)
    }

    /// True when the rule's kind/namespace/name globs match the resource.
    pub fn matches_resource(&self, key: &ResourceKey) -> bool {
        let hit =
            |glob: &Option<GlobMatcher>, text: &str| glob.as_ref().is_none_or(|g| g.is_match(text));
        hit(&self.compiled.kind, &key.kind)
            && hit(&self.compiled.namespace, &key.namespace)
            && hit(&self.compiled.name, &key.name)
    }

    /// True when the rule covers the whole resource (no path and no manager criterion).
    pub fn covers_whole_resource(&self, key: &ResourceKey) -> bool {
        self.paths.is_empty() && self.managers.is_empty() && self.matches_resource(key)
    }

    /// True when the rule suppresses `change` of the resource `key`.
    pub fn matches(&self, key: &ResourceKey, change: &Change) -> bool {
        if !self.matches_resource(key) {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| change.field.matched_by(p)) {
            return false;
        }
        if !self.compiled.managers.is_empty() {
            let Some(manager) = change.manager.as_deref() else {
                return false;
            };
            return self.compiled.managers.iter().any(|g| g.is_match(manager));
        }
        true
    }
}

impl PartialEq for IgnoreRule {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
            && self.paths == other.paths
            && self.managers == other.managers
    }
}

fn compile(glob: &str, what: &str) -> Result<GlobMatcher, String> {
    Glob::new(glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid {what} glob {glob:?}: {e}"))
}

fn compile_opt(glob: Option<&str>, what: &str) -> Result<Option<GlobMatcher>, String> {
    glob.map(|g| compile(g, what)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{DriftType, Op, Severity};

    fn change(field: &str, manager: Option<&str>) -> Change {
        Change {
            field: FieldPath::parse(field).unwrap_or_default(),
            op: Op::Changed,
            from: None,
            to: None,
            drift_type: DriftType::Scaling,
            severity: Severity::Medium,
            manager: manager.map(str::to_owned),
            changed_at: None,
            source_line: None,
        }
    }

    #[test]
    fn by_resource_path_and_manager() {
        let key = ResourceKey::new("apps", "Deployment", "prod", "web-1");
        let rule = IgnoreRule::parse(
            Some("Deploy*".into()),
            None,
            Some("web-*".into()),
            &["spec.replicas"],
            vec!["horizontal-pod-autoscaler".into()],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(rule.matches(
            &key,
            &change("spec.replicas", Some("horizontal-pod-autoscaler"))
        ));
        assert!(!rule.matches(&key, &change("spec.replicas", Some("kubectl-edit"))));
        assert!(!rule.matches(&key, &change("spec.replicas", None)));
        assert!(!rule.matches(
            &key,
            &change("spec.template", Some("horizontal-pod-autoscaler"))
        ));
        let other = ResourceKey::new("apps", "Deployment", "prod", "api");
        assert!(!rule.matches(
            &other,
            &change("spec.replicas", Some("horizontal-pod-autoscaler"))
        ));
    }

    #[test]
    fn bad_glob_is_an_error() {
        assert!(IgnoreRule::new(Some("[".into()), None, None, vec![], vec![]).is_err());
    }
}

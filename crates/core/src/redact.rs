//! Values that are secrets outside Secrets (`drift_detection.redact`).
//!
//! A [`RedactRules`] set names places in objects of any kind — a password in a container's
//! environment, `data.password` in a ConfigMap — whose values are digested exactly like a
//! Secret's data: `hmac-sha256:<hex>` of the value's bytes (a string's UTF-8 text, another
//! scalar's JSON text). The rules are held by the [`SecretHasher`](crate::SecretHasher), so the
//! one call both edges already make ([`SecretHasher::redact`](crate::SecretHasher::redact))
//! applies them to Git objects, live objects and the copy inside kubectl's last-applied
//! annotation alike. Both sides are digested with the same key: an unchanged value compares
//! equal, a changed one shows as a change between two digests, never as clear text.
//!
//! Patterns use the field-path syntax of contract §2.2 ([`FieldPath::parse`]) with wildcards:
//! `*` inside a key or an item value stands for any run of characters (`data.*`,
//! `env[name=*PASSWORD*]`), `[*]` is any list item and `[3]` one list index. A pattern naming a
//! map or a list covers every scalar below it. A pattern is anchored at the object's root.

use globset::{Glob, GlobMatcher};
use serde_json::Value;

use crate::path::{FieldPath, Segment, wildcard_match};
use crate::secret::{DIGEST_PREFIX, LAST_APPLIED_ANNOTATION};

/// One rule: the kinds it applies to and the places whose values it digests.
#[derive(Debug, Clone)]
pub struct RedactRule {
    kind: Option<String>,
    kind_glob: Option<GlobMatcher>,
    paths: Vec<FieldPath>,
}

/// Every redaction rule of an installation (empty: only Secrets are digested).
#[derive(Debug, Clone, Default)]
pub struct RedactRules {
    rules: Vec<RedactRule>,
}

// === impl RedactRule ===

impl RedactRule {
    /// A rule for the kinds matching `kind` (a glob; `None` = every kind). The error says which
    /// glob or path is unusable: a kind glob that does not compile, no path at all, or the empty
    /// path (it would name the whole object).
    pub fn new(kind: Option<String>, paths: Vec<FieldPath>) -> Result<Self, String> {
        let kind_glob = match kind.as_deref() {
            Some(glob) => Some(
                Glob::new(glob)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| format!("invalid kind glob {glob:?}: {e}"))?,
            ),
            None => None,
        };
        if paths.is_empty() {
            return Err("no paths: name at least one field path to redact".to_owned());
        }
        if paths.iter().any(FieldPath::is_root) {
            return Err("an empty path would name the whole object; name a field".to_owned());
        }
        Ok(Self {
            kind,
            kind_glob,
            paths,
        })
    }

    /// Like [`RedactRule::new`], with the paths given as text (contract §2.2 syntax with `*`).
    pub fn parse(kind: Option<String>, paths: &[impl AsRef<str>]) -> Result<Self, String> {
        let paths = paths
            .iter()
            .map(|p| FieldPath::parse(p.as_ref()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Self::new(kind, paths)
    }

    /// The kind glob, if any.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The path patterns.
    pub fn paths(&self) -> &[FieldPath] {
        &self.paths
    }

    /// True when the rule applies to objects of `kind`.
    pub fn applies_to(&self, kind: &str) -> bool {
        self.kind_glob.as_ref().is_none_or(|g| g.is_match(kind))
    }
}

impl PartialEq for RedactRule {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.paths == other.paths
    }
}

// === impl RedactRules ===

impl RedactRules {
    /// The set of `rules`.
    pub fn new(rules: Vec<RedactRule>) -> Self {
        Self { rules }
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[RedactRule] {
        &self.rules
    }

    /// True when some rule applies to objects of `kind`.
    pub fn applies_to(&self, kind: &str) -> bool {
        self.rules.iter().any(|r| r.applies_to(kind))
    }

    /// Replaces, in `object` (of kind `kind`), every value a rule for that kind names by
    /// `digest` of its bytes. Returns true when something was replaced. A value already holding
    /// a digest, `null` and the empty string are kept (nothing secret in them, and `""` must
    /// keep equalling an absent field). The object's identity (`apiVersion`, `kind`,
    /// `metadata.name`, `metadata.namespace`, …), its `managedFields` and the last-applied
    /// annotation (redacted on its own, as a parsed object) are never touched.
    pub fn apply(&self, kind: &str, object: &mut Value, digest: &dyn Fn(&[u8]) -> String) -> bool {
        let mut changed = false;
        for rule in self.rules.iter().filter(|r| r.applies_to(kind)) {
            for path in &rule.paths {
                walk(object, path.segments(), Place::Root, digest, &mut changed);
            }
        }
        changed
    }
}

impl PartialEq for RedactRules {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

/// Where a value sits, as far as protection is concerned.
#[derive(Debug, Clone, Copy)]
enum Place {
    Root,
    Metadata,
    Annotations,
    /// A list item: its `name` is its identity (`env[name=DB_PASSWORD]`), kept when the whole
    /// item is redacted so a change still says which item it is.
    Item,
    Free,
}

/// The place of the child `key` of a map at `place`; `None` when it is never redacted.
fn child_place(place: Place, key: &str) -> Option<Place> {
    match place {
        Place::Root => match key {
            "apiVersion" | "kind" => None,
            "metadata" => Some(Place::Metadata),
            _ => Some(Place::Free),
        },
        Place::Metadata => match key {
            "name" | "namespace" | "generateName" | "uid" | "resourceVersion" | "generation"
            | "creationTimestamp" | "deletionTimestamp" | "managedFields" | "ownerReferences"
            | "selfLink" => None,
            "annotations" => Some(Place::Annotations),
            _ => Some(Place::Free),
        },
        Place::Annotations if key == LAST_APPLIED_ANNOTATION => None,
        Place::Item if key == "name" => None,
        Place::Annotations | Place::Item | Place::Free => Some(Place::Free),
    }
}

fn walk(
    value: &mut Value,
    segments: &[Segment],
    place: Place,
    digest: &dyn Fn(&[u8]) -> String,
    changed: &mut bool,
) {
    let Some((segment, rest)) = segments.split_first() else {
        redact_all(value, place, digest, changed);
        return;
    };
    match (segment, value) {
        (Segment::Key(pattern), Value::Object(map)) => {
            // An item's `name` is kept only from whole-item redaction, not when named.
            let place = if matches!(place, Place::Item) {
                Place::Free
            } else {
                place
            };
            for (key, child) in map.iter_mut() {
                if wildcard_match(pattern, key)
                    && let Some(child_place) = child_place(place, key)
                {
                    walk(child, rest, child_place, digest, changed);
                }
            }
        }
        (Segment::Item(keys), Value::Array(items)) => {
            for item in items.iter_mut().filter(|item| item_matches(keys, item)) {
                walk(item, rest, Place::Item, digest, changed);
            }
        }
        (Segment::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*index) {
                walk(item, rest, Place::Item, digest, changed);
            }
        }
        _ => {}
    }
}

/// `[*]` matches every item; `[k=v,…]` an object whose every `k` is a scalar matching `v`.
fn item_matches(keys: &[(String, String)], item: &Value) -> bool {
    if keys.len() == 1 && keys[0].0 == "*" {
        return true;
    }
    let Value::Object(map) = item else {
        return false;
    };
    keys.iter().all(|(key, pattern)| match map.get(key) {
        Some(Value::String(text)) => wildcard_match(pattern, text),
        Some(scalar @ (Value::Number(_) | Value::Bool(_))) => {
            wildcard_match(pattern, &scalar.to_string())
        }
        _ => false,
    })
}

fn redact_all(
    value: &mut Value,
    place: Place,
    digest: &dyn Fn(&[u8]) -> String,
    changed: &mut bool,
) {
    match value {
        Value::String(text) => {
            if !text.is_empty() && !text.starts_with(DIGEST_PREFIX) {
                *value = Value::String(digest(text.as_bytes()));
                *changed = true;
            }
        }
        Value::Number(_) | Value::Bool(_) => {
            *value = Value::String(digest(value.to_string().as_bytes()));
            *changed = true;
        }
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                redact_all(item, Place::Item, digest, changed);
            }
        }
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if let Some(child_place) = child_place(place, key) {
                    redact_all(child, child_place, digest, changed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::SecretHasher;
    use serde_json::json;

    const CANARY: &str = "canary-redact-7f3a";
    const CANARY2: &str = "canary2-redact-9b1c";

    fn rules(entries: &[(Option<&str>, &[&str])]) -> RedactRules {
        RedactRules::new(
            entries
                .iter()
                .map(|(kind, paths)| {
                    RedactRule::parse(kind.map(str::to_owned), paths)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
        )
    }

    fn hasher(entries: &[(Option<&str>, &[&str])]) -> SecretHasher {
        SecretHasher::new(b"0123456789abcdef0123456789abcdef".to_vec())
            .with_redact_rules(rules(entries))
    }

    const INIT_VALUE: &str = "init-only-value";
    const ENV_PASSWORDS: &str = "spec.template.spec.containers[*].env[name=*PASSWORD*].value";

    fn deployment(password: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2, "template": {"spec": {
                "initContainers": [{"name": "init", "env": [{"name": "DB_PASSWORD", "value": INIT_VALUE}]}],
                "containers": [
                    {"name": "web", "image": "nginx:1.25", "env": [
                        {"name": "LOG_LEVEL", "value": "debug"},
                        {"name": "DB_PASSWORD", "value": password},
                        {"name": "ADMIN_PASSWORD_HINT", "value": password},
                        {"name": "FROM_SECRET_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                    ]},
                    {"name": "sidecar", "image": "envoy", "env": [{"name": "DB_PASSWORD", "value": password}]}
                ]
            }}}
        })
    }

    fn env_value(object: &Value, container: usize, env: usize) -> &str {
        object["spec"]["template"]["spec"]["containers"][container]["env"][env]["value"]
            .as_str()
            .unwrap()
    }

    #[test]
    fn env_passwords_in_every_container_are_digested() {
        let h = hasher(&[(None, &[ENV_PASSWORDS])]);
        let mut object = deployment(CANARY);
        h.redact(&mut object);
        let text = object.to_string();
        assert!(!text.contains(CANARY), "{text}");
        let digest = h.digest(CANARY.as_bytes());
        assert_eq!(env_value(&object, 0, 1), digest);
        assert_eq!(env_value(&object, 0, 2), digest, "`*` on both sides");
        assert_eq!(
            env_value(&object, 1, 0),
            digest,
            "`[*]` covers every container"
        );
        assert_eq!(
            env_value(&object, 0, 0),
            "debug",
            "other variables are kept"
        );
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["env"][3]["valueFrom"]["secretKeyRef"]
                ["name"],
            "s",
            "a path ending in .value does not reach valueFrom"
        );
        // The pattern names containers, not initContainers: those are the user's to list.
        assert_eq!(
            object["spec"]["template"]["spec"]["initContainers"][0]["env"][0]["value"],
            INIT_VALUE
        );
    }

    #[test]
    fn nested_lists_by_index_and_by_key() {
        let h = hasher(&[(
            Some("Deploy*"),
            &[
                "spec.template.spec.initContainers[name=init].env[0].value",
                "spec.template.spec.containers[name=sidecar].env[*]",
                "spec.template.spec.containers[name=web].env[name=LOG_LEVEL].name",
            ],
        )]);
        let mut object = deployment(CANARY);
        h.redact(&mut object);
        let spec = &object["spec"]["template"]["spec"];
        assert_eq!(
            spec["initContainers"][0]["env"][0]["value"],
            h.digest(INIT_VALUE.as_bytes())
        );
        // A pattern naming whole items digests every scalar below them but the item's name.
        assert_eq!(spec["containers"][1]["env"][0]["name"], "DB_PASSWORD");
        assert_eq!(
            spec["containers"][1]["env"][0]["value"],
            h.digest(CANARY.as_bytes())
        );
        assert_eq!(spec["containers"][0]["env"][1]["value"], CANARY);
        // Named explicitly, a name is digested like any value.
        assert_eq!(
            spec["containers"][0]["env"][0]["name"],
            h.digest(b"LOG_LEVEL")
        );
    }

    #[test]
    fn kind_globs_and_plain_paths() {
        let h = hasher(&[(Some("ConfigMap"), &["data.password", "data.*_token"])]);
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"password": CANARY, "api_token": CANARY2, "mode": "fast"}});
        h.redact(&mut cm);
        assert_eq!(cm["data"]["password"], h.digest(CANARY.as_bytes()));
        assert_eq!(cm["data"]["api_token"], h.digest(CANARY2.as_bytes()));
        assert_eq!(cm["data"]["mode"], "fast");
        // Another kind with the same shape is not touched by a ConfigMap rule.
        let mut other = json!({"apiVersion": "example.com/v1", "kind": "Settings",
            "metadata": {"name": "c"}, "data": {"password": CANARY}});
        let before = other.clone();
        h.redact(&mut other);
        assert_eq!(other, before);
    }

    #[test]
    fn whole_map_keeps_identity() {
        let h = hasher(&[(None, &["*"])]);
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"team": "x"}},
            "data": {"a": CANARY, "b": ""}});
        h.redact(&mut cm);
        assert_eq!(cm["apiVersion"], "v1");
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(cm["metadata"]["name"], "c");
        assert_eq!(cm["metadata"]["namespace"], "n");
        assert_eq!(cm["metadata"]["labels"]["team"], h.digest(b"x"));
        assert_eq!(cm["data"]["a"], h.digest(CANARY.as_bytes()));
        assert_eq!(
            cm["data"]["b"], "",
            "the empty string still equals an absent field"
        );
    }

    #[test]
    fn non_string_values_digest_their_json_text() {
        let h = hasher(&[(
            None,
            &["spec.pin", "spec.enabled", "spec.none", "spec.list"],
        )]);
        let mut object = json!({"kind": "Thing", "metadata": {"name": "t"},
            "spec": {"pin": 4711, "enabled": true, "none": null, "list": [1, "two", 3.5]}});
        h.redact(&mut object);
        assert_eq!(object["spec"]["pin"], h.digest(b"4711"));
        assert_eq!(object["spec"]["enabled"], h.digest(b"true"));
        assert_eq!(object["spec"]["none"], Value::Null);
        assert_eq!(
            object["spec"]["list"],
            json!([h.digest(b"1"), h.digest(b"two"), h.digest(b"3.5")])
        );
        // A number written as a string in Git and stored as a number live compare equal.
        let mut as_text = json!({"kind": "Thing", "spec": {"pin": "4711"}});
        h.redact(&mut as_text);
        assert_eq!(as_text["spec"]["pin"], object["spec"]["pin"]);
    }

    #[test]
    fn last_applied_copy_of_a_deployment_is_redacted() {
        let h = hasher(&[(None, &[ENV_PASSWORDS])]);
        let applied = deployment(CANARY);
        let mut live = deployment(CANARY2);
        live["metadata"]["annotations"] = json!({
            LAST_APPLIED_ANNOTATION: applied.to_string(),
            "team": "shop",
        });
        h.redact(&mut live);
        let text = live.to_string();
        assert!(!text.contains(CANARY), "{text}");
        assert!(!text.contains(CANARY2), "{text}");
        let annotation = live["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .unwrap();
        let parsed: Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(env_value(&parsed, 0, 1), h.digest(CANARY.as_bytes()));
        assert_eq!(env_value(&parsed, 0, 0), "debug");
        assert_eq!(live["metadata"]["annotations"]["team"], "shop");
    }

    #[test]
    fn unreadable_last_applied_is_digested_when_a_rule_applies() {
        let h = hasher(&[(Some("Deployment"), &[ENV_PASSWORDS])]);
        let broken = format!("{{\"spec\": \"{CANARY}");
        let mut live = deployment("x");
        live["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: broken });
        h.redact(&mut live);
        assert!(!live.to_string().contains(CANARY));
        // No rule for Services: their annotation is kept as it is.
        let mut svc = json!({"kind": "Service", "metadata": {"name": "s",
            "annotations": { LAST_APPLIED_ANNOTATION: broken }}});
        let before = svc.clone();
        h.redact(&mut svc);
        assert_eq!(svc, before);
    }

    #[test]
    fn redaction_is_idempotent() {
        let h = hasher(&[(None, &[ENV_PASSWORDS, "spec.replicas"])]);
        let mut object = deployment(CANARY);
        object["metadata"]["annotations"] =
            json!({ LAST_APPLIED_ANNOTATION: deployment(CANARY).to_string() });
        h.redact(&mut object);
        let once = object.clone();
        h.redact(&mut object);
        assert_eq!(object, once);
        assert_eq!(object["spec"]["replicas"], h.digest(b"2"));
    }

    #[test]
    fn no_match_leaves_the_object_unchanged() {
        let h = hasher(&[
            (
                None,
                &["spec.template.spec.containers[*].env[name=*SECRET*].value"],
            ),
            (Some("ConfigMap"), &["data.password"]),
        ]);
        let mut object = deployment(CANARY);
        // Deliberately not in serde_json's own spacing: an untouched annotation keeps its text.
        let annotation = format!("{{\"kind\":  \"Deployment\", \"x\": \"{CANARY}\"}}");
        object["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: annotation });
        let before = object.clone();
        h.redact(&mut object);
        assert_eq!(object, before);
        let mut empty = deployment(CANARY);
        let before = empty.clone();
        SecretHasher::new(b"k".to_vec()).redact(&mut empty);
        assert_eq!(empty, before, "no rules: nothing but Secrets is touched");
    }

    #[test]
    fn same_key_compares_equal_and_a_change_stays_a_digest() {
        let h = hasher(&[(None, &[ENV_PASSWORDS])]);
        let (mut git, mut live, mut changed) =
            (deployment(CANARY), deployment(CANARY), deployment(CANARY2));
        h.redact(&mut git);
        h.redact(&mut live);
        h.redact(&mut changed);
        assert_eq!(git, live);
        assert_ne!(env_value(&git, 0, 1), env_value(&changed, 0, 1));
        assert!(env_value(&changed, 0, 1).starts_with(DIGEST_PREFIX));
    }

    #[test]
    fn secrets_still_digest_and_rules_apply_to_them_too() {
        let h = hasher(&[(None, &["metadata.annotations.hint"])]);
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {"hint": CANARY2}},
            "stringData": {"password": CANARY}});
        h.redact(&mut secret);
        let text = secret.to_string();
        assert!(!text.contains(CANARY) && !text.contains(CANARY2), "{text}");
        assert_eq!(secret["data"]["password"], h.digest(CANARY.as_bytes()));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(RedactRule::parse(Some("[".into()), &["data.x"]).is_err());
        assert!(RedactRule::parse(None, &["spec..x"]).is_err());
        assert!(RedactRule::parse(None, &[""]).is_err());
        assert!(RedactRule::parse(None, &[] as &[&str]).is_err());
    }
}

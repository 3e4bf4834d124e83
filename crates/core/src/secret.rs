//! Secret values are replaced by keyed digests at the edge where they enter (contract §2.3).
//!
//! Both edges (the Git reader and the Kubernetes reader) call [`SecretHasher::redact`] on every
//! object before anything else sees it. `stringData` is folded into `data` (as the API server
//! does), so a manifest using `stringData` and a live object using `data` compare equal.
//!
//! The hasher also carries the installation's [`RedactRules`] (`drift_detection.redact`):
//! values that are secrets in other kinds, digested the same way by the same call, in the object
//! and in its last-applied annotation.

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::redact::RedactRules;

/// The annotation `kubectl apply` fills with the whole manifest, Secret values included.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Prefix of every digest.
pub const DIGEST_PREFIX: &str = "hmac-sha256:";

/// Computes keyed digests of Secret values (and of the values [`RedactRules`] name).
#[derive(Clone)]
pub struct SecretHasher {
    key: Vec<u8>,
    rules: Arc<RedactRules>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretHasher {{ key: <redacted>, redact_rules: {} }}",
            self.rules.rules().len()
        )
    }
}

// === impl SecretHasher ===

impl SecretHasher {
    /// A hasher keyed with the installation's key (at least 16 bytes is sensible; 32 are generated).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            rules: Arc::default(),
        }
    }

    /// The same hasher, also digesting the values `rules` name in objects of any kind.
    pub fn with_redact_rules(mut self, rules: RedactRules) -> Self {
        self.rules = Arc::new(rules);
        self
    }

    /// The redaction rules applied besides Secret data.
    pub fn redact_rules(&self) -> &RedactRules {
        &self.rules
    }

    /// `hmac-sha256:<hex>` of `bytes`.
    pub fn digest(&self, bytes: &[u8]) -> String {
        // HMAC accepts keys of any length; the error arm exists only for fixed-key MACs.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return format!("{DIGEST_PREFIX}invalid-key");
        };
        mac.update(bytes);
        format!(
            "{DIGEST_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Replaces the values of a Secret object in place: `data` (base64-decoded first),
    /// `stringData` (folded into `data`), and the copies in the last-applied annotation.
    /// In objects of every kind, the values the redaction rules name for that kind are digested
    /// too, in the object and in its last-applied annotation. Other objects are left alone
    /// except for their last-applied annotation when it describes a Secret.
    pub fn redact(&self, object: &mut Value) {
        let is_secret = is_core_secret(object);
        if is_secret {
            self.redact_secret_body(object);
        }
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !self.rules.is_empty() {
            self.rules
                .apply(&kind, object, &|bytes: &[u8]| self.digest(bytes));
        }
        self.redact_last_applied(object, is_secret, &kind);
    }

    fn redact_secret_body(&self, object: &mut Value) {
        let Some(map) = object.as_object_mut() else {
            return;
        };
        let mut data = match map.remove("data") {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        };
        for value in data.values_mut() {
            *value = Value::String(self.digest_data_value(value));
        }
        if let Some(Value::Object(string_data)) = map.remove("stringData") {
            // The API server merges stringData over data, so it wins on conflicts.
            for (key, value) in string_data {
                let digest = match &value {
                    Value::String(text) => self.digest(text.as_bytes()),
                    other => self.digest(other.to_string().as_bytes()),
                };
                data.insert(key, Value::String(digest));
            }
        }
        if !data.is_empty() {
            map.insert("data".to_owned(), Value::Object(data));
        }
    }

    fn digest_data_value(&self, value: &Value) -> String {
        match value {
            Value::String(text) if text.starts_with(DIGEST_PREFIX) => text.clone(),
            Value::String(text) => {
                match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                    Ok(bytes) => self.digest(&bytes),
                    // Not valid base64: still never keep it; digest the text itself.
                    Err(_) => self.digest(text.as_bytes()),
                }
            }
            Value::Null => self.digest(b""),
            other => self.digest(other.to_string().as_bytes()),
        }
    }

    fn redact_last_applied(&self, object: &mut Value, is_secret: bool, kind: &str) {
        let Some(annotation) = object
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.get_mut(LAST_APPLIED_ANNOTATION))
        else {
            return;
        };
        let Value::String(text) = annotation else {
            return;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(mut applied) => {
                let mut changed = false;
                if is_secret || is_core_secret(&applied) {
                    self.redact_secret_body(&mut applied);
                    changed = true;
                }
                if !self.rules.is_empty() {
                    let digest = |bytes: &[u8]| self.digest(bytes);
                    changed |= self.rules.apply(kind, &mut applied, &digest);
                    // The copy names its own kind; it is the object's unless someone edited it.
                    let applied_kind = applied
                        .get("kind")
                        .and_then(Value::as_str)
                        .filter(|k| *k != kind)
                        .map(str::to_owned);
                    if let Some(applied_kind) = applied_kind {
                        changed |= self.rules.apply(&applied_kind, &mut applied, &digest);
                    }
                }
                // Untouched text stays byte for byte what kubectl wrote.
                if changed {
                    *annotation = Value::String(applied.to_string());
                }
            }
            Err(_) if is_secret || self.rules.applies_to(kind) => {
                // Unreadable: the only safe thing is to keep nothing of it.
                *annotation = Value::String(self.digest(text.as_bytes()));
            }
            Err(_) => {}
        }
    }
}

/// True when `object` is a core-group `Secret`, decided by group and kind rather than by the
/// exact `apiVersion` string: any version of the core group (`v1`, `V1`, a missing
/// `apiVersion`) and the kind in any case. A manifest the server would refuse is still read by
/// DriftGuard (and reported as missing), so its values must be digested all the same.
pub fn is_core_secret(object: &Value) -> bool {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let core_group = match object.get("apiVersion") {
        None | Some(Value::Null) => true,
        Some(Value::String(v)) => !v.contains('/'),
        Some(_) => false,
    };
    kind.trim().eq_ignore_ascii_case("Secret") && core_group
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CANARY: &str = "canary-s3cr3t-value";

    fn hasher() -> SecretHasher {
        SecretHasher::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn secrets_are_known_by_group_and_kind() {
        for (api_version, kind) in [
            (json!("v1"), "Secret"),
            (json!("V1"), "Secret"),
            (Value::Null, "Secret"),
            (json!("v1"), "secret"),
        ] {
            let mut object = json!({"kind": kind, "stringData": {"password": CANARY}});
            if !api_version.is_null() {
                object["apiVersion"] = api_version.clone();
            }
            hasher().redact(&mut object);
            assert!(
                !object.to_string().contains(CANARY),
                "{api_version} {kind}: {object}"
            );
        }
        let mut other =
            json!({"apiVersion": "example.com/v1", "kind": "Secret", "spec": {"a": "b"}});
        hasher().redact(&mut other);
        assert_eq!(
            other["spec"]["a"], "b",
            "another group's Secret kind is not a core Secret"
        );
    }

    #[test]
    fn string_data_and_data_compare_equal() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
        let mut from_git = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"password": CANARY}});
        let mut live = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"password": b64}});
        hasher().redact(&mut from_git);
        hasher().redact(&mut live);
        assert_eq!(from_git["data"], live["data"]);
        assert!(from_git.get("stringData").is_none());
        assert!(
            from_git["data"]["password"]
                .as_str()
                .unwrap()
                .starts_with(DIGEST_PREFIX)
        );
    }

    #[test]
    fn last_applied_copy_is_redacted() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
        let applied = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"password": CANARY}});
        let mut live = json!({
            "apiVersion":"v1","kind":"Secret",
            "metadata":{"name":"s","annotations":{LAST_APPLIED_ANNOTATION: applied.to_string()}},
            "data":{"password": b64}
        });
        hasher().redact(&mut live);
        let text = live.to_string();
        assert!(!text.contains(CANARY), "{text}");
        assert!(!text.contains(&b64), "{text}");
    }

    #[test]
    fn digests_depend_on_the_key() {
        let other = SecretHasher::new(b"another-key-another-key-another!".to_vec());
        assert_ne!(hasher().digest(b"x"), other.digest(b"x"));
        assert_eq!(hasher().digest(b"x"), hasher().digest(b"x"));
    }

    #[test]
    fn other_kinds_untouched() {
        let mut cm = json!({"apiVersion":"v1","kind":"ConfigMap","data":{"k": "v"}});
        let before = cm.clone();
        hasher().redact(&mut cm);
        assert_eq!(cm, before);
    }
}

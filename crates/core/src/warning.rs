//! Warnings (contract §9): what Git asks for that the server will never store, and fields left
//! out of the comparison. A warning is not drift: it never sets `drift_detected`.

use serde::{Deserialize, Serialize};

use crate::path::FieldPath;

/// The API server rewrites this field whatever is applied (the `serviceAccount` alias, a
/// CertificateSigningRequest's requester fields): Git can never match it.
pub const SERVER_REWRITES: &str = "server-rewrites";

/// The manifest has a mapping key twice; as kubectl does, the last value was kept.
pub const DUPLICATE_KEY: &str = "duplicate-key";

/// Rendered output differs between two renders of the same inputs: the field is not compared.
pub const NON_DETERMINISTIC: &str = "non-deterministic";

/// One warning on a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Warning {
    /// The field it is about (§2.2 syntax; `""` for the whole manifest).
    pub field: FieldPath,
    /// A stable code: [`SERVER_REWRITES`], [`DUPLICATE_KEY`], [`NON_DETERMINISTIC`].
    pub code: String,
    /// What a person should know, in one sentence.
    pub message: String,
}

// === impl Warning ===

impl Warning {
    /// A warning with the given code and message.
    pub fn new(field: FieldPath, code: &str, message: impl Into<String>) -> Self {
        Self {
            field,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

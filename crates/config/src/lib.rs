//! DriftGuard configuration (contract §6–§7).
//!
//! Sources, lowest precedence first: built-in defaults, the YAML file, the environment
//! (`DRIFTGUARD_<SECTION>__<KEY>`, plus the original product's `MONGODB_HOST`, `MONGODB_URI` and
//! `KUBECONFIG`), then command-line flags. Every key is listed once in [`KEYS`]; an unknown key, a
//! bad value or a missing required value is an error naming the key and where it came from.

mod duration;
mod engine;
mod keys;
mod load;
mod redact;
mod types;

pub use duration::parse_duration;
pub use keys::{KEYS, KeyKind, KeySpec};
pub use load::{ConfigError, LoadOptions, Loaded, Origin, load};
pub use redact::RedactRuleConfig;
pub use types::*;

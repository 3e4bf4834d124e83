//! DriftGuard's pure core.
//!
//! Everything here is a function over data: resource identity, desired and live objects, Secret
//! digests, field paths, the diff engine, classification and the drift state machine. This crate
//! never does IO — no tokio, no Kubernetes client, no Git, no database, no HTTP — so it can be
//! tested with fixture files and benchmarked on its own.

pub mod canonical;
pub mod change;
pub mod classify;
pub mod crd;
mod defaults;
mod diff;
pub mod engine;
pub mod identity;
pub mod ignore;
pub mod json_text;
pub mod normalize;
pub mod object;
pub mod path;
pub mod quantity;
pub mod record;
pub mod redact;
mod schema;
pub mod secret;
pub mod state;
pub mod warning;

pub use change::{Change, DriftType, Op, Severity};
pub use engine::{Comparison, EngineConfig, IgnoreRule, compare, missing, normalize, unmanaged};
pub use identity::{Capabilities, ResourceKey, ScopeLookup};
pub use json_text::JsonText;
pub use object::{DesiredObject, LiveObject, ManagedFieldsEntry, Source};
pub use path::{FieldPath, Segment};
pub use record::{DriftRecord, DriftStatus, Episode};
pub use redact::{RedactRule, RedactRules};
pub use secret::SecretHasher;
pub use state::{Event, Observation, ResolutionCause, Transition};
pub use warning::Warning;

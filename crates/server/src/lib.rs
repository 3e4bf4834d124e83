//! The DriftGuard service: the analysis loop, the REST API, metrics and health.
//!
//! Only this crate knows HTTP; the core knows nothing of it.

pub mod analyzer;
pub mod api;
mod crds;
pub mod health;
mod http;
mod lazy_store;
pub mod metrics;
pub mod oneshot;
pub mod openapi;
pub mod runs;
pub mod selector;
pub mod service;
pub mod unmanaged;

pub use service::{ServeError, run, serve};

//! The DriftGuard service: the analysis loop, the REST API, metrics and health.
//!
//! Only this crate knows HTTP; the core knows nothing of it.

pub mod analyzer;
pub mod api;
mod crds;
pub mod errors;
pub mod evaluate;
mod git_loop;
pub mod health;
mod http;
mod kube_start;
mod lazy_store;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod oneshot;
pub mod openapi;
mod pipeline;
mod retry;
pub mod runs;
pub mod selector;
pub mod service;
pub mod sink;
mod store_health;
pub mod ui;
pub mod unmanaged;
mod watched;

pub use errors::ServeError;
pub use service::{run, run_with_sinks, serve};

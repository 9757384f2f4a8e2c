//! Rosetta's control plane: the hybrid batch scheduler (a pure, deterministic, resumable
//! function from (step, cursor) to the global batch every rank trains on), the gRPC service
//! that hands its plans to workers, checkpoint manifests and the Prometheus endpoint.
//! Builds without libtorch.

pub mod error;
pub mod eval_metrics;
pub mod job;
pub mod manifest;
pub mod metrics_server;
pub mod schedule;
pub mod service;

pub use error::{CoordinatorError, Result};

//! Rosetta's control plane: the hybrid batch scheduler (a pure, deterministic, resumable
//! function from (step, cursor) to the global batch every rank trains on), the job state
//! machine, the gRPC service that hands its plans to workers, checkpoint manifests, the
//! evaluation of checkpoints during training, the Prometheus endpoint, and the coordinator
//! process itself with its command line. Builds without libtorch.

pub mod command;
pub mod error;
pub mod evaluation;
pub mod grpc;
pub mod job;
pub mod manifest;
pub mod metrics;
pub mod process;
pub mod schedule;
pub mod settings;

pub use error::{CoordinatorError, Result};

//! Rosetta's control plane. For now: the hybrid batch scheduler — a pure, deterministic,
//! resumable function from (step, cursor) to the global batch every rank trains on.

pub mod error;
pub mod schedule;

pub use error::{CoordinatorError, Result};

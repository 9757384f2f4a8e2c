//! Rosetta's data plane: the training step of a rank (global-batch InfoNCE across ranks,
//! gradients summed while the backward pass runs, clipping, AdamW, freezing, GradCache,
//! FLOP counts), the worker process that trains what the coordinator plans, and `rosetta eval`
//! with the shard processes of an evaluation. Model code is `rosetta-model`, devices and collectives are
//! `rosetta-collective`, the configuration is `rosetta-worker-config`; this crate is the only
//! one of them that speaks gRPC.

pub mod error;
pub mod eval_shard;
pub mod evaluation;
pub mod freeze;
pub mod grad_cache;
pub mod loss;
pub mod memory;
pub mod mfu;
pub mod overlap;
pub mod process;
pub mod train;

pub use error::{Result, WorkerError};

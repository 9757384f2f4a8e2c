//! `training.freeze:` — parameters that keep their initial values. A frozen parameter gets no
//! gradient (`requires_grad` off before the first forward pass), no optimiser state and no
//! all-reduce (both are built from the trainable parameters only), and is still checkpointed
//! and exported with the rest of the model.

use rosetta_worker_config::training::glob_matches;
use tch::nn::VarStore;

pub use rosetta_worker_config::training::FreezeConfig;

use crate::error::{Result, WorkerError};

/// How many parameters a model trains and keeps fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCounts {
    /// Trainable scalars.
    pub trainable: i64,
    /// Frozen scalars.
    pub frozen: i64,
    /// Frozen tensors.
    pub frozen_tensors: usize,
}

/// Turns off the gradient of every parameter of `vs` that `freeze` names; an error names a
/// layer that does not exist, a pattern that matches nothing, or a choice that leaves nothing
/// to train.
pub fn apply(freeze: &FreezeConfig, vs: &VarStore, layers: usize) -> Result<ParameterCounts> {
    if let Some(&layer) = freeze.layers.iter().find(|&&l| l >= layers) {
        return Err(WorkerError::invalid(
            "training.freeze.layers",
            format!("layer {layer} does not exist: the model has {layers} (0..{})", layers.saturating_sub(1)),
        ));
    }
    let variables = vs.variables();
    for pattern in &freeze.patterns {
        if !variables.keys().any(|name| glob_matches(pattern, name)) {
            return Err(WorkerError::invalid(
                "training.freeze.patterns",
                format!("{pattern:?} matches no parameter (names look like {:?})", variables.keys().min()),
            ));
        }
    }
    let mut counts = ParameterCounts { trainable: 0, frozen: 0, frozen_tensors: 0 };
    for (name, tensor) in &variables {
        if freeze.freezes(name) {
            let _ = tensor.set_requires_grad(false);
            counts.frozen += tensor.numel() as i64;
            counts.frozen_tensors += 1;
        } else if tensor.requires_grad() {
            counts.trainable += tensor.numel() as i64;
        }
    }
    if counts.trainable == 0 {
        return Err(WorkerError::invalid("training.freeze", "freezes every parameter: nothing is left to train"));
    }
    Ok(counts)
}

//! Checkpoint files: model parameters and optimiser state in one safetensors file, written
//! atomically (rosetta_common::atomic: temporary file, fsync, rename, fsync of the directory),
//! so a crash at any moment leaves either the old file or the new one, never a torn one.

use rosetta_common::atomic::StagedFile;
use std::collections::HashMap;
use std::path::Path;

use tch::Tensor;

use crate::error::{Result, WorkerError};
use crate::optim::AdamW;
use crate::sentence::SentenceEncoder;

/// Writes `tensors` to `path` atomically.
pub fn write_tensors_atomically(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let staged = StagedFile::new(path)?;
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&contiguous, staged.temp_path())
        .map_err(|e| WorkerError::model(staged.temp_path(), e.to_string()))?;
    Ok(staged.commit()?)
}

/// Reads a safetensors file into a name → tensor map.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(WorkerError::model(path, "checkpoint file does not exist"));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| WorkerError::model(path, e.to_string()))?;
    Ok(tensors.into_iter().collect())
}

/// Saves the model (`model.NAME`) and, if given, the optimiser state to `path`.
pub fn save_checkpoint(path: &Path, model: &SentenceEncoder, optimizer: Option<&AdamW>) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> =
        model.var_store().variables().into_iter().map(|(name, t)| (format!("model.{name}"), t)).collect();
    if let Some(optimizer) = optimizer {
        tensors.extend(optimizer.state());
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomically(path, &tensors)
}

/// Restores a checkpoint written by [`save_checkpoint`]: every model parameter must be present
/// with its shape (the error names each one that is not); the optimiser state too when asked.
pub fn load_checkpoint(path: &Path, model: &mut SentenceEncoder, optimizer: Option<&mut AdamW>) -> Result<()> {
    let tensors = read_tensors(path)?;
    let mut variables: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut problems = Vec::new();
    for (name, var) in &variables {
        let key = format!("model.{name}");
        match tensors.get(&key) {
            None => problems.push(format!("tensor {key} is missing")),
            Some(t) if t.size() != var.size() => {
                problems.push(format!("tensor {key} has shape {:?}, expected {:?}", t.size(), var.size()))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(WorkerError::model(path, problems.join("; ")));
    }
    tch::no_grad(|| {
        for (name, mut var) in variables {
            let source = &tensors[&format!("model.{name}")];
            var.copy_(&source.to_kind(var.kind()).to_device(var.device()));
        }
    });
    if let Some(optimizer) = optimizer {
        optimizer.load_state(&tensors).map_err(|e| WorkerError::model(path, e.to_string()))?;
    }
    Ok(())
}

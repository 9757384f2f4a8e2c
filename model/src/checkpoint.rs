//! Checkpoint files: model parameters and optimiser state in one safetensors file, written
//! atomically (rosetta_common::atomic: temporary file, fsync, rename, fsync of the directory),
//! so a crash at any moment leaves either the old file or the new one, never a torn one.

use rosetta_common::atomic::StagedFile;
use std::collections::HashMap;
use std::path::Path;

use tch::Tensor;

use crate::error::{ModelError, Result};
use crate::optim::AdamW;
use crate::sentence::SentenceEncoder;
use crate::tensor_file::{self, TensorFile};

/// Writes `tensors` to `path` atomically, streaming each tensor from its own memory (no second
/// copy of the model and optimiser state is made; see [`crate::tensor_file`]).
pub fn write_tensors_atomically(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let staged = StagedFile::new(path)?;
    tensor_file::write(staged.temp_path(), tensors)?;
    Ok(staged.commit()?)
}

/// Reads a safetensors file into a name → tensor map.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = TensorFile::open(path)?;
    let names: Vec<String> = file.names().map(str::to_string).collect();
    names.into_iter().map(|name| Ok((name.clone(), file.read(&name)?))).collect()
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
/// Each tensor is read from the file straight into the tensor it restores.
pub fn load_checkpoint(path: &Path, model: &mut SentenceEncoder, optimizer: Option<&mut AdamW>) -> Result<()> {
    let file = TensorFile::open(path)?;
    let mut variables: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut problems = Vec::new();
    for (name, var) in &variables {
        let key = format!("model.{name}");
        match file.shape(&key) {
            None => problems.push(format!("tensor {key} is missing")),
            Some(shape) if shape != var.size().as_slice() => {
                problems.push(format!("tensor {key} has shape {shape:?}, expected {:?}", var.size()))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(ModelError::model(path, problems.join("; ")));
    }
    for (name, mut var) in variables {
        file.read_into(&format!("model.{name}"), &mut var)?;
    }
    if let Some(optimizer) = optimizer {
        optimizer.load_state(&file).map_err(|e| ModelError::model(path, e.to_string()))?;
    }
    Ok(())
}

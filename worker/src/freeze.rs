//! `training.freeze:` — parameters that keep their initial values. A frozen parameter gets no
//! gradient (`requires_grad` off before the first forward pass), no optimiser state and no
//! all-reduce (both are built from the trainable parameters only), and is still checkpointed
//! and exported with the rest of the model.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::error::{Result, WorkerError};

/// Which parameters to freeze.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeConfig {
    /// The embedding tables (word, position, token type) and their LayerNorm.
    #[serde(default)]
    pub embeddings: bool,
    /// Transformer layers by index (0 is the one nearest the embeddings).
    #[serde(default)]
    pub layers: Vec<usize>,
    /// Parameter-name patterns, `*` matching any run of characters
    /// (`*.attention.self.*`; names as `rosetta export` writes them).
    #[serde(default)]
    pub patterns: Vec<String>,
}

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

/// `*`-glob match of the whole `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == name };
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn layer_of(name: &str) -> Option<usize> {
    let mut parts = name.split('.');
    while let Some(part) = parts.next() {
        if part == "layer" {
            return parts.next().and_then(|index| index.parse().ok());
        }
    }
    None
}

impl FreezeConfig {
    /// True when nothing is frozen.
    pub fn is_empty(&self) -> bool {
        !self.embeddings && self.layers.is_empty() && self.patterns.is_empty()
    }

    /// Whether the parameter `name` is frozen.
    pub fn freezes(&self, name: &str) -> bool {
        (self.embeddings && name.split('.').any(|part| part == "embeddings"))
            || layer_of(name).is_some_and(|layer| self.layers.contains(&layer))
            || self.patterns.iter().any(|pattern| glob(pattern, name))
    }

    /// Turns off the gradient of every frozen parameter of `vs`; an error names a layer that
    /// does not exist, a pattern that matches nothing, or a choice that leaves nothing to train.
    pub fn apply(&self, vs: &VarStore, layers: usize) -> Result<ParameterCounts> {
        if let Some(&layer) = self.layers.iter().find(|&&l| l >= layers) {
            return Err(WorkerError::invalid(
                "training.freeze.layers",
                format!("layer {layer} does not exist: the model has {layers} (0..{})", layers.saturating_sub(1)),
            ));
        }
        let variables = vs.variables();
        for pattern in &self.patterns {
            if !variables.keys().any(|name| glob(pattern, name)) {
                return Err(WorkerError::invalid(
                    "training.freeze.patterns",
                    format!("{pattern:?} matches no parameter (names look like {:?})", variables.keys().min()),
                ));
            }
        }
        let mut counts = ParameterCounts { trainable: 0, frozen: 0, frozen_tensors: 0 };
        for (name, tensor) in &variables {
            if self.freezes(name) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*.attention.self.*", "encoder.layer.3.attention.self.query.weight"));
        assert!(glob("pooler*", "pooler.dense.bias"));
        assert!(glob("*bias", "encoder.layer.0.output.dense.bias"));
        assert!(!glob("*bias", "encoder.layer.0.output.dense.bias_x"));
        assert!(glob("exact.name", "exact.name") && !glob("exact", "exact.name"));
        assert!(glob("a*b*c", "a-b-b-c") && !glob("a*b*c", "a-c"));
    }

    #[test]
    fn rules_pick_embeddings_layers_and_patterns() {
        let freeze = FreezeConfig { embeddings: true, layers: vec![1], patterns: vec!["*.LayerNorm.bias".into()] };
        assert!(freeze.freezes("embeddings.word_embeddings.weight"));
        assert!(freeze.freezes("encoder.layer.1.intermediate.dense.weight"));
        assert!(!freeze.freezes("encoder.layer.10.intermediate.dense.weight"));
        assert!(freeze.freezes("encoder.layer.0.output.LayerNorm.bias"));
        assert!(!freeze.freezes("encoder.layer.0.output.LayerNorm.weight"));
        assert!(FreezeConfig::default().is_empty() && !freeze.is_empty());
    }
}

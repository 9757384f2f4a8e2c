//! The `training:` section of a run config: as written in YAML ([`TrainingSection`]) and as
//! built once into typed values ([`TrainingSettings`]): device, loss, optimiser, schedule of
//! the learning rate, clipping, accumulation, dropout, hard negatives, freezing, precision.

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::model::yes;
use crate::precision::Precision;

fn default_device() -> String {
    "cpu".to_string()
}
fn default_clip() -> f64 {
    1.0
}
pub(crate) fn one() -> usize {
    1
}

/// `training:` as written: how each worker trains (the job length lives in `job:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    /// `cpu` or `cuda:N` (each worker may override with `--device`).
    #[serde(default = "default_device")]
    pub device: String,
    /// Loss settings.
    #[serde(default)]
    pub loss: LossConfig,
    /// Optimiser settings.
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// Warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Global gradient-norm bound (0 disables).
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// Chunks per micro-batch (gradient accumulation).
    #[serde(default = "one")]
    pub accumulation_steps: usize,
    /// Dropout while training (seeded per step and rank, so resumed runs replay it).
    #[serde(default = "yes")]
    pub dropout: bool,
    /// Hard negatives per example taken from the data (0 = in-batch negatives only).
    #[serde(default)]
    pub hard_negatives: usize,
    /// Parameters kept at their initial values (`embeddings: true`, `layers: [0, 1]`,
    /// `patterns: ["*.attention.*"]`): no gradient, no optimiser state, no all-reduce.
    #[serde(default, skip_serializing_if = "FreezeConfig::is_empty")]
    pub freeze: FreezeConfig,
    /// Sum the token-embedding gradient over ranks by the rows of the step's tokens instead of
    /// the whole matrix (the same sums, a fraction of the bytes on a 250k-token vocabulary).
    #[serde(default = "yes")]
    pub sparse_embedding_all_reduce: bool,
    /// GradCache-style chunked encoding: texts per forward pass (0 = off). The loss still
    /// covers the whole global batch; only one chunk's activations are in memory at a time,
    /// for batches larger than the device holds (costs one extra forward pass).
    #[serde(default)]
    pub grad_cache_chunk: usize,
    /// Number format of the forward and backward passes: `auto` (bf16 autocast on CUDA, fp32
    /// on CPU), `fp32`, or `bf16` (autocast on any device: matrix products in bfloat16, weights,
    /// optimiser state and loss in f32; about 1.5x as fast on CPUs with AMX, slower without bf16 units).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for TrainingSection {
    fn default() -> Self {
        serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

/// The built `training:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSettings {
    /// Default device of every worker.
    pub device: DeviceSpec,
    /// Loss settings.
    pub loss: LossConfig,
    /// Optimiser settings.
    pub optimizer: AdamWConfig,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Global gradient-norm bound (0 disables).
    pub max_grad_norm: f64,
    /// Chunks per micro-batch.
    pub accumulation_steps: usize,
    /// Dropout while training.
    pub dropout: bool,
    /// Hard negatives per example.
    pub hard_negatives: usize,
    /// Parameters kept at their initial values.
    #[serde(default, skip_serializing_if = "FreezeConfig::is_empty")]
    pub freeze: FreezeConfig,
    /// Token-embedding gradients summed by rows.
    #[serde(default = "yes")]
    pub sparse_embedding_all_reduce: bool,
    /// Texts per forward pass of chunked encoding (0 = off).
    #[serde(default)]
    pub grad_cache_chunk: usize,
    /// Number format of the forward and backward passes.
    #[serde(default)]
    pub precision: Precision,
}

impl TrainingSection {
    /// Builds the typed settings, listing every problem with its YAML path.
    pub fn build(&self) -> std::result::Result<TrainingSettings, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        let device = self.device.parse().unwrap_or_else(|message: String| {
            problems.push("training.device", message);
            DeviceSpec::Cpu
        });
        let optimizer = &self.optimizer;
        let finite_positive = |v: f64| v.is_finite() && v > 0.0;
        if !finite_positive(optimizer.lr) {
            problems.push("training.optimizer.lr", format!("{} must be a positive number", optimizer.lr));
        }
        for (name, beta) in [("beta1", optimizer.beta1), ("beta2", optimizer.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                problems.push(format!("training.optimizer.{name}"), format!("{beta} is outside [0, 1)"));
            }
        }
        if !finite_positive(optimizer.eps) {
            problems.push("training.optimizer.eps", format!("{} must be a positive number", optimizer.eps));
        }
        if !(optimizer.weight_decay.is_finite() && optimizer.weight_decay >= 0.0) {
            problems
                .push("training.optimizer.weight_decay", format!("{} must be a number >= 0", optimizer.weight_decay));
        }
        if !finite_positive(self.loss.temperature) {
            problems.push("training.loss.temperature", format!("{} must be a positive number", self.loss.temperature));
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            problems
                .push("training.max_grad_norm", format!("{} must be a number >= 0 (0 disables)", self.max_grad_norm));
        }
        if self.accumulation_steps == 0 {
            problems.push("training.accumulation_steps", "must be at least 1");
        }
        for (i, pattern) in self.freeze.patterns.iter().enumerate() {
            if pattern.trim().is_empty() {
                problems.push(format!("training.freeze.patterns[{i}]"), "empty pattern");
            }
        }
        problems.into_result(TrainingSettings {
            device,
            loss: self.loss.clone(),
            optimizer: self.optimizer.clone(),
            warmup_steps: self.warmup_steps,
            max_grad_norm: self.max_grad_norm,
            accumulation_steps: self.accumulation_steps,
            dropout: self.dropout,
            hard_negatives: self.hard_negatives,
            freeze: self.freeze.clone(),
            sparse_embedding_all_reduce: self.sparse_embedding_all_reduce,
            grad_cache_chunk: self.grad_cache_chunk,
            precision: self.precision,
        })
    }
}

fn default_temperature() -> f64 {
    0.05
}

/// Loss settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// Softmax temperature τ on cosine similarities (0.05 ⇔ sentence-transformers' scale 20).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Also score passages against queries and average the two directions.
    #[serde(default)]
    pub symmetric: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { temperature: default_temperature(), symmetric: false }
    }
}

fn default_lr() -> f64 {
    3e-5
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_decay() -> f64 {
    0.01
}

/// Optimiser settings (the paper: AdamW, lr 3e-5, weight decay 0.01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// First-moment decay.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Second-moment decay.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Denominator epsilon.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm parameters).
    #[serde(default = "default_decay")]
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_decay(),
        }
    }
}

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

/// `*`-glob match of the whole `name`.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
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
            || self.patterns.iter().any(|pattern| glob_matches(pattern, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_section_lists_every_problem_with_its_path() {
        let training: TrainingSection = serde_json::from_str(
            r#"{"device": "tpu", "optimizer": {"lr": -1, "beta2": 1.0, "eps": 0}, "loss": {"temperature": 0}, "accumulation_steps": 0}"#,
        )
        .unwrap();
        let err = training.build().unwrap_err().to_string();
        for expected in [
            "training.device",
            "training.optimizer.lr: -1",
            "training.optimizer.beta2: 1 is outside [0, 1)",
            "training.optimizer.eps",
            "training.loss.temperature",
            "training.accumulation_steps",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("*.attention.self.*", "encoder.layer.3.attention.self.query.weight"));
        assert!(glob_matches("pooler*", "pooler.dense.bias"));
        assert!(glob_matches("*bias", "encoder.layer.0.output.dense.bias"));
        assert!(!glob_matches("*bias", "encoder.layer.0.output.dense.bias_x"));
        assert!(glob_matches("exact.name", "exact.name") && !glob_matches("exact", "exact.name"));
        assert!(glob_matches("a*b*c", "a-b-b-c") && !glob_matches("a*b*c", "a-c"));
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

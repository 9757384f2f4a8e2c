//! The `model:` and `training:` sections of a run config, owned by the worker.

use std::path::{Path, PathBuf};

use rosetta_datasets::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::config::EncoderConfig;
use crate::error::{Result, WorkerError};
use crate::loss::LossConfig;
use crate::optim::AdamWConfig;
use crate::sentence::{Pooling, SentenceEncoder, SentenceSettings};
use crate::train::StepConfig;

fn default_pooling() -> Pooling {
    Pooling::Mean
}
fn yes() -> bool {
    true
}
fn default_length() -> usize {
    64
}
fn default_model_seed() -> i64 {
    7
}

/// `model:` — a preset initialised at random, or a local Hugging Face / sentence-transformers directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `small` (4 layers, 256 wide, BERT-style), initialised from `seed`.
    #[serde(default)]
    pub preset: Option<String>,
    /// A model directory (mutually exclusive with `preset`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `tokenizer.json` of a preset (e.g. the one `rosetta data synth` trains).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Pooling of a preset or of a plain Hugging Face directory.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// L2-normalise embeddings (preset / plain HF directory).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Longest input in tokens.
    #[serde(default = "default_length")]
    pub max_seq_length: usize,
    /// Query prefix (E5: `"query: "`).
    #[serde(default)]
    pub query_prefix: String,
    /// Passage prefix (E5: `"passage: "`).
    #[serde(default)]
    pub passage_prefix: String,
    /// Seed of a preset's initialisation.
    #[serde(default = "default_model_seed")]
    pub seed: i64,
    /// Preset override: transformer layers.
    #[serde(default)]
    pub layers: Option<i64>,
    /// Preset override: hidden width.
    #[serde(default)]
    pub hidden_size: Option<i64>,
    /// Preset override: attention heads.
    #[serde(default)]
    pub heads: Option<i64>,
    /// Preset override: feed-forward width.
    #[serde(default)]
    pub intermediate_size: Option<i64>,
}

impl ModelSpec {
    /// Resolves relative paths against `base` (the config file's directory).
    pub fn resolve(mut self, base: &Path) -> Self {
        let fix = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        self.path = self.path.map(fix);
        self.tokenizer = self.tokenizer.map(fix);
        self
    }

    /// Every problem, as `model.<field>: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.preset, &self.path) {
            (None, None) => problems.push("model: give either `preset` or `path`".to_string()),
            (Some(_), Some(_)) => problems.push("model: `preset` and `path` exclude each other".to_string()),
            (Some(preset), None) if preset != "small" => {
                problems.push(format!("model.preset: {preset:?} is not a preset (small)"))
            }
            (Some(_), None) if self.tokenizer.is_none() => {
                problems.push("model.tokenizer: a preset needs a tokenizer.json".to_string())
            }
            _ => {}
        }
        if let Some(t) = self.tokenizer.as_ref().filter(|t| !t.is_file()) {
            problems.push(format!("model.tokenizer: {} does not exist", t.display()));
        }
        if let Some(p) = self.path.as_ref().filter(|p| !p.is_dir()) {
            problems.push(format!("model.path: {} is not a directory", p.display()));
        }
        if self.path.is_some()
            && [self.layers, self.hidden_size, self.heads, self.intermediate_size].iter().any(Option::is_some)
        {
            problems.push("model: layers/hidden_size/heads/intermediate_size only apply to a preset".to_string());
        }
        if self.max_seq_length < 2 {
            problems.push("model.max_seq_length: must be at least 2".to_string());
        }
        problems
    }

    /// Builds the encoder on `device`.
    pub fn build(&self, device: Device) -> Result<SentenceEncoder> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(WorkerError::invalid("model", problems.join("; ")));
        }
        let settings = SentenceSettings {
            pooling: self.pooling,
            normalize: self.normalize,
            max_seq_length: self.max_seq_length,
            query_prefix: self.query_prefix.clone(),
            passage_prefix: self.passage_prefix.clone(),
        };
        match (&self.preset, &self.path, &self.tokenizer) {
            (Some(_), _, Some(tokenizer)) => {
                let tokenizer = TextTokenizer::load(tokenizer)?;
                let pad = tokenizer.token_to_id("[PAD]").map_or(0, i64::from);
                let mut config = EncoderConfig::small(tokenizer.vocab_size() as i64, pad, 512);
                config.num_hidden_layers = self.layers.unwrap_or(config.num_hidden_layers);
                config.hidden_size = self.hidden_size.unwrap_or(config.hidden_size);
                config.num_attention_heads = self.heads.unwrap_or(config.num_attention_heads);
                config.intermediate_size = self.intermediate_size.unwrap_or(config.intermediate_size);
                SentenceEncoder::random(config, tokenizer, settings, self.seed, device)
            }
            (_, Some(path), _) => SentenceEncoder::load(path, &settings, device),
            _ => Err(WorkerError::invalid("model", "give either `preset` or `path`")),
        }
    }
}

fn default_device() -> String {
    "cpu".to_string()
}
fn default_clip() -> f64 {
    1.0
}
fn one() -> usize {
    1
}

/// `training:` — how each worker trains (the job length lives in the coordinator's `job:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
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
}

impl Default for TrainingConfig {
    fn default() -> Self {
        serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl TrainingConfig {
    /// The step settings for a job of `total_steps`.
    pub fn step_config(&self, total_steps: u64) -> StepConfig {
        StepConfig {
            loss: self.loss.clone(),
            optimizer: self.optimizer.clone(),
            warmup_steps: self.warmup_steps,
            total_steps,
            max_grad_norm: self.max_grad_norm,
            accumulation_steps: self.accumulation_steps,
            dropout: self.dropout,
        }
    }
}

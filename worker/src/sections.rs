//! The `model:` and `training:` sections of a run config, owned by the worker: as written in
//! YAML ([`ModelSection`], [`TrainingSection`]) and as built once into typed values
//! ([`ModelSettings`], [`TrainingSettings`]); and [`WorkerSpec`], what the coordinator hands
//! every worker at registration (built by the launcher, passed on unread by the coordinator).

use std::path::{Path, PathBuf};

use rosetta_common::ConfigProblems;
use rosetta_datasets::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::{Result, WorkerError};
use crate::freeze::FreezeConfig;
use crate::hf_config::EncoderConfig;
use crate::loss::LossConfig;
use crate::optim::AdamWConfig;
use crate::precision::Precision;
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

/// `model:` as written: a preset initialised at random, or a local Hugging Face /
/// sentence-transformers directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `small` (4 layers, 256 wide, BERT-style), initialised from `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// A model directory (mutually exclusive with `preset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `tokenizer.json` of a preset (e.g. the one `rosetta data synth` trains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<i64>,
    /// Preset override: hidden width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<i64>,
    /// Preset override: attention heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<i64>,
    /// Preset override: feed-forward width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<i64>,
}

/// The model presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 4 layers, 256 wide, 4 heads, 1024 feed-forward, BERT-style, random initialisation.
    Small,
}

/// Overrides of a preset's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetShape {
    /// Transformer layers.
    pub layers: Option<i64>,
    /// Hidden width.
    pub hidden_size: Option<i64>,
    /// Attention heads.
    pub heads: Option<i64>,
    /// Feed-forward width.
    pub intermediate_size: Option<i64>,
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A preset, initialised at random from `seed`, with its own tokenizer.
    Preset {
        /// Which preset.
        preset: Preset,
        /// Its `tokenizer.json`.
        tokenizer: PathBuf,
        /// Initialisation seed.
        seed: i64,
        /// Shape overrides.
        shape: PresetShape,
    },
    /// A Hugging Face or sentence-transformers directory.
    Directory(PathBuf),
}

/// The built `model:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Where the weights come from.
    pub source: ModelSource,
    /// Pooling, normalisation, length and prefixes (a sentence-transformers directory's own
    /// configuration takes precedence).
    pub sentence: SentenceSettings,
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

impl ModelSection {
    /// Builds the typed settings; relative paths resolve against `base` (the config file's
    /// directory). Lists every problem with its YAML path.
    pub fn build(&self, base: &Path) -> std::result::Result<ModelSettings, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        let shape = PresetShape {
            layers: self.layers,
            hidden_size: self.hidden_size,
            heads: self.heads,
            intermediate_size: self.intermediate_size,
        };
        let has_shape = [self.layers, self.hidden_size, self.heads, self.intermediate_size].iter().any(Option::is_some);
        for (name, value) in [
            ("layers", self.layers),
            ("hidden_size", self.hidden_size),
            ("heads", self.heads),
            ("intermediate_size", self.intermediate_size),
        ] {
            if let Some(value) = value.filter(|v| *v <= 0) {
                problems.push(format!("model.{name}"), format!("{value} must be positive"));
            }
        }
        let source = match (&self.preset, &self.path) {
            (None, None) => {
                problems.push("model", "give either `preset` or `path`");
                None
            }
            (Some(_), Some(_)) => {
                problems.push("model", "`preset` and `path` exclude each other");
                None
            }
            (Some(preset), None) => {
                let preset = match preset.as_str() {
                    "small" => Some(Preset::Small),
                    other => {
                        problems.push("model.preset", format!("{other:?} is not a preset (small)"));
                        None
                    }
                };
                let tokenizer = match &self.tokenizer {
                    None => {
                        problems.push("model.tokenizer", "a preset needs a tokenizer.json");
                        None
                    }
                    Some(path) => {
                        let path = resolve(base, path);
                        if !path.is_file() {
                            problems.push("model.tokenizer", format!("{} does not exist", path.display()));
                        }
                        Some(path)
                    }
                };
                preset.zip(tokenizer).map(|(preset, tokenizer)| ModelSource::Preset {
                    preset,
                    tokenizer,
                    seed: self.seed,
                    shape,
                })
            }
            (None, Some(path)) => {
                let path = resolve(base, path);
                if !path.is_dir() {
                    problems.push("model.path", format!("{} is not a directory", path.display()));
                }
                if has_shape {
                    problems.push("model", "layers/hidden_size/heads/intermediate_size only apply to a preset");
                }
                if self.tokenizer.is_some() {
                    problems.push("model.tokenizer", "a model directory brings its own tokenizer.json; remove this");
                }
                Some(ModelSource::Directory(path))
            }
        };
        if self.max_seq_length < 2 {
            problems.push("model.max_seq_length", "must be at least 2");
        }
        let sentence = SentenceSettings {
            pooling: self.pooling,
            normalize: self.normalize,
            max_seq_length: self.max_seq_length,
            query_prefix: self.query_prefix.clone(),
            passage_prefix: self.passage_prefix.clone(),
        };
        match source {
            Some(source) => problems.into_result(ModelSettings { source, sentence }),
            None => Err(problems),
        }
    }
}

impl ModelSettings {
    /// Builds the encoder on `device`.
    pub fn build_encoder(&self, device: Device) -> Result<SentenceEncoder> {
        self.build(device, true)
    }

    /// Builds the encoder on `device` for a checkpoint to be loaded into: a preset's
    /// parameters are left at zero instead of being drawn from its seed.
    pub fn build_encoder_to_load(&self, device: Device) -> Result<SentenceEncoder> {
        self.build(device, false)
    }

    fn build(&self, device: Device, initialise: bool) -> Result<SentenceEncoder> {
        match &self.source {
            ModelSource::Preset { preset: Preset::Small, tokenizer, seed, shape } => {
                let tokenizer = TextTokenizer::load(tokenizer)?;
                let pad = tokenizer.token_to_id("[PAD]").map_or(0, i64::from);
                let mut config = EncoderConfig::small(tokenizer.vocab_size() as i64, pad, 512);
                config.num_hidden_layers = shape.layers.unwrap_or(config.num_hidden_layers);
                config.hidden_size = shape.hidden_size.unwrap_or(config.hidden_size);
                config.num_attention_heads = shape.heads.unwrap_or(config.num_attention_heads);
                config.intermediate_size = shape.intermediate_size.unwrap_or(config.intermediate_size);
                SentenceEncoder::of_shape(config, tokenizer, self.sentence.clone(), initialise.then_some(*seed), device)
            }
            ModelSource::Directory(path) => SentenceEncoder::load(path, &self.sentence, device),
        }
    }
}

/// A device: the CPU or one CUDA device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    /// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("{text:?}: expected cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The libtorch device, checking (on this machine) that a CUDA device exists.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(index) => {
                let available = crate::device::cuda_device_count();
                if index >= available {
                    return Err(WorkerError::invalid(
                        "device",
                        format!("{self}: this machine has {available} CUDA device(s) visible to libtorch"),
                    ));
                }
                Ok(Device::Cuda(index))
            }
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

impl TrainingSettings {
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
            freeze: self.freeze.clone(),
            sparse_embedding_all_reduce: self.sparse_embedding_all_reduce,
            grad_cache_chunk: self.grad_cache_chunk,
            precision: self.precision,
        }
    }
}

/// What every worker of a job trains with: the launcher builds it from the run config, the
/// coordinator hands it to each worker at registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// The encoder.
    pub model: ModelSettings,
    /// Loss, optimiser, device, hard negatives.
    pub training: TrainingSettings,
    /// Optimiser steps of the whole job (the learning-rate schedule decays to 0 there).
    pub total_steps: u64,
    /// The schedule's seed: dropout of step s on rank r is seeded by (seed, s, r).
    pub seed: u64,
    /// How long a collective (or the ring's set-up) may wait for a peer.
    pub collective_timeout: std::time::Duration,
}

impl WorkerSpec {
    /// The spec as sent to workers.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("a worker spec always serialises"))
    }

    /// A spec received from the coordinator.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            WorkerError::invalid(
                "worker spec from the coordinator",
                format!("{e} (is the coordinator another version?)"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>().map(|d| d.to_string()), Ok("cuda:3".to_string()));
        assert!("gpu0".parse::<DeviceSpec>().unwrap_err().contains("expected cpu, cuda or cuda:N"));
    }

    #[test]
    fn sections_list_every_problem_with_its_path() {
        let model: ModelSection =
            serde_json::from_str(r#"{"preset": "huge", "max_seq_length": 1, "layers": 0}"#).unwrap();
        let err = model.build(Path::new("/")).unwrap_err().to_string();
        for expected in [
            "model.preset: \"huge\" is not a preset",
            "model.tokenizer: a preset needs",
            "model.max_seq_length",
            "model.layers: 0",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
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
    fn a_worker_spec_round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = dir.path().join("tokenizer.json");
        std::fs::write(&tokenizer, "{}").unwrap();
        let model: ModelSection =
            serde_json::from_str(r#"{"preset": "small", "tokenizer": "tokenizer.json", "layers": 2}"#).unwrap();
        let spec = WorkerSpec {
            model: model.build(dir.path()).unwrap(),
            training: TrainingSection::default().build().unwrap(),
            total_steps: 10,
            seed: 3,
            collective_timeout: std::time::Duration::from_secs(60),
        };
        assert!(
            matches!(&spec.model.source, ModelSource::Preset { tokenizer: t, shape, .. } if *t == tokenizer && shape.layers == Some(2))
        );
        assert_eq!(WorkerSpec::from_json(&spec.to_json()).unwrap(), spec);
        assert!(WorkerSpec::from_json("{\"model\": 1}").unwrap_err().to_string().contains("another version"));
    }
}

//! The `model:` section of a run config: as written in YAML ([`ModelSection`]) and as built
//! once into typed values ([`ModelSettings`]): where the weights come from (a preset or a model
//! directory) and how the sentence encoder pools, normalises, truncates and prefixes.

use std::path::{Path, PathBuf};

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over non-padding tokens.
    Mean,
    /// The first token's state.
    Cls,
}

/// How a sentence encoder is put together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceSettings {
    /// Pooling of token states.
    pub pooling: Pooling,
    /// L2-normalise the output.
    pub normalize: bool,
    /// Longest input in tokens (longer inputs are truncated).
    pub max_seq_length: usize,
    /// Prefix of queries (E5: `"query: "`).
    #[serde(default)]
    pub query_prefix: String,
    /// Prefix of passages (E5: `"passage: "`).
    #[serde(default)]
    pub passage_prefix: String,
}

impl Default for SentenceSettings {
    fn default() -> Self {
        Self {
            pooling: Pooling::Mean,
            normalize: true,
            max_seq_length: 128,
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }
}

fn default_pooling() -> Pooling {
    Pooling::Mean
}
pub(crate) fn yes() -> bool {
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
    rosetta_common::paths::resolve(base, path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_section_lists_every_problem_with_its_path() {
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
    }
}

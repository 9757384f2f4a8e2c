//! Encoder hyper-parameters, read from a Hugging Face `config.json` or from a preset.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which embedding conventions the encoder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// BERT (LaBSE, mBERT): positions 0..L.
    Bert,
    /// XLM-RoBERTa (XLM-R, multilingual-e5): positions offset by the padding index, pads keep it.
    XlmRoberta,
}

/// The fields of a Hugging Face encoder `config.json` that define the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// `model_type`: `bert`, `xlm-roberta` or `roberta`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Transformer layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer.
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Activation of the feed-forward layer (only `gelu` is supported).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Size of the position table.
    pub max_position_embeddings: i64,
    /// Token-type (segment) vocabulary.
    #[serde(default = "default_types")]
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: i64,
    /// Dropout after embeddings, attention output and feed-forward (training only).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
}

fn default_act() -> String {
    "gelu".to_string()
}
fn default_types() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}

impl EncoderConfig {
    /// Reads and checks a `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ModelError::model(path, e.to_string()))?;
        config.check().map_err(|message| ModelError::model(path, message))?;
        Ok(config)
    }

    /// The embedding conventions of this `model_type`.
    pub fn architecture(&self) -> Architecture {
        match self.model_type.as_str() {
            "xlm-roberta" | "roberta" => Architecture::XlmRoberta,
            _ => Architecture::Bert,
        }
    }

    /// Every inconsistency, as one message.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut problems = Vec::new();
        if !matches!(self.model_type.as_str(), "bert" | "xlm-roberta" | "roberta") {
            problems.push(format!("model_type {:?} is not supported (bert, xlm-roberta, roberta)", self.model_type));
        }
        if self.hidden_act != "gelu" {
            problems.push(format!("hidden_act {:?} is not supported (gelu)", self.hidden_act));
        }
        if self.num_attention_heads <= 0 || self.hidden_size % self.num_attention_heads != 0 {
            problems.push(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value <= 0 {
                problems.push(format!("{name} must be positive, got {value}"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The small model of the embedded default: a 4-layer, 256-wide BERT-style encoder.
    pub fn small(vocab_size: i64, pad_token_id: i64, max_positions: i64) -> Self {
        Self {
            model_type: "bert".to_string(),
            vocab_size,
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            hidden_act: "gelu".to_string(),
            max_position_embeddings: max_positions,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
        }
    }

    /// The longest input the position table allows (XLM-R reserves `pad + 1` positions).
    pub fn max_input_length(&self) -> i64 {
        match self.architecture() {
            Architecture::Bert => self.max_position_embeddings,
            Architecture::XlmRoberta => self.max_position_embeddings - self.pad_token_id - 1,
        }
    }
}

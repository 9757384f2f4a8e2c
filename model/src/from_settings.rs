//! The encoder a built `model:` section describes: a preset initialised from its seed (with
//! the shape overrides), or a Hugging Face / sentence-transformers directory.

use rosetta_datasets::tokenize::TextTokenizer;
use rosetta_worker_config::model::{ModelSettings, ModelSource, Preset};
use tch::Device;

use crate::error::Result;
use crate::hf_config::EncoderConfig;
use crate::sentence::SentenceEncoder;

/// Builds the encoder of `settings` on `device`.
pub fn build_encoder(settings: &ModelSettings, device: Device) -> Result<SentenceEncoder> {
    build(settings, device, true)
}

/// Builds the encoder of `settings` on `device` for a checkpoint to be loaded into: a preset's
/// parameters are left at zero instead of being drawn from its seed.
pub fn build_encoder_to_load(settings: &ModelSettings, device: Device) -> Result<SentenceEncoder> {
    build(settings, device, false)
}

fn build(settings: &ModelSettings, device: Device, initialise: bool) -> Result<SentenceEncoder> {
    match &settings.source {
        ModelSource::Preset { preset: Preset::Small, tokenizer, seed, shape } => {
            let tokenizer = TextTokenizer::load(tokenizer)?;
            let pad = tokenizer.token_to_id("[PAD]").map_or(0, i64::from);
            let mut config = EncoderConfig::small(tokenizer.vocab_size() as i64, pad, 512);
            config.num_hidden_layers = shape.layers.unwrap_or(config.num_hidden_layers);
            config.hidden_size = shape.hidden_size.unwrap_or(config.hidden_size);
            config.num_attention_heads = shape.heads.unwrap_or(config.num_attention_heads);
            config.intermediate_size = shape.intermediate_size.unwrap_or(config.intermediate_size);
            SentenceEncoder::of_shape(config, tokenizer, settings.sentence.clone(), initialise.then_some(*seed), device)
        }
        ModelSource::Directory(path) => SentenceEncoder::load(path, &settings.sentence, device),
    }
}

//! Export of a model as a sentence-transformers directory that Python loads unchanged:
//! `model.safetensors`, `config.json`, `tokenizer.json`, `tokenizer_config.json`,
//! `sentence_bert_config.json`, `modules.json`, `1_Pooling/`, optional `2_Dense/` and `Normalize`.

use std::path::Path;

use rosetta_common::atomic::{replace_dir, temp_sibling, write_atomic};
use serde_json::json;

use crate::checkpoint::write_tensors_atomically;
use crate::error::{ModelError, Result};
use crate::hf_config::Architecture;
use crate::sentence::{DenseActivation, Pooling, SentenceEncoder};

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::model(path, e.to_string()))?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Writes `model` to `dir`: built in a temporary sibling directory that replaces `dir` only once
/// it is complete (an existing export survives a failed one).
pub fn export_sentence_transformers(model: &SentenceEncoder, dir: &Path) -> Result<()> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let staging = temp_sibling(dir);
    std::fs::create_dir(&staging).map_err(|e| ModelError::io(&staging, e))?;
    let outcome = write_export(model, &staging).and_then(|()| Ok(replace_dir(&staging, dir)?));
    if outcome.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    outcome
}

fn write_export(model: &SentenceEncoder, dir: &Path) -> Result<()> {
    let config = model.encoder().config();
    let settings = model.settings();
    let mut transformer = Vec::new();
    let mut dense = Vec::new();
    for (name, tensor) in model.var_store().variables() {
        match name.strip_prefix("dense.") {
            Some(rest) => dense.push((rest.to_string(), tensor)),
            None => transformer.push((name, tensor)),
        }
    }
    transformer.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomically(&dir.join("model.safetensors"), &transformer)?;
    let architecture = match config.architecture() {
        Architecture::Bert => "BertModel",
        Architecture::XlmRoberta => "XLMRobertaModel",
    };
    let mut config_json = serde_json::to_value(config).map_err(|e| ModelError::model(dir, e.to_string()))?;
    config_json["architectures"] = json!([architecture]);
    write_json(&dir.join("config.json"), &config_json)?;

    let tokenizer_source = model.tokenizer().path();
    std::fs::copy(tokenizer_source, dir.join("tokenizer.json")).map_err(|e| ModelError::io(tokenizer_source, e))?;
    let token = |id: i64| model.tokenizer().id_to_token(u32::try_from(id).unwrap_or(0));
    let pad = token(config.pad_token_id).ok_or_else(|| {
        ModelError::model(tokenizer_source, format!("pad id {} is not in the vocabulary", config.pad_token_id))
    })?;
    let mut tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": settings.max_seq_length,
        "pad_token": pad,
    });
    for (key, candidates) in [
        ("cls_token", ["[CLS]", "<s>"]),
        ("sep_token", ["[SEP]", "</s>"]),
        ("unk_token", ["[UNK]", "<unk>"]),
        ("mask_token", ["[MASK]", "<mask>"]),
    ] {
        if let Some(found) = candidates.iter().find(|c| model.tokenizer().token_to_id(c).is_some()) {
            tokenizer_config[key] = json!(found);
        }
    }
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config)?;
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": settings.max_seq_length, "do_lower_case": false}),
    )?;

    let mut modules =
        vec![json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"})];
    let pooling_dir = dir.join("1_Pooling");
    std::fs::create_dir_all(&pooling_dir).map_err(|e| ModelError::io(&pooling_dir, e))?;
    write_json(
        &pooling_dir.join("config.json"),
        &json!({
            "word_embedding_dimension": config.hidden_size,
            "pooling_mode_cls_token": settings.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": settings.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    modules.push(json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}));
    if let Some(layer) = model.dense() {
        let dense_dir = dir.join("2_Dense");
        std::fs::create_dir_all(&dense_dir).map_err(|e| ModelError::io(&dense_dir, e))?;
        let size = layer.linear.weight.size();
        let activation = match layer.activation {
            DenseActivation::Tanh => "torch.nn.modules.activation.Tanh",
            DenseActivation::Identity => "torch.nn.modules.linear.Identity",
        };
        write_json(
            &dense_dir.join("config.json"),
            &json!({"in_features": size[1], "out_features": size[0], "bias": true, "activation_function": activation}),
        )?;
        dense.sort_by(|a, b| a.0.cmp(&b.0));
        write_tensors_atomically(&dense_dir.join("model.safetensors"), &dense)?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    }
    if settings.normalize {
        let index = modules.len();
        let path = format!("{index}_Normalize");
        std::fs::create_dir_all(dir.join(&path)).map_err(|e| ModelError::io(dir.join(&path), e))?;
        modules.push(json!({"idx": index, "name": index.to_string(), "path": path, "type": "sentence_transformers.models.Normalize"}));
    }
    write_json(&dir.join("modules.json"), &serde_json::Value::Array(modules))
}

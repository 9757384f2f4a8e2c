//! Rosetta's encoders against Hugging Face `transformers` and `sentence-transformers` on tiny
//! random BERT and XLM-R models: a batch with padding, several scripts and a truncated input.

mod common;

use std::path::Path;

use rosetta_model::sentence::{Pooling, SentenceEncoder, SentenceSettings};
use serde_json::Value;
use tch::Device;

const TOLERANCE: f64 = 1e-5;

fn rows(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn fixtures() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("make_tiny_models.py", &[dir.path().to_str().unwrap()]);
    let expected = serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn check(dir: &Path, expected: &Value, kind: &str) {
    let texts: Vec<&str> = expected["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let want = &expected[kind];
    let defaults = SentenceSettings::default();

    // sentence-transformers directory: the whole module stack.
    let st = SentenceEncoder::load(&dir.join(format!("{kind}-st")), &defaults, Device::Cpu).unwrap();
    assert_eq!(st.settings().max_seq_length, expected["max_seq_length"].as_u64().unwrap() as usize);
    let batch = st.tokenize(&texts, "").unwrap();
    let ids: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&batch.input_ids).unwrap();
    let want_ids: Vec<Vec<i64>> = want["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect())
        .collect();
    assert_eq!(ids, want_ids, "{kind}: token ids differ from the HF tokenizer");
    let embeddings = st.encode(&texts, "", 64).unwrap();
    let diff = common::max_abs_diff(&embeddings, &rows(&want["st_embeddings"]));
    assert!(diff < TOLERANCE, "{kind}: sentence-transformers embeddings differ by {diff}");

    // Plain HF directory: raw mean and CLS pooling, unnormalised.
    for (pooling, key) in [(Pooling::Mean, "mean_pooled"), (Pooling::Cls, "cls")] {
        let settings = SentenceSettings { pooling, normalize: false, max_seq_length: 24, ..defaults.clone() };
        let hf = SentenceEncoder::load(&dir.join(format!("{kind}-hf")), &settings, Device::Cpu).unwrap();
        let pooled = hf.encode(&texts, "", 2).unwrap();
        let diff = common::max_abs_diff(&pooled, &rows(&want[key]));
        assert!(diff < TOLERANCE, "{kind}: {key} differs from transformers by {diff}");
    }
}

#[test]
fn bert_and_xlmr_match_transformers_and_sentence_transformers() {
    let (dir, expected) = fixtures();
    check(dir.path(), &expected, "bert");
    check(dir.path(), &expected, "xlmr");
}

#[test]
fn a_wrong_shaped_tensor_is_named() {
    let (dir, _) = fixtures();
    let st = dir.path().join("bert-hf");
    let config_path = st.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["intermediate_size"] = 48.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = SentenceEncoder::load(&st, &SentenceSettings::default(), Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("tensor encoder.layer.0.intermediate.dense.weight has shape [64, 32], expected [48, 32]"),
        "{err}"
    );
}

//! Checkpoints restore training exactly; exports load in Python sentence-transformers and give
//! Rosetta's embeddings.

mod common;

use std::path::Path;

use rosetta_collective::collective::SingleRank;
use rosetta_datasets::tokenize::train_wordpiece;
use rosetta_model::checkpoint::{load_checkpoint, save_checkpoint};
use rosetta_model::export::export_sentence_transformers;
use rosetta_model::hf_config::EncoderConfig;
use rosetta_model::sentence::{Pooling, SentenceEncoder, SentenceSettings};
use rosetta_worker::train::{MicroBatch, StepConfig, Trainer};
use tch::{Device, Tensor};

const TEXTS: [&str; 4] = ["where was ana born ?", "ana was born in oslo in 1987", "анна родилась", "x"];

fn tiny_model(dir: &Path, seed: i64, pooling: Pooling) -> SentenceEncoder {
    tiny_model_with(dir, seed, pooling, 64)
}

fn tiny_model_with(dir: &Path, seed: i64, pooling: Pooling, intermediate_size: i64) -> SentenceEncoder {
    let path = dir.join("tokenizer.json");
    let tokenizer = if path.exists() {
        rosetta_datasets::tokenize::TextTokenizer::load(&path).unwrap()
    } else {
        train_wordpiece(TEXTS.iter().cycle().take(40), 60, &path).unwrap()
    };
    let config = EncoderConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size,
        ..EncoderConfig::small(tokenizer.vocab_size() as i64, 0, 64)
    };
    let settings = SentenceSettings { pooling, max_seq_length: 12, ..SentenceSettings::default() };
    SentenceEncoder::random(config, tokenizer, settings, seed, Device::Cpu).unwrap()
}

fn trainer(model: SentenceEncoder) -> Trainer {
    let config = StepConfig { loss: Default::default(), warmup_steps: 2, total_steps: 10, ..common::step_config() };
    Trainer::new(model, config).unwrap()
}

fn batch() -> MicroBatch {
    MicroBatch {
        queries: vec![TEXTS[0].into(), TEXTS[2].into()],
        positives: vec![TEXTS[1].into(), TEXTS[3].into()],
        negatives: vec![],
    }
}

fn params(trainer: &Trainer) -> Vec<Tensor> {
    trainer.optimizer().parameters().map(|(_, t)| t.detach().copy()).collect()
}

#[test]
fn a_restored_checkpoint_continues_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut original = trainer(tiny_model(dir.path(), 1, Pooling::Mean));
    for _ in 0..3 {
        original.step(&batch(), &SingleRank).unwrap();
    }
    let path = dir.path().join("ckpt/step-3.safetensors");
    save_checkpoint(&path, original.model(), Some(original.optimizer())).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("ckpt")).unwrap().count(), 1, "a temporary file was left behind");

    // A fresh process: another random model, then the checkpoint's model and optimiser state.
    let mut resumed = {
        let mut m = tiny_model(dir.path(), 99, Pooling::Mean);
        load_checkpoint(&path, &mut m, None).unwrap();
        let mut t = trainer(m);
        let tensors = rosetta_model::checkpoint::read_tensors(&path).unwrap();
        t.optimizer_mut().load_state(&tensors).unwrap();
        t
    };
    assert_eq!(resumed.optimizer().steps_taken(), 3);
    for (a, b) in params(&original).iter().zip(params(&resumed)) {
        assert!(a.equal(&b));
    }
    let x = original.step(&batch(), &SingleRank).unwrap();
    let y = resumed.step(&batch(), &SingleRank).unwrap();
    assert_eq!(x.loss.to_bits(), y.loss.to_bits());
    assert_eq!(x.lr, y.lr);
    for (a, b) in params(&original).iter().zip(params(&resumed)) {
        assert!(a.equal(&b), "parameters differ after the resumed step");
    }
}

#[test]
fn bad_checkpoints_are_refused_with_the_tensor_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 1, Pooling::Mean);
    let path = dir.path().join("c.safetensors");
    save_checkpoint(&path, &model, None).unwrap();
    let mut wider = tiny_model_with(dir.path(), 1, Pooling::Mean, 48);
    let err = load_checkpoint(&path, &mut wider, None).unwrap_err().to_string();
    assert!(
        err.contains("tensor model.encoder.layer.0.intermediate.dense.weight has shape [64, 32], expected [48, 32]"),
        "{err}"
    );
    let mut same = tiny_model(dir.path(), 2, Pooling::Mean);
    let mut t = trainer(tiny_model(dir.path(), 2, Pooling::Mean));
    let err = load_checkpoint(&path, &mut same, Some(t.optimizer_mut())).unwrap_err().to_string();
    assert!(err.contains("optimizer.step is missing"), "{err}");
    let err = load_checkpoint(&dir.path().join("none.safetensors"), &mut same, None).unwrap_err().to_string();
    assert!(err.contains("none.safetensors") && err.contains("does not exist"), "{err}");
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_checkpoint(&path, &mut same, None).is_err());
}

fn python_embeddings(dir: &Path, texts: &[&str]) -> Vec<Vec<f64>> {
    let texts_path = dir.with_extension("texts.json");
    std::fs::write(&texts_path, serde_json::to_string(texts).unwrap()).unwrap();
    let out = common::run_python("encode_st.py", &[dir.to_str().unwrap(), texts_path.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    value["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

#[test]
fn exports_load_in_sentence_transformers_with_identical_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    // A trained random model (mean pooling, normalised) …
    let mut t = trainer(tiny_model(dir.path(), 3, Pooling::Mean));
    t.step(&batch(), &SingleRank).unwrap();
    let out = dir.path().join("export-mean");
    export_sentence_transformers(t.model(), &out).unwrap();
    let ours = t.model().encode(&TEXTS, "", 8).unwrap();
    let diff = common::max_abs_diff(&ours, &python_embeddings(&out, &TEXTS));
    assert!(diff < 1e-5, "mean export differs by {diff}");
    // … and LaBSE- and e5-shaped models loaded from sentence-transformers (CLS + Dense + Normalize).
    common::run_python("make_tiny_models.py", &[dir.path().to_str().unwrap()]);
    for kind in ["bert", "xlmr"] {
        let model =
            SentenceEncoder::load(&dir.path().join(format!("{kind}-st")), &SentenceSettings::default(), Device::Cpu)
                .unwrap();
        let out = dir.path().join(format!("export-{kind}"));
        export_sentence_transformers(&model, &out).unwrap();
        let ours = model.encode(&TEXTS, "", 8).unwrap();
        let diff = common::max_abs_diff(&ours, &python_embeddings(&out, &TEXTS));
        assert!(diff < 1e-5, "{kind} export differs by {diff}");
        // The export loads back into Rosetta unchanged.
        let back = SentenceEncoder::load(&out, &SentenceSettings::default(), Device::Cpu).unwrap();
        assert!(back.encode(&TEXTS, "", 8).unwrap().equal(&ours));
    }
}

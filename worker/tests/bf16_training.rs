//! `training.precision: bf16` on CPU: the encoder runs under bfloat16 autocast while the
//! weights, gradients, optimiser state and loss stay f32. Its gradients must be close to the
//! fp32 ones, two identical runs bit-identical, the loss must fall, two ranks (the staged
//! all-reduce overlap) must hold identical parameters, and GradCache must agree with the
//! unchunked step. In a test binary of its own: libtorch's generator is global.

mod common;

use std::time::Duration;

use rosetta_collective::collective::{Collective, SingleRank, local_group};
use rosetta_datasets::tokenize::train_wordpiece;
use rosetta_model::hf_config::EncoderConfig;
use rosetta_model::precision::Precision;
use rosetta_model::sentence::{SentenceEncoder, SentenceSettings};
use rosetta_worker::train::{MicroBatch, StepConfig, Trainer};

use common::{on_rank_threads, parameters};
use tch::{Device, Kind, Tensor};

fn rows() -> Vec<(String, String)> {
    (0..12)
        .map(|i| {
            (
                format!("where was person {i} born ?"),
                format!("person {i} was born in city {} in {}", i * 7 % 5, 1900 + i),
            )
        })
        .collect()
}

fn batch(rank: usize, world: usize) -> MicroBatch {
    let all = rows();
    let part = &all[all.len() * rank / world..all.len() * (rank + 1) / world];
    MicroBatch {
        queries: part.iter().map(|r| r.0.clone()).collect(),
        positives: part.iter().map(|r| r.1.clone()).collect(),
        negatives: Vec::new(),
    }
}

/// A tiny random f32 encoder (CPU autocast does not cast f64) and its step settings.
fn trainer(dir: &std::path::Path, precision: Precision, grad_cache_chunk: usize) -> Trainer {
    let texts: Vec<String> = rows().into_iter().flat_map(|(q, p)| [q, p]).collect();
    let tokenizer = train_wordpiece(texts.iter().cycle().take(100), 100, &dir.join("tokenizer.json")).unwrap();
    let config = EncoderConfig {
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        max_position_embeddings: 64,
        ..EncoderConfig::small(tokenizer.vocab_size() as i64, 0, 64)
    };
    let settings = SentenceSettings { max_seq_length: 16, ..SentenceSettings::default() };
    let model = SentenceEncoder::random(config, tokenizer, settings, 7, Device::Cpu).unwrap();
    let step = StepConfig { grad_cache_chunk, precision, ..common::step_config() };
    Trainer::new(model, step).unwrap()
}

/// ‖a − b‖ / ‖b‖ over all named tensors together.
fn relative_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut difference, mut norm) = (0.0, 0.0);
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        difference += (ta - tb).square().sum(Kind::Double).double_value(&[]);
        norm += tb.square().sum(Kind::Double).double_value(&[]);
    }
    (difference / norm).sqrt()
}

fn gradients_of(dir: &std::path::Path, precision: Precision, grad_cache_chunk: usize) -> (f64, Vec<(String, Tensor)>) {
    let mut t = trainer(dir, precision, grad_cache_chunk);
    let loss = t.backward(&batch(0, 1), &SingleRank).unwrap();
    (loss, t.gradients())
}

#[test]
fn bf16_gradients_are_close_to_fp32_and_the_weights_stay_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (fp32_loss, fp32) = gradients_of(dir.path(), Precision::Fp32, 0);
    let (bf16_loss, bf16) = gradients_of(dir.path(), Precision::Bf16, 0);
    assert!(fp32.len() > 20, "every parameter gets a gradient");
    for (name, gradient) in &bf16 {
        assert_eq!(gradient.kind(), Kind::Float, "{name}: the gradient stays f32");
    }
    let relative = relative_difference(&bf16, &fp32);
    // bfloat16 keeps 8 significant bits (relative error ~0.4 % per value): the gradients
    // differ by about a percent, yet they must not be the fp32 ones (autocast is on).
    assert!(relative < 0.1, "bf16 gradients differ from fp32 by {relative}");
    assert!(relative > 1e-5, "bf16 gave the fp32 gradients: autocast did not run");
    assert!((bf16_loss - fp32_loss).abs() < 0.05 * fp32_loss.abs(), "loss {bf16_loss} vs {fp32_loss}");
    // `auto` is fp32 on CPU.
    let (auto_loss, auto) = gradients_of(dir.path(), Precision::Auto, 0);
    assert_eq!(auto_loss, fp32_loss);
    assert_eq!(relative_difference(&auto, &fp32), 0.0);
}

#[test]
fn bf16_training_is_reproducible_and_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let mut t = trainer(dir.path(), Precision::Bf16, 0);
        let losses: Vec<f64> = (0..8).map(|_| t.step(&batch(0, 1), &SingleRank).unwrap().loss).collect();
        for (name, p) in parameters(&t) {
            assert_eq!(p.kind(), Kind::Float, "{name}: the weight stays f32");
        }
        (losses, parameters(&t))
    };
    let (first, first_parameters) = run();
    let (second, second_parameters) = run();
    assert_eq!(first, second, "same config, same losses");
    assert_eq!(relative_difference(&first_parameters, &second_parameters), 0.0);
    assert!(first[7] < first[0], "the loss falls: {first:?}");
}

#[test]
fn bf16_grad_cache_agrees_with_the_unchunked_step() {
    let dir = tempfile::tempdir().unwrap();
    let (whole_loss, whole) = gradients_of(dir.path(), Precision::Bf16, 0);
    let (chunked_loss, chunked) = gradients_of(dir.path(), Precision::Bf16, 4);
    // Chunks change the bf16 matmul shapes, hence its rounding: close, not equal.
    assert!((whole_loss - chunked_loss).abs() < 1e-2 * whole_loss.abs(), "{chunked_loss} vs {whole_loss}");
    let relative = relative_difference(&chunked, &whole);
    assert!(relative < 0.05, "GradCache bf16 gradients differ by {relative}");
}

#[test]
fn two_bf16_ranks_stay_identical_and_agree_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 3;
    let mut single = trainer(dir.path(), Precision::Bf16, 0);
    for _ in 0..steps {
        single.step(&batch(0, 1), &SingleRank).unwrap();
    }
    let single = parameters(&single);
    // Built on this thread: libtorch's generator is global.
    let trainers: Vec<Trainer> = (0..2).map(|_| trainer(dir.path(), Precision::Bf16, 0)).collect();
    let results = on_rank_threads(local_group(2, Duration::from_secs(60)), trainers, |t, collective| {
        let b = batch(collective.rank(), collective.world_size());
        let losses: Vec<f64> = (0..steps).map(|_| t.step(&b, collective).unwrap().loss).collect();
        (losses, parameters(t))
    });
    assert_eq!(results[0].0, results[1].0, "both ranks see the same global loss");
    assert_eq!(relative_difference(&results[0].1, &results[1].1), 0.0, "ranks diverged");
    let relative = relative_difference(&results[0].1, &single);
    assert!(relative < 1e-3, "2 ranks vs 1 after {steps} bf16 steps: {relative}");
}

//! Helpers shared by the worker's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's Python (the venv `scripts/setup.sh` made): `ROSETTA_PYTHON`, else
/// `$ROSETTA_VENV/bin/python`, else `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    let python = rosetta_common::python::project_python(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    assert!(
        python.exists(),
        "{} not found: these tests compare against Python transformers; run `make test` (it runs scripts/setup.sh)",
        python.display()
    );
    python
}

/// Runs a Python script of `worker/tests/python/` with arguments; panics with its stderr on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let out = Command::new(python()).arg(&path).args(args).env("HF_HUB_OFFLINE", "1").output().expect("python runs");
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Largest absolute difference between a tensor and nested f64 rows.
pub fn max_abs_diff(tensor: &tch::Tensor, expected: &[Vec<f64>]) -> f64 {
    let rows = expected.len() as i64;
    let cols = expected.first().map_or(0, Vec::len) as i64;
    assert_eq!(tensor.size(), vec![rows, cols], "shape");
    let flat: Vec<f64> = expected.iter().flatten().copied().collect();
    let expected = tch::Tensor::from_slice(&flat).view([rows, cols]);
    let diff = (tensor.to_kind(tch::Kind::Double) - expected).abs().max();
    diff.double_value(&[])
}

/// The step settings the training tests share (in-batch InfoNCE at temperature 0.05, AdamW at
/// 1e-3, clipping at 1, no warm-up, dropout, chunking or accumulation); each test overrides what
/// it varies with `StepConfig { …, ..step_config() }`.
pub fn step_config() -> rosetta_worker::train::StepConfig {
    rosetta_worker::train::StepConfig {
        loss: rosetta_worker::loss::LossConfig { temperature: 0.05, symmetric: false },
        optimizer: rosetta_model::optim::AdamWConfig { lr: 1e-3, ..Default::default() },
        warmup_steps: 0,
        total_steps: 100,
        max_grad_norm: 1.0,
        accumulation_steps: 1,
        dropout: false,
        freeze: Default::default(),
        sparse_embedding_all_reduce: true,
        grad_cache_chunk: 0,
        precision: rosetta_model::precision::Precision::Auto,
    }
}

/// A tiny random f32 encoder (2 layers, 32 wide, 4 heads) on CPU, with a WordPiece tokenizer of
/// `vocab_size` tokens trained on `texts` and written into `dir`.
pub fn tiny_encoder(
    dir: &Path,
    texts: &[&str],
    vocab_size: usize,
    max_seq_length: usize,
) -> rosetta_model::sentence::SentenceEncoder {
    use rosetta_model::hf_config::EncoderConfig;
    use rosetta_model::sentence::{SentenceEncoder, SentenceSettings};
    let tokenizer = rosetta_datasets::tokenize::train_wordpiece(
        texts.iter().cycle().take(100),
        vocab_size,
        &dir.join("tokenizer.json"),
    )
    .unwrap();
    let config = EncoderConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        ..EncoderConfig::small(tokenizer.vocab_size() as i64, 0, 64)
    };
    let settings = SentenceSettings { max_seq_length, ..SentenceSettings::default() };
    SentenceEncoder::random(config, tokenizer, settings, 7, tch::Device::Cpu).unwrap()
}

/// A copy of every trainable parameter, by name.
pub fn parameters(trainer: &rosetta_worker::train::Trainer) -> Vec<(String, tch::Tensor)> {
    trainer.optimizer().parameters().map(|(n, t)| (n.to_string(), t.detach().copy())).collect()
}

/// Runs `work` for each rank of `group` with its trainer on a thread of its own, after rank
/// 0's parameters are broadcast to all; the results in rank order. Build the trainers on the
/// calling thread: libtorch's generator is global, so seeding in parallel threads would race.
pub fn on_rank_threads<C, T>(
    group: Vec<C>,
    trainers: Vec<rosetta_worker::train::Trainer>,
    work: impl Fn(&mut rosetta_worker::train::Trainer, &C) -> T + Sync,
) -> Vec<T>
where
    C: rosetta_collective::collective::Collective + Send,
    T: Send,
{
    assert_eq!(group.len(), trainers.len(), "one trainer per rank");
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .into_iter()
            .zip(trainers)
            .map(|(collective, mut trainer)| {
                scope.spawn(move || {
                    trainer.broadcast_parameters(&collective).unwrap();
                    work(&mut trainer, &collective)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

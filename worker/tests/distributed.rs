//! DESIGN.md §5: W ranks computing the global-batch loss with gradients only into their own
//! slots, then summing gradients, reproduce the single-process full-batch gradient; frozen
//! parameters (`training.freeze`) keep their values, get no optimiser state or all-reduce,
//! and leave the trained ones equal across world sizes.

mod common;

use std::time::Duration;

use rosetta_datasets::tokenize::train_wordpiece;
use std::net::TcpListener;

use rosetta_collective::collective::{Collective, SingleRank, local_group};
use rosetta_collective::ring::TcpRing;
use rosetta_model::hf_config::EncoderConfig;
use rosetta_model::sentence::{SentenceEncoder, SentenceSettings};
use rosetta_worker::freeze::FreezeConfig;
use rosetta_worker::loss::LossConfig;
use rosetta_worker::train::{MicroBatch, StepConfig, Trainer};

use common::{on_rank_threads, parameters};
use tch::{Device, Tensor};

/// The ring secret of these tests' generation.
const SECRET: &[u8] = b"ring-secret";

fn tiny_config(vocab: i64) -> EncoderConfig {
    EncoderConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        ..EncoderConfig::small(vocab, 0, 64)
    }
}

fn corpus() -> Vec<(String, String, String)> {
    (0..12)
        .map(|i| {
            (
                format!("where was person {i} born ?"),
                format!("person {i} was born in city {} in {}", i * 7 % 5, 1900 + i),
                format!("person {i} likes the river {}", i % 3),
            )
        })
        .collect()
}

/// The tiny random encoder of these tests (f32), with a tokenizer trained on their corpus.
fn tiny_model(dir: &std::path::Path) -> SentenceEncoder {
    let texts: Vec<String> = corpus().into_iter().flat_map(|(a, b, c)| [a, b, c]).collect();
    let tokenizer = train_wordpiece(texts.iter().cycle().take(200), 120, &dir.join("tokenizer.json")).unwrap();
    // 400 rows no text of the corpus uses, as most of a 250k-token vocabulary goes unused in a
    // step: the sparse embedding all-reduce must leave them exactly as the dense one does.
    let vocab = tokenizer.vocab_size() as i64 + 400;
    let settings = SentenceSettings { max_seq_length: 16, ..SentenceSettings::default() };
    SentenceEncoder::random(tiny_config(vocab), tokenizer, settings, 7, Device::Cpu).unwrap()
}

fn trainer(dir: &std::path::Path, symmetric: bool, accumulation: usize) -> Trainer {
    freezing_trainer(dir, symmetric, accumulation, FreezeConfig::default()).unwrap()
}

fn freezing_trainer(
    dir: &std::path::Path,
    symmetric: bool,
    accumulation: usize,
    freeze: FreezeConfig,
) -> rosetta_worker::Result<Trainer> {
    configured_trainer(dir, symmetric, accumulation, Options { freeze, ..Options::default() })
}

/// Step settings the tests vary.
#[derive(Debug, Clone)]
struct Options {
    freeze: FreezeConfig,
    sparse: bool,
    grad_cache: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { freeze: FreezeConfig::default(), sparse: true, grad_cache: 0 }
    }
}

fn configured_trainer(
    dir: &std::path::Path,
    symmetric: bool,
    accumulation: usize,
    options: Options,
) -> rosetta_worker::Result<Trainer> {
    // Double precision, so that the only differences left are the summation order's (~1e-15).
    let mut model = tiny_model(dir);
    model.var_store_mut().double();
    let config = StepConfig {
        loss: LossConfig { temperature: 0.05, symmetric },
        accumulation_steps: accumulation,
        freeze: options.freeze,
        sparse_embedding_all_reduce: options.sparse,
        grad_cache_chunk: options.grad_cache,
        ..common::step_config()
    };
    Trainer::new(model, config)
}

fn micro_batch(rank: usize, world: usize) -> MicroBatch {
    let all = corpus();
    let (start, end) = (all.len() * rank / world, all.len() * (rank + 1) / world);
    let rows = &all[start..end];
    MicroBatch {
        queries: rows.iter().map(|r| r.0.clone()).collect(),
        positives: rows.iter().map(|r| r.1.clone()).collect(),
        negatives: rows.iter().map(|r| r.2.clone()).collect(),
    }
}

fn max_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            (ta - tb).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// Named tensors (gradients or parameters).
type Named = Vec<(String, Tensor)>;

/// Runs `world` ranks in threads; returns rank 0's (loss, gradients, parameters after `steps`).
fn run_ranks(world: usize, symmetric: bool, steps: usize) -> (f64, Named, Named) {
    run_ranks_over(local_group(world, Duration::from_secs(60)), symmetric, steps, 1)
}

/// The TCP ring on loopback as the collective.
fn tcp_ring(world: usize) -> Vec<TcpRing> {
    let listeners: Vec<TcpListener> = (0..world).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addresses: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(rank, l)| {
            let a = addresses.clone();
            std::thread::spawn(move || TcpRing::connect(rank, l, a, Duration::from_secs(20), SECRET).unwrap())
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn run_ranks_over<C: Collective + 'static>(
    group: Vec<C>,
    symmetric: bool,
    steps: usize,
    accumulation: usize,
) -> (f64, Named, Named) {
    run_ranks_freezing(group, symmetric, steps, accumulation, &FreezeConfig::default())
}

fn run_ranks_freezing<C: Collective + 'static>(
    group: Vec<C>,
    symmetric: bool,
    steps: usize,
    accumulation: usize,
    freeze: &FreezeConfig,
) -> (f64, Named, Named) {
    let (loss, gradients, parameters, _) = run_ranks_configured(group, symmetric, steps, accumulation, freeze, true);
    (loss, gradients, parameters)
}

/// As [`run_ranks_freezing`], choosing the embedding all-reduce; also returns rank 0's
/// all-reduce bytes of each step after the first.
fn run_ranks_configured<C: Collective + 'static>(
    group: Vec<C>,
    symmetric: bool,
    steps: usize,
    accumulation: usize,
    freeze: &FreezeConfig,
    sparse: bool,
) -> (f64, Named, Named, Vec<u64>) {
    let world = group.len();
    // Models are built on this thread (libtorch's generator is global, so seeding in
    // parallel threads would race); only rank 0's initial values matter after the broadcast.
    let dir = tempfile::tempdir().unwrap();
    let trainers: Vec<Trainer> = (0..world)
        .map(|_| {
            let options = Options { freeze: freeze.clone(), sparse, ..Options::default() };
            configured_trainer(dir.path(), symmetric, accumulation, options).unwrap()
        })
        .collect();
    let mut results = on_rank_threads(group, trainers, |trainer, collective| {
        let batch = micro_batch(collective.rank(), collective.world_size());
        let loss = trainer.backward(&batch, collective).unwrap();
        let gradients = trainer.gradients();
        trainer.apply();
        let bytes: Vec<u64> = (1..steps).map(|_| trainer.step(&batch, collective).unwrap().all_reduce_bytes).collect();
        (loss, gradients, parameters(trainer), bytes)
    });
    let first = results.remove(0);
    for other in &results {
        assert_eq!(other.0, first.0, "every rank sees the same global loss");
        assert!(max_diff(&other.2, &first.2) == 0.0, "ranks diverged");
    }
    first
}

#[test]
fn two_and_three_ranks_give_the_single_process_gradient() {
    for symmetric in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut single = trainer(dir.path(), symmetric, 1);
        let loss = single.backward(&micro_batch(0, 1), &SingleRank).unwrap();
        let gradients = single.gradients();
        assert!(gradients.len() > 30, "every parameter gets a gradient");
        for world in [2, 3] {
            let (dist_loss, dist_gradients, _) = run_ranks(world, symmetric, 1);
            assert!((dist_loss - loss).abs() < 1e-6, "W={world}: loss {dist_loss} vs {loss}");
            let diff = max_diff(&dist_gradients, &gradients);
            assert!(diff < 1e-6, "W={world} symmetric={symmetric}: gradients differ by {diff}");
        }
    }
}

#[test]
fn the_tcp_ring_gives_the_single_process_gradient_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut single = trainer(dir.path(), false, 1);
    let loss = single.backward(&micro_batch(0, 1), &SingleRank).unwrap();
    let gradients = single.gradients();
    let (ring_loss, ring_gradients, _) = run_ranks_over(tcp_ring(3), false, 2, 1);
    assert!((ring_loss - loss).abs() < 1e-6, "{ring_loss} vs {loss}");
    let diff = max_diff(&ring_gradients, &gradients);
    assert!(diff < 1e-6, "TCP ring gradients differ by {diff}");
}

#[test]
fn parameters_after_several_steps_match_across_world_sizes() {
    let (_, _, one) = run_ranks(1, false, 3);
    let (_, _, two) = run_ranks(2, false, 3);
    let diff = max_diff(&one, &two);
    assert!(diff < 1e-5, "parameters after 3 steps differ by {diff}");
}

#[test]
fn training_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), false, 2);
    let batch = micro_batch(0, 1);
    let first = trainer.step(&batch, &SingleRank).unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = trainer.step(&batch, &SingleRank).unwrap();
    }
    assert!(last.loss < first.loss * 0.5, "loss went from {} to {}", first.loss, last.loss);
    assert!(first.grad_norm > 0.0 && last.lr < 1e-3);
}

#[test]
fn merged_forward_gives_each_batch_its_own_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = trainer(dir.path(), false, 1);
    let model = trainer.model();
    let settings = model.settings().clone();
    let all = corpus();
    let queries: Vec<&str> = all.iter().map(|r| r.0.as_str()).collect();
    // Passages one word longer than the queries: similar lengths, so one padded pass.
    let longer: Vec<String> = all.iter().map(|r| format!("{} today", r.0)).collect();
    let positives: Vec<&str> = longer.iter().map(String::as_str).collect();
    let q = model.tokenize(&queries, &settings.query_prefix).unwrap();
    let p = model.tokenize(&positives, &settings.passage_prefix).unwrap();
    // Merged into one padded pass; the result must not depend on it.
    assert!(q.input_ids.size()[1] != p.input_ids.size()[1], "the test needs different padded lengths");
    assert!(SentenceEncoder::merges(&[&q, &p]));
    let merged = model.embed_many(&[&q, &p], false);
    let apart = [model.embed(&q, false), model.embed(&p, false)];
    for (m, a) in merged.iter().zip(&apart) {
        assert_eq!(m.size(), a.size());
        let diff = (m - a).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "merged and separate embeddings differ by {diff}");
    }
}

#[test]
fn the_staged_backward_gives_the_plain_backward_bit_for_bit() {
    use rosetta_worker::loss::distributed_info_nce;
    use rosetta_worker::overlap::staged_backward;
    let dir = tempfile::tempdir().unwrap();
    let trainer = trainer(dir.path(), true, 1);
    let model = trainer.model();
    let settings = model.settings().clone();
    let all = corpus();
    let queries: Vec<&str> = all.iter().map(|r| r.0.as_str()).collect();
    let passages: Vec<&str> = all.iter().map(|r| r.1.as_str()).collect();
    let q = model.tokenize(&queries, &settings.query_prefix).unwrap();
    let p = model.tokenize(&passages, &settings.passage_prefix).unwrap();
    let layers = model.encoder().config().num_hidden_layers as usize;
    let loss_config = LossConfig { temperature: 0.05, symmetric: true };
    let gradients = |staged: bool| -> Vec<Tensor> {
        let mut cuts = Vec::new();
        let e = model.embed_many_cut(&[&q, &p], false, staged.then_some(&mut cuts));
        let loss = distributed_info_nce(&e[0], &e[1], None, &SingleRank, &loss_config).unwrap();
        if staged {
            let passes = if SentenceEncoder::merges(&[&q, &p]) { 1 } else { 2 };
            assert_eq!(cuts.len(), passes * layers, "one cut per layer per pass");
            let mut finished = Vec::new();
            staged_backward(&loss, &cuts, layers, |stage| finished.push(stage));
            assert_eq!(finished, (0..=layers).rev().collect::<Vec<_>>(), "stages finish top down");
        } else {
            loss.backward();
        }
        let grads: Vec<Tensor> = trainer.optimizer().parameters().map(|(_, t)| t.grad().copy()).collect();
        for (_, t) in trainer.optimizer().parameters() {
            let _ = t.grad().zero_();
        }
        grads
    };
    let plain = gradients(false);
    let staged = gradients(true);
    for (a, b) in plain.iter().zip(&staged) {
        assert!(a.defined() && b.defined());
        assert!(a.equal(b), "gradients differ by {}", (a - b).abs().max().double_value(&[]));
    }
}

#[test]
fn accumulation_across_ranks_gives_the_single_process_gradient() {
    // Chunk c of every rank forms one contrastive batch; the single process gets the same
    // batches by seeing chunk c of every rank together. On the ring the last chunk's backward
    // overlaps the all-reduce, the first one's does not.
    let (world, chunks) = (2, 2);
    let cut = |len: usize, c: usize| (len * c / chunks, len * (c + 1) / chunks);
    let mut together = MicroBatch::default();
    for c in 0..chunks {
        for rank in 0..world {
            let b = micro_batch(rank, world);
            let (qs, qe) = cut(b.queries.len(), c);
            let (ns, ne) = cut(b.negatives.len(), c);
            together.queries.extend_from_slice(&b.queries[qs..qe]);
            together.positives.extend_from_slice(&b.positives[qs..qe]);
            together.negatives.extend_from_slice(&b.negatives[ns..ne]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut single = trainer(dir.path(), true, chunks);
    let loss = single.backward(&together, &SingleRank).unwrap();
    let gradients = single.gradients();
    let (ring_loss, ring_gradients, _) = run_ranks_over(tcp_ring(world), true, 1, chunks);
    assert!((ring_loss - loss).abs() < 1e-9, "{ring_loss} vs {loss}");
    let diff = max_diff(&ring_gradients, &gradients);
    assert!(diff < 1e-9, "accumulated gradients differ by {diff}");
}

fn every_variable(trainer: &Trainer) -> std::collections::BTreeMap<String, Tensor> {
    trainer.model().var_store().variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

#[test]
fn frozen_parameters_keep_their_values_and_get_no_state_gradient_or_all_reduce() {
    let dir = tempfile::tempdir().unwrap();
    let freeze = FreezeConfig { embeddings: true, layers: vec![0], patterns: vec!["*.LayerNorm.bias".into()] };
    let mut trainer = freezing_trainer(dir.path(), false, 1, freeze.clone()).unwrap();
    let before = every_variable(&trainer);
    let counts = trainer.parameter_counts();
    let total: i64 = before.values().map(|t| t.numel() as i64).sum();
    assert!(counts.frozen > 0 && counts.trainable > 0 && counts.frozen + counts.trainable == total, "{counts:?}");
    let frozen: Vec<&String> = before.keys().filter(|n| freeze.freezes(n)).collect();
    assert_eq!(frozen.len(), counts.frozen_tensors);
    assert!(frozen.iter().any(|n| n.contains("word_embeddings")) && frozen.iter().any(|n| n.contains("layer.0.")));
    assert!(trainer.optimizer().parameters().all(|(n, _)| !freeze.freezes(n)), "frozen tensors have optimiser state");
    let batch = micro_batch(0, 1);
    trainer.backward(&batch, &SingleRank).unwrap();
    assert!(trainer.gradients().iter().all(|(n, _)| !freeze.freezes(n)), "a frozen tensor has a gradient");
    trainer.apply();
    for _ in 0..2 {
        trainer.step(&batch, &SingleRank).unwrap();
    }
    let after = every_variable(&trainer);
    for (name, tensor) in &after {
        let same = tensor.equal(&before[name]);
        assert_eq!(same, freeze.freezes(name), "{name}: frozen tensors stay, trained ones move");
    }
    // Checkpointed and restored with the rest of the model.
    let path = dir.path().join("checkpoint.safetensors");
    trainer.save_checkpoint(&path).unwrap();
    let mut restored = freezing_trainer(dir.path(), false, 1, freeze).unwrap();
    restored.load_checkpoint(&path).unwrap();
    for (name, tensor) in every_variable(&restored) {
        assert!(tensor.equal(&after[&name]), "{name} not restored");
    }
}

#[test]
fn frozen_training_gives_the_same_parameters_on_one_and_two_ranks() {
    let freeze = FreezeConfig { embeddings: true, ..FreezeConfig::default() };
    let (_, _, one) = run_ranks_freezing(local_group(1, Duration::from_secs(60)), false, 3, 1, &freeze);
    let (_, _, two) = run_ranks_freezing(tcp_ring(2), false, 3, 1, &freeze);
    assert!(one.iter().all(|(n, _)| !freeze.freezes(n)));
    let diff = max_diff(&one, &two);
    assert!(diff < 1e-12, "one vs two ranks differ by {diff}");
}

#[test]
fn the_sparse_embedding_all_reduce_leaves_the_parameters_bit_identical() {
    // Two ranks: each summed element is a + b in both paths, so every parameter after 3 steps
    // is the same bits, on the in-process group and on the TCP ring.
    fn run<C: Collective + 'static>(group: Vec<C>, sparse: bool) -> (Named, Vec<u64>) {
        let (_, _, parameters, bytes) = run_ranks_configured(group, false, 3, 1, &FreezeConfig::default(), sparse);
        (parameters, bytes)
    }
    let (dense_local, dense_bytes) = run(local_group(2, Duration::from_secs(60)), false);
    let (sparse_local, sparse_bytes) = run(local_group(2, Duration::from_secs(60)), true);
    let (sparse_ring, ring_bytes) = run(tcp_ring(2), true);
    let (dense_ring, _) = run(tcp_ring(2), false);
    for (((name, dense), (_, sparse)), ((_, ring), (_, ring_dense))) in
        dense_local.iter().zip(&sparse_local).zip(sparse_ring.iter().zip(&dense_ring))
    {
        assert!(dense.equal(sparse), "{name}: sparse differs from dense by {}", (dense - sparse).abs().max());
        assert!(ring.equal(ring_dense), "{name}: ring sparse differs from ring dense");
        assert!(
            (ring - sparse).abs().max().double_value(&[]) < 1e-12,
            "{name}: ring and in-process differ beyond rounding"
        );
    }
    // The rows nobody encoded carry no traffic: the matrix is 32 wide, 8 bytes per value.
    let dir = tempfile::tempdir().unwrap();
    let vocab = tiny_model(dir.path()).encoder().config().vocab_size;
    assert_eq!(sparse_bytes, ring_bytes);
    for (dense, sparse) in dense_bytes.iter().zip(&sparse_bytes) {
        assert!(*dense - *sparse >= 400 * 32 * 8, "dense {dense} B vs sparse {sparse} B (vocabulary {vocab})");
    }
}

#[test]
fn grad_cache_chunks_give_the_unchunked_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let batch = micro_batch(0, 1);
    let gradients = |chunk: usize, accumulation: usize| {
        let options = Options { grad_cache: chunk, ..Options::default() };
        let mut trainer = configured_trainer(dir.path(), true, accumulation, options).unwrap();
        let loss = trainer.backward(&batch, &SingleRank).unwrap();
        (loss, trainer.gradients())
    };
    let (loss, plain) = gradients(0, 1);
    for (chunk, accumulation) in [(1, 1), (5, 1), (64, 1), (2, 2)] {
        let (cached_loss, cached) = gradients(chunk, accumulation);
        let accumulated;
        let (expected_loss, expected) = if accumulation == 1 {
            (loss, &plain)
        } else {
            accumulated = gradients(0, accumulation);
            (accumulated.0, &accumulated.1)
        };
        assert!((cached_loss - expected_loss).abs() < 1e-12, "chunk {chunk}: loss {cached_loss} vs {expected_loss}");
        assert_eq!(cached.len(), expected.len(), "chunk {chunk}: every parameter gets a gradient");
        let diff = max_diff(&cached, expected);
        assert!(diff < 1e-10, "chunk {chunk} x {accumulation}: gradients differ by {diff}");
    }
    // Across ranks (TCP ring, all-reduce after the chunked passes): the single-process gradient.
    let dir2 = tempfile::tempdir().unwrap();
    let trainers: Vec<Trainer> = (0..2)
        .map(|_| configured_trainer(dir2.path(), true, 1, Options { grad_cache: 4, ..Options::default() }).unwrap())
        .collect();
    let ranks = on_rank_threads(tcp_ring(2), trainers, |trainer, collective| {
        let batch = micro_batch(collective.rank(), 2);
        let loss = trainer.backward(&batch, collective).unwrap();
        (loss, trainer.gradients())
    });
    for (ring_loss, ring) in ranks {
        assert!((ring_loss - loss).abs() < 1e-12);
        let diff = max_diff(&ring, &plain);
        assert!(diff < 1e-10, "2 ranks with chunks of 4: gradients differ by {diff}");
    }
}

#[test]
fn bad_freeze_choices_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            FreezeConfig { layers: vec![2], ..FreezeConfig::default() },
            "training.freeze.layers",
            "layer 2 does not exist",
        ),
        (
            FreezeConfig { patterns: vec!["decoder.*".into()], ..FreezeConfig::default() },
            "training.freeze.patterns",
            "matches no parameter",
        ),
        (
            FreezeConfig { patterns: vec!["*".into()], ..FreezeConfig::default() },
            "training.freeze",
            "nothing is left to train",
        ),
    ];
    for (freeze, field, message) in cases {
        let err = freezing_trainer(dir.path(), false, 1, freeze).err().expect("refused").to_string();
        assert!(err.contains(field) && err.contains(message), "{err}");
    }
}

#[test]
fn encoding_by_length_gives_every_text_its_embedding_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let model = &tiny_model(dir.path());
    // Lengths that vary a lot, in an order unlike their lengths.
    let texts: Vec<String> = (0..53)
        .map(|i| {
            let (q, p, n) = &corpus()[i % 12];
            match i % 4 {
                0 => q.clone(),
                1 => format!("{p} {n} {p}"),
                2 => n.split(' ').take(2).collect::<Vec<_>>().join(" "),
                _ => format!("{q} {p}"),
            }
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let plain = model.encode(&texts, "", 4).unwrap();
    for window in [4, 12, 20, 100] {
        let sorted = model.encode_by_length(&texts, "", 4, window).unwrap();
        assert_eq!(sorted.size(), plain.size());
        let diff = (&sorted - &plain).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "window {window}: {diff}");
    }
    // A window's batches do not depend on the slice it comes in (what shards rely on).
    let whole = model.encode_by_length(&texts, "", 4, 8).unwrap();
    let tail = model.encode_by_length(&texts[16..], "", 4, 8).unwrap();
    assert!(whole.narrow(0, 16, 37).equal(&tail));
}

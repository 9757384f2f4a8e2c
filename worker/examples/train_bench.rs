//! Rosetta's side of `bench/train-step`: trains a sentence-transformers model directory on
//! fixed batches and prints samples/s, peak memory, the timed steps' model FLOPs and the
//! device's peak FLOP/s (hence MFU, see `rosetta_worker::mfu`) as JSON.
//!
//! usage: train_bench MODEL_DIR BATCHES_JSON STEPS [DEVICE [PRECISION]]   (DEVICE: cpu, cuda:N;
//! PRECISION: auto, fp32, bf16)

use std::path::Path;
use std::time::Instant;

use rosetta_collective::collective::SingleRank;
use rosetta_model::optim::AdamWConfig;
use rosetta_model::precision::Precision;
use rosetta_model::sentence::{SentenceEncoder, SentenceSettings};
use rosetta_worker::loss::LossConfig;
use rosetta_worker::train::{MicroBatch, StepConfig, Trainer};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `work` and returns its seconds and how far it raised the resident set above where it
/// started (the peak is reset first: `/proc/self/clear_refs`, Linux 4.0+).
fn memory_of(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    let before = rss_mib("VmRSS:");
    let started = Instant::now();
    work()?;
    Ok((started.elapsed().as_secs_f64(), rss_mib("VmHWM:") - before))
}

fn main() -> anyhow::Result<()> {
    // As the worker process does (see rosetta_worker::memory).
    rosetta_worker::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        (4..=6).contains(&args.len()),
        "usage: train_bench MODEL_DIR BATCHES_JSON STEPS [DEVICE [PRECISION]]"
    );
    let device = rosetta_collective::device::parse_device(args.get(4).map_or("cpu", String::as_str))?;
    let precision: Precision = args.get(5).map_or("auto", String::as_str).parse().map_err(anyhow::Error::msg)?;
    let steps: usize = args[3].parse()?;
    let batches: Vec<(Vec<String>, Vec<String>)> = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let model = SentenceEncoder::load(Path::new(&args[1]), &SentenceSettings::default(), device)?;
    let config = StepConfig {
        loss: LossConfig { temperature: 0.05, symmetric: false },
        optimizer: AdamWConfig { lr: 3e-5, weight_decay: 0.01, ..AdamWConfig::default() },
        warmup_steps: 0,
        total_steps: 1_000_000,
        max_grad_norm: 1.0,
        accumulation_steps: 1,
        dropout: true,
        freeze: Default::default(),
        sparse_embedding_all_reduce: true,
        grad_cache_chunk: 0,
        precision,
    };
    let mut trainer = Trainer::new(model, config)?;
    let micro = |i: usize| {
        let (queries, positives) = batches[i % batches.len()].clone();
        MicroBatch { queries, positives, negatives: Vec::new() }
    };
    // Warm-up (allocator, kernels), not timed.
    for i in 0..2 {
        trainer.step(&micro(i), &SingleRank)?;
    }
    let started = Instant::now();
    let mut samples = 0;
    let mut loss = 0.0;
    let mut model_flops = 0.0;
    let mut phases = [0.0f64; 3];
    for i in 0..steps {
        let batch = micro(i + 2);
        samples += batch.queries.len();
        let outcome = trainer.step(&batch, &SingleRank)?;
        loss = outcome.loss;
        model_flops += outcome.model_flops;
        for (total, seconds) in
            phases.iter_mut().zip([outcome.forward_seconds, outcome.backward_seconds, outcome.optimizer_seconds])
        {
            *total += seconds / steps as f64;
        }
    }
    if let tch::Device::Cuda(index) = device {
        // The last optimiser step may still be queued on the device.
        tch::Cuda::synchronize(index as i64);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let device_peak = rosetta_worker::mfu::peak_flops(device);
    // Checkpoint memory: Rosetta's streaming writer and restore against writing every tensor
    // through tch's safetensors writer (one copy of each tensor's bytes at a time).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("checkpoint.safetensors");
    let (write_seconds, write_mib) = memory_of(|| Ok(trainer.save_checkpoint(&path)?))?;
    let (tch_seconds, tch_mib) = memory_of(|| {
        let mut tensors: Vec<(String, tch::Tensor)> =
            trainer.model().var_store().variables().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        tensors.extend(trainer.optimizer().state());
        Ok(tch::Tensor::write_safetensors(&tensors, dir.path().join("tch.safetensors"))?)
    })?;
    let (load_seconds, load_mib) = memory_of(|| Ok(trainer.load_checkpoint(&path)?))?;
    let checkpoint_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    println!(
        "{}",
        serde_json::json!({"impl": "rosetta", "samples_per_second": samples as f64 / seconds, "seconds": seconds,
                           "steps": steps, "samples": samples, "last_loss": loss, "peak_rss_mib": peak,
                           "model_flops": model_flops, "peak_flops": device_peak.flops_per_second,
                           "peak_source": device_peak.source,
                           "checkpoint_mb": checkpoint_mb,
                           "checkpoint_write": {"seconds": write_seconds, "extra_rss_mib": write_mib},
                           "checkpoint_write_tch": {"seconds": tch_seconds, "extra_rss_mib": tch_mib},
                           "checkpoint_restore": {"seconds": load_seconds, "extra_rss_mib": load_mib},
                           "threads": tch::get_num_threads(), "device": format!("{device:?}"),
                           "precision": precision.name(),
                           "forward_seconds": phases[0], "backward_seconds": phases[1],
                           "optimizer_seconds": phases[2]})
    );
    Ok(())
}

//! Benchmark (issue 3): plans per second for a global batch of 100 on a 10M-pair index, and
//! the index's memory per million pairs.
//!
//! `cargo run --release -p rosetta-coordinator --example plan_bench -- [GROUPS] [STEPS]`

use std::sync::Arc;
use std::time::Instant;

use rosetta_coordinator::schedule::{
    CrossPairing, DatasetSampling, PairIndexBuilder, ScheduleConfig, Scheduler, Strategy,
};
use rosetta_datasets::rng::SeededRng;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let groups: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let steps: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let languages = ["ar", "zh", "en", "de", "es", "ru", "th", "tr", "hi"];

    let started = Instant::now();
    let mut builder = PairIndexBuilder::new();
    for l in languages {
        builder.language_bit(l);
    }
    let mut rng = SeededRng::new(1);
    let mut rows = 0usize;
    for g in 0..groups {
        // 90% of groups are parallel in a random subset of ≥ 2 languages, 10% English-only.
        let mask = if g % 10 == 9 {
            1 << 2
        } else {
            let mut mask = (1u64 << rng.index(9)) | (1 << 2);
            for l in 0..9 {
                if rng.chance(0.8) {
                    mask |= 1 << l;
                }
            }
            mask
        };
        rows += mask.count_ones() as usize;
        let dataset = if g % 10 == 9 { "mmarco-en" } else { "parallel-qa" };
        builder.add_group_mask(dataset, &format!("q{g:09}"), mask);
    }
    let index = Arc::new(builder.build());
    let build_seconds = started.elapsed().as_secs_f64();
    let bytes = index.heap_bytes();
    println!(
        "index: {groups} groups ({rows} rows) built in {build_seconds:.1}s; {:.1} MiB heap = {:.1} MiB per million groups ({:.1} per million rows)",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / (groups as f64 / 1e6),
        bytes as f64 / 1048576.0 / (rows as f64 / 1e6),
    );

    for (strategy, pairing) in [
        (Strategy::Hybrid, CrossPairing::PerExample),
        (Strategy::Hybrid, CrossPairing::PerBatch),
        (Strategy::XXMono, CrossPairing::PerExample),
    ] {
        let config = ScheduleConfig {
            strategy,
            alpha: 0.5,
            global_batch_size: 100,
            seed: 7,
            dataset_sampling: DatasetSampling::Proportional,
            dataset_weights: Default::default(),
            language_weights: Default::default(),
            cross_pairing: pairing,
            languages: Vec::new(),
            en_en_language: "en".into(),
        };
        let started = Instant::now();
        let mut scheduler = Scheduler::new(config, index.clone())?;
        let validate_seconds = started.elapsed().as_secs_f64();
        // Warm-up builds each stream's member list and first permutation (once per epoch).
        let mut cursor = scheduler.start();
        for step in 0..200 {
            cursor = scheduler.plan(step, &cursor)?.1;
        }
        let started = Instant::now();
        for step in 200..200 + steps {
            cursor = scheduler.plan(step, &cursor)?.1;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{strategy:?}/{pairing:?}: {:.0} plans/s (B = 100, {steps} steps, one core); validation {validate_seconds:.1}s; cursor {} bytes",
            steps as f64 / seconds,
            serde_json::to_string(&cursor)?.len()
        );
    }
    Ok(())
}

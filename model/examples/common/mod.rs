//! Timing shared by the kernel benchmarks (`attention_bench`, `gemm_bench`).

use std::time::Instant;

use anyhow::Context;

/// The benchmark's `[ROUNDS] [CALLS_PER_ROUND]` arguments (3 rounds and `default_calls` calls
/// when absent); an argument that is not a positive count is refused by name.
pub fn rounds_and_calls(default_calls: usize) -> anyhow::Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut count = |name: &str, default: usize| -> anyhow::Result<usize> {
        let Some(text) = args.next() else { return Ok(default) };
        text.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("{name} must be a positive count, got {text:?}"))
    };
    Ok((count("ROUNDS", 3)?, count("CALLS_PER_ROUND", default_calls)?))
}

/// Mean milliseconds per call of `work` over `calls` calls.
pub fn milliseconds(calls: usize, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        work();
    }
    started.elapsed().as_secs_f64() * 1e3 / calls as f64
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

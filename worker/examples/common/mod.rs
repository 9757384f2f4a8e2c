//! Timing shared by the kernel benchmarks (`attention_bench`, `gemm_bench`).

use std::time::Instant;

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

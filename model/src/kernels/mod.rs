//! Rosetta's hand-written CPU kernels, private to the model crate (as candle keeps its SIMD
//! code inside its core crate): the fp32 linear layers and the bf16/f32 attention of CPU
//! inference on AVX-512, the threaded split of large loops, and the vector-width dispatch
//! that AdamW, the gradient norm and dropout share. The `bench` feature makes them public for
//! the kernel benchmarks (`examples/gemm_bench`, `examples/attention_bench`) alone.

pub mod cpu_attention;
pub mod cpu_gemm;
pub(crate) mod parallel;
pub(crate) mod simd;

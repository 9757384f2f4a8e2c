//! Rosetta's data plane: transformer encoders in libtorch that load Hugging Face and
//! sentence-transformers directories, the InfoNCE loss over a global batch split across ranks,
//! AdamW, and checkpoints.

pub mod encoder;
pub mod error;
pub mod eval_shard;
pub mod hf_config;
pub mod process;
pub mod sentence;

pub use error::{Result, WorkerError};
pub mod autocast;
pub mod checkpoint;
pub mod collective;
pub mod cpu_attention;
pub mod cpu_gemm;
pub mod device;
pub mod dropout;
pub mod export;
pub mod freeze;
pub mod grad_cache;
pub mod loss;
pub mod memory;
pub mod mfu;
pub mod nccl;
pub mod optim;
pub mod overlap;
pub(crate) mod parallel;
pub mod precision;
pub mod ring;
pub mod sections;
pub(crate) mod simd;
pub mod streams;
pub mod tensor_file;
pub mod token_cache;
pub mod train;

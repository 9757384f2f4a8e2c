//! Rosetta's model code on libtorch: transformer encoders that load Hugging Face and
//! sentence-transformers directories or start from a preset ([`from_settings`]), the sentence layer
//! (pooling, Dense, normalisation, prefixes), dropout and AdamW (as candle-nn keeps its layers
//! and optimisers together), tensor files, checkpoints and the sentence-transformers export,
//! the token cache of evaluation and bf16 autocast. The CPU kernels are a private module.

pub mod autocast;
pub mod checkpoint;
pub mod dropout;
pub mod encoder;
pub mod error;
pub mod export;
pub mod from_settings;
pub mod hf_config;
pub mod optim;
pub mod precision;
pub mod sentence;
pub mod streams;
pub mod tensor_file;
pub mod token_cache;

#[cfg(feature = "bench")]
pub mod kernels;
#[cfg(not(feature = "bench"))]
mod kernels;

pub use error::{ModelError, Result};

use rosetta_worker_config::DeviceSpec;

/// The configuration's name of a libtorch device.
pub fn device_spec(device: tch::Device) -> DeviceSpec {
    match device {
        tch::Device::Cuda(index) => DeviceSpec::Cuda(index),
        _ => DeviceSpec::Cpu,
    }
}

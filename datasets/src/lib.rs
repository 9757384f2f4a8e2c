//! Rosetta's data layer: Parquet formats for training pairs and benchmarks, converters from
//! public release formats, validation that names file/row/column, the shard index, the
//! synthetic multilingual corpus, and tokenisation.

pub mod benchmark;
pub mod error;
pub mod lang;
pub mod pairs;
pub mod rng;
pub mod table;

pub use error::{DatasetError, Result};
pub mod config;
pub mod convert;
pub mod embeddings;
pub mod shard;
pub mod stats;
pub mod store;
pub mod synth;
pub mod tokenize;
pub mod validate;

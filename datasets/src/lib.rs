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
pub mod synth;
pub mod validate;
pub mod shard;
pub mod tokenize;
pub mod convert;
pub mod stats;

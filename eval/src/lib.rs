//! Rosetta's evaluation: retrieval metrics with trec_eval semantics, the LAReQA settings
//! (per language pair, monolingual, cross-lingual, multilingual) and language bias, exact ranks
//! computed over corpus shards, and reports (JSON, Markdown, SVG/HTML).

pub mod error;
pub mod metrics;
pub mod rank;
pub mod task;

pub use error::{EvalError, Result};
pub mod compare;
pub mod config;
pub mod document;
pub mod driver;
pub mod output;
pub mod per_query;
pub mod render;
pub mod report;
pub mod wire;

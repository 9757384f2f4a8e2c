//! Rosetta's evaluation: retrieval metrics with trec_eval semantics, the LAReQA settings
//! (per language pair, monolingual, cross-lingual, multilingual) and language bias, exact ranks
//! computed over corpus shards, reports (JSON, Markdown, SVG/HTML), and the command lines of
//! evaluation processes ([`command`]).

pub mod command;
pub mod compare;
pub mod config;
pub mod document;
pub mod driver;
pub mod error;
pub mod metrics;
pub mod output;
pub mod per_query;
pub mod rank;
pub mod render;
pub mod report;
pub mod task;
pub mod wire;

pub use error::{EvalError, Result};

//! What every Rosetta crate shares, each mechanism with exactly one owner: the layout of a run
//! directory ([`RunDir`]), writing a file so that a crash leaves the old or the new version and
//! never a torn one ([`atomic`]), SHA-256 checksums ([`digest`]), the per-step training log ([`training_log`]), config paths with one spelling ([`paths`]), random secrets ([`random`]) and the job token ([`token`]), the command lines of Rosetta's own processes ([`argv`]), and the list of problems a
//! configuration has, each with its YAML path ([`ConfigProblems`]).

pub mod addresses;
pub mod argv;
pub mod atomic;
pub mod digest;
pub mod paths;
pub mod problems;
pub mod python;
pub mod random;
pub mod run_dir;
pub mod token;
pub mod training_log;

pub use problems::{ConfigProblem, ConfigProblems};
pub use run_dir::RunDir;

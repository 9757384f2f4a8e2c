//! The `rosetta` package: the command-line interface (the binary, `src/main.rs`) and, as a
//! library for it and for the end-to-end tests, the composed run config ([`run_config`]) and
//! the preparation of a run's data ([`prepare`]).

pub mod prepare;
pub mod run_config;

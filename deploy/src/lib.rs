//! Launching Rosetta runs. Today: the local cluster that `rosetta train` starts — the
//! coordinator process inside this process, one `rosetta worker` process per device, a
//! supervisor that replaces them when a generation ends, progress on the terminal or in a log,
//! and evaluation of committed checkpoints during training. Builds without libtorch: workers are
//! started as processes of the `rosetta` binary.

pub mod error;
pub mod evaluation;
pub mod local;
pub mod progress;
pub mod supervisor;
pub mod token;

pub use error::{DeployError, Result};

//! Launching Rosetta runs on the engines users already run: the local cluster of `rosetta
//! train` (the coordinator in this process, one supervised `rosetta worker` process per device,
//! evaluation during training), hosts over ssh, a Slurm batch job, and Kubernetes manifests.
//! Every remote target writes what it submits into `RUN/deploy/` first. Builds without
//! libtorch: workers are processes of the `rosetta` binary.

pub mod error;
pub mod evaluation;
pub mod kubernetes;
pub mod local;
pub mod progress;
pub mod run;
pub mod section;
pub mod slurm;
pub mod ssh;
pub mod supervisor;
pub mod template;
pub mod token;

pub use error::{DeployError, Result};

//! Launching Rosetta runs on the engines users already run: the run config every launcher
//! starts from ([`run_config`]), the local cluster of `rosetta train` (the coordinator in this
//! process, one supervised `rosetta worker` process per device), hosts over ssh, a Slurm batch
//! job, and Kubernetes manifests, each process started from its typed command line. Every
//! remote target writes what it submits into `RUN/deploy/` first, and talks TLS with a
//! certificate authority of the run's own. Builds without libtorch: workers are processes of
//! the `rosetta` binary.

pub mod command;
pub mod coordinator;
pub mod error;
pub mod kubernetes;
pub mod local;
pub mod prepare;
pub mod progress;
pub mod remote;
pub mod run;
pub mod run_config;
pub mod section;
pub mod slurm;
pub mod ssh;
pub mod supervisor;
pub mod template;
pub mod tls;

pub use error::{DeployError, Result};

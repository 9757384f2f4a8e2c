//! The error type of `rosetta-coordinator`'s building blocks (configuration, schedule, data,
//! checkpoints, metrics); the job state machine has its own, [`crate::job::JobError`].

use rosetta_common::ConfigProblems;

/// Failures of the coordinator's pure logic and its inputs.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The configuration cannot work; lists every problem with its YAML path.
    #[error("{0}")]
    InvalidConfig(ConfigProblems),
    /// A cursor does not belong to this scheduler (other index or config) or step.
    #[error("schedule cursor rejected: {0}")]
    Cursor(String),
    /// A checkpoint could not be verified, written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The metrics endpoint could not start.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The gRPC listener could not start or stopped.
    #[error("grpc server on {address}: {message}")]
    Server {
        /// The address it serves on.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// Reading the data (store, Parquet files) failed.
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
}

impl From<ConfigProblems> for CoordinatorError {
    fn from(problems: ConfigProblems) -> Self {
        Self::InvalidConfig(problems)
    }
}

/// Result alias of this crate.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

//! The one error type of `rosetta-coordinator`.

/// Failures of the coordinator's pure logic and its inputs.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The configuration cannot work; lists every problem with its YAML path.
    #[error("invalid schedule configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidConfig {
        /// `path: message` lines.
        problems: Vec<String>,
    },
    /// A cursor does not belong to this scheduler (other index or config) or step.
    #[error("schedule cursor rejected: {0}")]
    Cursor(String),
    /// A checkpoint could not be verified, written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The metrics endpoint could not start.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Building the index from data files failed.
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
}

/// Result alias of this crate.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

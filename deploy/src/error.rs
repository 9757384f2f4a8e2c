//! The one error type of `rosetta-deploy`.

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The coordinator could not start (configuration, data, address…).
    #[error(transparent)]
    Coordinator(#[from] rosetta_coordinator::CoordinatorError),
    /// A process could not be started or waited for.
    #[error("{what}: {source}")]
    Process {
        /// Which process.
        what: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The job failed (the reason names the worker and what happened).
    #[error("training failed: {0}")]
    JobFailed(String),
    /// The launcher was stopped by a signal; the workers were stopped too.
    #[error("stopped by {0}; the last committed checkpoint stays resumable (--resume)")]
    Interrupted(&'static str),
    /// Evaluating a checkpoint failed.
    #[error("evaluation: {0}")]
    Evaluation(String),
    /// A template could not be filled.
    #[error("template {0}")]
    Template(String),
    /// The cluster's scheduler or tool refused (sbatch, squeue, kubectl, ssh).
    #[error("{0}")]
    Scheduler(String),
    /// The `deploy:` section or the flags do not describe a deployment.
    #[error("{0}")]
    Invalid(rosetta_common::ConfigProblems),
    /// The token is missing or unreadable.
    #[error(transparent)]
    Token(#[from] rosetta_common::token::TokenError),
    /// A run config could not be read or has problems (each with its YAML path).
    #[error("{}: {message}", file.display())]
    Config {
        /// The config file.
        file: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The run's TLS authority or certificates could not be made.
    #[error("TLS: {0}")]
    Tls(String),
    /// The training data could not be read or packed.
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
}

/// Result alias of this crate.
pub type Result<T, E = DeployError> = std::result::Result<T, E>;

//! The one error type of `rosetta-worker`.

use std::path::PathBuf;

/// Failures of the data plane: model files, tensors, collectives, checkpoints, the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The model layer failed: model files, tensors, checkpoints (`rosetta-model`).
    #[error(transparent)]
    Model(#[from] rosetta_model::ModelError),
    /// A device or collective failed (`rosetta-collective`).
    #[error(transparent)]
    Collective(#[from] rosetta_collective::CollectiveError),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A configuration value is unusable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A call to the coordinator failed or was refused.
    #[error("{call} (coordinator {address}): {message}")]
    Coordinator {
        /// The call: connect, register, get plan, …
        call: &'static str,
        /// The coordinator's address.
        address: String,
        /// What the coordinator (or the connection) said.
        message: String,
    },
    /// The coordinator told this worker to stop (the generation ended or the job failed).
    #[error("stopped by the coordinator: {0}")]
    Stopped(String),
    /// The evaluation layer failed (benchmark, ranks, the shard protocol).
    #[error(transparent)]
    Eval(#[from] rosetta_eval::EvalError),
    /// The data layer failed (tokenizer, files).
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
}

impl From<rosetta_common::atomic::FileError> for WorkerError {
    fn from(error: rosetta_common::atomic::FileError) -> Self {
        Self::Io { path: error.path, source: error.source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

impl WorkerError {
    /// Whether a restart would meet this failure again: the configuration, the model files or
    /// the data are wrong (a missing row, a bad file) — as opposed to a lost peer, a timeout or
    /// an I/O hiccup. Permanent failures fail the job at once instead of using up its restarts.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Invalid { .. } | Self::Eval(_) => true,
            Self::Model(error) => error.is_permanent(),
            Self::Collective(error) => error.is_permanent(),
            Self::Data(error) => !matches!(error, rosetta_datasets::DatasetError::Io { .. }),
            Self::Io { .. } | Self::Torch(_) | Self::Coordinator { .. } | Self::Stopped(_) => false,
        }
    }

    /// A model/checkpoint error about `path`.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Model(rosetta_model::ModelError::model(path, message))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// An invalid configuration value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

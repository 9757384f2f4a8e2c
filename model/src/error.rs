//! The one error type of `rosetta-model`.

use std::path::PathBuf;

/// Failures of the model layer: model files, tensors, checkpoints, configuration values.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A model directory or checkpoint does not match what was expected.
    #[error("{path}: {message}")]
    Model {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
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
    /// The data layer failed (tokenizer, files).
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
}

impl From<rosetta_common::atomic::FileError> for ModelError {
    fn from(error: rosetta_common::atomic::FileError) -> Self {
        Self::Io { path: error.path, source: error.source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    /// Whether a restart would meet this failure again: the configuration, the model files or
    /// the data are wrong, as opposed to an I/O hiccup or a libtorch error.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Invalid { .. } | Self::Model { .. } => true,
            Self::Data(error) => !matches!(error, rosetta_datasets::DatasetError::Io { .. }),
            Self::Io { .. } | Self::Torch(_) => false,
        }
    }

    /// A model/checkpoint error about `path`.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Model { path: path.into(), message: message.into() }
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

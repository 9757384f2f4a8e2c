//! The one error type of `rosetta-eval`.

use std::path::PathBuf;

/// Every failure of evaluation, naming the file, field or shard involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The benchmark or embeddings could not be read.
    #[error(transparent)]
    Data(#[from] rosetta_datasets::DatasetError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A shard process could not start, failed or stopped talking.
    #[error("evaluation worker {shard}: {message}")]
    Shard {
        /// The shard's index.
        shard: usize,
        /// What happened.
        message: String,
    },
    /// An input (benchmark, embeddings, shard result, report) breaks what evaluation expects.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The input or field.
        what: String,
        /// What was found and what was expected.
        message: String,
    },
}

impl From<rosetta_common::atomic::FileError> for EvalError {
    fn from(error: rosetta_common::atomic::FileError) -> Self {
        Self::Io { path: error.path, source: error.source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    /// An invalid input named `what`.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { what: what.into(), message: message.into() }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

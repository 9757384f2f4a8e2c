//! The one error type of `rosetta-datasets`.

use std::path::PathBuf;

/// Every failure of the data layer, each naming the file (and where known the row and column).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The Parquet or Arrow library rejected the file.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The file involved.
        path: PathBuf,
        /// What the library said.
        message: String,
    },
    /// The file's contents break the format (first problem only; `validate` lists all of them).
    #[error("{path}: {location}{message}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// `row N, column C: ` or `line N: ` or empty.
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A configuration value or argument is not usable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field or flag.
        field: String,
        /// What was expected.
        message: String,
    },
    /// The tokenizer library failed.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file involved.
        path: PathBuf,
        /// What the library said.
        message: String,
    },
}

impl From<rosetta_common::atomic::FileError> for DatasetError {
    fn from(error: rosetta_common::atomic::FileError) -> Self {
        Self::Io { path: error.path, source: error.source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A Parquet/Arrow error on `path`.
    pub fn parquet(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Parquet { path: path.into(), message: error.to_string() }
    }

    /// A format error at a line (1-based) of a text file.
    pub fn at_line(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), location: format!("line {line}: "), message: message.into() }
    }

    /// A format error at a row (0-based, as Parquet tools count) and column of a table.
    pub fn at_cell(path: impl Into<PathBuf>, row: usize, column: &str, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), location: format!("row {row}, column {column}: "), message: message.into() }
    }

    /// A format error about the whole file.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), location: String::new(), message: message.into() }
    }

    /// An invalid argument or configuration value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

//! The one error type of rosetta-experiment.

use std::path::PathBuf;

use rosetta_common::ConfigProblems;

/// What can go wrong running or reporting an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The experiment file is wrong (not retryable: fix the file).
    #[error("{file}: {problems}")]
    Config {
        /// The experiment file.
        file: PathBuf,
        /// Every problem, with its YAML path.
        problems: ConfigProblems,
    },
    /// A file could not be read or written (retryable once the disk or permissions allow).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds something other than what Rosetta writes there.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected.
        message: String,
    },
    /// A cell's directory was made by a different experiment file (not retryable as is).
    #[error(
        "cell {cell}: {} was run with another configuration ({message}); restore the experiment file, or delete \
         that directory to run the cell anew",
        dir.display()
    )]
    CellChanged {
        /// The cell.
        cell: String,
        /// Its directory.
        dir: PathBuf,
        /// What differs.
        message: String,
    },
    /// A child process (`rosetta train`, `rosetta eval`, `rosetta export`) failed; its log says why.
    #[error("cell {cell}: {what} failed ({status}); see {}", log.display())]
    Step {
        /// The cell.
        cell: String,
        /// What was run.
        what: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The experiment was interrupted (SIGINT/SIGTERM); run it again to continue.
    #[error("interrupted; run the same command again to continue where it stopped")]
    Interrupted,
    /// Cells failed; the others finished and the report shows what there is.
    #[error("{} of the experiment's cells failed: {}", failed.len(), failed.join("; "))]
    CellsFailed {
        /// One line per failed cell.
        failed: Vec<String>,
    },
}

impl ExperimentError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A format error.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), message: message.into() }
    }

    /// Whether running the same command again may succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Interrupted | Self::Step { .. } | Self::CellsFailed { .. })
    }
}

impl From<rosetta_common::atomic::FileError> for ExperimentError {
    fn from(error: rosetta_common::atomic::FileError) -> Self {
        Self::Io { path: error.path, source: error.source }
    }
}

/// Results of rosetta-experiment.
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

//! The `data:` section of a run config: as written ([`DataSection`]) and built ([`DataSettings`]).

use std::path::{Path, PathBuf};

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

/// Name of the directory, beside the first training file, that holds its pair stores unless
/// `data.store` says otherwise.
pub const DEFAULT_STORE_DIR: &str = ".rosetta-store";

/// `data:` as written: where the training data and benchmarks of a run are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training-pairs Parquet files (relative paths are relative to the config file).
    pub train: Vec<PathBuf>,
    /// Benchmark directories evaluated during and after training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub benchmarks: Vec<PathBuf>,
    /// Where the packed row stores of the training files live (one sub-directory per version of
    /// the sources); every worker must be able to read it. Default: `.rosetta-store/` beside
    /// the first training file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<PathBuf>,
}

/// The built `data:` section: absolute paths that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSettings {
    /// Training-pairs files.
    pub train: Vec<PathBuf>,
    /// Benchmark directories.
    pub benchmarks: Vec<PathBuf>,
    /// Directory of the pair stores.
    pub store_root: PathBuf,
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    rosetta_common::paths::resolve(base, path)
}

impl DataSection {
    /// The section with every path resolved against `base` (the config file's directory).
    pub fn resolved(&self, base: &Path) -> Self {
        Self {
            train: self.train.iter().map(|p| absolute(base, p)).collect(),
            benchmarks: self.benchmarks.iter().map(|p| absolute(base, p)).collect(),
            store: self.store.as_ref().map(|p| absolute(base, p)),
        }
    }

    /// Builds the settings, checking that every file exists; lists every problem with its YAML path.
    pub fn build(&self, base: &Path) -> Result<DataSettings, ConfigProblems> {
        let resolved = self.resolved(base);
        let mut problems = ConfigProblems::new();
        if resolved.train.is_empty() {
            problems.push("data.train", "list at least one training-pairs file");
        }
        for (i, path) in resolved.train.iter().enumerate() {
            if !path.is_file() {
                problems.push(format!("data.train[{i}]"), format!("{} does not exist", path.display()));
            }
        }
        for (i, path) in resolved.benchmarks.iter().enumerate() {
            if !path.is_dir() {
                problems
                    .push(format!("data.benchmarks[{i}]"), format!("{} is not a benchmark directory", path.display()));
            }
        }
        let store_root = resolved.store.clone().unwrap_or_else(|| {
            let first = resolved.train.first().cloned().unwrap_or_default();
            first.parent().unwrap_or(Path::new(".")).join(DEFAULT_STORE_DIR)
        });
        problems.into_result(DataSettings { train: resolved.train, benchmarks: resolved.benchmarks, store_root })
    }
}

//! The `data:` section of a run config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};

/// Where the training data and benchmarks of a run are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training-pairs Parquet files (relative paths are relative to the config file).
    pub train: Vec<PathBuf>,
    /// Benchmark directories evaluated during and after training.
    #[serde(default)]
    pub benchmarks: Vec<PathBuf>,
}

impl DataConfig {
    /// Resolves relative paths against `base` (the config file's directory) and checks that
    /// every file exists; names the field of each missing one.
    pub fn resolve(&self, base: &Path) -> Result<Self> {
        let fix = |p: &PathBuf| {
            if p.is_absolute() { p.clone() } else { base.join(p) }
        };
        let resolved =
            Self { train: self.train.iter().map(fix).collect(), benchmarks: self.benchmarks.iter().map(fix).collect() };
        if resolved.train.is_empty() {
            return Err(DatasetError::invalid("data.train", "list at least one training-pairs file"));
        }
        for (i, path) in resolved.train.iter().enumerate() {
            if !path.is_file() {
                return Err(DatasetError::invalid(
                    format!("data.train[{i}]"),
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        for (i, path) in resolved.benchmarks.iter().enumerate() {
            if !path.is_dir() {
                return Err(DatasetError::invalid(
                    format!("data.benchmarks[{i}]"),
                    format!("{} is not a benchmark directory", path.display()),
                ));
            }
        }
        Ok(resolved)
    }
}

//! The run config: one YAML file composed of each crate's own section.

use std::path::Path;

use anyhow::Context;
use rosetta_coordinator::schedule::ScheduleConfig;
use rosetta_datasets::config::DataConfig;
use serde::Deserialize;

/// A whole run configuration (`deny_unknown_fields` at every level).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `data:` — training files and benchmarks.
    pub data: DataConfig,
    /// `schedule:` — the hybrid batch schedule.
    pub schedule: ScheduleConfig,
}

impl RunConfig {
    /// Reads, parses and resolves a config file; errors name the file, line and field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config: Self = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data = config.data.resolve(base).with_context(|| format!("in config {}", path.display()))?;
        Ok(config)
    }
}

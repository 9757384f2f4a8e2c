//! The run config: one YAML file composed of each crate's own section.

use std::path::Path;

use anyhow::Context;
use rosetta_coordinator::job::JobConfig;
use rosetta_coordinator::schedule::ScheduleConfig;
use rosetta_datasets::config::DataConfig;
use rosetta_eval::config::EvaluationConfig;
use rosetta_worker::spec::{ModelSpec, TrainingConfig};
use serde::{Deserialize, Serialize};

/// A whole run configuration (`deny_unknown_fields` at every level); each section belongs to
/// the crate that uses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `data:` — training files and benchmarks (rosetta-datasets).
    pub data: DataConfig,
    /// `schedule:` — the hybrid batch schedule (rosetta-coordinator).
    pub schedule: ScheduleConfig,
    /// `model:` — the encoder (rosetta-worker); needed to train.
    #[serde(default)]
    pub model: Option<ModelSpec>,
    /// `training:` — loss, optimiser, device (rosetta-worker).
    #[serde(default)]
    pub training: TrainingConfig,
    /// `job:` — steps, workers, checkpoints, timeouts, run directory (rosetta-coordinator); needed to train.
    #[serde(default)]
    pub job: Option<JobConfig>,
    /// `evaluation:` — evaluating checkpoints on `data.benchmarks` during and after training (rosetta-eval).
    #[serde(default)]
    pub evaluation: Option<EvaluationConfig>,
}

impl RunConfig {
    /// Reads, parses and resolves a config file; errors name the file, line and field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config: Self = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        let base = base.canonicalize().with_context(|| format!("resolving {}", base.display()))?;
        config.data = config.data.resolve(&base).with_context(|| format!("in config {}", path.display()))?;
        config.model = config.model.map(|m| m.resolve(&base));
        config.job = config.job.map(|j| j.resolve(&base));
        Ok(config)
    }

    /// Parses a config whose paths are already absolute (as the coordinator sends it).
    pub fn from_resolved_yaml(text: &str) -> anyhow::Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("run config from the coordinator: {e}"))
    }

    /// The resolved config as YAML (every path absolute).
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        serde_saphyr::to_string(self).map_err(|e| anyhow::anyhow!("serialising the run config: {e}"))
    }

    /// The `model:` and `job:` sections, checked, or every problem with its field.
    pub fn training_sections(&self) -> anyhow::Result<(&ModelSpec, &JobConfig)> {
        let mut problems = Vec::new();
        match &self.model {
            None => problems
                .push("model: missing (e.g. `model: {preset: small, tokenizer: data/tokenizer.json}`)".to_string()),
            Some(model) => problems.extend(model.problems()),
        }
        match &self.job {
            None => problems.push("job: missing (e.g. `job: {steps: 200, workers: 2}`)".to_string()),
            Some(job) => problems.extend(job.problems()),
        }
        if let Some(evaluation) = &self.evaluation {
            problems.extend(evaluation.problems());
            if self.data.benchmarks.is_empty() {
                problems.push("evaluation: needs at least one benchmark in data.benchmarks".to_string());
            }
        }
        if let Err(message) = rosetta_worker::device::parse_device(&self.training.device).map(|_| ()) {
            problems.push(format!("training.device: {message}"));
        }
        if !problems.is_empty() {
            anyhow::bail!("invalid run config:\n  - {}", problems.join("\n  - "));
        }
        match (&self.model, &self.job) {
            (Some(model), Some(job)) => Ok((model, job)),
            _ => unreachable!("checked above"),
        }
    }
}

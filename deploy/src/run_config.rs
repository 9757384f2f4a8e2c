//! The run config: one versioned YAML file composed of each crate's own section, parsed into
//! raw sections ([`RawRunConfig`], `deny_unknown_fields` at every level) and built once into
//! typed, immutable values ([`RunConfig`]); every problem is reported with its YAML path, all
//! at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rosetta_common::ConfigProblems;
use rosetta_coordinator::schedule::ScheduleConfig;
use rosetta_coordinator::settings::{JobSection, JobSettings};
use rosetta_datasets::config::{DataSection, DataSettings};
use rosetta_eval::config::EvaluationConfig;
use rosetta_worker_config::WorkerSpec;
use rosetta_worker_config::model::{ModelSection, ModelSettings, ModelSource};
use rosetta_worker_config::training::{TrainingSection, TrainingSettings};
use serde::{Deserialize, Serialize};

use crate::error::{DeployError, Result};
use crate::section::DeploySection;

/// The run-config format this Rosetta reads (`version:` at the top of every run config).
pub const CONFIG_VERSION: u32 = 1;

/// A run config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunConfig {
    /// Format version; must be [`CONFIG_VERSION`].
    #[serde(default)]
    pub version: Option<u32>,
    /// `data:` — training files, benchmarks, store (rosetta-datasets).
    pub data: DataSection,
    /// `schedule:` — the hybrid batch schedule (rosetta-coordinator).
    pub schedule: ScheduleConfig,
    /// `model:` — the encoder (rosetta-worker); needed to train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSection>,
    /// `training:` — loss, optimiser, device (rosetta-worker).
    #[serde(default)]
    pub training: TrainingSection,
    /// `job:` — steps, workers, checkpoints, timeouts, run directory (rosetta-coordinator); needed to train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSection>,
    /// `evaluation:` — evaluating checkpoints on `data.benchmarks` during and after training (rosetta-eval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationConfig>,
    /// `deploy:` — what belongs to a site: binary, partition, hosts, image (rosetta-deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySection>,
}

/// A built run config: everything a training run needs, checked and typed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The data.
    pub data: DataSettings,
    /// The schedule (checked against the data when the coordinator starts).
    pub schedule: ScheduleConfig,
    /// The encoder.
    pub model: ModelSettings,
    /// How workers train.
    pub training: TrainingSettings,
    /// The job.
    pub job: JobSettings,
    /// Evaluation during training (`None`: the run has no `evaluation:` section).
    pub evaluation: Option<EvaluationConfig>,
    /// The config as written, every path made absolute (what `RUN/run.yaml` holds).
    pub resolved: RawRunConfig,
}

/// The sections `rosetta schedule preview` needs.
#[derive(Debug, Clone)]
pub struct ScheduleInputs {
    /// The data.
    pub data: DataSettings,
    /// The schedule.
    pub schedule: ScheduleConfig,
}

/// Reads a config file: the error names the file, and the line and field serde stopped at;
/// returns the raw config and the directory its relative paths start from.
pub fn read(path: &Path) -> Result<(RawRunConfig, PathBuf)> {
    let failed = |message: String| DeployError::Config { file: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("reading it: {e}")))?;
    let raw: RawRunConfig = serde_saphyr::from_str(&text)
        .map_err(|e| failed(rosetta_common::problems::yaml_error_message(path, &e.to_string())))?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::path::absolute(base).map_err(|e| failed(format!("resolving {}: {e}", base.display())))?;
    Ok((raw, base))
}

/// Turns a config's problems into an error that names its file.
pub fn in_file(path: &Path) -> impl Fn(ConfigProblems) -> DeployError + '_ {
    move |problems| DeployError::Config { file: path.to_path_buf(), message: problems.to_string() }
}

fn check_version(version: Option<u32>, problems: &mut ConfigProblems) {
    match version {
        Some(CONFIG_VERSION) => {}
        None => problems.push(
            "version",
            format!("missing: add `version: {CONFIG_VERSION}` (the run-config format this Rosetta reads)"),
        ),
        Some(other) => {
            problems.push("version", format!("{other} is not supported; this Rosetta reads version {CONFIG_VERSION}"))
        }
    }
}

impl RawRunConfig {
    /// The config with every path resolved against `base` (the config file's directory).
    pub fn resolved(&self, base: &Path) -> Self {
        let absolute = |p: &PathBuf| rosetta_common::paths::resolve(base, p);
        let mut resolved = self.clone();
        resolved.data = self.data.resolved(base);
        if let Some(model) = resolved.model.as_mut() {
            model.path = model.path.as_ref().map(absolute);
            model.tokenizer = model.tokenizer.as_ref().map(absolute);
        }
        if let Some(job) = resolved.job.as_mut() {
            job.run_dir = absolute(&job.run_dir);
        }
        resolved
    }

    /// Builds every section for training; lists every problem of every section with its YAML path.
    pub fn build(&self, base: &Path) -> std::result::Result<RunConfig, ConfigProblems> {
        let resolved = self.resolved(base);
        let mut problems = ConfigProblems::new();
        check_version(resolved.version, &mut problems);
        let data = problems.absorb(resolved.data.build(base));
        let schedule = problems.absorb(resolved.schedule.clone().build());
        let model = match &resolved.model {
            None => {
                problems.push("model", "missing (e.g. `model: {preset: small, tokenizer: data/tokenizer.json}`)");
                None
            }
            Some(model) => problems.absorb(model.build(base)),
        };
        let training = problems.absorb(resolved.training.build());
        let job = match &resolved.job {
            None => {
                problems.push("job", "missing (e.g. `job: {steps: 200, workers: 2}`)");
                None
            }
            Some(job) => problems.absorb(job.build(base)),
        };
        let evaluation = match &resolved.evaluation {
            None => None,
            Some(evaluation) => {
                if resolved.data.benchmarks.is_empty() {
                    problems.push("evaluation", "needs at least one benchmark in data.benchmarks");
                }
                problems.absorb(evaluation.build())
            }
        };
        if let Some(job) = &resolved.job
            && resolved.training.warmup_steps > job.steps
        {
            problems.push(
                "training.warmup_steps",
                format!(
                    "{} is more than job.steps ({}): the learning rate would never reach its peak",
                    resolved.training.warmup_steps, job.steps
                ),
            );
        }
        match (data, schedule, model, training, job) {
            (Some(data), Some(schedule), Some(model), Some(training), Some(job)) if problems.is_empty() => {
                Ok(RunConfig { data, schedule, model, training, job, evaluation, resolved })
            }
            _ => Err(problems),
        }
    }

    /// Builds the `data:` and `schedule:` sections only.
    pub fn build_schedule(&self, base: &Path) -> std::result::Result<ScheduleInputs, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        check_version(self.version, &mut problems);
        let data = problems.absorb(self.data.build(base));
        let schedule = problems.absorb(self.schedule.clone().build());
        match (data, schedule) {
            (Some(data), Some(schedule)) if problems.is_empty() => Ok(ScheduleInputs { data, schedule }),
            _ => Err(problems),
        }
    }

    /// The config as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| unreachable!("a run config always serialises: {e}"))
    }
}

impl RunConfig {
    /// Reads and builds a config file for training.
    pub fn load(path: &Path) -> Result<Self> {
        let (raw, base) = read(path)?;
        raw.build(&base).map_err(in_file(path))
    }

    /// Reads a config file, applies `adjust` to the raw sections (command-line overrides), and builds it.
    pub fn load_with(path: &Path, adjust: impl FnOnce(&mut RawRunConfig)) -> Result<Self> {
        let (mut raw, base) = read(path)?;
        adjust(&mut raw);
        raw.build(&base).map_err(in_file(path))
    }

    /// How metrics name the model: the preset and its shape, or the model directory.
    pub fn model_label(&self) -> String {
        match &self.model.source {
            ModelSource::Preset { preset, shape, .. } => {
                let dims = [shape.layers, shape.hidden_size]
                    .map(|d| d.map_or_else(|| "default".to_string(), |d| d.to_string()));
                format!("{preset:?}({}x{})", dims[0], dims[1]).to_lowercase()
            }
            ModelSource::Directory(path) => path.display().to_string(),
        }
    }

    /// What every worker receives at registration.
    pub fn worker_spec(&self) -> WorkerSpec {
        WorkerSpec {
            model: self.model.clone(),
            training: self.training.clone(),
            total_steps: self.job.steps,
            seed: self.schedule.seed,
            // A peer that is this late is gone: several heartbeat periods, at least 6 s.
            collective_timeout: (self.job.heartbeat_timeout * 6).max(Duration::from_secs(6)),
        }
    }
}

impl ScheduleInputs {
    /// Reads and builds the `data:` and `schedule:` sections of a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let (raw, base) = read(path)?;
        raw.build_schedule(&base).map_err(in_file(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_of_every_section_come_together_with_their_paths() {
        let raw: RawRunConfig = serde_saphyr::from_str(
            "data: {train: [missing.parquet]}\nschedule: {strategy: hybrid, alpha: 2}\nmodel: {preset: small}\n\
             training: {warmup_steps: 50, optimizer: {lr: 0}}\njob: {steps: 10, heartbeat_timeout_secs: 0}\n",
        )
        .unwrap();
        let err = raw.build(Path::new("/nowhere")).unwrap_err().to_string();
        for expected in [
            "version: missing: add `version: 1`",
            "data.train[0]: /nowhere/missing.parquet does not exist",
            "schedule.alpha: 2 is outside 0..=1",
            "model.tokenizer: a preset needs a tokenizer.json",
            "training.optimizer.lr: 0 must be a positive number",
            "training.warmup_steps: 50 is more than job.steps (10)",
            "job.heartbeat_timeout_secs: 0 is not a number of seconds",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
        }
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let err = serde_saphyr::from_str::<RawRunConfig>(
            "version: 1\ndata: {train: []}\nschedule: {strategy: x-y}\njb: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("jb"), "{err}");
        let raw: RawRunConfig =
            serde_saphyr::from_str("version: 7\ndata: {train: []}\nschedule: {strategy: x-y}\n").unwrap();
        let err = raw.build_schedule(Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("version: 7 is not supported") && err.contains("data.train: list at least one"), "{err}");
    }

    #[test]
    fn training_precision_parses_and_a_wrong_one_names_its_line_and_choices() {
        let yaml = |precision: &str| {
            format!(
                "version: 1\ndata: {{train: []}}\nschedule: {{strategy: x-y}}\ntraining:\n  precision: {precision}\n"
            )
        };
        let raw: RawRunConfig = serde_saphyr::from_str(&yaml("bf16")).unwrap();
        assert_eq!(raw.training.precision, rosetta_worker_config::precision::Precision::Bf16);
        let raw: RawRunConfig =
            serde_saphyr::from_str("version: 1\ndata: {train: []}\nschedule: {strategy: x-y}\n").unwrap();
        assert_eq!(raw.training.precision, rosetta_worker_config::precision::Precision::Auto, "the default");
        let err = serde_saphyr::from_str::<RawRunConfig>(&yaml("fp16")).unwrap_err().to_string();
        for expected in ["fp16", "auto", "fp32", "bf16", "line 5"] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }
}

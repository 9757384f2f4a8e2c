//! Every cell's run config, made from the experiment file and the base run config (strategy,
//! α, seed, run directory, the shared initial model, checkpoint selection) and checked as
//! `rosetta train` would check it before anything runs; and the languages counted as seen in
//! training.

use std::collections::BTreeSet;
use std::path::Path;

use rosetta_common::ConfigProblems;
use rosetta_deploy::run_config::{self, RawRunConfig};
use rosetta_eval::config::EvaluationConfig;

use crate::error::{ExperimentError, Result};
use crate::measure::Languages;
use crate::plan::{Cell, base_model_dir, cells};
use crate::runner::{BaseModel, ExperimentPlan, PreparedCell};
use crate::spec::{ExperimentSettings, Selection};

fn config_error(file: &Path, error: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Config { file: file.to_path_buf(), problems: ConfigProblems::one("base", error.to_string()) }
}

/// Every cell's run config from the base config, each checked as `rosetta train` would;
/// `program` is the `rosetta` binary the cells run.
pub fn prepare(settings: &ExperimentSettings, program: std::path::PathBuf) -> Result<ExperimentPlan> {
    let (raw, base) = run_config::read(&settings.base).map_err(|e| config_error(&settings.file, e))?;
    let base_config = raw.resolved(&base);
    let Some(model) = &base_config.model else {
        return Err(config_error(
            &settings.file,
            format!("{}: model: missing (every run of the experiment starts from it)", settings.base.display()),
        ));
    };
    let base_model = match &model.path {
        Some(path) => BaseModel::Existing(path.clone()),
        None => {
            // Exported once from the base config, so every cell starts from the same weights.
            base_config
                .build(&base)
                .map_err(|problems| config_error(&settings.file, run_config::in_file(&settings.base)(problems)))?;
            BaseModel::Export { config_yaml: base_config.to_yaml(), dir: base_model_dir(&settings.out) }
        }
    };
    if settings.launch == crate::spec::Launch::Slurm
        && base_config.deploy.as_ref().and_then(|d| d.slurm.as_ref()).is_none()
    {
        return Err(config_error(
            &settings.file,
            format!("launch: slurm needs a `deploy.slurm` section in the base run config {}", settings.base.display()),
        ));
    }
    if base_config.job.is_none() {
        return Err(config_error(
            &settings.file,
            format!("{}: job: missing (e.g. `job: {{steps: 200, workers: 2}}`)", settings.base.display()),
        ));
    }
    let mut problems = ConfigProblems::new();
    let mut prepared = Vec::new();
    for cell in cells(settings) {
        let config = cell_config(settings, &base_config, &base_model, &cell);
        // Checked with the base's own model section: the shared initial model it names is
        // exported only when the experiment starts.
        let mut checked = config.clone();
        checked.model = base_config.model.clone();
        match checked.build(&base) {
            Ok(built) => prepared.push(PreparedCell {
                final_step: built.job.steps.saturating_sub(1),
                config_yaml: config.to_yaml(),
                cell,
            }),
            Err(cell_problems) => {
                for problem in cell_problems.iter() {
                    problems.push(format!("cell {}: {}", cell.id(), problem.path), &problem.message);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(ExperimentError::Config { file: settings.file.clone(), problems });
    }
    Ok(ExperimentPlan { settings: settings.clone(), program, base_model, cells: prepared })
}

/// One cell's run config: the base with the cell's schedule, its own run directory, the shared
/// initial model, and in-training evaluation on the validation benchmark when selecting `best`.
pub fn cell_config(
    settings: &ExperimentSettings,
    base: &RawRunConfig,
    base_model: &BaseModel,
    cell: &Cell,
) -> RawRunConfig {
    let mut config = base.clone();
    config.schedule.strategy = cell.arm.strategy;
    if let Some(alpha) = cell.arm.alpha {
        config.schedule.alpha = alpha;
    }
    config.schedule.seed = cell.seed;
    if let Some(model) = config.model.as_mut() {
        model.path = Some(base_model.dir().to_path_buf());
        model.preset = None;
        model.tokenizer = None;
        model.layers = None;
        model.hidden_size = None;
        model.heads = None;
        model.intermediate_size = None;
    }
    if let Some(job) = config.job.as_mut() {
        job.run_dir = cell.dir(&settings.out).join("run");
        job.name = Some(cell.id());
        if let Some(workers) = settings.workers {
            job.workers = workers;
        }
        if let Some(steps) = settings.steps {
            job.steps = steps;
        }
    }
    match &settings.selection {
        Selection::Last => {
            config.data.benchmarks.clear();
            config.evaluation = None;
        }
        Selection::Best { benchmark, metric } => {
            config.data.benchmarks = vec![benchmark.clone()];
            let (steps, every) = config.job.as_ref().map_or((0, 1), |job| (job.steps, job.checkpoint_every.max(1)));
            if let Some(job) = config.job.as_mut() {
                // Every checkpoint is evaluated and kept, so the best one is still there at the end.
                job.keep_checkpoints = usize::try_from(steps.div_ceil(every) + 1).unwrap_or(usize::MAX);
            }
            config.evaluation = Some(EvaluationConfig {
                every,
                at_end: true,
                workers: settings.evaluation.workers,
                batch_size: settings.evaluation.batch_size,
                trec_depth: 0,
                select_best: Some(metric.clone()),
                ..EvaluationConfig::default()
            });
        }
    }
    config
}

/// The seen languages: the experiment file's list, else the base config's `schedule.languages`,
/// else every language of its training files.
pub fn training_languages(settings: &ExperimentSettings) -> Result<Languages> {
    if let Some(languages) = &settings.training_languages {
        return Ok(Languages { seen: languages.iter().cloned().collect() });
    }
    let (raw, base) = run_config::read(&settings.base).map_err(|e| config_error(&settings.file, e))?;
    if !raw.schedule.languages.is_empty() {
        return Ok(Languages { seen: raw.schedule.languages.iter().cloned().collect() });
    }
    let mut seen = BTreeSet::new();
    for train in &raw.resolved(&base).data.train {
        let languages = rosetta_datasets::stats::pair_languages(train)
            .map_err(|e| ExperimentError::format(train, format!("reading its languages: {e}")))?;
        seen.extend(languages);
    }
    Ok(Languages { seen })
}

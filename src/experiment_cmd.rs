//! `rosetta experiment`: maps the experiment file and the base run config to one run config
//! per cell (strategy, α, seed, run directory, shared initial model, checkpoint selection),
//! checks them all before anything runs, and calls `rosetta_experiment`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rosetta::run_config::{self, RawRunConfig};
use rosetta_common::ConfigProblems;
use rosetta_coordinator::schedule::Strategy;
use rosetta_eval::config::EvaluationConfig;
use rosetta_experiment::measure::Languages;
use rosetta_experiment::plan::{Cell, base_model_dir, cells};
use rosetta_experiment::runner::{BaseModel, ExperimentPlan, PreparedCell};
use rosetta_experiment::spec::{ExperimentSettings, Launch, Selection};

/// File name of the experiment file's copy in the experiment directory (what `report DIR` reads).
const EXPERIMENT_COPY: &str = "experiment.yaml";

/// `rosetta experiment`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    command: Option<ExperimentCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running the whole study.
#[derive(Debug, Args)]
struct RunArgs {
    /// The experiment file: base run config, grid (strategies, alphas, seeds), benchmarks with
    /// their domain, checkpoint selection, evaluation and significance settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cells trained at the same time (each runs its own workers: mind the cores).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Check the experiment file and every cell's run config, print the grid, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Do not relay the training progress of the running cell (cell-level lines only).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// Rebuild the report (report.{json,md,html}, figures/) from the finished cells, without
    /// training or evaluating anything.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The experiment directory (it holds a copy of its experiment file).
    #[arg(required_unless_present = "config")]
    dir: Option<PathBuf>,
    /// Or the experiment file.
    #[arg(long, conflicts_with = "dir")]
    config: Option<PathBuf>,
}

/// Runs `rosetta experiment`.
pub fn run(args: ExperimentArgs) -> anyhow::Result<()> {
    match args.command {
        Some(ExperimentCommand::Report(report)) => rebuild_report(report),
        None => run_study(args.run),
    }
}

fn rebuild_report(args: ReportArgs) -> anyhow::Result<()> {
    let file = match (args.config, args.dir) {
        (Some(file), _) => file,
        (None, Some(dir)) => {
            let file = dir.join(EXPERIMENT_COPY);
            if !file.is_file() {
                bail!("{} is not an experiment directory (it has no {EXPERIMENT_COPY})", dir.display());
            }
            file
        }
        (None, None) => bail!("give the experiment directory or --config"),
    };
    let settings = ExperimentSettings::load(&file)?;
    let languages = training_languages(&settings)?;
    let paths = rosetta_experiment::write_report(&settings, &languages)?;
    print_report(&paths);
    Ok(())
}

fn print_report(paths: &rosetta_experiment::ReportPaths) {
    println!("report of {} finished cells ({} not finished):", paths.finished, paths.missing);
    for file in &paths.files {
        println!("  {}", file.display());
    }
    println!("  {} figures under {}", paths.figures.len(), paths.files[0].with_file_name("figures").display());
}

fn run_study(args: RunArgs) -> anyhow::Result<()> {
    let Some(file) = args.config else { bail!("give --config EXPERIMENT.yaml (see configs/experiment.yaml)") };
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let settings = ExperimentSettings::load(&file)?;
    let plan = prepare(&settings)?;
    let languages = training_languages(&settings)?;
    println!(
        "experiment {}: {} cells ({} strategies/α × {} seeds){} on {} benchmarks -> {}",
        file.display(),
        plan.cells.len(),
        plan.cells.len() / settings.seeds.len().max(1),
        settings.seeds.len(),
        if settings.zero_shot { " + zero-shot" } else { "" },
        settings.benchmarks.len(),
        settings.out.display()
    );
    println!("languages seen in training: {}", languages.seen.iter().cloned().collect::<Vec<_>>().join(" "));
    if args.dry_run {
        for prepared in &plan.cells {
            let dir = prepared.cell.dir(&settings.out);
            let state = match rosetta_experiment::runner::read_record(&dir) {
                Ok(Some(_)) => "finished".to_string(),
                _ => match rosetta_common::RunDir::new(dir.join("run")).committed_steps() {
                    Ok(steps) if !steps.is_empty() => {
                        format!("resumes after step {}", steps.last().copied().unwrap_or_default() + 1)
                    }
                    _ => "to run".to_string(),
                },
            };
            println!("  {:<24} {} steps, {state}", prepared.cell.id(), prepared.final_step + 1);
        }
        return Ok(());
    }
    std::fs::create_dir_all(&settings.out).with_context(|| format!("creating {}", settings.out.display()))?;
    write_copy(&settings)?;
    rosetta_experiment::stop_on_signals();
    let (summary, paths) = rosetta_experiment::run_experiment(&plan, &languages, args.parallel, !args.quiet)?;
    println!(
        "experiment finished: {} cells run now, {} finished earlier",
        summary.finished.len(),
        summary.skipped.len()
    );
    print_report(&paths);
    Ok(())
}

/// `OUT/experiment.yaml`: the experiment file with absolute paths, so that
/// `rosetta experiment report OUT` finds everything from the directory alone.
fn write_copy(settings: &ExperimentSettings) -> anyhow::Result<()> {
    let mut written = settings.written.clone();
    written.base = settings.base.clone();
    written.out = settings.out.clone();
    for (entry, test) in written.benchmarks.iter_mut().zip(&settings.benchmarks) {
        entry.path = test.path.clone();
    }
    if let Selection::Best { benchmark, .. } = &settings.selection {
        written.selection.benchmark = Some(benchmark.clone());
    }
    let yaml = serde_saphyr::to_string(&written).context("writing the experiment file's copy")?;
    let path = settings.out.join(EXPERIMENT_COPY);
    rosetta_common::atomic::write_atomic(&path, yaml.as_bytes())?;
    Ok(())
}

/// The seen languages: the experiment file's list, else the base config's `schedule.languages`,
/// else every language of its training files.
fn training_languages(settings: &ExperimentSettings) -> anyhow::Result<Languages> {
    if let Some(languages) = &settings.training_languages {
        return Ok(Languages { seen: languages.iter().cloned().collect() });
    }
    let (raw, base) = run_config::read(&settings.base)?;
    if !raw.schedule.languages.is_empty() {
        return Ok(Languages { seen: raw.schedule.languages.iter().cloned().collect() });
    }
    let mut seen = BTreeSet::new();
    for train in &raw.resolved(&base).data.train {
        let languages = rosetta_datasets::stats::pair_languages(train)
            .with_context(|| format!("reading the languages of {}", train.display()))?;
        seen.extend(languages);
    }
    Ok(Languages { seen })
}

/// Every cell's run config from the base config, each checked as `rosetta train` would.
fn prepare(settings: &ExperimentSettings) -> anyhow::Result<ExperimentPlan> {
    let (raw, base) = run_config::read(&settings.base)?;
    let base_config = raw.resolved(&base);
    let Some(model) = &base_config.model else {
        bail!("{}: model: missing (every run of the experiment starts from it)", settings.base.display())
    };
    let base_model = match &model.path {
        Some(path) => BaseModel::Existing(path.clone()),
        None => {
            // Exported once from the base config, so every cell starts from the same weights.
            base_config.build(&base).map_err(run_config::in_file(&settings.base))?;
            BaseModel::Export { config_yaml: base_config.to_yaml(), dir: base_model_dir(&settings.out) }
        }
    };
    if settings.launch == Launch::Slurm && base_config.deploy.as_ref().and_then(|d| d.slurm.as_ref()).is_none() {
        bail!(
            "{}: launch: slurm needs a `deploy.slurm` section in the base run config {}",
            settings.file.display(),
            settings.base.display()
        );
    }
    if let Some(deploy) = base_config.deploy.as_ref().filter(|_| settings.launch == Launch::Slurm) {
        let cells = cells(settings).len();
        if usize::from(deploy.port.abs_diff(deploy.metrics_port)) < cells {
            bail!(
                "{}: deploy.port ({}) and deploy.metrics_port ({}) must be at least {cells} apart: cell i of the \
                 experiment uses port + i and metrics_port + i",
                settings.base.display(),
                deploy.port,
                deploy.metrics_port
            );
        }
    }
    if base_config.job.is_none() {
        bail!("{}: job: missing (e.g. `job: {{steps: 200, workers: 2}}`)", settings.base.display());
    }
    let mut problems = ConfigProblems::new();
    let mut prepared = Vec::new();
    for (i, cell) in cells(settings).into_iter().enumerate() {
        let strategy_index = settings.strategies.iter().position(|s| *s == cell.arm.strategy).unwrap_or(i);
        match cell_config(settings, &base_config, &base_model, &cell, i) {
            Ok(config) => {
                // Checked with the base's own model section: the shared initial model it
                // names is exported only when the experiment starts.
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
            Err(message) => problems.push(format!("strategies[{strategy_index}]"), message),
        }
    }
    if !problems.is_empty() {
        bail!("{}: {problems}", settings.file.display());
    }
    // The running binary, also when it was replaced on disk since (an upgrade, a rebuild): its
    // path then no longer names it, /proc/self/exe still does, so every cell runs one version.
    let program = match std::env::current_exe() {
        Ok(path) if path.is_file() => path,
        _ if Path::new("/proc/self/exe").exists() => PathBuf::from("/proc/self/exe"),
        Ok(path) => path,
        Err(e) => return Err(e).context("finding the rosetta binary"),
    };
    Ok(ExperimentPlan { settings: settings.clone(), program, base_model, cells: prepared })
}

/// One cell's run config: the base with the cell's schedule, its own run directory, the shared
/// initial model, and in-training evaluation on the validation benchmark when selecting `best`.
fn cell_config(
    settings: &ExperimentSettings,
    base: &RawRunConfig,
    base_model: &BaseModel,
    cell: &Cell,
    index: usize,
) -> Result<RawRunConfig, String> {
    let mut config = base.clone();
    if let Some(deploy) = config.deploy.as_mut() {
        // Cells may share a node (`--parallel`): cell i takes port + i and metrics_port + i
        // (`prepare` checks that the two ranges do not overlap).
        let offset = u16::try_from(index).map_err(|_| "too many cells for distinct ports".to_string())?;
        deploy.port = deploy.port.checked_add(offset).ok_or("deploy.port + cells is past 65535")?;
        deploy.metrics_port =
            deploy.metrics_port.checked_add(offset).ok_or("deploy.metrics_port + cells is past 65535")?;
    }
    config.schedule.strategy = parse_strategy(&cell.arm.strategy)?;
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
    let Some(job) = config.job.as_mut() else { return Err("the base run config has no `job:` section".into()) };
    job.run_dir = cell.dir(&settings.out).join("run");
    job.name = Some(cell.id());
    if let Some(workers) = settings.workers {
        job.workers = workers;
    }
    if let Some(steps) = settings.steps {
        job.steps = steps;
    }
    match &settings.selection {
        Selection::Last => {
            config.data.benchmarks.clear();
            config.evaluation = None;
        }
        Selection::Best { benchmark, metric } => {
            config.data.benchmarks = vec![benchmark.clone()];
            // Every checkpoint is evaluated and kept, so the best one is still there at the end.
            job.keep_checkpoints =
                usize::try_from(job.steps.div_ceil(job.checkpoint_every.max(1)) + 1).unwrap_or(usize::MAX);
            config.evaluation = Some(EvaluationConfig {
                every: job.checkpoint_every,
                at_end: true,
                workers: settings.evaluation.workers,
                batch_size: settings.evaluation.batch_size,
                trec_depth: 0,
                select_best: Some(metric.clone()),
            });
        }
    }
    Ok(config)
}

fn parse_strategy(name: &str) -> Result<Strategy, String> {
    serde_saphyr::from_str::<Strategy>(name)
        .map_err(|_| format!("unknown strategy {name:?}; one of hybrid, x-x-mono, x-y, x-x, en-en"))
}

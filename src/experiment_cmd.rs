//! `rosetta experiment`: the experiment file read, every cell's run config made and checked
//! before anything runs (`rosetta_experiment::prepare`), then the study run and reported by
//! `rosetta_experiment`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rosetta_experiment::prepare::{prepare, training_languages};
use rosetta_experiment::spec::{EXPERIMENT_COPY, ExperimentSettings};

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
    let plan = prepare(&settings, rosetta_deploy::coordinator::this_program()?)?;
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
    settings.write_copy()?;
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

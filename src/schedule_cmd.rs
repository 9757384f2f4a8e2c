//! `rosetta schedule preview`: the realised mix of a schedule over the run's data.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rosetta_coordinator::schedule::{BatchKind, PairIndex, Scheduler};
use serde::Serialize;

use rosetta_deploy::prepare::open_store;
use rosetta_deploy::run_config::ScheduleInputs;

/// The `schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Plan N steps of the run's schedule and print what they hold: mono/cross fraction,
    /// languages and language pairs, dataset shares, epoch progress of every stream.
    Preview(PreviewArgs),
}

/// Arguments of `schedule preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Run config (YAML) with `data:` and `schedule:` sections.
    #[arg(long)]
    pub config: PathBuf,
    /// Steps to plan.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write every planned global batch as a JSON line (`step`, `kind`, `dataset`,
    /// `examples` as [pair_id, query_lang, passage_lang]) — what peers need to train on the
    /// very same batches (bench/ddp_train.py).
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

/// What a preview reports.
#[derive(Debug, Default, Serialize)]
pub struct Preview {
    /// Steps planned.
    pub steps: u64,
    /// Batches by kind.
    pub batches_by_kind: BTreeMap<String, u64>,
    /// Fraction of monolingual batches.
    pub monolingual_fraction: f64,
    /// Monolingual batches by language.
    pub monolingual_batches_by_language: BTreeMap<String, u64>,
    /// Cross-lingual examples by `query->passage` language pair.
    pub cross_examples_by_pair: BTreeMap<String, u64>,
    /// Share of batches per dataset.
    pub dataset_share: BTreeMap<String, f64>,
    /// Per stream: epochs completed and the fraction of the current epoch done.
    pub epoch_progress: BTreeMap<String, f64>,
    /// Planning speed.
    pub plans_per_second: f64,
}

/// Runs a `schedule` subcommand.
pub fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Preview(args) => preview(&args),
    }
}

fn preview(args: &PreviewArgs) -> anyhow::Result<()> {
    let config = ScheduleInputs::load(&args.config)?;
    let index = Arc::new(PairIndex::from_store(&*open_store(&config.data)?)?);
    let mut scheduler = Scheduler::new(config.schedule.clone(), index.clone())?;
    let mut report = Preview { steps: args.steps, ..Preview::default() };
    let mut cursor = scheduler.start();
    let mut dataset_batches: BTreeMap<String, u64> = BTreeMap::new();
    let mut dump = match &args.dump {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let started = Instant::now();
    for step in 0..args.steps {
        let (plan, next) = scheduler.plan(step, &cursor)?;
        cursor = next;
        let kind = match plan.kind {
            BatchKind::Monolingual => "monolingual",
            BatchKind::CrossLingual => "cross-lingual",
            BatchKind::MixedMonolingual => "mixed-monolingual",
        };
        if let Some(out) = dump.as_mut() {
            let examples: Vec<[&str; 3]> = plan
                .examples
                .iter()
                .map(|e| [e.pair_id.as_str(), e.query_lang.as_str(), e.passage_lang.as_str()])
                .collect();
            let line = serde_json::json!({"step": step, "kind": kind, "dataset": plan.dataset, "examples": examples});
            writeln!(out, "{line}")?;
        }
        *report.batches_by_kind.entry(kind.to_string()).or_default() += 1;
        *dataset_batches.entry(plan.dataset.clone()).or_default() += 1;
        match plan.kind {
            BatchKind::Monolingual => {
                *report.monolingual_batches_by_language.entry(plan.languages[0].clone()).or_default() += 1;
            }
            BatchKind::CrossLingual => {
                for e in &plan.examples {
                    *report
                        .cross_examples_by_pair
                        .entry(format!("{}->{}", e.query_lang, e.passage_lang))
                        .or_default() += 1;
                }
            }
            BatchKind::MixedMonolingual => {}
        }
    }
    report.plans_per_second = args.steps as f64 / started.elapsed().as_secs_f64().max(1e-9);
    if let Some(mut out) = dump {
        out.flush()?;
    }
    let steps = args.steps.max(1) as f64;
    report.monolingual_fraction = *report.batches_by_kind.get("monolingual").unwrap_or(&0) as f64 / steps;
    report.dataset_share = dataset_batches.into_iter().map(|(d, n)| (d, n as f64 / steps)).collect();
    report.epoch_progress = scheduler.epoch_progress(&cursor);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let schedule = scheduler.config();
    println!(
        "schedule {:?} (alpha {}, global batch {}, seed {}) over {} groups in {} dataset(s), languages {}",
        schedule.strategy,
        schedule.alpha,
        schedule.global_batch_size,
        schedule.seed,
        index.groups(),
        index.datasets.len(),
        index.languages.join(" ")
    );
    println!("\n{} steps planned ({:.0} plans/s)", args.steps, report.plans_per_second);
    for (kind, n) in &report.batches_by_kind {
        println!("  {kind:<18} {n:>7} batches  {:>6.1}%", 100.0 * *n as f64 / steps);
    }
    println!("\nmonolingual batches by language");
    for (lang, n) in &report.monolingual_batches_by_language {
        println!("  {lang:<8} {n:>7}");
    }
    println!("\ncross-lingual examples by query->passage language");
    let cells: Vec<String> = report.cross_examples_by_pair.iter().map(|(p, n)| format!("{p}={n}")).collect();
    for chunk in cells.chunks(6) {
        println!("  {}", chunk.join("  "));
    }
    println!("\ndataset share of batches");
    for (dataset, share) in &report.dataset_share {
        println!("  {dataset:<20} {:>6.1}%", 100.0 * share);
    }
    println!("\nepochs of each stream (completed + fraction)");
    for (stream, epochs) in &report.epoch_progress {
        println!("  {stream:<28} {epochs:>8.2}");
    }
    Ok(())
}

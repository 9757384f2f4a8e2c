//! `rosetta`: hybrid-batch training and evaluation of multilingual dense retrievers. Each
//! command maps its flags to a built configuration and calls the library that does the work.

mod data_cmd;
mod demo;
mod deploy_cmd;
mod eval_cmd;
mod experiment_cmd;
mod report_cmd;
mod schedule_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};

/// Train multilingual dense retrievers with hybrid batches and measure what it does to
/// monolingual, cross-lingual and multilingual retrieval and to language bias.
#[derive(Debug, Parser)]
#[command(name = "rosetta", version, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `rosetta=debug`); `RUST_LOG` works too.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, convert, check, inspect and shard datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Run the main job on the embedded default: synthesise a multilingual corpus, validate,
    /// train a tokenizer, shard and tokenise it, print statistics, then train the small model
    /// with hybrid batches on 2 local CPU workers and evaluate its checkpoints (minutes).
    Demo(demo::DemoArgs),
    /// Inspect hybrid batch schedules.
    #[command(subcommand)]
    Schedule(schedule_cmd::ScheduleCommand),
    /// Train on this machine: a coordinator plus N worker processes (loopback TCP ring),
    /// with progress, checkpoints, Prometheus metrics, and `--resume`.
    Train(rosetta_deploy::command::TrainCommand),
    /// Run the coordinator alone (workers join it with `rosetta worker`).
    Coordinator(rosetta_coordinator::command::CoordinatorCommand),
    /// Launch a run: on this machine, on hosts over ssh, as a Slurm job, or as Kubernetes
    /// manifests (what is submitted is written to RUN/deploy/ first; --dry-run stops there).
    Deploy(rosetta_deploy::command::DeployCommand),
    /// Run one worker (one per device) of a coordinator's job.
    Worker(rosetta_worker_config::WorkerProcessConfig),
    /// Evaluate a model or checkpoint on benchmarks: per language-pair mAP, language bias,
    /// nDCG@10 / Recall@100, with reports (JSON, Markdown, SVG/HTML) and TREC run files.
    Eval(rosetta_eval::command::EvalCommand),
    /// Check this machine for training: libtorch, CUDA devices and NCCL, with a one-rank NCCL
    /// smoke test (every collective checked, an all-reduce timed) on each GPU.
    Doctor(rosetta_collective::doctor::DoctorCommand),
    /// Export a checkpoint as a sentence-transformers directory.
    Export(rosetta_worker_config::ExportCommand),
    /// One shard of `rosetta eval` (started by it; binary protocol on stdin/stdout).
    #[command(hide = true)]
    EvalShard(rosetta_eval::command::EvalShardCommand),
    /// Run a whole study in one command: strategies × α × seeds trained from one initial
    /// model, every run evaluated on in- and out-of-domain benchmarks, and one report (tables
    /// as mean ± sd over seeds, paired significance tests with Holm's correction, figures).
    /// Resumable: finished runs are skipped, interrupted ones resume.
    Experiment(experiment_cmd::ExperimentArgs),
    /// Evaluation reports: compare runs side by side.
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    // Colour only on a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let outcome = match cli.command {
        Command::Data(command) => data_cmd::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Schedule(command) => schedule_cmd::run(command),
        Command::Train(args) => train_cmd::train(args),
        Command::Coordinator(args) => train_cmd::coordinator(args),
        Command::Worker(args) => train_cmd::worker(args),
        Command::Deploy(args) => deploy_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::EvalShard(args) => eval_cmd::run_shard(args),
        Command::Export(args) => eval_cmd::export(args),
        Command::Doctor(command) => rosetta_collective::doctor::run_doctor(&command).map_err(anyhow::Error::from),
        Command::Report(command) => report_cmd::run(command),
        Command::Experiment(args) => experiment_cmd::run(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

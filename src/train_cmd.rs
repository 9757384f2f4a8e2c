//! `rosetta train` (a local cluster: the coordinator in this process, one worker process per
//! device), `rosetta coordinator` (the coordinator alone, for clusters launched elsewhere) and
//! `rosetta worker` (one worker): each maps its flags to a built configuration and calls the
//! process function of its crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rosetta::prepare::open_store;
use rosetta::run_config::RunConfig;
use rosetta_coordinator::job::StartMode;
use rosetta_coordinator::process::{CoordinatorProcessConfig, RunEnd, STOPPED_EARLY_EXIT, ServerTls, run_coordinator};
use rosetta_deploy::evaluation::TrainingEvaluation;
use rosetta_deploy::local::{LocalLaunch, train_locally};
use rosetta_deploy::progress::ProgressStyle;
use rosetta_deploy::token::{random_token, read_token};
use rosetta_worker::process::{ClientTls, CoordinatorEndpoint, WorkerProcessConfig, run_worker};
use rosetta_worker::sections::DeviceSpec;

/// Arguments of `rosetta train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run config (YAML): version, data, schedule, model, training, job, evaluation.
    #[arg(long)]
    pub config: PathBuf,
    /// Worker processes to start (overrides `job.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Continue from the newest committed checkpoint of the run directory whose files verify.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Delete the run directory's checkpoints and evaluations first (a fresh run refuses a run
    /// directory that holds checkpoints).
    #[arg(long)]
    pub overwrite: bool,
    /// Stop cleanly after this many steps (with a checkpoint there), to `--resume` later.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// No progress bar or lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `rosetta coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Run config (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// gRPC address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Continue from the newest committed checkpoint whose files verify.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Delete the run directory's checkpoints and evaluations first.
    #[arg(long)]
    pub overwrite: bool,
    /// Serve gRPC over TLS with this PEM certificate (chain); needs `--tls-key`. Workers then
    /// connect with `https://` and `--tls-ca`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Arguments of `rosetta worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Coordinator address, e.g. `http://10.0.0.1:50051`.
    #[arg(long)]
    pub coordinator: String,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Device: `cpu`, `cuda` or `cuda:N` (default: the run config's `training.device`).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Address this worker listens on for the ring (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ring_listen: SocketAddr,
    /// Host name announced to the coordinator [default: the ring address's IP].
    #[arg(long)]
    pub host: Option<String>,
    /// libtorch intra-op threads (default: libtorch's choice; `rosetta train` divides the cores
    /// among its local workers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// PEM certificate of the authority that signed the coordinator's TLS certificate (with an
    /// `https://` coordinator address).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Server name to verify in the coordinator's certificate [default: the address's host].
    #[arg(long, requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// Seconds to keep trying to reach a coordinator that does not listen yet (it may still be
    /// packing the training data).
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Seconds a call to the coordinator may take (rendezvous and checkpoint commits get longer);
    /// heartbeats unanswered for as long end the worker too: a coordinator that hangs or
    /// vanishes ends its workers within about this bound.
    #[arg(long, default_value_t = 20.0)]
    pub rpc_timeout: f64,
}

/// The start mode the flags ask for.
pub fn start_mode(resume: bool, overwrite: bool) -> StartMode {
    match (resume, overwrite) {
        (true, _) => StartMode::Resume,
        (false, true) => StartMode::Overwrite,
        (false, false) => StartMode::Fresh,
    }
}

fn coordinator_config(
    config: &RunConfig,
    listen: SocketAddr,
    token: String,
    start: StartMode,
) -> anyhow::Result<CoordinatorProcessConfig> {
    Ok(CoordinatorProcessConfig {
        job: config.job.clone(),
        schedule: config.schedule.clone(),
        store: open_store(&config.data)?,
        listen,
        token,
        tls: None,
        start,
        stop_after: None,
        run_config_yaml: config.resolved.to_yaml(),
        worker_spec_json: config.worker_spec().to_json(),
        model_label: config.model_label(),
    })
}

/// Runs a local cluster to the end of its job.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = RunConfig::load_with(&args.config, |raw| {
        if let (Some(workers), Some(job)) = (args.workers, raw.job.as_mut()) {
            job.workers = workers;
            job.elastic.min_workers = job.elastic.min_workers.map(|min| min.min(workers));
        }
    })?;
    let workers = config.job.workers;
    let mut coordinator =
        coordinator_config(&config, "127.0.0.1:0".parse()?, random_token()?, start_mode(args.resume, args.overwrite))?;
    coordinator.stop_after = args.stop_after;
    let program = std::env::current_exe().context("locating the rosetta binary")?;
    // Local workers share this machine's cores: oversubscribing them slows every worker.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let evaluation = config.evaluation.clone().map(|evaluation| TrainingEvaluation {
        config: evaluation,
        benchmarks: config.data.benchmarks.clone(),
        program: program.clone(),
    });
    let run_dir = config.job.run_dir.clone();
    let launch = LocalLaunch {
        coordinator,
        workers,
        program,
        threads_per_worker: (cores / workers).max(1),
        evaluation,
        progress: ProgressStyle::detect(args.quiet),
    };
    let summary = train_locally(launch, |addresses| {
        println!("coordinator on {}, metrics on http://{}/metrics", addresses.grpc, addresses.metrics);
        println!("run directory {}", run_dir.root().display());
    })?;
    if let Some(per_step) = summary.steady_seconds_per_step {
        let batch = config.schedule.global_batch_size as f64;
        println!("steady state: {per_step:.3} s/step, {:.1} examples/s (after the first 2 steps)", batch / per_step);
    }
    if let Some(mfu) = summary.mfu {
        println!(
            "model FLOPs utilisation: {:.1} % (after the first 2 steps; peak measured by each worker)",
            100.0 * mfu
        );
    }
    if summary.all_reduce_bytes_per_step > 0 {
        println!(
            "gradient all-reduce: {:.1} MB per step handed over by all {workers} workers (last step)",
            summary.all_reduce_bytes_per_step as f64 / 1e6
        );
    }
    match summary.last_checkpoint {
        Some(step) => println!(
            "trained {} steps; last checkpoint after step {step}: {}",
            summary.steps_done,
            run_dir.checkpoint(step).display()
        ),
        None => println!("trained {} steps; no checkpoint committed", summary.steps_done),
    }
    if let Some(dir) = summary.evaluated {
        println!("evaluation reports in {}", dir.display());
    }
    Ok(())
}

/// Runs the coordinator until the job finishes (and every worker heard so) or fails.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config)?;
    let token = read_token(args.token_file.as_deref())?;
    let mut coordinator = coordinator_config(&config, args.listen, token, start_mode(args.resume, args.overwrite))?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        coordinator.tls = Some(ServerTls::from_files(cert, key)?);
    }
    let end = run_coordinator(coordinator, |running| {
        println!("coordinator on {}, metrics on http://{}/metrics", running.grpc_address, running.metrics_address);
    })?;
    if let RunEnd::StoppedEarly { last_step } = end {
        println!(
            "stopped after step {last_step} as asked (SIGUSR1), at a committed checkpoint; continue with --resume"
        );
        // EX_TEMPFAIL: launchers (the Slurm batch script) requeue on it.
        std::process::exit(STOPPED_EARLY_EXIT);
    }
    Ok(())
}

/// Runs one worker until the job finishes or fails.
pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    for (flag, seconds) in [("--connect-timeout", args.connect_timeout), ("--rpc-timeout", args.rpc_timeout)] {
        if !(seconds.is_finite() && (0.0..=86_400.0).contains(&seconds)) {
            anyhow::bail!("{flag}: {seconds} is not a number of seconds between 0 and 86400");
        }
    }
    let tls = args.tls_ca.as_deref().map(|ca| ClientTls::from_file(ca, args.tls_domain.clone())).transpose()?;
    let config = WorkerProcessConfig {
        coordinator: CoordinatorEndpoint { url: args.coordinator, tls },
        token: read_token(args.token_file.as_deref())?,
        device: args.device,
        ring_listen: args.ring_listen,
        host: args.host,
        threads: args.threads,
        connect_patience: Duration::from_secs_f64(args.connect_timeout),
        rpc_timeout: Duration::from_secs_f64(args.rpc_timeout.max(1.0)),
    };
    Ok(run_worker(config)?)
}

//! The coordinator of a run, built from its run config: for `rosetta train` (in this process,
//! [`local_run`]) and for `rosetta coordinator` on a cluster ([`run_coordinator_command`]),
//! with the checkpoints' evaluation plan, the worker spec and the run's store.

use std::net::SocketAddr;
use std::path::PathBuf;

use rosetta_common::token::read_token;
use rosetta_coordinator::command::CoordinatorCommand;
use rosetta_coordinator::evaluation::EvaluationPlan;
use rosetta_coordinator::job::StartMode;
use rosetta_coordinator::process::{CoordinatorProcessConfig, RunEnd, RunningCoordinator, ServerTls, run_coordinator};

use crate::command::TrainCommand;
use crate::error::{DeployError, Result};
use crate::local::{LocalLaunch, LocalSummary, train_locally};
use crate::prepare::open_store;
use crate::progress::ProgressStyle;
use crate::run_config::RunConfig;

/// The `rosetta` binary running now, also when it was replaced on disk since (an upgrade, a
/// rebuild): its path then no longer names it, `/proc/self/exe` still does, so that every
/// process a run starts runs one version.
pub fn this_program() -> Result<PathBuf> {
    match std::env::current_exe() {
        Ok(path) if path.is_file() => Ok(path),
        _ if std::path::Path::new("/proc/self/exe").exists() => Ok(PathBuf::from("/proc/self/exe")),
        Ok(path) => Ok(path),
        Err(source) => Err(DeployError::Process { what: "locating the rosetta binary".into(), source }),
    }
}

/// The coordinator process of `config` listening on `listen`, with `token`, started `start`;
/// its evaluations run `program`.
pub fn process_config(
    config: &RunConfig,
    listen: SocketAddr,
    token: String,
    start: StartMode,
    program: PathBuf,
) -> Result<CoordinatorProcessConfig> {
    let evaluation = config.evaluation.clone().map(|evaluation| EvaluationPlan {
        config: evaluation,
        benchmarks: config.data.benchmarks.clone(),
        program,
        training_device: config.training.device,
    });
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
        worker_spec: config.worker_spec(),
        model_label: config.model_label(),
        evaluation,
        advertise: None,
    })
}

/// Runs `rosetta coordinator` until the job finishes (and every worker heard so, and every
/// evaluation is done) or fails; `on_listening` learns where it serves.
pub fn run_coordinator_command(
    command: &CoordinatorCommand,
    on_listening: impl FnOnce(&RunningCoordinator),
) -> Result<RunEnd> {
    let config = RunConfig::load(&command.config)?;
    let token = read_token(command.token_file.as_deref())?;
    let mut process = process_config(&config, command.listen, token, command.start.mode(), this_program()?)?;
    process.advertise = command.advertise.clone();
    if let Some(metrics) = command.metrics_listen {
        process.job.metrics_address = metrics;
    }
    if let (Some(cert), Some(key)) = (&command.tls_cert, &command.tls_key) {
        process.tls = Some(ServerTls::from_files(cert, key)?);
    }
    let evaluates_at_end = config.evaluation.as_ref().is_some_and(|e| e.at_end);
    let end = run_coordinator(process, on_listening).map_err(|e| match e {
        rosetta_coordinator::process::RunError::Start(error) => DeployError::Coordinator(error),
        rosetta_coordinator::process::RunError::JobFailed(reason) => DeployError::JobFailed(reason),
    })?;
    if let RunEnd::Completed { evaluations, .. } = &end
        && evaluates_at_end
        && evaluations.final_reports.is_none()
    {
        return Err(DeployError::Evaluation(
            evaluations.failures.last().cloned().unwrap_or_else(|| "the final checkpoint was not evaluated".into()),
        ));
    }
    Ok(end)
}

/// `rosetta train`: a local cluster of `command`'s run config, reported as it goes (`on_started`
/// learns where the coordinator serves and where the run directory is).
pub fn local_run(
    command: &TrainCommand,
    on_started: impl FnOnce(&RunConfig, SocketAddr, SocketAddr),
) -> Result<(RunConfig, LocalSummary)> {
    let config = RunConfig::load_with(&command.config, |raw| {
        if let (Some(workers), Some(job)) = (command.workers, raw.job.as_mut()) {
            job.workers = workers;
            job.elastic.min_workers = job.elastic.min_workers.map(|min| min.min(workers));
        }
    })?;
    let workers = config.job.workers;
    let token = rosetta_common::token::random_token()?;
    let program = this_program()?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut coordinator = process_config(&config, loopback, token, command.start.mode(), program.clone())?;
    coordinator.stop_after = command.stop_after;
    // Local workers share this machine's cores: oversubscribing them slows every worker.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let launch = LocalLaunch {
        coordinator,
        workers,
        program,
        threads_per_worker: (cores / workers.max(1)).max(1),
        progress: ProgressStyle::detect(command.quiet),
    };
    let summary = train_locally(launch, |addresses| on_started(&config, addresses.grpc, addresses.metrics))?;
    Ok((config, summary))
}

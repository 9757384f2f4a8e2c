//! The local target: a whole cluster on this machine. The coordinator process runs inside this
//! process (through `rosetta_coordinator::process`), and one `rosetta worker` process per
//! device is started and supervised: when the coordinator ends a generation, every worker is
//! replaced; a worker that exits with an error ends its generation at once; SIGINT or SIGTERM
//! stops every worker before returning. The coordinator evaluates committed checkpoints
//! meanwhile when the run asks for it (`rosetta_coordinator::evaluation`), and the run ends
//! once its final evaluation is done.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rosetta_coordinator::job::Phase;
use rosetta_coordinator::process::{CoordinatorProcessConfig, start_coordinator};
use rosetta_worker_config::{CoordinatorAddress, WorkerProcessConfig};

use crate::error::{DeployError, Result};
use crate::progress::{ProgressDisplay, ProgressStyle};
use crate::supervisor::{WorkerCommand, WorkerProcesses};

/// A local run, built and checked by the caller.
#[derive(Debug)]
pub struct LocalLaunch {
    /// The coordinator (its token is the one given to the workers).
    pub coordinator: CoordinatorProcessConfig,
    /// Worker processes per generation.
    pub workers: usize,
    /// The `rosetta` binary the workers run.
    pub program: PathBuf,
    /// libtorch threads per worker.
    pub threads_per_worker: usize,
    /// How progress is shown.
    pub progress: ProgressStyle,
}

/// Where a started local run can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddresses {
    /// The coordinator's gRPC address.
    pub grpc: SocketAddr,
    /// Its Prometheus endpoint.
    pub metrics: SocketAddr,
}

/// What a finished local run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSummary {
    /// Steps completed (including those of earlier launches of a resumed run).
    pub steps_done: u64,
    /// The last committed checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Seconds per step after the first two steps of this launch (when there were more).
    pub steady_seconds_per_step: Option<f64>,
    /// Gradient bytes all ranks handed to the all-reduce in the last step (0 on one worker).
    pub all_reduce_bytes_per_step: u64,
    /// Mean model FLOPs utilisation of the steps after the first two (None: unknown).
    pub mfu: Option<f64>,
    /// Reports of the final evaluation, if one ran.
    pub evaluated: Option<PathBuf>,
}

/// Why the supervision loop stopped.
enum Ending {
    Finished,
    Failed(String),
    Interrupted(&'static str),
}

/// Runs a local cluster to the end of its job; `on_started` learns the addresses once the
/// coordinator serves (before any worker starts).
pub fn train_locally(launch: LocalLaunch, on_started: impl FnOnce(LocalAddresses)) -> Result<LocalSummary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| DeployError::Process { what: "starting the async runtime".into(), source })?;
    let LocalLaunch { coordinator, workers, program, threads_per_worker, progress } = launch;
    let evaluates_at_end = coordinator.evaluation.as_ref().is_some_and(|plan| plan.config.at_end);
    let token = coordinator.token.clone();
    let running = runtime.block_on(start_coordinator(coordinator))?;
    let job = running.job.clone();
    on_started(LocalAddresses { grpc: running.grpc_address, metrics: running.metrics_address });
    let mut worker = WorkerProcessConfig::new(CoordinatorAddress::Url(format!("http://{}", running.grpc_address)));
    worker.threads = Some(threads_per_worker.max(1));
    let command = WorkerCommand { program, worker, token };
    let mut processes = WorkerProcesses::start(command, workers)?;
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    });
    let first_step = job.progress().steps_done;
    let mut display = ProgressDisplay::new(progress, first_step);
    let mut generation = job.generation();
    // Steady-state speed: timed from the moment the first two steps of this launch are done.
    let mut warm: Option<(Instant, u64)> = None;
    let (mut seen_steps, mut last_step_at) = (first_step, Instant::now());
    let mut utilisation: Vec<f64> = Vec::new();
    let ending = loop {
        let signalled = runtime.block_on(async {
            tokio::select! {
                _ = job.wait_change(Duration::from_millis(500)) => None,
                Some(()) = async { match interrupt.as_mut() { Ok(s) => s.recv().await, Err(_) => std::future::pending().await } } => Some("SIGINT"),
                Some(()) = async { match terminate.as_mut() { Ok(s) => s.recv().await, Err(_) => std::future::pending().await } } => Some("SIGTERM"),
            }
        });
        if let Some(signal) = signalled {
            break Ending::Interrupted(signal);
        }
        let now = job.progress();
        if now.steps_done > seen_steps {
            (seen_steps, last_step_at) = (now.steps_done, Instant::now());
            if warm.is_some() && now.mfu > 0.0 {
                utilisation.push(now.mfu);
            }
        }
        if warm.is_none() && now.steps_done >= first_step + 2 {
            warm = Some((Instant::now(), now.steps_done));
        }
        display.update(&now);
        match now.phase {
            Phase::Finished => break Ending::Finished,
            Phase::Failed(reason) => break Ending::Failed(reason),
            Phase::Waiting | Phase::Running => {}
        }
        if now.generation != generation {
            // The coordinator ended the generation: replace every worker process; the new
            // generation resumes from the last committed checkpoint.
            generation = now.generation;
            eprintln!("workers of the previous generation stopped; starting generation {generation}");
            processes.replace_all()?;
            continue;
        }
        if let Some(reason) = processes.first_failure()? {
            job.fail_generation(generation, reason);
        }
    };
    display.finish();
    match &ending {
        Ending::Finished => processes.wait_or_kill(Duration::from_secs(30)),
        Ending::Failed(_) => processes.wait_or_kill(Duration::from_secs(5)),
        Ending::Interrupted(_) => processes.kill_all(),
    }
    let end = job.progress();
    let evaluations = match ending {
        Ending::Finished => Some(runtime.block_on(running.wait_for_evaluations())),
        _ => None,
    };
    runtime.block_on(running.shutdown());
    match ending {
        Ending::Finished => {}
        Ending::Failed(reason) => return Err(DeployError::JobFailed(reason)),
        Ending::Interrupted(signal) => return Err(DeployError::Interrupted(signal)),
    }
    let evaluated = evaluations.and_then(|status| status.final_reports);
    let complete = end.steps_done >= end.total_steps;
    if let (true, true, None, Some(step)) = (evaluates_at_end, complete, &evaluated, end.last_checkpoint) {
        return Err(DeployError::Evaluation(format!("evaluation of the final checkpoint (step {step}) failed")));
    }
    let steady_seconds_per_step = warm
        .filter(|(_, steps)| end.steps_done > *steps)
        .map(|(since, steps)| last_step_at.duration_since(since).as_secs_f64() / (end.steps_done - steps) as f64);
    Ok(LocalSummary {
        steps_done: end.steps_done,
        last_checkpoint: end.last_checkpoint,
        steady_seconds_per_step,
        all_reduce_bytes_per_step: end.all_reduce_bytes,
        mfu: (!utilisation.is_empty()).then(|| utilisation.iter().sum::<f64>() / utilisation.len() as f64),
        evaluated,
    })
}

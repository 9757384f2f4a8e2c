//! The coordinator process as a library call (the way Ballista's scheduler binary only maps
//! flags to a config and calls its process function): the job state machine over the pair
//! store, the gRPC listener (optionally TLS, with TCP_NODELAY), `grpc.health.v1`, the Prometheus
//! endpoint and the heartbeat watchdog, and an orderly shutdown of all of them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rosetta_datasets::store::PairStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{CoordinatorError, Result};
use crate::evaluation::{EvaluationPlan, EvaluationStatus, evaluate_during_training};
use crate::grpc::CoordinatorService;
use crate::job::{JobSpec, JobStateMachine, Phase, StartMode};
use crate::metrics;
use crate::schedule::ScheduleConfig;
use crate::settings::JobSettings;

/// Requests one connection may have in flight (a worker has at most a heartbeat, a long-polling
/// rendezvous and one step call at once).
const MAX_CONCURRENT_REQUESTS: usize = 32;

/// The TLS identity of the gRPC server (PEM).
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

impl ServerTls {
    /// Reads and checks a PEM certificate (chain) and its private key; errors name the flag.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self> {
        let read = |path: &Path, flag: &str, marker: &str, what: &str| -> Result<Vec<u8>> {
            let bytes = std::fs::read(path).map_err(|e| CoordinatorError::Server {
                address: flag.into(),
                message: format!("{}: {e}", path.display()),
            })?;
            if !String::from_utf8_lossy(&bytes).contains(marker) {
                return Err(CoordinatorError::Server {
                    address: flag.into(),
                    message: format!("{}: not a PEM {what}", path.display()),
                });
            }
            Ok(bytes)
        };
        Ok(Self {
            cert_pem: read(cert, "--tls-cert", "BEGIN CERTIFICATE", "certificate")?,
            key_pem: read(key, "--tls-key", "PRIVATE KEY", "private key")?,
        })
    }
}

/// Everything a coordinator process needs, built and checked by the caller.
#[derive(Debug)]
pub struct CoordinatorProcessConfig {
    /// The built `job:` section.
    pub job: JobSettings,
    /// The built `schedule:` section.
    pub schedule: ScheduleConfig,
    /// The training rows (opened or built by the caller; every worker must reach its directory).
    pub store: Arc<PairStore>,
    /// gRPC address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token every worker presents.
    pub token: String,
    /// Serve gRPC over TLS.
    pub tls: Option<ServerTls>,
    /// Fresh, resumed (`--resume`) or over a cleared run directory (`--overwrite`).
    pub start: StartMode,
    /// End cleanly after this many steps (with a checkpoint there).
    pub stop_after: Option<u64>,
    /// The resolved run config, written to `RUN/run.yaml`.
    pub run_config_yaml: String,
    /// What workers receive at registration (model and training settings).
    pub worker_spec: rosetta_worker_config::WorkerSpec,
    /// How the `model` label of `rosetta_run_info` names the model.
    pub model_label: String,
    /// Evaluation of the checkpoints during and after training (`None`: the run has no
    /// `evaluation:` section).
    pub evaluation: Option<EvaluationPlan>,
    /// The host workers reach this coordinator by, recorded in `RUN/coordinator.json`
    /// (default: the listen address, or this machine's host name when it listens on every
    /// interface).
    pub advertise: Option<String>,
}

/// A started coordinator.
pub struct RunningCoordinator {
    /// The job it runs.
    pub job: Arc<JobStateMachine>,
    /// Where workers connect (gRPC).
    pub grpc_address: SocketAddr,
    /// Where Prometheus scrapes.
    pub metrics_address: SocketAddr,
    /// Where the run's evaluations stand.
    pub evaluation: watch::Receiver<EvaluationStatus>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCoordinator").field("grpc_address", &self.grpc_address).finish()
    }
}

/// Starts a coordinator: writes `RUN/run.yaml`, builds the job (index, scheduler, resume
/// point) and serves gRPC, health and metrics until [`RunningCoordinator::shutdown`].
pub async fn start_coordinator(config: CoordinatorProcessConfig) -> Result<RunningCoordinator> {
    let CoordinatorProcessConfig {
        job,
        schedule,
        store,
        listen,
        token,
        tls,
        start,
        stop_after,
        run_config_yaml,
        worker_spec,
        model_label,
        evaluation,
        advertise,
    } = config;
    let run_dir = job.run_dir.clone();
    let metrics_listen = job.metrics_address;
    let run_name = job.run_name.clone();
    let run_info = metrics::RunInfo {
        strategy: schedule.strategy.name().to_string(),
        alpha: schedule.alpha,
        model: model_label,
        world_size: job.workers,
        total_steps: job.steps,
        checkpoint_every: job.checkpoint_every,
    };
    let yaml = run_config_yaml.clone();
    let spec = JobSpec { settings: job, schedule, store, run_config_yaml, worker_spec, start };
    let state = tokio::task::spawn_blocking(move || -> Result<Arc<JobStateMachine>> {
        std::fs::create_dir_all(run_dir.root())
            .map_err(|e| CoordinatorError::Checkpoint(format!("creating {}: {e}", run_dir.root().display())))?;
        // Leftovers of a crash mid-write (they are never read; they only take space).
        for dir in [run_dir.root().to_path_buf(), run_dir.checkpoints(), run_dir.eval()] {
            let _ = rosetta_common::atomic::remove_stale_temporaries(&dir);
        }
        let job = JobStateMachine::new(spec)?;
        // Written once the job is accepted: a refused start leaves the run directory as it was.
        rosetta_common::atomic::write_atomic(&run_dir.run_config(), yaml.as_bytes())
            .map_err(|e| CoordinatorError::Checkpoint(format!("writing the run config: {e}")))?;
        Ok(job)
    })
    .await
    .map_err(|e| CoordinatorError::Checkpoint(format!("preparing the job: {e}")))??;
    if let Some(steps) = stop_after {
        state.stop_after(steps);
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let handle = metrics::install_recorder(&run_name)?;
    metrics::run_started(&run_info);
    metrics::generation_forming(state.generation());
    let (metrics_address, metrics_task) = metrics::serve(metrics_listen, handle, stopped.clone()).await?;
    tasks.push(metrics_task);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CoordinatorError::Server { address: listen.to_string(), message: e.to_string() })?;
    let grpc_address = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Server { address: listen.to_string(), message: e.to_string() })?;
    let service = CoordinatorService::new(state.clone()).into_server(token);
    // Bounded requests from outside: per-connection concurrency and HTTP/2 streams.
    // grpc.health.v1 for load balancers and probes (no token needed to ask whether we serve).
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("rosetta.v1.Coordinator", tonic_health::ServingStatus::Serving).await;
    let mut server = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_REQUESTS)
        .max_concurrent_streams(Some(MAX_CONCURRENT_REQUESTS as u32))
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        let identity = tonic::transport::Identity::from_pem(tls.cert_pem, tls.key_pem);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).map_err(|e| {
            CoordinatorError::Server { address: grpc_address.to_string(), message: format!("TLS: {e}") }
        })?;
    }
    let mut grpc_stopped = stopped.clone();
    tasks.push(tokio::spawn(async move {
        // Without TCP_NODELAY a reply's second small write waits for the client's delayed ACK:
        // every plan request took 40 ms more than it should.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let shutdown = async move {
            let _ = grpc_stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = server
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(%error, "grpc server stopped");
        }
    }));

    let (evaluation_status, evaluation_watch) = watch::channel(EvaluationStatus::default());
    match evaluation {
        Some(plan) => {
            tasks.push(tokio::spawn(evaluate_during_training(state.clone(), plan, evaluation_status, stopped.clone())))
        }
        None => evaluation_status.send_modify(|s| s.done = true),
    }

    let watchdog = state.clone();
    let mut watchdog_stopped = stopped;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => watchdog.check_liveness(),
                _ = watchdog_stopped.wait_for(|stop| *stop) => return,
            }
        }
    }));
    // Launchers, workers on a shared file system (`--coordinator-file`) and tests find the
    // coordinator here.
    let host = advertise.unwrap_or_else(|| advertised_host(grpc_address));
    let scheme = if tls_on { "https" } else { "http" };
    let addresses = rosetta_common::addresses::CoordinatorAddresses {
        url: format!("{scheme}://{}:{}", bracketed(&host), grpc_address.port()),
        grpc: grpc_address.to_string(),
        metrics: metrics_address.to_string(),
        pid: std::process::id(),
    };
    if let Err(error) = addresses.write(&state.settings().run_dir.coordinator_addresses()) {
        tracing::warn!(%error, "could not record the coordinator's addresses");
    }
    tracing::info!(%grpc_address, %metrics_address, url = %addresses.url, "coordinator listening");
    Ok(RunningCoordinator { job: state, grpc_address, metrics_address, evaluation: evaluation_watch, stop, tasks })
}

/// The host workers reach a coordinator bound to `address` by: the address itself, or this
/// machine's host name when it is bound to every interface.
fn advertised_host(address: SocketAddr) -> String {
    if !address.ip().is_unspecified() {
        return address.ip().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// An IPv6 address in brackets, for a URL.
fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

impl RunningCoordinator {
    /// Waits until every evaluation the run asks for is done (at once without an
    /// `evaluation:` section, and once the job ended: the final evaluation included), and says
    /// how they went.
    pub async fn wait_for_evaluations(&self) -> EvaluationStatus {
        let mut status = self.evaluation.clone();
        let _ = status.wait_for(|s| s.done).await;
        status.borrow().clone()
    }

    /// Waits until the job has finished (`Ok`, after every worker heard so or `linger` passed)
    /// or failed (`Err` with the reason).
    pub async fn wait_for_end(&self, linger: Duration) -> std::result::Result<(), String> {
        loop {
            match self.job.progress().phase {
                Phase::Finished => break,
                Phase::Failed(reason) => return Err(reason),
                Phase::Waiting | Phase::Running => self.job.wait_change(Duration::from_secs(1)).await,
            }
        }
        let deadline = Instant::now() + linger;
        while !self.job.workers_released() && Instant::now() < deadline {
            self.job.wait_change(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops serving (gRPC, metrics, watchdog) and waits for the servers to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Exit status of `rosetta coordinator` when it stopped early on request (EX_TEMPFAIL):
/// launchers (the Slurm batch script) requeue on it.
pub const STOPPED_EARLY_EXIT: i32 = 75;

/// How a coordinator process's job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every step trained, the last checkpoint committed, every evaluation done.
    Completed {
        /// Steps trained (including those of earlier launches of a resumed run).
        steps_done: u64,
        /// The last committed checkpoint.
        last_checkpoint: Option<u64>,
        /// How the evaluations went.
        evaluations: EvaluationStatus,
    },
    /// Stopped on request (SIGUSR1) at a committed checkpoint before the last step: `--resume`
    /// continues it.
    StoppedEarly {
        /// The last step trained.
        last_step: u64,
    },
}

/// Runs a coordinator process to the end of its job: starts it on a runtime of its own, calls
/// `on_listening` once it serves, waits for the job to finish or fail, and shuts down. SIGUSR1
/// (Slurm's warning before a time limit) makes the job stop at its next checkpoint.
pub fn run_coordinator(
    config: CoordinatorProcessConfig,
    on_listening: impl FnOnce(&RunningCoordinator),
) -> std::result::Result<RunEnd, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
        RunError::Start(CoordinatorError::Server { address: config.listen.to_string(), message: e.to_string() })
    })?;
    runtime.block_on(async move {
        let running = start_coordinator(config).await.map_err(RunError::Start)?;
        on_listening(&running);
        let job = running.job.clone();
        let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
        let watcher = tokio::spawn(async move {
            while let Some(signal) = usr1.as_mut() {
                if signal.recv().await.is_none() {
                    return;
                }
                job.stop_at_next_checkpoint();
            }
        });
        let outcome = running.wait_for_end(Duration::from_secs(30)).await;
        watcher.abort();
        let progress = running.job.progress();
        let stopped_early = progress.steps_done < progress.total_steps;
        let evaluations = match (&outcome, stopped_early) {
            (Ok(()), false) => Some(running.wait_for_evaluations().await),
            _ => None,
        };
        running.shutdown().await;
        outcome.map_err(RunError::JobFailed)?;
        if stopped_early {
            return Ok(RunEnd::StoppedEarly { last_step: progress.steps_done.saturating_sub(1) });
        }
        Ok(RunEnd::Completed {
            steps_done: progress.steps_done,
            last_checkpoint: progress.last_checkpoint,
            evaluations: evaluations.unwrap_or_default(),
        })
    })
}

/// Why a coordinator process ended unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start (configuration, data, address in use…).
    #[error(transparent)]
    Start(CoordinatorError),
    /// The job failed (the reason names the worker and what happened).
    #[error("training failed: {0}")]
    JobFailed(String),
}

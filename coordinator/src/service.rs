//! The coordinator's gRPC service: registration (token and protocol version checked),
//! rendezvous, step plans, step reports, heartbeats, checkpoint commits and job status.
//! Fail-fast: a worker that errs or misses heartbeats fails the job, which stops every worker;
//! the last committed checkpoint stays intact for `--resume`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosetta_proto::PROTOCOL_VERSION;
use rosetta_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use rosetta_proto::v1::*;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::job::JobConfig;
use crate::manifest::{self, Manifest, ManifestFile};
use crate::schedule::{BatchKind, Cursor, Scheduler, StepPlan};

/// Where the job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for workers to register.
    Waiting,
    /// Training.
    Running,
    /// Every step done and the last checkpoint committed.
    Finished,
    /// Stopped by an error (the message says which worker and why).
    Failed(String),
}

#[derive(Debug, Clone)]
struct WorkerEntry {
    id: String,
    host: String,
    ring_address: String,
    rank: usize,
    last_heartbeat: Instant,
}

struct State {
    phase: Phase,
    workers: Vec<WorkerEntry>,
    generation: u64,
    start_step: u64,
    resume_checkpoint: Option<String>,
    cursor: Cursor,
    next_planned: u64,
    plans: BTreeMap<u64, (StepPlan, Cursor)>,
    reports: BTreeMap<u64, Vec<ReportStepRequest>>,
    commits: BTreeMap<u64, Vec<(usize, Vec<CheckpointFile>)>>,
    steps_done: u64,
    last_loss: f64,
    examples_per_second: f64,
    last_checkpoint: Option<u64>,
    checkpoint_pending: Option<u64>,
    /// Where a new generation starts: the step after the last committed checkpoint, its
    /// cursor and its model file (or the job's start when nothing was committed).
    restart_step: u64,
    restart_cursor: Cursor,
    restarts: u32,
    /// Workers of the current generation that were told the job is finished.
    released: std::collections::BTreeSet<String>,
    /// The job ends after this many steps (the config's `steps`, or earlier when asked to stop).
    end_step: u64,
}

/// The shared job: scheduler, state, configuration.
pub struct Job {
    config: JobConfig,
    run_config_yaml: String,
    config_sha256: String,
    job_id: String,
    scheduler: Mutex<Scheduler>,
    state: Mutex<State>,
    changed: Notify,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("job_id", &self.job_id).finish()
    }
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Phase.
    pub phase: Phase,
    /// Steps completed.
    pub steps_done: u64,
    /// Steps of the job.
    pub total_steps: u64,
    /// Loss of the last completed step.
    pub loss: f64,
    /// Examples per second of the last step.
    pub examples_per_second: f64,
    /// Last committed checkpoint step.
    pub last_checkpoint: Option<u64>,
}

fn kind_name(kind: BatchKind) -> &'static str {
    match kind {
        BatchKind::Monolingual => "monolingual",
        BatchKind::CrossLingual => "cross-lingual",
        BatchKind::MixedMonolingual => "mixed-monolingual",
    }
}

impl Job {
    /// A job over `scheduler`; with `resume`, it continues from the latest committed checkpoint.
    pub fn new(
        config: JobConfig,
        run_config_yaml: String,
        scheduler: Scheduler,
        resume: bool,
    ) -> crate::Result<Arc<Self>> {
        let config_sha256 = manifest::sha256_bytes(run_config_yaml.as_bytes());
        let mut cursor = scheduler.start();
        let (mut start_step, mut resume_checkpoint, mut last_checkpoint) = (0, None, None);
        if resume {
            let Some(manifest) = manifest::latest(&config.run_dir)? else {
                return Err(crate::CoordinatorError::Checkpoint(format!(
                    "--resume: no committed checkpoint in {}",
                    config.run_dir.join("checkpoints").display()
                )));
            };
            if manifest.cursor.fingerprint != cursor.fingerprint {
                return Err(crate::CoordinatorError::Checkpoint(
                    "--resume: the schedule or data changed since the checkpoint (cursor fingerprint differs)".into(),
                ));
            }
            cursor = manifest.cursor.clone();
            start_step = manifest.step + 1;
            last_checkpoint = Some(manifest.step);
            resume_checkpoint = manifest.files.first().map(|f| config.run_dir.join(&f.path).display().to_string());
        }
        let job_id = format!("job-{}", &config_sha256[..12]);
        let phase = if start_step >= config.steps { Phase::Finished } else { Phase::Waiting };
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                phase,
                workers: Vec::new(),
                generation: 1,
                start_step,
                resume_checkpoint,
                next_planned: start_step,
                cursor: cursor.clone(),
                plans: BTreeMap::new(),
                reports: BTreeMap::new(),
                commits: BTreeMap::new(),
                steps_done: start_step,
                last_loss: f64::NAN,
                examples_per_second: 0.0,
                last_checkpoint,
                checkpoint_pending: None,
                restart_step: start_step,
                restart_cursor: cursor.clone(),
                restarts: 0,
                released: Default::default(),
                end_step: config.steps,
            }),
            config,
            run_config_yaml,
            config_sha256,
            job_id,
            scheduler: Mutex::new(scheduler),
            changed: Notify::new(),
        }))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, Status> {
        self.state.lock().map_err(|_| Status::internal("coordinator state poisoned"))
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Progress {
            phase: state.phase.clone(),
            steps_done: state.steps_done,
            total_steps: self.config.steps,
            loss: state.last_loss,
            examples_per_second: state.examples_per_second,
            last_checkpoint: state.last_checkpoint,
        }
    }

    /// Waits until the phase changes or `timeout` passes.
    pub async fn wait_change(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }

    /// Ends the current generation because of `reason` (a worker failed or went silent):
    /// every worker of it is told to stop. While restarts remain (`job.max_restarts`), a new
    /// generation then waits for workers and continues from the last committed checkpoint;
    /// otherwise the job fails.
    pub fn fail(&self, reason: String) {
        let generation = self.generation();
        self.fail_generation(generation, reason);
    }

    /// Like [`Job::fail`], for a failure seen in `generation`: ignored when that generation
    /// has already ended (two reports of one crash must not cost two restarts).
    pub fn fail_generation(&self, generation: u64, reason: String) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(state.phase, Phase::Finished | Phase::Failed(_)) || generation != state.generation {
            return;
        }
        let ranked = state.phase == Phase::Running;
        if ranked && state.restarts < self.config.max_restarts {
            state.restarts += 1;
            state.generation += 1;
            state.workers.clear();
            state.released.clear();
            state.reports.clear();
            state.commits.clear();
            state.plans.clear();
            state.checkpoint_pending = None;
            state.start_step = state.restart_step;
            state.steps_done = state.restart_step;
            state.next_planned = state.restart_step;
            state.cursor = state.restart_cursor.clone();
            state.phase = Phase::Waiting;
            tracing::warn!(%reason, generation = state.generation, from_step = state.restart_step, "generation ended; restarting");
            metrics::counter!("rosetta_restarts_total").increment(1);
            metrics::gauge!("rosetta_generation").set(state.generation as f64);
        } else {
            tracing::error!(%reason, "job failed");
            metrics::gauge!("rosetta_job_failed").set(1.0);
            state.phase = Phase::Failed(reason);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Ends the job cleanly after `steps` steps (at most the configured number) with a
    /// checkpoint there, so that it can be resumed later — e.g. to hand it to other machines.
    pub fn stop_after(&self, steps: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.end_step = steps.min(self.config.steps).max(state.steps_done);
    }

    /// True once every worker of the finished job has been told so (it may then go away).
    pub fn workers_released(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.released.len() >= state.workers.len()
    }

    /// Elastic start: the generation begins with the workers registered so far (fewer than
    /// `job.workers`, at least `job.elastic.min_workers`); plans are cut for that world.
    fn start_with_registered(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.phase != Phase::Waiting {
            return;
        }
        let world = state.workers.len();
        tracing::warn!(
            world,
            wanted = self.config.workers,
            generation = state.generation,
            "rendezvous timed out; continuing with fewer workers (elastic)"
        );
        state.phase = Phase::Running;
        metrics::gauge!("rosetta_workers", "state" => "running").set(world as f64);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The current generation (it grows by one at each restart).
    pub fn generation(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).generation
    }

    /// Fails the job if a ranked worker has been silent longer than the heartbeat timeout.
    pub fn check_heartbeats(&self) {
        let timeout = self.config.heartbeat_timeout();
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.phase != Phase::Running {
            return;
        }
        let now = Instant::now();
        for worker in &state.workers {
            let age = now.duration_since(worker.last_heartbeat);
            metrics::gauge!("rosetta_heartbeat_age_seconds", "rank" => worker.rank.to_string()).set(age.as_secs_f64());
        }
        let silent = state.workers.iter().find(|w| now.duration_since(w.last_heartbeat) > timeout).cloned();
        let generation = state.generation;
        drop(state);
        if let Some(worker) = silent {
            self.fail_generation(
                generation,
                format!("worker rank {} ({}) missed heartbeats for more than {:?}", worker.rank, worker.host, timeout),
            );
        }
    }

    fn worker_rank(state: &State, worker_id: &str, generation: u64) -> Result<usize, Status> {
        if generation != state.generation {
            return Err(Status::failed_precondition(format!(
                "generation {generation} is over (current {})",
                state.generation
            )));
        }
        state
            .workers
            .iter()
            .find(|w| w.id == worker_id)
            .map(|w| w.rank)
            .ok_or_else(|| Status::not_found(format!("unknown worker {worker_id:?}")))
    }

    fn plan(&self, state: &mut State, step: u64) -> Result<StepPlan, Status> {
        let mut scheduler = self.scheduler.lock().map_err(|_| Status::internal("scheduler poisoned"))?;
        while state.next_planned <= step {
            let (plan, next) = scheduler
                .plan(state.next_planned, &state.cursor)
                .map_err(|e| Status::internal(format!("planning step {}: {e}", state.next_planned)))?;
            state.cursor = next.clone();
            state.plans.insert(state.next_planned, (plan, next));
            state.next_planned += 1;
        }
        // Keep plans (and their cursors) back to the last checkpoint only.
        let keep_from = state.last_checkpoint.unwrap_or(0).min(step.saturating_sub(1));
        state.plans.retain(|&s, _| s >= keep_from);
        state
            .plans
            .get(&step)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| Status::failed_precondition(format!("step {step} is older than the last checkpoint")))
    }
}

/// The tonic service over a shared [`Job`].
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    job: Arc<Job>,
}

impl CoordinatorService {
    /// Serves `job`.
    pub fn new(job: Arc<Job>) -> Self {
        Self { job }
    }

    /// The gRPC server, refusing requests without `authorization: Bearer <token>`.
    pub fn into_server(
        self,
        token: String,
    ) -> tonic::service::interceptor::InterceptedService<
        CoordinatorServer<Self>,
        impl tonic::service::Interceptor + Clone,
    > {
        let expected = format!("Bearer {token}");
        CoordinatorServer::with_interceptor(self, move |request: Request<()>| {
            match request.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
                Some(value) if value == expected => Ok(request),
                Some(_) => Err(Status::unauthenticated("wrong token")),
                None => Err(Status::unauthenticated("missing `authorization: Bearer <token>`")),
            }
        })
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        let job = &self.job;
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let request = request.into_inner();
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version {} is not supported: this coordinator speaks version {PROTOCOL_VERSION}",
                request.protocol_version
            )));
        }
        if request.ring_address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!("ring_address {:?} is not host:port", request.ring_address)));
        }
        let mut state = job.lock()?;
        match &state.phase {
            Phase::Waiting => {}
            Phase::Running => return Err(Status::failed_precondition("the job is already running with a full world")),
            Phase::Finished => return Err(Status::failed_precondition("the job has finished")),
            Phase::Failed(reason) => return Err(Status::failed_precondition(format!("the job failed: {reason}"))),
        }
        let rank = state.workers.len();
        let worker_id = format!("g{}-w{rank}-{}", state.generation, request.host);
        tracing::info!(rank, host = %request.host, device = %request.device, %peer, "worker registered");
        state.workers.push(WorkerEntry {
            id: worker_id.clone(),
            host: request.host,
            ring_address: request.ring_address,
            rank,
            last_heartbeat: Instant::now(),
        });
        if state.workers.len() == job.config.workers {
            state.phase = Phase::Running;
            metrics::gauge!("rosetta_workers", "state" => "running").set(job.config.workers as f64);
        }
        drop(state);
        job.changed.notify_waiters();
        Ok(Response::new(RegisterResponse {
            worker_id,
            job_id: job.job_id.clone(),
            run_config_yaml: job.run_config_yaml.clone(),
            run_dir: job.config.run_dir.display().to_string(),
        }))
    }

    async fn rendezvous(&self, request: Request<RendezvousRequest>) -> Result<Response<RendezvousResponse>, Status> {
        let job = &self.job;
        let worker_id = request.into_inner().worker_id;
        let deadline = Instant::now() + job.config.rendezvous_timeout();
        loop {
            let notified = job.changed.notified();
            {
                let state = job.lock()?;
                let Some(me) = state.workers.iter().find(|w| w.id == worker_id) else {
                    return Err(Status::not_found(format!("unknown worker {worker_id:?}: register first")));
                };
                match &state.phase {
                    Phase::Running => {
                        return Ok(Response::new(RendezvousResponse {
                            rank: me.rank as u32,
                            world_size: state.workers.len() as u32,
                            generation: state.generation,
                            ring_peers: state.workers.iter().map(|w| w.ring_address.clone()).collect(),
                            nccl_unique_id: Vec::new(),
                            start_step: state.start_step,
                            checkpoint_path: state.resume_checkpoint.clone().unwrap_or_default(),
                        }));
                    }
                    Phase::Failed(reason) => return Err(Status::aborted(format!("the job failed: {reason}"))),
                    Phase::Finished => return Err(Status::failed_precondition("the job has finished")),
                    Phase::Waiting => {}
                }
                if Instant::now() >= deadline {
                    let have = state.workers.len();
                    if job.config.elastic.min_workers.is_some_and(|min| have >= min.max(1)) {
                        drop(state);
                        job.start_with_registered();
                        continue;
                    }
                    drop(state);
                    let reason = format!(
                        "rendezvous waited {:?} for {} workers; {have} registered",
                        job.config.rendezvous_timeout(),
                        job.config.workers
                    );
                    job.fail(reason.clone());
                    return Err(Status::deadline_exceeded(reason));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    async fn get_plan(&self, request: Request<GetPlanRequest>) -> Result<Response<GetPlanResponse>, Status> {
        let job = &self.job;
        let request = request.into_inner();
        let mut state = job.lock()?;
        if let Phase::Failed(reason) = &state.phase {
            return Err(Status::aborted(format!("the job failed: {reason}")));
        }
        let rank = Job::worker_rank(&state, &request.worker_id, request.generation)?;
        if request.step >= state.end_step {
            return Ok(Response::new(GetPlanResponse {
                step: request.step,
                finished: true,
                ..GetPlanResponse::default()
            }));
        }
        let plan = job.plan(&mut state, request.step)?;
        let world = state.workers.len();
        let examples = plan
            .micro_batch(rank, world)
            .iter()
            .map(|e| Example {
                pair_id: e.pair_id.clone(),
                query_lang: e.query_lang.clone(),
                passage_lang: e.passage_lang.clone(),
            })
            .collect();
        Ok(Response::new(GetPlanResponse {
            step: plan.step,
            kind: kind_name(plan.kind).to_string(),
            dataset: plan.dataset.clone(),
            languages: plan.languages.clone(),
            examples,
            finished: false,
            checkpoint_after: job.config.checkpoint_after(plan.step) || plan.step + 1 == state.end_step,
            global_batch_size: plan.examples.len() as u64,
        }))
    }

    async fn report_step(&self, request: Request<ReportStepRequest>) -> Result<Response<ReportStepResponse>, Status> {
        let job = &self.job;
        let report = request.into_inner();
        let mut state = job.lock()?;
        let _rank = Job::worker_rank(&state, &report.worker_id, report.generation)?;
        let step = report.step;
        let world = state.workers.len();
        let reports = state.reports.entry(step).or_default();
        reports.push(report);
        if reports.len() < world {
            return Ok(Response::new(ReportStepResponse {}));
        }
        let reports = state.reports.remove(&step).unwrap_or_default();
        let seconds = reports.iter().map(|r| r.step_seconds).fold(0.0, f64::max).max(1e-9);
        let examples: u64 = reports.iter().map(|r| r.examples).sum();
        let tokens: u64 = reports.iter().map(|r| r.tokens).sum();
        let loss = reports[0].loss;
        state.steps_done = step + 1;
        state.last_loss = loss;
        state.examples_per_second = examples as f64 / seconds;
        metrics::gauge!("rosetta_step").set((step + 1) as f64);
        metrics::gauge!("rosetta_loss").set(loss);
        metrics::gauge!("rosetta_learning_rate").set(reports[0].learning_rate);
        metrics::gauge!("rosetta_examples_per_second").set(examples as f64 / seconds);
        metrics::gauge!("rosetta_tokens_per_second").set(tokens as f64 / seconds);
        metrics::histogram!("rosetta_step_seconds").record(seconds);
        metrics::histogram!("rosetta_collective_seconds")
            .record(reports.iter().map(|r| r.collective_seconds).fold(0.0, f64::max));
        if let Some((plan, _)) = state.plans.get(&step) {
            let languages = if plan.languages.is_empty() { "mixed".to_string() } else { plan.languages.join("-") };
            metrics::counter!("rosetta_batches_total", "kind" => kind_name(plan.kind), "languages" => languages)
                .increment(1);
        }
        if step + 1 >= state.end_step && state.last_checkpoint == Some(step) {
            state.phase = Phase::Finished;
        }
        drop(state);
        job.changed.notify_waiters();
        Ok(Response::new(ReportStepResponse {}))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let job = &self.job;
        let request = request.into_inner();
        let failure = {
            let mut state = job.lock()?;
            let rank = state.workers.iter().position(|w| w.id == request.worker_id);
            let Some(index) = rank else {
                // A worker of an ended generation (or a stranger): it must stop.
                return Ok(Response::new(HeartbeatResponse {
                    abort: true,
                    reason: format!("worker {:?} is not part of generation {}", request.worker_id, state.generation),
                }));
            };
            state.workers[index].last_heartbeat = Instant::now();
            match (&state.phase, request.error.is_empty()) {
                (Phase::Failed(reason), _) => {
                    return Ok(Response::new(HeartbeatResponse { abort: true, reason: reason.clone() }));
                }
                (_, false) => {
                    Some((state.generation, format!("worker {} reported: {}", request.worker_id, request.error)))
                }
                _ => None,
            }
        };
        if let Some((generation, reason)) = failure {
            job.fail_generation(generation, reason.clone());
            return Ok(Response::new(HeartbeatResponse { abort: true, reason }));
        }
        Ok(Response::new(HeartbeatResponse { abort: false, reason: String::new() }))
    }

    async fn commit_checkpoint(
        &self,
        request: Request<CommitCheckpointRequest>,
    ) -> Result<Response<CommitCheckpointResponse>, Status> {
        let job = self.job.clone();
        let request = request.into_inner();
        let manifest = {
            let mut state = job.lock()?;
            let rank = Job::worker_rank(&state, &request.worker_id, request.generation)?;
            let world = state.workers.len();
            let parts = state.commits.entry(request.step).or_default();
            parts.push((rank, request.files));
            if parts.len() < world {
                return Ok(Response::new(CommitCheckpointResponse { committed: false }));
            }
            let parts = state.commits.remove(&request.step).unwrap_or_default();
            let Some((_, cursor)) = state.plans.get(&request.step).cloned() else {
                return Err(Status::failed_precondition(format!("no plan of step {} is kept", request.step)));
            };
            state.checkpoint_pending = Some(request.step);
            let mut files: Vec<ManifestFile> = parts
                .into_iter()
                .flat_map(|(_, files)| files)
                .map(|f| ManifestFile { path: f.path, sha256: f.sha256 })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Manifest {
                step: request.step,
                cursor,
                files,
                config_sha256: job.config_sha256.clone(),
                world_size: world,
                generation: state.generation,
            }
        };
        let run_dir: PathBuf = job.config.run_dir.clone();
        let keep = job.config.keep_checkpoints;
        let to_write = manifest.clone();
        let outcome = tokio::task::spawn_blocking(move || manifest::commit(&run_dir, &to_write, keep))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(error) = outcome {
            job.fail(format!("committing the checkpoint of step {}: {error}", manifest.step));
            return Err(Status::internal(error.to_string()));
        }
        let mut state = job.lock()?;
        state.last_checkpoint = Some(manifest.step);
        state.restart_step = manifest.step + 1;
        state.restart_cursor = manifest.cursor.clone();
        state.resume_checkpoint =
            manifest.files.first().map(|f| job.config.run_dir.join(&f.path).display().to_string());
        state.checkpoint_pending = None;
        metrics::gauge!("rosetta_last_checkpoint_step").set(manifest.step as f64);
        tracing::info!(step = manifest.step, "checkpoint committed");
        if manifest.step + 1 >= state.end_step && state.steps_done >= state.end_step {
            state.phase = Phase::Finished;
        }
        drop(state);
        job.changed.notify_waiters();
        Ok(Response::new(CommitCheckpointResponse { committed: true }))
    }

    async fn job_status(&self, _request: Request<JobStatusRequest>) -> Result<Response<JobStatusResponse>, Status> {
        let progress = self.job.progress();
        let (state, message) = match &progress.phase {
            Phase::Waiting => ("waiting", String::new()),
            Phase::Running => ("running", String::new()),
            Phase::Finished => ("finished", String::new()),
            Phase::Failed(reason) => ("failed", reason.clone()),
        };
        let workers = self.job.lock()?.workers.len() as u32;
        Ok(Response::new(JobStatusResponse {
            state: state.to_string(),
            step: progress.steps_done,
            total_steps: progress.total_steps,
            loss: progress.loss,
            examples_per_second: progress.examples_per_second,
            last_checkpoint_step: progress.last_checkpoint.unwrap_or(0),
            has_checkpoint: progress.last_checkpoint.is_some(),
            workers,
            message,
        }))
    }

    async fn report_evaluation(
        &self,
        request: Request<ReportEvaluationRequest>,
    ) -> Result<Response<ReportEvaluationResponse>, Status> {
        let text = request.into_inner().report_json;
        let report: rosetta_eval::report::EvalReport = serde_json::from_str(&text)
            .map_err(|e| Status::invalid_argument(format!("report_json is not a rosetta-eval report: {e}")))?;
        if report.benchmark.is_empty() {
            return Err(Status::invalid_argument("report_json: benchmark name is empty"));
        }
        tracing::info!(benchmark = %report.benchmark, step = ?report.step, "evaluation reported");
        crate::eval_metrics::export_eval_report(&report);
        Ok(Response::new(ReportEvaluationResponse { benchmark: report.benchmark }))
    }
}

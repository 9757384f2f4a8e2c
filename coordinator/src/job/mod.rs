//! The coordinator's job state machine, in plain Rust (no gRPC types): membership and
//! generations, the step plans cut per rank (with the row numbers of every example in the pair
//! store), step reports, heartbeats and checkpoint commits. Fail-fast: a worker that errs or
//! misses heartbeats ends its generation, every worker of it is told to stop, and a new
//! generation starts from the last committed checkpoint while restarts remain.

mod error;
mod generation;
mod membership;
mod steps;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use error::{JobError, JobResult};
use generation::{Generation, RestartPoint};
pub use membership::{HeartbeatVerdict, Registered, Registration, Rendezvous};
use rosetta_datasets::store::PairStore;
pub use steps::{RankExample, RankPlan, RankStep, StepReport, kind_name};
use tokio::sync::Notify;

use crate::error::{CoordinatorError, Result};
use crate::manifest::{self, ManifestFile};
use crate::metrics;
use crate::schedule::{PairIndex, ScheduleConfig, Scheduler};
use crate::settings::JobSettings;

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
    /// Gradient bytes all ranks handed to the all-reduce in the last step.
    pub all_reduce_bytes: u64,
    /// Model FLOPs utilisation of the last step (0 when unknown).
    pub mfu: f64,
    /// Last committed checkpoint step.
    pub last_checkpoint: Option<u64>,
    /// Workers registered in the current generation.
    pub workers: usize,
    /// The current generation (it grows by one at each restart).
    pub generation: u64,
}

/// How a job starts in its run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A new run; refused when the run directory already holds checkpoints.
    Fresh,
    /// Continue from the newest committed checkpoint whose files verify.
    Resume,
    /// Delete the run directory's checkpoints, evaluations and job state, then start anew.
    Overwrite,
    /// Resume when the run directory holds a committed checkpoint whose files verify, start
    /// fresh otherwise: what a requeued batch job or a restarted pod runs with.
    Auto,
}

/// A worker's report that it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFailure {
    /// What went wrong.
    pub message: String,
    /// The configuration or the data caused it: a restart would fail the same way.
    pub permanent: bool,
}

/// What the run directory keeps of the coordinator's own state, so that a restarted coordinator
/// continues the generation count and the restart budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PersistedJobState {
    generation: u64,
    restarts: u32,
}

/// A fresh or overwritten run starts its training log anew.
fn remove_stale_training_log(run_dir: &rosetta_common::RunDir) -> Result<()> {
    let path = run_dir.training_log();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CoordinatorError::Checkpoint(format!("removing {}: {e}", path.display()))),
    }
}

/// What a job is made of.
#[derive(Debug)]
pub struct JobSpec {
    /// The built `job:` section.
    pub settings: JobSettings,
    /// The built `schedule:` section (checked against the data here).
    pub schedule: ScheduleConfig,
    /// The training rows.
    pub store: Arc<PairStore>,
    /// The resolved run config (its hash identifies the job in manifests).
    pub run_config_yaml: String,
    /// What every worker needs to train (model and training settings), passed on unread.
    pub worker_spec: rosetta_worker_config::WorkerSpec,
    /// Fresh, resumed or overwritten.
    pub start: StartMode,
}

/// A checkpoint part reported by one rank.
#[derive(Debug, Clone)]
pub struct CheckpointPart {
    /// The reporting worker.
    pub worker_id: String,
    /// Its generation.
    pub generation: u64,
    /// The step after which the checkpoint was written.
    pub step: u64,
    /// Files this rank wrote, relative to the run directory, with their SHA-256.
    pub files: Vec<ManifestFile>,
}

struct JobState {
    phase: Phase,
    generation: Generation,
    restart: RestartPoint,
    restarts: u32,
    /// The job ends after this many steps (the config's `steps`, or earlier when asked to stop).
    end_step: u64,
    steps_done: u64,
    last_loss: f64,
    examples_per_second: f64,
    all_reduce_bytes: u64,
    mfu: f64,
    last_checkpoint: Option<u64>,
    /// When the generation last made progress (formed, finished a step, committed a checkpoint).
    last_progress: Instant,
    /// Completed steps not yet in `RUN/training-log.jsonl` (written when their checkpoint commits).
    unlogged: std::collections::BTreeMap<u64, rosetta_common::training_log::StepRecord>,
}

/// One job's live state and its transitions, shared by the gRPC service, the watchdog and the
/// launcher that started it.
pub struct JobStateMachine {
    settings: JobSettings,
    /// The worker spec as registration sends it (serialised once).
    worker_spec_json: String,
    config_sha256: String,
    job_id: String,
    store: Arc<PairStore>,
    index: Arc<PairIndex>,
    scheduler: Mutex<Scheduler>,
    state: Mutex<JobState>,
    changed: Notify,
    /// Checkpoints the in-training evaluation still wants are kept beyond `keep_checkpoints`.
    evaluation_hold: Mutex<Option<EvaluationHold>>,
}

/// What the in-training evaluation still needs kept: checkpoints due every `every` steps after
/// the last one it evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EvaluationHold {
    every: u64,
    last_evaluated: Option<u64>,
}

impl std::fmt::Debug for JobStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStateMachine").field("job_id", &self.job_id).finish()
    }
}

impl JobStateMachine {
    /// A job over the store's rows, started fresh (refused when the run directory already holds
    /// checkpoints), resumed from the newest verified checkpoint (refused when the schedule or
    /// data changed since), or over a cleared run directory.
    pub fn new(spec: JobSpec) -> Result<Arc<Self>> {
        let JobSpec { settings, schedule, store, run_config_yaml, worker_spec, start } = spec;
        let worker_spec_json = worker_spec.to_json();
        let index = Arc::new(PairIndex::from_store(&store)?);
        let scheduler = Scheduler::new(schedule, index.clone())?;
        let config_sha256 = rosetta_common::digest::sha256_bytes(run_config_yaml.as_bytes());
        let run_dir = &settings.run_dir;
        let mut restart = RestartPoint { step: 0, cursor: scheduler.start(), checkpoint: None };
        let mut last_checkpoint = None;
        let mut persisted = PersistedJobState::default();
        let start = match start {
            StartMode::Auto if manifest::latest_verified(run_dir)?.is_some() => StartMode::Resume,
            StartMode::Auto => StartMode::Fresh,
            other => other,
        };
        match start {
            StartMode::Fresh => {
                remove_stale_training_log(run_dir)?;
                let committed = run_dir.committed_steps().map_err(|e| CoordinatorError::Checkpoint(e.to_string()))?;
                if let Some(step) = committed.last() {
                    return Err(CoordinatorError::Checkpoint(format!(
                        "{} already holds checkpoints (the newest after step {step}): continue them with --resume, \
                         or start over with --overwrite (which deletes them)",
                        run_dir.root().display()
                    )));
                }
            }
            StartMode::Overwrite => {
                remove_stale_training_log(run_dir)?;
                for dir in [run_dir.checkpoints(), run_dir.eval()] {
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => tracing::warn!(dir = %dir.display(), "--overwrite: removed"),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(CoordinatorError::Checkpoint(format!("--overwrite: {}: {e}", dir.display())));
                        }
                    }
                }
            }
            // (Auto was resolved above.)
            StartMode::Resume | StartMode::Auto => {
                let Some(manifest) = manifest::latest_verified(run_dir)? else {
                    return Err(CoordinatorError::Checkpoint(format!(
                        "--resume: no committed checkpoint in {} whose files verify",
                        run_dir.checkpoints().display()
                    )));
                };
                if manifest.cursor.fingerprint != restart.cursor.fingerprint {
                    return Err(CoordinatorError::Checkpoint(
                        "--resume: the schedule or data changed since the checkpoint (cursor fingerprint differs)"
                            .into(),
                    ));
                }
                restart = RestartPoint {
                    step: manifest.step + 1,
                    cursor: manifest.cursor.clone(),
                    checkpoint: Some(run_dir.model_file(manifest.step)),
                };
                last_checkpoint = Some(manifest.step);
                persisted = read_persisted(&run_dir.job_state())
                    .unwrap_or(PersistedJobState { generation: manifest.generation, restarts: 0 });
            }
        }
        let job_id = format!("job-{}", &config_sha256[..12]);
        let phase = if restart.step >= settings.steps { Phase::Finished } else { Phase::Waiting };
        let state = JobState {
            phase,
            generation: Generation::starting_at(persisted.generation + 1, restart.clone()),
            steps_done: restart.step,
            restart,
            restarts: persisted.restarts,
            end_step: settings.steps,
            last_loss: f64::NAN,
            examples_per_second: 0.0,
            all_reduce_bytes: 0,
            mfu: 0.0,
            last_checkpoint,
            last_progress: Instant::now(),
            unlogged: std::collections::BTreeMap::new(),
        };
        let job = Arc::new(Self {
            settings,
            worker_spec_json,
            config_sha256,
            job_id,
            store,
            index,
            scheduler: Mutex::new(scheduler),
            state: Mutex::new(state),
            changed: Notify::new(),
            evaluation_hold: Mutex::new(None),
        });
        job.persist(&job.lock());
        Ok(job)
    }

    /// Keeps every checkpoint due for evaluation every `every` steps after `last_evaluated` until
    /// [`evaluated`](Self::evaluated) says it is done, whatever `keep_checkpoints` says (the
    /// in-training evaluation calls it when it starts).
    pub fn hold_for_evaluation(&self, every: u64, last_evaluated: Option<u64>) {
        *self.evaluation_hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(EvaluationHold { every, last_evaluated });
    }

    /// The in-training evaluation is done with the checkpoint after `step` (and every earlier one).
    pub fn evaluated(&self, step: u64) {
        if let Some(hold) = self.evaluation_hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            hold.last_evaluated = Some(step);
        }
    }

    /// Of the `committed` checkpoints, those the in-training evaluation still wants.
    pub(crate) fn held_for_evaluation(&self, committed: &[u64]) -> Vec<u64> {
        match *self.evaluation_hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(EvaluationHold { every, last_evaluated }) => {
                crate::evaluation::pending(committed, last_evaluated, every)
            }
            None => Vec::new(),
        }
    }

    /// Writes the generation and the used restarts to `RUN/job-state.json` (a failure to do so
    /// only costs a restarted coordinator its count: warned, not fatal).
    fn persist(&self, state: &JobState) {
        let persisted = PersistedJobState { generation: state.generation.number, restarts: state.restarts };
        let path = self.settings.run_dir.job_state();
        let text = serde_json::to_vec_pretty(&persisted).unwrap_or_default();
        if let Err(error) = rosetta_common::atomic::write_atomic(&path, &text) {
            tracing::warn!(%error, "could not record the job state");
        }
    }

    /// The settings of the job.
    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    /// The job's id (derived from its run config).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The pair store the job trains on.
    pub fn store(&self) -> &PairStore {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than stopping the job would: keep serving what is there.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let state = self.lock();
        Progress {
            phase: state.phase.clone(),
            steps_done: state.steps_done,
            total_steps: self.settings.steps,
            loss: state.last_loss,
            examples_per_second: state.examples_per_second,
            all_reduce_bytes: state.all_reduce_bytes,
            mfu: state.mfu,
            last_checkpoint: state.last_checkpoint,
            workers: state.generation.workers.len(),
            generation: state.generation.number,
        }
    }

    /// The current generation (it grows by one at each restart).
    pub fn generation(&self) -> u64 {
        self.lock().generation.number
    }

    /// Waits until something changes or `timeout` passes.
    pub async fn wait_change(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }

    fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Ends the current generation because of `reason` (see [`JobStateMachine::fail_generation`]).
    pub fn fail(&self, reason: String) {
        let generation = self.generation();
        self.fail_generation(generation, reason);
    }

    /// Ends `generation` because of `reason` (a worker failed or went silent): every worker of
    /// it is told to stop. While restarts remain (`job.max_restarts`), a new generation then
    /// waits for workers and continues from the last committed checkpoint; otherwise the job
    /// fails. Ignored when that generation has already ended (two reports of one crash must not
    /// cost two restarts).
    pub fn fail_generation(&self, generation: u64, reason: String) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Finished | Phase::Failed(_)) || generation != state.generation.number {
            return;
        }
        let ranked = state.phase == Phase::Running;
        if ranked && state.restarts < self.settings.max_restarts {
            state.restarts += 1;
            let next = state.generation.number + 1;
            state.generation = Generation::starting_at(next, state.restart.clone());
            state.steps_done = state.restart.step;
            state.phase = Phase::Waiting;
            state.last_progress = Instant::now();
            tracing::warn!(%reason, generation = next, from_step = state.restart.step, "generation ended; restarting");
            metrics::generation_restarted(next);
            self.persist(&state);
        } else {
            tracing::error!(%reason, "job failed");
            metrics::job_failed();
            state.phase = Phase::Failed(reason);
        }
        drop(state);
        self.notify();
    }

    /// Fails the whole job at once, whatever restarts remain: for failures that a restart would
    /// meet again (a bad configuration or bad data, a loss that is not finite).
    pub fn fail_job(&self, reason: String) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Finished | Phase::Failed(_)) {
            return;
        }
        tracing::error!(%reason, "job failed; not restarting (the cause is in the configuration or the data)");
        metrics::job_failed();
        state.phase = Phase::Failed(reason);
        drop(state);
        self.notify();
    }

    /// Ends the job cleanly after `steps` steps (at most the configured number) with a
    /// checkpoint there, so that it can be resumed later — e.g. to hand it to other machines.
    pub fn stop_after(&self, steps: u64) {
        let mut state = self.lock();
        state.end_step = steps.min(self.settings.steps).max(state.steps_done);
    }

    /// Ends the job cleanly as soon as it can: after the first step that no rank has asked a
    /// plan for yet (so that every rank sees the same checkpoint flag), with a checkpoint there.
    /// For a scheduler's warning before a time limit (Slurm's `--signal`); `--resume` continues.
    /// Returns the step after which the job will stop.
    pub fn stop_at_next_checkpoint(&self) -> u64 {
        let mut state = self.lock();
        let next_unasked = state.generation.highest_requested.map_or(state.steps_done, |h| h + 1);
        state.end_step = state.end_step.min((next_unasked + 1).max(state.steps_done + 1));
        tracing::warn!(last_step = state.end_step - 1, "stopping at the next checkpoint, as asked");
        state.end_step - 1
    }

    /// True once every worker of the finished job has been told so (it may then go away).
    pub fn workers_released(&self) -> bool {
        let state = self.lock();
        state.generation.workers.iter().all(|w| state.generation.released.contains(&w.id))
    }

    /// Ends the generation when a ranked worker has been silent longer than the heartbeat
    /// timeout, or when no step has completed for the step timeout although every worker beats
    /// (a training thread that is stuck).
    pub fn check_liveness(&self) {
        let state = self.lock();
        if state.phase != Phase::Running {
            return;
        }
        let now = Instant::now();
        let generation = &state.generation;
        for worker in &generation.workers {
            metrics::heartbeat_age(worker.rank, now.duration_since(worker.last_heartbeat));
        }
        let timeout = self.settings.heartbeat_timeout;
        let silent = generation.workers.iter().find(|w| now.duration_since(w.last_heartbeat) > timeout);
        let reason = if let Some(worker) = silent {
            Some(format!("worker rank {} ({}) missed heartbeats for more than {:?}", worker.rank, worker.host, timeout))
        } else if now.duration_since(state.last_progress) > self.settings.step_timeout {
            let step = state.steps_done;
            let reported: Vec<usize> =
                generation.reports.get(&step).map(|r| r.iter().map(|(rank, _)| *rank).collect()).unwrap_or_default();
            let waiting: Vec<usize> = (0..generation.workers.len()).filter(|r| !reported.contains(r)).collect();
            Some(format!(
                "no step completed for more than {:?} (job.step_timeout_secs) although every worker heartbeats: \
                 step {step} waits for rank(s) {waiting:?}",
                self.settings.step_timeout
            ))
        } else {
            None
        };
        let number = generation.number;
        drop(state);
        if let Some(reason) = reason {
            self.fail_generation(number, reason);
        }
    }

    /// The model file a new generation starts from, if any.
    pub fn restart_checkpoint(&self) -> Option<PathBuf> {
        self.lock().restart.checkpoint.clone()
    }
}

fn read_persisted(path: &std::path::Path) -> Option<PersistedJobState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests;

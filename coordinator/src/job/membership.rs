//! Membership: registration (protocol version checked), rendezvous of a generation's world
//! (elastic after the timeout when allowed) and heartbeats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rosetta_proto::PROTOCOL_VERSION;

use super::generation::WorkerEntry;
use super::{JobError, JobResult, JobStateMachine, Phase, WorkerFailure};
use crate::metrics;

/// A worker asking to join.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Protocol version the worker speaks.
    pub protocol_version: u32,
    /// Host name it announces.
    pub host: String,
    /// Its device, for the log.
    pub device: String,
    /// Where it listens for the TCP ring.
    pub ring_address: SocketAddr,
}

/// What a registered worker learns.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Its id for every later request.
    pub worker_id: String,
    /// The job's id.
    pub job_id: String,
    /// The generation it joined.
    pub generation: u64,
    /// Model and training settings, as the launcher wrote them.
    pub worker_spec_json: String,
    /// The run directory, as the coordinator sees it.
    pub run_dir: PathBuf,
    /// The pair store to read rows from, and its id.
    pub store_dir: PathBuf,
    /// The store's id (a worker checks it opened the same store).
    pub store_id: String,
    /// How long rendezvous may take.
    pub rendezvous_timeout: Duration,
}

/// A formed world, as one rank sees it.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    /// This worker's rank.
    pub rank: usize,
    /// Ranks in the world.
    pub world_size: usize,
    /// The generation.
    pub generation: u64,
    /// Ring addresses by rank.
    pub ring_peers: Vec<SocketAddr>,
    /// First step to train.
    pub start_step: u64,
    /// The checkpoint (model + optimiser) to load first, if any.
    pub checkpoint: Option<PathBuf>,
    /// The secret every ring connection of the generation presents.
    pub ring_secret: [u8; 16],
}

/// What a heartbeat answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatVerdict {
    /// Keep going.
    Continue,
    /// Stop now, for this reason.
    Abort(String),
}

impl JobStateMachine {
    /// Adds a worker to the generation that is forming; the world is complete once `workers`
    /// have registered.
    pub fn register(&self, registration: Registration) -> JobResult<Registered> {
        if registration.protocol_version != PROTOCOL_VERSION {
            return Err(JobError::ProtocolVersion { got: registration.protocol_version, supported: PROTOCOL_VERSION });
        }
        let mut state = self.lock();
        match &state.phase {
            Phase::Waiting => {}
            Phase::Running => return Err(JobError::WorldComplete),
            Phase::Finished => return Err(JobError::Finished),
            Phase::Failed(reason) => return Err(JobError::Failed(reason.clone())),
        }
        let generation = &mut state.generation;
        let rank = generation.workers.len();
        let worker_id = format!("g{}-w{rank}-{}", generation.number, registration.host);
        tracing::info!(rank, host = %registration.host, device = %registration.device, "worker registered");
        generation.workers.push(WorkerEntry {
            id: worker_id.clone(),
            host: registration.host,
            ring_address: registration.ring_address,
            rank,
            last_heartbeat: Instant::now(),
        });
        let number = generation.number;
        if generation.workers.len() == self.settings.workers {
            state.phase = Phase::Running;
            state.last_progress = Instant::now();
            metrics::workers_running(self.settings.workers);
        }
        drop(state);
        self.notify();
        Ok(Registered {
            worker_id,
            job_id: self.job_id.clone(),
            generation: number,
            worker_spec_json: self.worker_spec_json.clone(),
            run_dir: self.settings.run_dir.root().to_path_buf(),
            store_dir: self.store.dir().to_path_buf(),
            store_id: self.store.id().to_string(),
            rendezvous_timeout: self.settings.rendezvous_timeout,
        })
    }

    /// Waits until the world of the worker's generation is complete (or, for an elastic job,
    /// until the rendezvous timeout passes with at least `min_workers`); fails the generation
    /// when the timeout passes without enough workers.
    pub async fn rendezvous(&self, worker_id: &str) -> JobResult<Rendezvous> {
        let deadline = Instant::now() + self.settings.rendezvous_timeout;
        loop {
            let notified = self.changed.notified();
            {
                let state = self.lock();
                let generation = &state.generation;
                let Some(rank) = generation.rank_of(worker_id) else {
                    return Err(JobError::UnknownWorker(worker_id.to_string()));
                };
                match &state.phase {
                    Phase::Running => {
                        return Ok(Rendezvous {
                            rank,
                            world_size: generation.workers.len(),
                            generation: generation.number,
                            ring_peers: generation.workers.iter().map(|w| w.ring_address).collect(),
                            start_step: generation.start.step,
                            checkpoint: generation.start.checkpoint.clone(),
                            ring_secret: generation.ring_secret,
                        });
                    }
                    Phase::Failed(reason) => return Err(JobError::Failed(reason.clone())),
                    Phase::Finished => return Err(JobError::Finished),
                    Phase::Waiting => {}
                }
                if Instant::now() >= deadline {
                    let have = generation.workers.len();
                    drop(state);
                    if self.settings.is_elastic() && have >= self.settings.min_workers {
                        self.start_with_registered();
                        continue;
                    }
                    let reason = format!(
                        "rendezvous waited {:?} for {} workers; {have} registered",
                        self.settings.rendezvous_timeout, self.settings.workers
                    );
                    self.fail(reason.clone());
                    return Err(JobError::RendezvousTimeout(reason));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Elastic start: the generation begins with the workers registered so far (fewer than
    /// `job.workers`, at least `job.elastic.min_workers`); plans are cut for that world.
    fn start_with_registered(&self) {
        let mut state = self.lock();
        if state.phase != Phase::Waiting {
            return;
        }
        let world = state.generation.workers.len();
        tracing::warn!(
            world,
            wanted = self.settings.workers,
            generation = state.generation.number,
            "rendezvous timed out; continuing with fewer workers (elastic)"
        );
        state.phase = Phase::Running;
        state.last_progress = Instant::now();
        metrics::workers_running(world);
        drop(state);
        self.notify();
    }

    /// Records that a worker is alive. With a `failure`, the worker failed: its generation ends
    /// (a restart follows while restarts remain), or the job fails at once when the failure is
    /// permanent.
    pub fn heartbeat(&self, worker_id: &str, failure: Option<WorkerFailure>) -> HeartbeatVerdict {
        let failure = {
            let mut state = self.lock();
            let number = state.generation.number;
            let Some(worker) = state.generation.workers.iter_mut().find(|w| w.id == worker_id) else {
                // A worker of an ended generation (or a stranger): it must stop.
                return HeartbeatVerdict::Abort(format!("worker {worker_id:?} is not part of generation {number}"));
            };
            worker.last_heartbeat = Instant::now();
            if let Phase::Failed(reason) = &state.phase {
                return HeartbeatVerdict::Abort(reason.clone());
            }
            failure
                .map(|failure| (number, failure.permanent, format!("worker {worker_id} reported: {}", failure.message)))
        };
        match failure {
            Some((_, true, reason)) => {
                self.fail_job(reason.clone());
                HeartbeatVerdict::Abort(reason)
            }
            Some((generation, false, reason)) => {
                self.fail_generation(generation, reason.clone());
                HeartbeatVerdict::Abort(reason)
            }
            None => HeartbeatVerdict::Continue,
        }
    }
}

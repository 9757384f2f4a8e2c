//! The worker process as a library call (one process per device): connect and register,
//! heartbeat from then on on its own task (so that loading a large model is never taken for a
//! dead worker), build the model from the settings the coordinator hands out, open the pair
//! store, rendezvous, join the TCP ring (and NCCL on CUDA), then train the micro-batches the
//! coordinator plans, report every step and write its part of each checkpoint.

pub mod batches;
pub mod client;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosetta_common::RunDir;
use rosetta_datasets::store::PairStore;
use rosetta_proto::PROTOCOL_VERSION;
use rosetta_proto::v1::*;

use client::{Client, call_failed, connect};
pub use client::{ClientTls, CoordinatorEndpoint};

use crate::collective::Collective;
use crate::error::{Result, WorkerError};
use crate::ring::TcpRing;
use crate::sections::{DeviceSpec, WorkerSpec};
use crate::train::Trainer;

/// Everything a worker process needs, built and checked by the caller.
#[derive(Debug, Clone)]
pub struct WorkerProcessConfig {
    /// The coordinator to join.
    pub coordinator: CoordinatorEndpoint,
    /// The token the coordinator expects.
    pub token: String,
    /// Device override (default: the run config's `training.device`).
    pub device: Option<DeviceSpec>,
    /// Address to listen on for the ring (port 0: any free port).
    pub ring_listen: SocketAddr,
    /// Host name announced to the coordinator (default: the ring address's IP).
    pub host: Option<String>,
    /// libtorch intra-op threads (default: libtorch's choice).
    pub threads: Option<usize>,
    /// How long to keep trying to reach a coordinator that is not listening yet.
    pub connect_patience: Duration,
}

/// What a worker learned at registration.
struct Membership {
    worker_id: String,
    generation: u64,
    spec: WorkerSpec,
    run_dir: RunDir,
    store_dir: PathBuf,
    store_id: String,
}

/// The heartbeat task and what it heard.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    abort: Arc<AtomicBool>,
    reason: Arc<Mutex<String>>,
}

impl Heartbeat {
    /// Beats every 500 ms from now on; a beat answered with "abort" sets the flag.
    fn start(runtime: &tokio::runtime::Runtime, client: &Client, worker_id: &str, generation: u64) -> Self {
        let abort = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(Mutex::new(String::new()));
        let (mut client, worker_id, flag, said) =
            (client.clone(), worker_id.to_string(), abort.clone(), reason.clone());
        let task = runtime.spawn(async move {
            loop {
                let beat = HeartbeatRequest { worker_id: worker_id.clone(), generation, error: String::new() };
                match client.heartbeat(beat).await {
                    Ok(response) if response.get_ref().abort => {
                        *said.lock().unwrap_or_else(|p| p.into_inner()) = response.into_inner().reason;
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(_) => {}
                    Err(status) => tracing::warn!(error = %status.message(), "heartbeat failed"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self { task, abort, reason }
    }

    /// `Err(Stopped)` once the coordinator said to stop.
    fn check(&self) -> Result<()> {
        if self.abort.load(Ordering::SeqCst) {
            return Err(WorkerError::Stopped(self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()));
        }
        Ok(())
    }
}

/// Runs a worker until the job finishes (`Ok`) or fails (`Err` with the reason); on failure
/// the coordinator is told at once, so the generation ends promptly instead of at a timeout.
pub fn run_worker(config: WorkerProcessConfig) -> Result<()> {
    if let Some(threads) = config.threads {
        tch::set_num_threads(threads.max(1) as i32);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| WorkerError::invalid("runtime", e.to_string()))?;
    let address = config.coordinator.url.clone();
    let listener = TcpListener::bind(config.ring_listen)
        .map_err(|e| WorkerError::io(format!("ring port {}", config.ring_listen), e))?;
    let ring_address = listener.local_addr().map_err(|e| WorkerError::io("ring port", e))?;
    let mut client = runtime.block_on(connect(&config.coordinator, &config.token, config.connect_patience))?;
    let host = config.host.clone().unwrap_or_else(|| ring_address.ip().to_string());
    let registered = runtime
        .block_on(client.register(RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host,
            device: config.device.map_or_else(|| "from the run config".to_string(), |d| d.to_string()),
            ring_address: ring_address.to_string(),
        }))
        .map_err(call_failed("register", &address))?
        .into_inner();
    let heartbeat = Heartbeat::start(&runtime, &client, &registered.worker_id, registered.generation);
    let membership = Membership {
        spec: WorkerSpec::from_json(&registered.worker_spec_json)?,
        worker_id: registered.worker_id,
        generation: registered.generation,
        run_dir: RunDir::new(registered.run_dir),
        store_dir: PathBuf::from(registered.store_dir),
        store_id: registered.store_id,
    };
    let outcome = train(&runtime, &mut client, &address, &config, &membership, listener, &heartbeat);
    heartbeat.task.abort();
    if let Err(error) = &outcome
        && !matches!(error, WorkerError::Stopped(_))
    {
        let report = HeartbeatRequest {
            worker_id: membership.worker_id.clone(),
            generation: membership.generation,
            error: error.to_string(),
        };
        let _ = runtime.block_on(client.heartbeat(report));
    }
    outcome
}

/// Everything after registration: model, store, rendezvous, ring, the training loop.
fn train(
    runtime: &tokio::runtime::Runtime,
    client: &mut Client,
    address: &str,
    config: &WorkerProcessConfig,
    membership: &Membership,
    listener: TcpListener,
    heartbeat: &Heartbeat,
) -> Result<()> {
    let started = Instant::now();
    let spec = &membership.spec;
    let device = config.device.unwrap_or(spec.training.device).open()?;
    let model = spec.model.build_encoder(device)?;
    let mut trainer = Trainer::new(model, spec.training.step_config(spec.total_steps))?;
    let store = PairStore::open(&membership.store_dir)?;
    if store.id() != membership.store_id {
        return Err(WorkerError::invalid(
            "store",
            format!(
                "{} holds store {}, the coordinator trains on store {}: every worker must see the coordinator's store directory",
                store.dir().display(),
                store.id(),
                membership.store_id
            ),
        ));
    }
    heartbeat.check()?;
    let worker_id = membership.worker_id.clone();
    let rendezvous = runtime
        .block_on(client.rendezvous(RendezvousRequest { worker_id: worker_id.clone() }))
        .map_err(call_failed("rendezvous", address))?
        .into_inner();
    let (rank, world, generation) = (rendezvous.rank as usize, rendezvous.world_size as usize, rendezvous.generation);
    tracing::info!(
        rank,
        world,
        generation,
        start = rendezvous.start_step,
        seconds = started.elapsed().as_secs_f64(),
        "rendezvous complete"
    );
    let peers = rendezvous
        .ring_peers
        .iter()
        .map(|p| p.parse())
        .collect::<std::result::Result<Vec<SocketAddr>, _>>()
        .map_err(|e| WorkerError::invalid("ring peers from the coordinator", e.to_string()))?;
    let timeout = spec.collective_timeout;
    let ring = TcpRing::connect(rank, listener, peers, timeout)?;
    // CUDA: NCCL carries the tensors; the ring stays for the bootstrap and barriers.
    let nccl = match device {
        tch::Device::Cuda(_) => Some(nccl_over_ring(&ring, rank, world, device, timeout)?),
        _ => None,
    };
    let collective: &dyn Collective = match &nccl {
        Some(nccl) => nccl,
        None => &ring,
    };
    if rendezvous.checkpoint_path.is_empty() {
        trainer.broadcast_parameters(collective)?;
    } else {
        trainer.load_checkpoint(std::path::Path::new(&rendezvous.checkpoint_path))?;
        ring.barrier()?;
    }
    let mut step = rendezvous.start_step;
    loop {
        heartbeat.check()?;
        let asked = Instant::now();
        let plan = runtime
            .block_on(client.get_plan(GetPlanRequest { worker_id: worker_id.clone(), generation, step }))
            .map_err(call_failed("get plan", address))?
            .into_inner();
        if plan.finished {
            return Ok(());
        }
        let batch = batches::micro_batch(&store, &plan, spec.training.hard_negatives)?;
        // Dropout draws from a generator seeded by (seed, step, rank): resumed runs replay it.
        tch::manual_seed(rosetta_datasets::rng::mix_seed(&[spec.seed, step, rank as u64]) as i64 & i64::MAX);
        let step_started = Instant::now();
        let plan_seconds = (step_started - asked).as_secs_f64();
        let outcome = trainer.step(&batch, collective)?;
        let seconds = step_started.elapsed().as_secs_f64();
        tracing::debug!(
            step,
            total = seconds,
            forward = outcome.forward_seconds,
            backward = outcome.backward_seconds,
            collective = outcome.collective_seconds,
            optimizer = outcome.optimizer_seconds,
            plan = plan_seconds,
            "step timings"
        );
        runtime
            .block_on(client.report_step(ReportStepRequest {
                worker_id: worker_id.clone(),
                generation,
                step,
                loss: outcome.loss,
                examples: batch.queries.len() as u64,
                tokens: outcome.tokens,
                step_seconds: seconds,
                collective_seconds: outcome.collective_seconds,
                learning_rate: outcome.lr,
                grad_norm: outcome.grad_norm,
            }))
            .map_err(call_failed("report step", address))?;
        if plan.checkpoint_after {
            let files =
                if rank == 0 { write_checkpoint(&trainer, &membership.run_dir, spec, step)? } else { Vec::new() };
            runtime
                .block_on(client.commit_checkpoint(CommitCheckpointRequest {
                    worker_id: worker_id.clone(),
                    generation,
                    step,
                    files,
                }))
                .map_err(call_failed("commit checkpoint", address))?;
        }
        step += 1;
    }
}

/// Rank 0's part of a checkpoint: the model and optimiser state, and the model settings that
/// rebuild the encoder (so that a checkpoint can be evaluated and exported on its own).
fn write_checkpoint(trainer: &Trainer, run_dir: &RunDir, spec: &WorkerSpec, step: u64) -> Result<Vec<CheckpointFile>> {
    let model_path = run_dir.model_file(step);
    trainer.save_checkpoint(&model_path)?;
    let settings_path = run_dir.model_settings_file(step);
    let settings =
        serde_json::to_vec_pretty(&spec.model).map_err(|e| WorkerError::model(&settings_path, e.to_string()))?;
    rosetta_common::atomic::write_atomic(&settings_path, &settings)?;
    [(RunDir::model_file_relative(step), model_path), (RunDir::model_settings_file_relative(step), settings_path)]
        .into_iter()
        .map(|(relative, path)| {
            Ok(CheckpointFile { path: relative, sha256: rosetta_common::digest::sha256_file(&path)? })
        })
        .collect()
}

/// Joins an NCCL communicator: rank 0 makes the unique id and sends it to every rank over the
/// already-connected TCP ring (a CPU broadcast of its 128 bytes), then all ranks initialise.
fn nccl_over_ring(
    ring: &TcpRing,
    rank: usize,
    world: usize,
    device: tch::Device,
    timeout: Duration,
) -> Result<crate::nccl::NcclCollective> {
    use crate::nccl::{NcclCollective, NcclLibrary, UNIQUE_ID_BYTES, UniqueId};
    let library = Arc::new(NcclLibrary::load(None)?);
    let mut bytes = [0u8; UNIQUE_ID_BYTES];
    if rank == 0 {
        bytes = library.unique_id()?.0;
    }
    // Bytes travel as exact small floats (the ring reduces and broadcasts float tensors).
    let values: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    let mut tensor = tch::Tensor::from_slice(&values);
    ring.broadcast(&mut tensor, 0)?;
    let received = Vec::<f32>::try_from(&tensor)?;
    for (byte, value) in bytes.iter_mut().zip(received) {
        *byte = value as u8;
    }
    tracing::info!(rank, world, version = library.version()?, "joining the NCCL communicator");
    NcclCollective::new(library, UniqueId(bytes), rank, world, device, timeout)
}

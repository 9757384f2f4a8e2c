//! The worker process as a library call (one process per device): connect and register,
//! heartbeat from then on on its own task (so that loading a large model is never taken for a
//! dead worker), build the model from the settings the coordinator hands out, open the pair
//! store, rendezvous, join the TCP ring (and NCCL on CUDA), then train the micro-batches the
//! coordinator plans, report every step and write its part of each checkpoint.
//!
//! Every call to the coordinator has a deadline (`rpc_timeout`, 20 s by default; longer for
//! rendezvous and checkpoint commits, which wait or hash by design), and HTTP/2 pings close a
//! connection whose coordinator stopped answering, so a hung or vanished coordinator ends the
//! worker within about 20 s with an error that names it.

pub mod batches;
pub mod client;
pub mod faults;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosetta_common::RunDir;
use rosetta_datasets::store::PairStore;
use rosetta_proto::PROTOCOL_VERSION;
use rosetta_proto::v1::*;

use client::{Client, connect, within};
pub use client::{ClientTls, CoordinatorEndpoint};
use rosetta_worker_config::command::CoordinatorAddress;
pub use rosetta_worker_config::command::WorkerProcessConfig;

use crate::error::{Result, WorkerError};
use crate::train::Trainer;
use rosetta_collective::collective::Collective;
use rosetta_collective::ring::TcpRing;
use rosetta_worker_config::WorkerSpec;

/// Deadline of a checkpoint commit (the coordinator hashes the checkpoint's files first).
const COMMIT_DEADLINE: Duration = Duration::from_secs(600);

/// What a worker learned at registration.
struct Membership {
    worker_id: String,
    generation: u64,
    spec: WorkerSpec,
    run_dir: RunDir,
    store_dir: PathBuf,
    store_id: String,
    rendezvous_timeout: Duration,
}

/// The connection to the coordinator, with the deadline of ordinary calls.
struct Coordinator<'a> {
    runtime: &'a tokio::runtime::Runtime,
    client: Client,
    address: String,
    deadline: Duration,
}

impl Coordinator<'_> {
    /// Runs a call to its answer or its deadline.
    fn call<T, F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>>(
        &self,
        name: &'static str,
        deadline: Duration,
        call: impl FnOnce(Client) -> F,
    ) -> Result<T> {
        // Clients are cheap handles on one shared connection.
        let future = call(self.client.clone());
        self.runtime.block_on(within(name, &self.address, deadline, future))
    }
}

/// Why the heartbeat task stopped the worker.
#[derive(Debug, Clone)]
enum Verdict {
    /// The coordinator said to stop.
    Stopped(String),
    /// The coordinator has not answered for too long.
    Lost(String),
}

/// The heartbeat task and what it heard.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    verdict: Arc<Mutex<Option<Verdict>>>,
    address: String,
}

impl Heartbeat {
    /// Beats every 500 ms from now on; a beat answered with "abort" stops the worker, and so
    /// do beats that go unanswered for `patience`.
    fn start(coordinator: &Coordinator<'_>, worker_id: &str, generation: u64, patience: Duration) -> Self {
        let verdict = Arc::new(Mutex::new(None));
        let (mut client, worker_id, said) = (coordinator.client.clone(), worker_id.to_string(), verdict.clone());
        let address = coordinator.address.clone();
        let task = coordinator.runtime.spawn(async move {
            let mut answered = Instant::now();
            loop {
                let beat = HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    generation,
                    error: String::new(),
                    permanent: false,
                };
                match tokio::time::timeout(patience, client.heartbeat(beat)).await {
                    Ok(Ok(response)) if response.get_ref().abort => {
                        *said.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Verdict::Stopped(response.into_inner().reason));
                        return;
                    }
                    Ok(Ok(_)) => answered = Instant::now(),
                    Ok(Err(status)) => tracing::warn!(error = %status.message(), "heartbeat refused"),
                    Err(_) => tracing::warn!(coordinator = %address, "heartbeat unanswered"),
                }
                if answered.elapsed() > patience {
                    let reason = format!("the coordinator at {address} has not answered a heartbeat for {patience:?}");
                    *said.lock().unwrap_or_else(|p| p.into_inner()) = Some(Verdict::Lost(reason));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self { task, verdict, address: coordinator.address.clone() }
    }

    /// An error once the coordinator said to stop or went silent.
    fn check(&self) -> Result<()> {
        match self.verdict.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            None => Ok(()),
            Some(Verdict::Stopped(reason)) => Err(WorkerError::Stopped(reason)),
            Some(Verdict::Lost(message)) => {
                Err(WorkerError::Coordinator { call: "heartbeat", address: self.address.clone(), message })
            }
        }
    }
}

/// Runs a worker until the job finishes (`Ok`) or fails (`Err` with the reason); on failure
/// the coordinator is told at once (and whether the failure is permanent), so the generation
/// ends promptly instead of at a timeout.
pub fn run_worker(config: WorkerProcessConfig) -> Result<()> {
    crate::memory::keep_freed_memory();
    if let Some(threads) = config.threads {
        tch::set_num_threads(threads.max(1) as i32);
    }
    let faults = faults::Faults::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| WorkerError::invalid("runtime", e.to_string()))?;
    let token = rosetta_common::token::read_token(config.token_file.as_deref())
        .map_err(|e| WorkerError::invalid("--token-file", e.0))?;
    let started = Instant::now();
    let endpoint = endpoint(&config)?;
    let address = endpoint.url.clone();
    let listener = TcpListener::bind(config.ring_listen)
        .map_err(|e| WorkerError::io(format!("ring port {}", config.ring_listen), e))?;
    let ring_address = listener.local_addr().map_err(|e| WorkerError::io("ring port", e))?;
    let patience = config.connect_timeout.saturating_sub(started.elapsed());
    let client = runtime.block_on(connect(&endpoint, &token, patience))?;
    let mut coordinator =
        Coordinator { runtime: &runtime, client, address: address.clone(), deadline: config.rpc_timeout };
    // Listening on every interface: announce the address on the way to the coordinator.
    let ring_address = if ring_address.ip().is_unspecified() {
        SocketAddr::new(route_to(&address)?, ring_address.port())
    } else {
        ring_address
    };
    let host = config.host.clone().unwrap_or_else(|| ring_address.ip().to_string());
    let request = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        host,
        device: config.device.map_or_else(|| "from the run config".to_string(), |d| d.to_string()),
        ring_address: ring_address.to_string(),
    };
    let registered =
        coordinator.call("register", config.rpc_timeout, |mut c| async move { c.register(request).await })?;
    let heartbeat = Heartbeat::start(&coordinator, &registered.worker_id, registered.generation, config.rpc_timeout);
    let membership = Membership {
        spec: WorkerSpec::from_json(&registered.worker_spec_json)
            .map_err(|message| WorkerError::invalid("worker spec", message))?,
        worker_id: registered.worker_id,
        generation: registered.generation,
        run_dir: RunDir::new(registered.run_dir),
        store_dir: PathBuf::from(registered.store_dir),
        store_id: registered.store_id,
        rendezvous_timeout: Duration::from_millis(registered.rendezvous_timeout_ms),
    };
    faults.delay_start();
    let outcome = train(&mut coordinator, &config, &membership, listener, &heartbeat, &faults);
    heartbeat.task.abort();
    if let Err(error) = &outcome
        && !matches!(error, WorkerError::Stopped(_))
    {
        let report = HeartbeatRequest {
            worker_id: membership.worker_id.clone(),
            generation: membership.generation,
            error: error.to_string(),
            permanent: error.is_permanent(),
        };
        // A short farewell: when the coordinator is what failed, nobody is listening.
        let farewell = config.rpc_timeout.min(Duration::from_secs(3));
        let _ = coordinator.call("heartbeat", farewell, |mut c| async move { c.heartbeat(report).await });
    }
    outcome
}

/// The coordinator's URL and TLS trust: the URL given, or the one the coordinator's
/// `coordinator.json` names once it appears (waited for within `--connect-timeout`).
fn endpoint(config: &WorkerProcessConfig) -> Result<CoordinatorEndpoint> {
    let url = match config.address() {
        Some(CoordinatorAddress::Url(url)) => url,
        Some(CoordinatorAddress::File(path)) => {
            rosetta_common::addresses::CoordinatorAddresses::wait_for(&path, config.connect_timeout)
                .map_err(|message| WorkerError::invalid("--coordinator-file", message))?
                .url
        }
        None => {
            return Err(WorkerError::invalid(
                "--coordinator",
                "give exactly one of --coordinator and --coordinator-file",
            ));
        }
    };
    let tls = config.tls_ca.as_deref().map(|ca| ClientTls::from_file(ca, config.tls_domain.clone())).transpose()?;
    Ok(CoordinatorEndpoint { url, tls })
}

/// This machine's address on the route to the coordinator at `url` (what peers can reach when
/// the ring listens on every interface).
fn route_to(url: &str) -> Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let invalid = |message: String| WorkerError::invalid("--coordinator", message);
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| invalid(format!("{url:?}: {e}")))?;
    let host = uri.host().ok_or_else(|| invalid(format!("{url:?} has no host")))?;
    let port = uri.port_u16().unwrap_or(50051);
    let target = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("resolving {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(format!("{host} resolves to no address")))?;
    let probe = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .and_then(|socket| socket.connect(target).map(|()| socket))
        .and_then(|socket| socket.local_addr())
        .map_err(|e| WorkerError::io(format!("route to the coordinator {target}"), e))?;
    Ok(probe.ip())
}

/// Everything after registration: model, store, rendezvous, ring, the training loop.
fn train(
    coordinator: &mut Coordinator<'_>,
    config: &WorkerProcessConfig,
    membership: &Membership,
    listener: TcpListener,
    heartbeat: &Heartbeat,
    faults: &faults::Faults,
) -> Result<()> {
    let started = Instant::now();
    let spec = &membership.spec;
    let device = rosetta_collective::device::open(config.device.unwrap_or(spec.training.device))?;
    let model = rosetta_model::from_settings::build_encoder(&spec.model, device)?;
    let mut trainer = Trainer::new(model, crate::train::StepConfig::new(&spec.training, spec.total_steps))?;
    // Before the ring and the data: nothing else runs on this worker's cores yet.
    let peak = crate::mfu::peak_flops(device);
    tracing::info!(peak_tflops = peak.flops_per_second / 1e12, source = %peak.source, "device peak");
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
    let request = RendezvousRequest { worker_id: worker_id.clone() };
    let rendezvous =
        coordinator.call("rendezvous", membership.rendezvous_timeout + coordinator.deadline, |mut c| async move {
            c.rendezvous(request).await
        })?;
    let (rank, world, generation) = (rendezvous.rank as usize, rendezvous.world_size as usize, rendezvous.generation);
    tracing::info!(
        rank,
        world,
        generation,
        start = rendezvous.start_step,
        seconds = started.elapsed().as_secs_f64(),
        "rendezvous complete"
    );
    if rank == 0 {
        let counts = trainer.parameter_counts();
        let total = counts.trainable + counts.frozen;
        eprintln!(
            "worker: {} of {} parameters trainable ({:.1} %), {}{}",
            counts.trainable,
            total,
            100.0 * counts.trainable as f64 / total.max(1) as f64,
            if trainer.trains_in_bf16() { "bf16 autocast (training.precision)" } else { "fp32" },
            if counts.frozen_tensors > 0 {
                format!("; {} frozen in {} tensors (training.freeze)", counts.frozen, counts.frozen_tensors)
            } else {
                String::new()
            }
        );
    }
    // Every rank: a cluster may mix CPU types.
    if let Some(warning) = trainer.precision_warning() {
        eprintln!("worker {rank}: training.precision: {warning}");
    }
    let peers = rendezvous
        .ring_peers
        .iter()
        .map(|p| p.parse())
        .collect::<std::result::Result<Vec<SocketAddr>, _>>()
        .map_err(|e| WorkerError::invalid("ring peers from the coordinator", e.to_string()))?;
    let timeout = spec.collective_timeout;
    let ring = TcpRing::connect(rank, listener, peers, timeout, &rendezvous.ring_secret)?;
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
    let deadline = coordinator.deadline;
    let mut step = rendezvous.start_step;
    loop {
        heartbeat.check()?;
        faults.before_step(step, generation);
        let asked = Instant::now();
        let request = GetPlanRequest { worker_id: worker_id.clone(), generation, step };
        let plan = coordinator.call("get plan", deadline, |mut c| async move { c.get_plan(request).await })?;
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
            all_reduce_bytes = outcome.all_reduce_bytes,
            optimizer = outcome.optimizer_seconds,
            plan = plan_seconds,
            "step timings"
        );
        let report = ReportStepRequest {
            worker_id: worker_id.clone(),
            generation,
            step,
            loss: outcome.loss,
            examples: batch.queries.len() as u64,
            tokens: outcome.tokens,
            padding_tokens: outcome.padding_tokens,
            step_seconds: seconds,
            collective_seconds: outcome.collective_seconds,
            all_reduce_bytes: outcome.all_reduce_bytes,
            model_flops: outcome.model_flops,
            peak_flops: peak.flops_per_second,
            learning_rate: outcome.lr,
            grad_norm: outcome.grad_norm,
        };
        coordinator.call("report step", deadline, |mut c| async move { c.report_step(report).await })?;
        if plan.checkpoint_after {
            let files =
                if rank == 0 { write_checkpoint(&trainer, &membership.run_dir, spec, step)? } else { Vec::new() };
            let request = CommitCheckpointRequest { worker_id: worker_id.clone(), generation, step, files };
            coordinator.call("commit checkpoint", COMMIT_DEADLINE, |mut c| async move {
                c.commit_checkpoint(request).await
            })?;
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
) -> Result<rosetta_collective::nccl::NcclCollective> {
    use rosetta_collective::nccl::{NcclCollective, NcclLibrary, UNIQUE_ID_BYTES, UniqueId};
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
    Ok(NcclCollective::new(library, UniqueId(bytes), rank, world, device, timeout)?)
}

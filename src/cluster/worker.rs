//! `rosetta worker`: one process per device. Registers, rendezvouses, joins the TCP ring,
//! trains the micro-batches the coordinator plans, reports, heartbeats on its own task, and
//! writes its part of each checkpoint.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rosetta_proto::PROTOCOL_VERSION;
use rosetta_proto::v1::coordinator_client::CoordinatorClient;
use rosetta_proto::v1::*;
use rosetta_worker::collective::Collective;
use rosetta_worker::ring::TcpRing;
use rosetta_worker::train::Trainer;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::lookup::PairLookup;
use crate::run_config::RunConfig;

/// Arguments of `rosetta worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Coordinator address, e.g. `http://10.0.0.1:50051`.
    #[arg(long)]
    pub coordinator: String,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Device: `cpu` or `cuda:N` (default: the config's `training.device`).
    #[arg(long)]
    pub device: Option<String>,
    /// Address this worker listens on for the ring (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ring_listen: String,
    /// Host name announced to the coordinator.
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
}

type Client = CoordinatorClient<InterceptedService<Channel, Auth>>;

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Trust settings for a TLS connection to the coordinator.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM of the certificate authority.
    pub ca_pem: Vec<u8>,
    /// Name to verify (default: the address's host).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Reads `--tls-ca` (and `--tls-domain`) when given.
    pub fn from_args(ca: Option<&std::path::Path>, domain: Option<&str>) -> anyhow::Result<Option<Self>> {
        let Some(ca) = ca else { return Ok(None) };
        let ca_pem = std::fs::read(ca).with_context(|| format!("reading --tls-ca {}", ca.display()))?;
        if !String::from_utf8_lossy(&ca_pem).contains("BEGIN CERTIFICATE") {
            anyhow::bail!("--tls-ca {}: not a PEM certificate", ca.display());
        }
        Ok(Some(Self { ca_pem, domain: domain.map(str::to_string) }))
    }
}

/// Connects to the coordinator with the token (over TLS when `tls` is given).
pub async fn connect(address: &str, token: &str, tls: Option<&ClientTls>) -> anyhow::Result<Client> {
    let mut endpoint = Channel::from_shared(address.to_string())
        .with_context(|| format!("coordinator address {address:?}"))?
        .connect_timeout(Duration::from_secs(10));
    match tls {
        Some(tls) => {
            if !address.starts_with("https://") {
                anyhow::bail!("--tls-ca needs an https:// coordinator address, got {address:?}");
            }
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(config).context("TLS configuration of the coordinator connection")?;
        }
        None if address.starts_with("https://") => {
            anyhow::bail!(
                "an https:// coordinator address needs --tls-ca (the certificate that signed the coordinator's)"
            );
        }
        None => {}
    }
    let channel = endpoint.connect().await.with_context(|| format!("connecting to the coordinator at {address}"))?;
    let value: MetadataValue<_> = format!("Bearer {token}").parse().context("token is not valid header text")?;
    Ok(CoordinatorClient::with_interceptor(channel, Auth(value)))
}

fn status(context: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("{context}: {} ({:?})", s.message(), s.code())
}

/// Runs a worker until the job finishes (Ok) or fails (Err with the reason).
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let token = super::read_token(args.token_file.as_deref())?;
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads.max(1) as i32);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let listener =
        TcpListener::bind(&args.ring_listen).with_context(|| format!("binding the ring port {}", args.ring_listen))?;
    let ring_address = listener.local_addr()?;
    let tls = ClientTls::from_args(args.tls_ca.as_deref(), args.tls_domain.as_deref())?;
    let mut client = runtime.block_on(connect(&args.coordinator, &token, tls.as_ref()))?;
    let host = args.host.clone().unwrap_or_else(|| ring_address.ip().to_string());
    let registered = runtime
        .block_on(client.register(RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            host: host.clone(),
            device: args.device.clone().unwrap_or_else(|| "from the run config".to_string()),
            ring_address: ring_address.to_string(),
        }))
        .map_err(status("register"))?
        .into_inner();
    let worker_id = registered.worker_id.clone();
    let config = RunConfig::from_resolved_yaml(&registered.run_config_yaml)?;
    let (model_spec, job) = config.training_sections()?;
    let device_name = args.device.clone().unwrap_or_else(|| config.training.device.clone());
    let device = rosetta_worker::device::parse_device(&device_name)?;
    let model = model_spec.build(device)?;
    let mut trainer = Trainer::new(model, config.training.step_config(job.steps))?;
    let lookup = PairLookup::load(&config.data.train)?;

    let rendezvous = runtime
        .block_on(client.rendezvous(RendezvousRequest { worker_id: worker_id.clone() }))
        .map_err(status("rendezvous"))?
        .into_inner();
    let (rank, world, generation) = (rendezvous.rank as usize, rendezvous.world_size, rendezvous.generation);
    tracing::info!(rank, world, generation, start = rendezvous.start_step, "rendezvous complete");
    let peers = rendezvous
        .ring_peers
        .iter()
        .map(|p| p.parse())
        .collect::<Result<Vec<std::net::SocketAddr>, _>>()
        .context("ring peers from the coordinator")?;

    // Heartbeats on their own task: a long step never looks like a dead worker.
    let abort = Arc::new(AtomicBool::new(false));
    let abort_reason = Arc::new(std::sync::Mutex::new(String::new()));
    let heartbeat = {
        let (mut client, worker_id, abort, reason) =
            (client.clone(), worker_id.clone(), abort.clone(), abort_reason.clone());
        runtime.spawn(async move {
            loop {
                match client
                    .heartbeat(HeartbeatRequest { worker_id: worker_id.clone(), generation, error: String::new() })
                    .await
                {
                    Ok(response) if response.get_ref().abort => {
                        *reason.lock().unwrap_or_else(|p| p.into_inner()) = response.into_inner().reason;
                        abort.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(_) => {}
                    Err(status) => tracing::warn!(error = %status.message(), "heartbeat failed"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let timeout = Duration::from_secs_f64(job.heartbeat_timeout_secs.max(1.0) * 6.0);
    let outcome = (|| -> anyhow::Result<()> {
        let ring = TcpRing::connect(rank, listener, peers, timeout)?;
        // CUDA: NCCL carries the tensors; the ring stays for the bootstrap and barriers.
        let nccl = match device {
            tch::Device::Cuda(_) => Some(nccl_over_ring(&ring, rank, world as usize, device, timeout)?),
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
        let run_dir = PathBuf::from(&registered.run_dir);
        let mut step = rendezvous.start_step;
        loop {
            if abort.load(Ordering::SeqCst) {
                bail!("stopped by the coordinator: {}", abort_reason.lock().unwrap_or_else(|p| p.into_inner()));
            }
            let asked = Instant::now();
            let plan = runtime
                .block_on(client.get_plan(GetPlanRequest { worker_id: worker_id.clone(), generation, step }))
                .map_err(status("get plan"))?
                .into_inner();
            if plan.finished {
                return Ok(());
            }
            let batch = lookup.micro_batch(&plan, config.training.hard_negatives)?;
            // Dropout draws from a generator seeded by (seed, step, rank): resumed runs replay it.
            tch::manual_seed(
                rosetta_datasets::rng::mix_seed(&[config.schedule.seed, step, rank as u64]) as i64 & i64::MAX,
            );
            let started = Instant::now();
            let plan_seconds = (started - asked).as_secs_f64();
            let outcome = trainer.step(&batch, collective)?;
            let seconds = started.elapsed().as_secs_f64();
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
                .map_err(status("report step"))?;
            if plan.checkpoint_after {
                let mut files = Vec::new();
                if rank == 0 {
                    let relative = format!("checkpoints/step-{step:08}/model.safetensors");
                    let path = run_dir.join(&relative);
                    trainer.save_checkpoint(&path)?;
                    let sha256 = rosetta_coordinator::manifest::sha256_file(&path)?;
                    files.push(CheckpointFile { path: relative, sha256 });
                }
                runtime
                    .block_on(client.commit_checkpoint(CommitCheckpointRequest {
                        worker_id: worker_id.clone(),
                        generation,
                        step,
                        files,
                    }))
                    .map_err(status("commit checkpoint"))?;
            }
            step += 1;
        }
    })();
    heartbeat.abort();
    if let Err(error) = &outcome {
        // Tell the coordinator, so the whole job stops promptly rather than at the timeout.
        let _ =
            runtime.block_on(client.heartbeat(HeartbeatRequest { worker_id, generation, error: format!("{error:#}") }));
    }
    outcome
}

/// Joins an NCCL communicator: rank 0 makes the unique id and sends it to every rank over the
/// already-connected TCP ring (a CPU broadcast of its 128 bytes), then all ranks initialise.
fn nccl_over_ring(
    ring: &TcpRing,
    rank: usize,
    world: usize,
    device: tch::Device,
    timeout: Duration,
) -> anyhow::Result<rosetta_worker::nccl::NcclCollective> {
    use rosetta_worker::nccl::{NcclCollective, NcclLibrary, UNIQUE_ID_BYTES, UniqueId};
    let library = Arc::new(NcclLibrary::load(None).context("NCCL for CUDA training (set ROSETTA_NCCL_LIB)")?);
    let mut bytes = [0u8; UNIQUE_ID_BYTES];
    if rank == 0 {
        bytes = library.unique_id()?.0;
    }
    // Bytes travel as exact small floats (the ring reduces and broadcasts float tensors).
    let values: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    let mut tensor = tch::Tensor::from_slice(&values);
    ring.broadcast(&mut tensor, 0).context("sending the NCCL unique id over the ring")?;
    let received = Vec::<f32>::try_from(&tensor)?;
    for (byte, value) in bytes.iter_mut().zip(received) {
        *byte = value as u8;
    }
    tracing::info!(rank, world, version = library.version()?, "joining the NCCL communicator");
    Ok(NcclCollective::new(library, UniqueId(bytes), rank, world, device, timeout)?)
}

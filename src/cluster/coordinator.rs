//! The coordinator runtime: gRPC service, Prometheus endpoint and heartbeat watchdog, used by
//! `rosetta coordinator` and (in-process) by `rosetta train`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rosetta_coordinator::metrics_server;
use rosetta_coordinator::schedule::{PairIndex, Scheduler};
use rosetta_coordinator::service::{CoordinatorService, Job};

use crate::run_config::RunConfig;

/// A started coordinator.
pub struct RunningCoordinator {
    /// The job it runs.
    pub job: Arc<Job>,
    /// Where workers connect (gRPC).
    pub grpc_address: SocketAddr,
    /// Where Prometheus scrapes.
    pub metrics_address: SocketAddr,
}

/// Builds the job (index, scheduler, resume state) and starts serving on `listen`.
pub async fn start(
    config: &RunConfig,
    listen: SocketAddr,
    token: String,
    resume: bool,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<RunningCoordinator> {
    let (_, job_config) = config.training_sections()?;
    let job_config = job_config.clone();
    let train = config.data.train.clone();
    let index = tokio::task::spawn_blocking(move || PairIndex::from_parquet(&train)).await??;
    let scheduler = Scheduler::new(config.schedule.clone(), Arc::new(index))?;
    let yaml = config.to_yaml()?;
    std::fs::create_dir_all(&job_config.run_dir)
        .with_context(|| format!("creating {}", job_config.run_dir.display()))?;
    std::fs::write(job_config.run_dir.join("run.yaml"), &yaml).context("writing run.yaml into the run directory")?;
    let metrics_listen: SocketAddr = job_config.metrics_address.parse().context("job.metrics_address")?;
    let job = Job::new(job_config, yaml, scheduler, resume)?;
    let handle = metrics_server::install_recorder()?;
    let (metrics_address, _metrics_task) = metrics_server::serve(metrics_listen, handle).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let grpc_address = listener.local_addr()?;
    let service = CoordinatorService::new(job.clone()).into_server(token);
    // grpc.health.v1 for load balancers and probes (no token needed to ask whether we serve).
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("rosetta.v1.Coordinator", tonic_health::ServingStatus::Serving).await;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).context("TLS configuration of the gRPC server")?;
    }
    tokio::spawn(async move {
        // Without TCP_NODELAY a reply's second small write waits for the client's delayed ACK:
        // every plan request took 40 ms more than it should.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(error) = server.add_service(health_service).add_service(service).serve_with_incoming(incoming).await
        {
            tracing::error!(%error, "grpc server stopped");
        }
    });
    let watchdog = job.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            watchdog.check_heartbeats();
        }
    });
    tracing::info!(%grpc_address, %metrics_address, "coordinator listening");
    Ok(RunningCoordinator { job, grpc_address, metrics_address })
}

/// The server TLS identity from a PEM certificate (chain) and private key.
pub fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading --tls-cert {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
    if !String::from_utf8_lossy(&cert_pem).contains("BEGIN CERTIFICATE") {
        anyhow::bail!("--tls-cert {}: not a PEM certificate", cert.display());
    }
    if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY") {
        anyhow::bail!("--tls-key {}: not a PEM private key", key.display());
    }
    Ok(tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert_pem, key_pem)))
}

//! The connection to the coordinator: the bearer token on every request, optional TLS, and
//! failed calls turned into errors that name the call and the coordinator.

use std::time::{Duration, Instant};

use rosetta_proto::v1::coordinator_client::CoordinatorClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::{Result, WorkerError};

/// How often an HTTP/2 ping checks the connection to the coordinator.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the connection counts as lost.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the coordinator that sends the token with every request.
pub type Client = CoordinatorClient<InterceptedService<Channel, Auth>>;

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Trust settings for a TLS connection to the coordinator.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM of the certificate authority that signed the coordinator's certificate.
    pub ca_pem: Vec<u8>,
    /// Name to verify (default: the address's host).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Reads the CA certificate (`--tls-ca`), checking it is PEM.
    pub fn from_file(ca: &std::path::Path, domain: Option<String>) -> Result<Self> {
        let ca_pem = std::fs::read(ca).map_err(|e| WorkerError::io(ca, e))?;
        if !String::from_utf8_lossy(&ca_pem).contains("BEGIN CERTIFICATE") {
            return Err(WorkerError::invalid("--tls-ca", format!("{}: not a PEM certificate", ca.display())));
        }
        Ok(Self { ca_pem, domain })
    }
}

/// Where the coordinator is and how to reach it.
#[derive(Debug, Clone)]
pub struct CoordinatorEndpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    /// TLS trust (needed with `https://`).
    pub tls: Option<ClientTls>,
}

/// Runs one call with a deadline: its answer, or an error naming the call and the coordinator
/// (refused, or not answered in time).
pub async fn within<T>(
    call: &'static str,
    address: &str,
    deadline: Duration,
    future: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(call_failed(call, address)(status)),
        Err(_) => Err(WorkerError::Coordinator {
            call,
            address: address.to_string(),
            message: format!("no answer within {deadline:?}: the coordinator is stopped, overloaded or unreachable"),
        }),
    }
}

/// Turns a refused call into an error naming the call and the coordinator.
pub fn call_failed<'a>(call: &'static str, address: &'a str) -> impl Fn(tonic::Status) -> WorkerError + 'a {
    move |status| WorkerError::Coordinator {
        call,
        address: address.to_string(),
        message: format!("{} ({:?})", status.message(), status.code()),
    }
}

/// Connects to the coordinator with the token; retries refused connections until `patience`
/// has passed (a coordinator may still be packing its data when workers start).
pub async fn connect(endpoint: &CoordinatorEndpoint, token: &str, patience: Duration) -> Result<Client> {
    let url = &endpoint.url;
    let refused = |message: String| WorkerError::Coordinator { call: "connect", address: url.clone(), message };
    let mut channel = Channel::from_shared(url.clone())
        .map_err(|e| refused(format!("not a coordinator address: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        // HTTP/2 pings find a coordinator that stopped answering (SIGSTOP, a dead host) even
        // while a call is waiting: the connection is closed and the call fails.
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    match &endpoint.tls {
        Some(tls) => {
            if !url.starts_with("https://") {
                return Err(WorkerError::invalid(
                    "--tls-ca",
                    format!("needs an https:// coordinator address, got {url:?}"),
                ));
            }
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            channel = channel.tls_config(config).map_err(|e| refused(format!("TLS configuration: {e}")))?;
        }
        None if url.starts_with("https://") => {
            return Err(WorkerError::invalid(
                "--coordinator",
                "an https:// coordinator address needs --tls-ca (the certificate that signed the coordinator's)",
            ));
        }
        None => {}
    }
    let deadline = Instant::now() + patience;
    let channel = loop {
        match channel.connect().await {
            Ok(channel) => break channel,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, coordinator = %url, "coordinator not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => {
                let source = std::error::Error::source(&error).map(|s| format!(": {s}")).unwrap_or_default();
                return Err(refused(format!("unreachable for {patience:?} ({error}{source})")));
            }
        }
    };
    let value: MetadataValue<_> =
        format!("Bearer {token}").parse().map_err(|_| WorkerError::invalid("token", "not valid header text"))?;
    Ok(CoordinatorClient::with_interceptor(channel, Auth(value)))
}

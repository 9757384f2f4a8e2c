//! The command lines of the worker's processes, each one type that clap parses (`rosetta
//! worker`, `rosetta export`) and that turns back into its arguments (`to_args()`): every
//! launcher (the local supervisor, ssh, Slurm, Kubernetes, the experiment) builds a
//! [`WorkerProcessConfig`] and starts `rosetta` with its arguments, and the binary parses them
//! into the same value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};
use rosetta_common::argv::{Argv, parse_seconds};

use crate::device::DeviceSpec;

/// The subcommand of a worker process.
pub const WORKER_SUBCOMMAND: &str = "worker";

/// Where a worker finds its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorAddress {
    /// A URL: `http://HOST:PORT`, or `https://HOST:PORT` with `--tls-ca`.
    Url(String),
    /// The `coordinator.json` the coordinator writes into its run directory once it serves.
    File(PathBuf),
}

/// One worker process (one per device): how to reach the coordinator, prove it belongs to the
/// job, and where to listen for its ring peers. What it trains comes from the coordinator.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(group(ArgGroup::new("coordinator_address").required(true).args(["coordinator", "coordinator_file"])))]
pub struct WorkerProcessConfig {
    /// Coordinator address, e.g. `http://10.0.0.1:50051` (`https://` with `--tls-ca`).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Or the `coordinator.json` the coordinator writes into its run directory once it serves
    /// (on a file system every worker sees): the worker waits for it, within
    /// `--connect-timeout`, and connects to the address it names. For launchers whose
    /// coordinator takes any free port (Slurm).
    #[arg(long)]
    pub coordinator_file: Option<PathBuf>,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Device: `cpu`, `cuda` or `cuda:N` (default: the run config's `training.device`).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Address this worker listens on for the ring (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ring_listen: SocketAddr,
    /// Host name announced to the coordinator [default: the ring address's IP].
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
    /// Seconds to keep trying to reach a coordinator that does not listen yet (it may still be
    /// packing the training data).
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub connect_timeout: Duration,
    /// Seconds a call to the coordinator may take (rendezvous and checkpoint commits get longer);
    /// heartbeats unanswered for as long end the worker too: a coordinator that hangs or
    /// vanishes ends its workers within about this bound.
    #[arg(long, default_value = "20", value_parser = parse_rpc_timeout)]
    pub rpc_timeout: Duration,
}

fn parse_rpc_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_seconds(text)?;
    if timeout < Duration::from_secs(1) {
        return Err(format!("{text:?}: at least 1 second"));
    }
    Ok(timeout)
}

impl WorkerProcessConfig {
    /// A worker of the coordinator at `address` with every other setting at its default.
    pub fn new(address: CoordinatorAddress) -> Self {
        let (coordinator, coordinator_file) = match address {
            CoordinatorAddress::Url(url) => (Some(url), None),
            CoordinatorAddress::File(path) => (None, Some(path)),
        };
        Self {
            coordinator,
            coordinator_file,
            token_file: None,
            device: None,
            ring_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            host: None,
            threads: None,
            tls_ca: None,
            tls_domain: None,
            connect_timeout: Duration::from_secs(60),
            rpc_timeout: Duration::from_secs(20),
        }
    }

    /// Where the coordinator is (clap requires exactly one of the two flags).
    pub fn address(&self) -> Option<CoordinatorAddress> {
        match (&self.coordinator, &self.coordinator_file) {
            (Some(url), None) => Some(CoordinatorAddress::Url(url.clone())),
            (None, Some(path)) => Some(CoordinatorAddress::File(path.clone())),
            _ => None,
        }
    }

    /// The arguments of `rosetta worker` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        Argv::new(WORKER_SUBCOMMAND)
            .optional("--coordinator", self.coordinator.as_ref())
            .optional_path("--coordinator-file", self.coordinator_file.as_deref())
            .optional_path("--token-file", self.token_file.as_deref())
            .optional("--device", self.device)
            .value("--ring-listen", self.ring_listen)
            .optional("--host", self.host.as_ref())
            .optional("--threads", self.threads)
            .optional_path("--tls-ca", self.tls_ca.as_deref())
            .optional("--tls-domain", self.tls_domain.as_ref())
            .duration("--connect-timeout", self.connect_timeout)
            .duration("--rpc-timeout", self.rpc_timeout)
    }
}

/// `rosetta export`: a checkpoint (or the model a run config starts from) written as a
/// sentence-transformers directory.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ExportCommand {
    /// A checkpoint directory (`RUN/checkpoints/step-N`) or a run directory (its latest checkpoint).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Export instead the model a run config's `model:` section starts from, before any
    /// training (a preset initialised from `model.seed`): the zero-shot baseline, and one
    /// initialisation several runs can share as `model.path`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The directory to write (replaced only once the new export is complete).
    #[arg(long)]
    pub out: PathBuf,
}

impl ExportCommand {
    /// The arguments of `rosetta export` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        Argv::new("export")
            .optional_path("--model", self.model.as_deref())
            .optional_path("--config", self.config.as_deref())
            .path("--out", &self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    #[derive(Debug, Parser)]
    #[command(name = "rosetta")]
    enum Cli {
        Worker(WorkerProcessConfig),
        Export(ExportCommand),
    }

    fn parse(argv: Argv) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rosetta".to_string()).chain(argv.into_vec()))
    }

    fn path() -> impl Strategy<Value = PathBuf> {
        "/[a-z ]{1,8}/[a-z.'-]{1,8}".prop_map(PathBuf::from)
    }

    fn worker() -> impl Strategy<Value = WorkerProcessConfig> {
        (
            prop_oneof![
                "https?://[a-z]{1,6}:[0-9]{1,5}".prop_map(CoordinatorAddress::Url),
                path().prop_map(CoordinatorAddress::File)
            ],
            proptest::option::of(path()),
            proptest::option::of(prop_oneof![Just(DeviceSpec::Cpu), (0usize..8).prop_map(DeviceSpec::Cuda)]),
            (any::<[u8; 4]>(), any::<u16>()),
            proptest::option::of("[a-z][a-z0-9 -]{0,10}"),
            proptest::option::of(1usize..64),
            proptest::option::of((path(), proptest::option::of("[a-z.]{1,10}"))),
            (0u64..86_400, 0u32..1_000_000_000, 1u64..86_400),
        )
            .prop_map(
                |(address, token_file, device, (ip, port), host, threads, tls, (connect, nanos, rpc))| {
                    let mut config = WorkerProcessConfig::new(address);
                    config.token_file = token_file;
                    config.device = device;
                    config.ring_listen = SocketAddr::from((ip, port));
                    config.host = host;
                    config.threads = threads;
                    (config.tls_ca, config.tls_domain) = tls.map_or((None, None), |(ca, domain)| (Some(ca), domain));
                    config.connect_timeout = Duration::new(connect, nanos);
                    config.rpc_timeout = Duration::from_secs(rpc);
                    config
                },
            )
    }

    proptest! {
        #[test]
        fn a_worker_command_line_parses_back_into_its_config(config in worker()) {
            match parse(config.to_args()) {
                Ok(Cli::Worker(parsed)) => prop_assert_eq!(parsed, config),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn a_worker_needs_exactly_one_coordinator_address() {
        let mut both = WorkerProcessConfig::new(CoordinatorAddress::Url("http://a:1".into()));
        both.coordinator_file = Some("/run/coordinator.json".into());
        assert!(both.address().is_none());
        let err = parse(both.to_args()).unwrap_err().to_string();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = parse(Argv::new("worker")).unwrap_err().to_string();
        assert!(err.contains("--coordinator"), "{err}");
        let err = parse(Argv::new("worker").value("--coordinator", "http://a:1").value("--rpc-timeout", "0.5"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1 second"), "{err}");
    }

    #[test]
    fn an_export_command_line_parses_back() {
        for command in [
            ExportCommand { model: Some("/runs/a/checkpoints/step-9".into()), config: None, out: "/x y/m".into() },
            ExportCommand { model: None, config: Some("/c/run.yaml".into()), out: "/m".into() },
        ] {
            match parse(command.to_args()) {
                Ok(Cli::Export(parsed)) => assert_eq!(parsed, command),
                other => panic!("{other:?}"),
            }
        }
    }
}

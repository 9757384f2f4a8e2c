//! The coordinator's command line, `rosetta coordinator` ([`CoordinatorCommand`]): one type
//! that clap parses and that turns back into its arguments, so that every launcher (ssh,
//! Slurm, Kubernetes) starts the coordinator from a typed value; and the start flags
//! ([`StartFlags`]) it shares with `rosetta train`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use rosetta_common::argv::Argv;

use crate::job::StartMode;

/// The subcommand of a coordinator process.
pub const COORDINATOR_SUBCOMMAND: &str = "coordinator";

/// How a run starts: fresh (the default), resumed, over a cleared run directory, or resumed
/// when there is something to resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct StartFlags {
    /// Continue from the newest committed checkpoint of the run directory whose files verify.
    #[arg(long, conflicts_with_all = ["overwrite", "auto_resume"])]
    pub resume: bool,
    /// Delete the run directory's checkpoints and evaluations first (a fresh run refuses a run
    /// directory that holds checkpoints).
    #[arg(long, conflicts_with = "auto_resume")]
    pub overwrite: bool,
    /// Resume when the run directory holds a committed checkpoint whose files verify, start
    /// fresh otherwise (what a requeued batch job or a restarted pod runs with).
    #[arg(long)]
    pub auto_resume: bool,
}

impl StartFlags {
    /// The flags of `mode`.
    pub fn of(mode: StartMode) -> Self {
        let mut flags = Self::default();
        match mode {
            StartMode::Fresh => {}
            StartMode::Resume => flags.resume = true,
            StartMode::Overwrite => flags.overwrite = true,
            StartMode::Auto => flags.auto_resume = true,
        }
        flags
    }

    /// The start mode the flags ask for.
    pub fn mode(self) -> StartMode {
        if self.resume {
            StartMode::Resume
        } else if self.overwrite {
            StartMode::Overwrite
        } else if self.auto_resume {
            StartMode::Auto
        } else {
            StartMode::Fresh
        }
    }

    /// Adds the flags to `argv`.
    pub fn append_to(self, argv: Argv) -> Argv {
        argv.flag("--resume", self.resume).flag("--overwrite", self.overwrite).flag("--auto-resume", self.auto_resume)
    }
}

/// The coordinator alone, for clusters launched elsewhere: workers join it with `rosetta worker`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CoordinatorCommand {
    /// Run config (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// gRPC address to listen on (port 0: any free port; `RUN/coordinator.json` records the
    /// one taken, and workers started with `--coordinator-file` find it there).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the Prometheus endpoint [default: the run config's `job.metrics_address`].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Host name or address workers reach this coordinator by, as `RUN/coordinator.json`
    /// records it [default: the listen address, or this machine's host name when it listens on
    /// every interface].
    #[arg(long)]
    pub advertise: Option<String>,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Fresh, resumed or overwritten.
    #[command(flatten)]
    pub start: StartFlags,
    /// Serve gRPC over TLS with this PEM certificate (chain); needs `--tls-key`. Workers then
    /// connect with `https://` and `--tls-ca`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl CoordinatorCommand {
    /// A coordinator of the run config at `config` listening on `listen`, started `start`.
    pub fn new(config: PathBuf, listen: SocketAddr, start: StartMode) -> Self {
        Self {
            config,
            listen,
            metrics_listen: None,
            advertise: None,
            token_file: None,
            start: StartFlags::of(start),
            tls_cert: None,
            tls_key: None,
        }
    }

    /// The arguments of `rosetta coordinator` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        let argv = Argv::new(COORDINATOR_SUBCOMMAND)
            .path("--config", &self.config)
            .value("--listen", self.listen)
            .optional("--metrics-listen", self.metrics_listen)
            .optional("--advertise", self.advertise.as_ref())
            .optional_path("--token-file", self.token_file.as_deref());
        self.start
            .append_to(argv)
            .optional_path("--tls-cert", self.tls_cert.as_deref())
            .optional_path("--tls-key", self.tls_key.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "rosetta")]
    enum Cli {
        Coordinator(CoordinatorCommand),
    }

    fn parse(argv: Argv) -> Result<CoordinatorCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("rosetta".to_string()).chain(argv.into_vec()))
            .map(|Cli::Coordinator(command)| command)
    }

    #[test]
    fn coordinator_command_lines_parse_back_for_every_start_mode() {
        for mode in [StartMode::Fresh, StartMode::Resume, StartMode::Overwrite, StartMode::Auto] {
            let mut command =
                CoordinatorCommand::new("/runs/a b/deploy/run.yaml".into(), "0.0.0.0:0".parse().unwrap(), mode);
            command.advertise = Some("node-1".into());
            command.metrics_listen = Some("0.0.0.0:9464".parse().unwrap());
            command.token_file = Some("/runs/a b/deploy/token".into());
            (command.tls_cert, command.tls_key) = (Some("/tls/c.pem".into()), Some("/tls/k.pem".into()));
            let parsed = parse(command.to_args()).unwrap();
            assert_eq!(parsed, command);
            assert_eq!(parsed.start.mode(), mode);
        }
        let bare = CoordinatorCommand::new("/c.yaml".into(), "127.0.0.1:50051".parse().unwrap(), StartMode::Fresh);
        assert_eq!(parse(bare.to_args()).unwrap(), bare);
        let both =
            Argv::new("coordinator").path("--config", "/c".as_ref()).flag("--resume", true).flag("--overwrite", true);
        assert!(parse(both).unwrap_err().to_string().contains("cannot be used with"));
    }
}

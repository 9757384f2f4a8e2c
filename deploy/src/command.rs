//! The command lines of launching: `rosetta train` ([`TrainCommand`], a local cluster) and
//! `rosetta deploy` ([`DeployCommand`], any target); each one type that clap parses and that
//! turns back into its arguments, so that the experiment starts its cells from typed values.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rosetta_common::argv::Argv;
use rosetta_coordinator::command::StartFlags;

/// Train on this machine: a coordinator plus N worker processes (loopback TCP ring).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TrainCommand {
    /// Run config (YAML): version, data, schedule, model, training, job, evaluation.
    #[arg(long)]
    pub config: PathBuf,
    /// Worker processes to start (overrides `job.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Fresh, resumed or overwritten.
    #[command(flatten)]
    pub start: StartFlags,
    /// Stop cleanly after this many steps (with a checkpoint there), to `--resume` later.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// No progress bar or lines.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainCommand {
    /// A run of the config at `config` with every other setting at its default.
    pub fn new(config: PathBuf) -> Self {
        Self { config, workers: None, start: StartFlags::default(), stop_after: None, quiet: false }
    }

    /// The arguments of `rosetta train` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        let argv = Argv::new("train").path("--config", &self.config).optional("--workers", self.workers);
        self.start.append_to(argv).optional("--stop-after", self.stop_after).flag("--quiet", self.quiet)
    }
}

/// Where a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// This machine: a coordinator and one worker process per `job.workers` (as `rosetta train`).
    Local,
    /// The hosts of `deploy.ssh.hosts`, over ssh.
    Ssh,
    /// A Slurm batch job (`deploy.slurm`).
    Slurm,
    /// Kubernetes manifests (`deploy.kubernetes`), applied with `kubectl apply -k`.
    Kubernetes,
}

impl Target {
    /// The name on the command line and in the `deploy:` section.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ssh => "ssh",
            Self::Slurm => "slurm",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// What `rosetta deploy` does besides launching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct DeployActions {
    /// Write what would be submitted into RUN/deploy/ and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: show the state of the run's job.
    #[arg(long, conflicts_with_all = ["cancel", "dry_run"])]
    pub status: bool,
    /// Slurm: cancel the run's job.
    #[arg(long, conflicts_with_all = ["status", "dry_run"])]
    pub cancel: bool,
}

/// Launch a run on a target; what is submitted is written to RUN/deploy/ first.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DeployCommand {
    /// Where to run.
    #[arg(value_enum)]
    pub target: Target,
    /// Run config (YAML) with a `deploy:` section for the target.
    #[arg(long)]
    pub config: PathBuf,
    /// Nodes (overrides `deploy.slurm.nodes` / `deploy.kubernetes.nodes`).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// GPUs per node, one worker each (overrides the section's `gpus_per_node`, on ssh its
    /// `gpus_per_host`); `training.device` must be `cuda` with GPUs and `cpu` without.
    #[arg(long)]
    pub gpus_per_node: Option<usize>,
    /// Fresh, resumed or overwritten (ssh, local; Slurm and Kubernetes jobs resume by themselves
    /// and refuse these flags).
    #[command(flatten)]
    pub start: StartFlags,
    /// Dry run, status or cancel.
    #[command(flatten)]
    pub actions: DeployActions,
}

impl DeployCommand {
    /// A launch of the config at `config` on `target` with every other setting at its default.
    pub fn new(target: Target, config: PathBuf) -> Self {
        Self {
            target,
            config,
            nodes: None,
            gpus_per_node: None,
            start: StartFlags::default(),
            actions: DeployActions::default(),
        }
    }

    /// The arguments of `rosetta deploy` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        let argv = Argv::new("deploy")
            .positional(self.target.name())
            .path("--config", &self.config)
            .optional("--nodes", self.nodes)
            .optional("--gpus-per-node", self.gpus_per_node);
        self.start
            .append_to(argv)
            .flag("--dry-run", self.actions.dry_run)
            .flag("--status", self.actions.status)
            .flag("--cancel", self.actions.cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rosetta_coordinator::job::StartMode;

    #[derive(Debug, Parser)]
    #[command(name = "rosetta")]
    enum Cli {
        Train(TrainCommand),
        Deploy(DeployCommand),
    }

    fn parse(argv: Argv) -> Cli {
        Cli::try_parse_from(std::iter::once("rosetta".to_string()).chain(argv.into_vec())).unwrap()
    }

    #[test]
    fn launch_command_lines_parse_back_into_their_values() {
        let mut train = TrainCommand::new("/cells/a b/config.yaml".into());
        for mode in [StartMode::Fresh, StartMode::Resume, StartMode::Overwrite, StartMode::Auto] {
            train.start = StartFlags::of(mode);
            train.workers = Some(3);
            train.stop_after = Some(17);
            train.quiet = true;
            match parse(train.to_args()) {
                Cli::Train(parsed) => assert_eq!(parsed, train),
                other => panic!("{other:?}"),
            }
        }
        for target in [Target::Local, Target::Ssh, Target::Slurm, Target::Kubernetes] {
            let mut deploy = DeployCommand::new(target, "/r/run.yaml".into());
            deploy.nodes = Some(2);
            deploy.gpus_per_node = Some(8);
            deploy.actions.status = true;
            match parse(deploy.to_args()) {
                Cli::Deploy(parsed) => assert_eq!(parsed, deploy),
                other => panic!("{other:?}"),
            }
        }
    }
}

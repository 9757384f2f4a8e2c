//! `rosetta deploy TARGET --config run.yaml`: the run on this machine (`local`), on hosts over
//! ssh, as a Slurm batch job, or as Kubernetes manifests. Every remote target writes what it
//! submits into `RUN/deploy/` first; `--dry-run` stops there.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rosetta::run_config::{in_file, read};
use rosetta_deploy::run::DeployRun;
use rosetta_deploy::section::{DeploySection, NodeShape};
use rosetta_deploy::{kubernetes, slurm, ssh};

use crate::train_cmd::{TrainArgs, start_mode};

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

/// Arguments of `rosetta deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Where to run.
    #[arg(value_enum)]
    pub target: Target,
    /// Run config (YAML) with a `deploy:` section for the target.
    #[arg(long)]
    pub config: PathBuf,
    /// Nodes (overrides `deploy.slurm.nodes` / `deploy.kubernetes.nodes`).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// GPUs per node, one worker each (overrides the section's `gpus_per_node`).
    #[arg(long)]
    pub gpus_per_node: Option<usize>,
    /// Write what would be submitted into RUN/deploy/ and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue from the newest verified checkpoint (ssh, local; Slurm and Kubernetes resume by themselves).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Delete the run directory's checkpoints first (ssh, local).
    #[arg(long)]
    pub overwrite: bool,
    /// Slurm: show the state of the run's job.
    #[arg(long, conflicts_with_all = ["cancel", "dry_run"])]
    pub status: bool,
    /// Slurm: cancel the run's job.
    #[arg(long, conflicts_with_all = ["status", "dry_run"])]
    pub cancel: bool,
}

/// Runs `rosetta deploy`.
pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    if args.target == Target::Local {
        return crate::train_cmd::train(TrainArgs {
            config: args.config,
            workers: None,
            resume: args.resume,
            overwrite: args.overwrite,
            stop_after: None,
            quiet: false,
        });
    }
    let (mut raw, base) = read(&args.config)?;
    let section = raw.deploy.clone().unwrap_or_default();
    let shape = shape(&section, &args).map_err(in_file(&args.config))?;
    let job = raw.job.as_mut().context("job: missing (e.g. `job: {steps: 200}`)")?;
    job.workers = shape.workers();
    job.elastic.min_workers = job.elastic.min_workers.map(|min| min.min(shape.workers()));
    // Prometheus scrapes the coordinator from elsewhere.
    job.metrics_address = format!("0.0.0.0:{}", section.metrics_port);
    let config = raw.build(&base).map_err(in_file(&args.config))?;
    let run = DeployRun {
        run_dir: config.job.run_dir.clone(),
        run_name: config.job.run_name.clone(),
        run_config_yaml: config.resolved.to_yaml(),
        steps: config.job.steps,
        binary: match &section.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().context("locating the rosetta binary")?,
        },
        env: section.env.clone(),
        port: section.port,
        metrics_port: section.metrics_port,
    };
    if args.status {
        println!("{}", slurm::status(&run)?);
        return Ok(());
    }
    if args.cancel {
        println!("cancelled Slurm job {}", slurm::cancel(&run)?);
        return Ok(());
    }
    let files = run.write_files()?;
    match args.target {
        Target::Local => unreachable!("handled above"),
        Target::Slurm => {
            let Some(slurm_section) = &section.slurm else { bail!("{}: deploy.slurm: missing", args.config.display()) };
            let script = slurm::write_batch_script(&run, slurm_section, shape)?;
            println!("batch script {}", script.display());
            if args.dry_run {
                println!("dry run: submit it with `{}`", slurm::manual_command(&script));
                return Ok(());
            }
            let id = slurm::submit(&run, &script)?;
            println!("submitted Slurm job {id}: {} workers on {} node(s)", shape.workers(), shape.nodes);
            println!("log: {}", run.deploy_dir().join(format!("slurm/slurm-{id}.log")).display());
            println!(
                "watch: rosetta deploy slurm --config {c} --status (or squeue -j {id}); stop: rosetta deploy slurm --config {c} --cancel",
                c = args.config.display()
            );
        }
        Target::Ssh => {
            let Some(ssh_section) = &section.ssh else { bail!("{}: deploy.ssh: missing", args.config.display()) };
            let processes = ssh::plan(&run, ssh_section, shape, &files, start_mode(args.resume, args.overwrite));
            let commands = ssh::write_commands(&run, ssh_section, &processes)?;
            println!("commands {}", commands.display());
            if args.dry_run {
                return Ok(());
            }
            ssh::run(&run, ssh_section, &processes, Duration::from_secs(600))?;
            println!("the run finished; checkpoints in {}", run.run_dir.checkpoints().display());
        }
        Target::Kubernetes => {
            let Some(k8s) = &section.kubernetes else { bail!("{}: deploy.kubernetes: missing", args.config.display()) };
            let mut paths = config.data.train.clone();
            paths.extend(config.data.benchmarks.iter().cloned());
            paths.push(config.data.store_root.clone());
            paths.push(run.run_dir.root().to_path_buf());
            kubernetes::check_paths(k8s, &paths)?;
            let dir = kubernetes::write_manifests(&run, k8s, shape, &files, config.job.max_restarts)?;
            println!("manifests {}", dir.display());
            if args.dry_run {
                println!("dry run: apply them with `kubectl apply -k {}`", dir.display());
                return Ok(());
            }
            kubernetes::apply(&dir)?;
            println!("applied; watch: kubectl -n {} get jobs,pods -l rosetta/run", k8s.namespace);
        }
    }
    Ok(())
}

fn shape(section: &DeploySection, args: &DeployArgs) -> Result<NodeShape, rosetta_common::ConfigProblems> {
    let missing =
        |target: &str| rosetta_common::ConfigProblems::one(format!("deploy.{target}"), "missing: this target needs it");
    let mut shape = match args.target {
        Target::Local => unreachable!("handled by the caller"),
        Target::Slurm => section.slurm.as_ref().ok_or_else(|| missing("slurm"))?.shape()?,
        Target::Ssh => section.ssh.as_ref().ok_or_else(|| missing("ssh"))?.shape()?,
        Target::Kubernetes => section.kubernetes.as_ref().ok_or_else(|| missing("kubernetes"))?.shape()?,
    };
    if let Some(nodes) = args.nodes {
        if args.target == Target::Ssh {
            return Err(rosetta_common::ConfigProblems::one("--nodes", "the ssh target runs on deploy.ssh.hosts"));
        }
        shape.nodes = nodes.max(1);
    }
    if let Some(gpus) = args.gpus_per_node {
        (shape.gpus, shape.workers_per_node) = (gpus > 0, gpus.max(1));
    }
    Ok(shape)
}

//! `rosetta deploy ssh|slurm|kubernetes`: the run config made for the target (its workers, a
//! metrics endpoint reachable from elsewhere), the files every target submits with (the
//! config, the token, the run's TLS authority), then what the target does with them. Every
//! target writes what it submits into `RUN/deploy/` first; `--dry-run` stops there.

use std::path::PathBuf;
use std::time::Duration;

use rosetta_common::ConfigProblems;
use rosetta_worker_config::model::ModelSource;

use crate::command::{DeployCommand, Target};
use crate::error::{DeployError, Result};
use crate::run::DeployRun;
use crate::run_config::{RunConfig, in_file, read};
use crate::section::{DEFAULT_METRICS_PORT, DEFAULT_PORT, DeploySection, NodeShape};
use crate::tls::RunTls;
use crate::{kubernetes, slurm, ssh};

/// A run made ready for a remote target: its built config, what the launchers need of it, and
/// its `deploy:` section.
#[derive(Debug, Clone)]
pub struct PreparedDeployment {
    /// The built run config (for the target's workers and metrics address).
    pub config: RunConfig,
    /// What the launchers need.
    pub run: DeployRun,
    /// The `deploy:` section.
    pub section: DeploySection,
    /// Workers per node and nodes.
    pub shape: NodeShape,
}

/// Builds the run of `command` for its target (no file written yet).
pub fn prepare(command: &DeployCommand) -> Result<PreparedDeployment> {
    let (mut raw, base) = read(&command.config)?;
    let section = raw.deploy.clone().unwrap_or_default();
    let mut problems = ConfigProblems::new();
    problems.absorb(section.check());
    let shape = problems.absorb(shape(&section, command));
    if command.target != Target::Slurm && (command.actions.status || command.actions.cancel) {
        problems.push("--status/--cancel", "only the Slurm target has a job to show or cancel");
    }
    if matches!(command.target, Target::Slurm | Target::Kubernetes) && (command.start.resume || command.start.overwrite)
    {
        problems.push(
            "--resume/--overwrite",
            format!(
                "{} jobs resume by themselves (--auto-resume); to start over, delete the run directory's checkpoints \
                 or give the run another job.run_dir",
                command.target.name()
            ),
        );
    }
    let Some(shape) = shape.filter(|_| problems.is_empty()) else {
        return Err(in_file(&command.config)(problems));
    };
    let job = raw.job.as_mut().ok_or_else(|| DeployError::Config {
        file: command.config.clone(),
        message: "job: missing (e.g. `job: {steps: 200}`)".into(),
    })?;
    job.workers = shape.workers();
    job.elastic.min_workers = job.elastic.min_workers.map(|min| min.min(shape.workers()));
    // Slurm jobs may share a node: any free ports there, found through RUN/coordinator.json.
    let (port, metrics_port) = match command.target {
        Target::Slurm => (section.port.unwrap_or(0), section.metrics_port.unwrap_or(0)),
        _ => (section.port.unwrap_or(DEFAULT_PORT), section.metrics_port.unwrap_or(DEFAULT_METRICS_PORT)),
    };
    // Prometheus scrapes the coordinator from elsewhere.
    job.metrics_address = format!("0.0.0.0:{metrics_port}");
    let config = raw.build(&base).map_err(in_file(&command.config))?;
    check_devices(&config, &section, command.target, shape).map_err(in_file(&command.config))?;
    let binary = match (&section.binary, command.target, &section.kubernetes) {
        (_, Target::Kubernetes, Some(kubernetes)) => kubernetes.binary.clone(),
        (Some(binary), _, _) => binary.clone(),
        (None, _, _) => crate::coordinator::this_program()?,
    };
    if !section.tls {
        eprintln!(
            "warning: deploy.tls is false: the job's token and the ring secret cross the network in clear \
             (anyone who can reach the coordinator's port can read them and join the job)"
        );
    }
    let run = DeployRun {
        run_dir: config.job.run_dir.clone(),
        run_name: config.job.run_name.clone(),
        run_config_yaml: config.resolved.to_yaml(),
        steps: config.job.steps,
        binary,
        env: section.env.clone(),
        port,
        metrics_port,
        tls: None,
    };
    Ok(PreparedDeployment { config, run, section, shape })
}

/// Runs `rosetta deploy` for a remote target (`local` is `rosetta train`).
pub fn deploy(command: &DeployCommand) -> Result<()> {
    let PreparedDeployment { config, mut run, section, shape } = prepare(command)?;
    if command.actions.status {
        println!("{}", slurm::status(&run)?);
        return Ok(());
    }
    if command.actions.cancel {
        println!("cancelled Slurm job {}", slurm::cancel(&run)?);
        return Ok(());
    }
    let missing = |target: &str| DeployError::Config {
        file: command.config.clone(),
        message: format!("deploy.{target}: missing: this target needs it"),
    };
    if command.target == Target::Kubernetes {
        // Before anything is written: the pods see only the volume.
        let kubernetes = section.kubernetes.as_ref().ok_or_else(|| missing("kubernetes"))?;
        kubernetes::check_paths(kubernetes, &pod_paths(&config)).map_err(|e| match e {
            DeployError::Invalid(problems) => in_file(&command.config)(problems),
            other => other,
        })?;
    }
    if matches!(command.target, Target::Slurm | Target::Kubernetes) && !command.actions.dry_run {
        // A finished run's job would only resume at its end and exit.
        if let Some(step) = run.run_dir.latest_checkpoint().ok().flatten().filter(|step| step + 1 >= config.job.steps) {
            return Err(DeployError::Config {
                file: command.config.clone(),
                message: format!(
                    "{} has finished: its last checkpoint is after step {step} of {}; raise job.steps to train on, \
                     or give it another job.run_dir",
                    run.run_dir.root().display(),
                    config.job.steps
                ),
            });
        }
    }
    let files = run.write_files()?;
    if section.tls {
        let mut hosts = Vec::new();
        if let Some(ssh) = &section.ssh {
            hosts.extend(ssh.hosts.iter().map(|h| h.rsplit('@').next().unwrap_or(h).to_string()));
        }
        if let Some(kubernetes) = &section.kubernetes {
            hosts.push(kubernetes::coordinator_host(&run, kubernetes));
        }
        run.tls = Some(RunTls::ensure(&run.deploy_dir().join("tls"), &hosts)?);
    }
    match command.target {
        Target::Local => Err(DeployError::Invalid(ConfigProblems::one("target", "`local` runs as `rosetta train`"))),
        Target::Slurm => {
            let slurm_section = section.slurm.as_ref().ok_or_else(|| missing("slurm"))?;
            let script = slurm::write_batch_script(&run, slurm_section, shape, &files)?;
            println!("batch script {}", script.display());
            if command.actions.dry_run {
                println!("dry run: submit it with `{}`", slurm::manual_command(&script));
                return Ok(());
            }
            let id = slurm::submit(&run, &script)?;
            println!("submitted Slurm job {id}: {} workers on {} node(s)", shape.workers(), shape.nodes);
            println!("log: {}", run.deploy_dir().join(format!("slurm/slurm-{id}.log")).display());
            println!(
                "watch: rosetta deploy slurm --config {c} --status (or squeue -j {id}); stop: rosetta deploy slurm --config {c} --cancel",
                c = command.config.display()
            );
            Ok(())
        }
        Target::Ssh => {
            let ssh_section = section.ssh.as_ref().ok_or_else(|| missing("ssh"))?;
            let processes = ssh::plan(&run, ssh_section, shape, &files, command.start.mode());
            let commands = ssh::write_commands(&run, ssh_section, &processes)?;
            println!("commands {}", commands.display());
            if command.actions.dry_run {
                println!("dry run: run them by hand with `sh {}`, or drop --dry-run", commands.display());
                return Ok(());
            }
            ssh::run(&run, ssh_section, &processes, Duration::from_secs(600))?;
            println!("the run finished; checkpoints in {}", run.run_dir.checkpoints().display());
            Ok(())
        }
        Target::Kubernetes => {
            let kubernetes = section.kubernetes.as_ref().ok_or_else(|| missing("kubernetes"))?;
            if !kubernetes.add_capabilities.is_empty() {
                eprintln!(
                    "warning: deploy.kubernetes.add_capabilities ({}) takes the pods out of the Pod Security \
                     \"restricted\" profile: the namespace must allow \"baseline\" or \"privileged\"",
                    kubernetes.add_capabilities.join(", ")
                );
            }
            let dir = kubernetes::write_manifests(&run, kubernetes, shape, &files, config.job.max_restarts)?;
            println!("manifests {}", dir.display());
            if command.actions.dry_run {
                let claim = dir.join(kubernetes::CLAIM_MANIFEST);
                if claim.is_file() {
                    println!(
                        "dry run: create the volume with `kubectl apply -f {}` (kept apart: deleting the run never \
                         deletes the data), then apply the run with `kubectl apply -k {}`",
                        claim.display(),
                        dir.display()
                    );
                } else {
                    println!("dry run: apply them with `kubectl apply -k {}`", dir.display());
                }
                return Ok(());
            }
            kubernetes::apply(&dir)?;
            println!("applied; watch: kubectl -n {} get jobs,pods -l rosetta/run", kubernetes.namespace);
            Ok(())
        }
    }
}

/// Every path a pod of the run reads or writes, with the field it comes from.
pub fn pod_paths(config: &RunConfig) -> Vec<(String, PathBuf)> {
    let mut paths: Vec<(String, PathBuf)> =
        config.data.train.iter().enumerate().map(|(i, p)| (format!("data.train[{i}]"), p.clone())).collect();
    paths.extend(config.data.benchmarks.iter().enumerate().map(|(i, p)| (format!("data.benchmarks[{i}]"), p.clone())));
    paths.push(("data.store".into(), config.data.store_root.clone()));
    paths.push(("job.run_dir".into(), config.job.run_dir.root().to_path_buf()));
    match &config.model.source {
        ModelSource::Directory(path) => paths.push(("model.path".into(), path.clone())),
        ModelSource::Preset { tokenizer, .. } => paths.push(("model.tokenizer".into(), tokenizer.clone())),
    }
    paths
}

/// The devices the target gives each worker agree with `training.device`, and the coordinator
/// has the device its final evaluation runs on.
fn check_devices(
    config: &RunConfig,
    section: &DeploySection,
    target: Target,
    shape: NodeShape,
) -> std::result::Result<(), ConfigProblems> {
    let mut problems = ConfigProblems::new();
    let gpus_key = match target {
        Target::Ssh => "deploy.ssh.gpus_per_host",
        Target::Slurm => "deploy.slurm.gpus_per_node",
        Target::Kubernetes | Target::Local => "deploy.kubernetes.gpus_per_node",
    };
    match (shape.gpus, config.training.device.is_cuda()) {
        (true, false) => problems.push(
            "training.device",
            format!(
                "{}, but {gpus_key} gives each worker a GPU: set training.device: cuda (or {gpus_key}: 0)",
                config.training.device
            ),
        ),
        (false, true) => problems.push(
            "training.device",
            format!(
                "{}, but {gpus_key} is 0 (CPU workers): set training.device: cpu, or give the GPUs",
                config.training.device
            ),
        ),
        _ => {}
    }
    if let (Target::Kubernetes, Some(evaluation), Some(kubernetes)) = (target, &config.evaluation, &section.kubernetes)
    {
        let device = evaluation.device.unwrap_or(config.training.device);
        if evaluation.at_end && device.is_cuda() && kubernetes.coordinator_gpus == 0 {
            problems.push(
                "deploy.kubernetes.coordinator_gpus",
                format!(
                    "0, but the final evaluation runs in the coordinator's pod on {device} (evaluation.device: {}): \
                     give the pod a GPU (coordinator_gpus: 1) or set evaluation.device: cpu",
                    evaluation.device.map_or_else(|| "auto, so training.device".to_string(), |d| d.to_string())
                ),
            );
        }
    }
    problems.check()
}

fn shape(section: &DeploySection, command: &DeployCommand) -> std::result::Result<NodeShape, ConfigProblems> {
    let missing = |target: &str| ConfigProblems::one(format!("deploy.{target}"), "missing: this target needs it");
    let mut shape = match command.target {
        Target::Local => return Err(ConfigProblems::one("target", "`local` runs as `rosetta train`")),
        Target::Slurm => section.slurm.as_ref().ok_or_else(|| missing("slurm"))?.shape()?,
        Target::Ssh => section.ssh.as_ref().ok_or_else(|| missing("ssh"))?.shape()?,
        Target::Kubernetes => section.kubernetes.as_ref().ok_or_else(|| missing("kubernetes"))?.shape()?,
    };
    if let Some(nodes) = command.nodes {
        if command.target == Target::Ssh {
            return Err(ConfigProblems::one("--nodes", "the ssh target runs on deploy.ssh.hosts"));
        }
        if nodes == 0 {
            return Err(ConfigProblems::one("--nodes", "must be at least 1"));
        }
        shape.nodes = nodes;
    }
    if let Some(gpus) = command.gpus_per_node {
        (shape.gpus, shape.workers_per_node) = (gpus > 0, gpus.max(1));
    }
    Ok(shape)
}

//! The Slurm target: a batch script (`deploy/slurm/rosetta.sbatch`, filled in) written to
//! `RUN/deploy/slurm/rosetta.sbatch` and submitted with `sbatch`; `--status` and `--cancel` go
//! through `squeue` and `scancel` with the recorded job id.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use rosetta_coordinator::command::CoordinatorCommand;
use rosetta_coordinator::job::StartMode;
use rosetta_worker_config::{CoordinatorAddress, DeviceSpec, WorkerProcessConfig};

use crate::error::{DeployError, Result};
use crate::run::{DeployFiles, DeployRun};
use crate::section::{NodeShape, SlurmSection};
use crate::template::{render, shell_line, shell_quote};

/// The template, as users may also copy it.
pub const BATCH_TEMPLATE: &str = include_str!("../slurm/rosetta.sbatch");

use rosetta_coordinator::process::STOPPED_EARLY_EXIT;

/// The file service discovery targets of a running job: `prometheus-targets/<run>.json` beside
/// the run directory (one glob in Prometheus covers every run under the same parent).
pub fn prometheus_targets(run: &DeployRun) -> PathBuf {
    let parent = run.run_dir.root().parent().unwrap_or(std::path::Path::new("/"));
    parent.join("prometheus-targets").join(format!("{}.json", run.run_name))
}

/// Where the script and the job id go.
fn dir(run: &DeployRun) -> PathBuf {
    run.deploy_dir().join("slurm")
}

/// The coordinator of the batch job: any free port on every interface, resuming when the run
/// directory holds a checkpoint (a requeued job), TLS unless `deploy.tls: false`.
pub fn coordinator_command(run: &DeployRun, files: &DeployFiles) -> CoordinatorCommand {
    let listen = SocketAddr::from(([0, 0, 0, 0], run.port));
    let mut command = CoordinatorCommand::new(files.config.clone(), listen, StartMode::Auto);
    command.token_file = Some(files.token.clone());
    if let Some(tls) = &run.tls {
        (command.tls_cert, command.tls_key) = (Some(tls.cert.clone()), Some(tls.key.clone()));
    }
    command
}

/// The worker every task of the job's `srun` runs: it finds the coordinator through
/// `RUN/coordinator.json`; on GPU nodes Slurm binds one GPU to each task, which the task sees
/// as `cuda:0`.
pub fn worker_command(
    run: &DeployRun,
    slurm: &SlurmSection,
    shape: NodeShape,
    files: &DeployFiles,
) -> WorkerProcessConfig {
    let mut worker = WorkerProcessConfig::new(CoordinatorAddress::File(run.run_dir.coordinator_addresses()));
    worker.token_file = Some(files.token.clone());
    worker.ring_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    worker.threads = Some(slurm.cpus_per_worker);
    worker.device = Some(if shape.gpus { DeviceSpec::Cuda(0) } else { DeviceSpec::Cpu });
    if let Some(tls) = &run.tls {
        worker.tls_ca = Some(tls.ca.clone());
        worker.tls_domain = Some(crate::tls::SERVER_NAME.to_string());
    }
    worker
}

/// Fills the batch script for `run` and writes it to `RUN/deploy/slurm/rosetta.sbatch`.
pub fn write_batch_script(
    run: &DeployRun,
    slurm: &SlurmSection,
    shape: NodeShape,
    files: &DeployFiles,
) -> Result<PathBuf> {
    let mut sbatch = Vec::new();
    if shape.gpus {
        sbatch.push(format!("--gpus-per-node={}", shape.workers_per_node));
    }
    for (flag, value) in [("partition", &slurm.partition), ("account", &slurm.account), ("time", &slurm.time_limit)] {
        if let Some(value) = value {
            sbatch.push(format!("--{flag}={value}"));
        }
    }
    sbatch.extend(slurm.extra.iter().cloned());
    let env: Vec<String> = run.env.iter().map(|(k, v)| format!("export {k}={}", shell_quote(v))).collect();
    let program = |argv: rosetta_common::argv::Argv| {
        let mut words = vec![run.binary.display().to_string()];
        words.extend(argv.into_vec());
        shell_line(&words)
    };
    let log = dir(run).join("slurm-%j.log");
    // #SBATCH lines take a double-quoted value (a run directory with spaces), nothing more.
    if log.to_string_lossy().contains(['"', '\n']) {
        return Err(DeployError::Template(format!(
            "{}: a Slurm run directory cannot hold a double quote or a line break (#SBATCH --output)",
            run.run_dir.root().display()
        )));
    }
    let values = [
        ("job_name", format!("rosetta-{}", run.run_name)),
        ("nodes", shape.nodes.to_string()),
        ("workers_per_node", shape.workers_per_node.to_string()),
        ("workers", shape.workers().to_string()),
        ("cpus_per_worker", slurm.cpus_per_worker.to_string()),
        ("signal_before", slurm.signal_before_secs.to_string()),
        ("log", log.display().to_string()),
        ("sbatch_lines", sbatch.iter().map(|line| format!("#SBATCH {line}")).collect::<Vec<_>>().join("\n")),
        ("setup_lines", slurm.setup.join("\n")),
        ("env_lines", env.join("\n")),
        ("coordinator_file", shell_quote(&run.run_dir.coordinator_addresses().display().to_string())),
        ("coordinator_command", program(coordinator_command(run, files).to_args())),
        ("worker_command", program(worker_command(run, slurm, shape, files).to_args())),
        (
            "srun_gpu_options",
            if shape.gpus { "--gpus-per-task=1 --gpu-bind=per_task:1 ".to_string() } else { String::new() },
        ),
        ("stopped_early", STOPPED_EARLY_EXIT.to_string()),
        ("targets_file", shell_quote(&prometheus_targets(run).display().to_string())),
    ];
    let script = render(BATCH_TEMPLATE, &values)
        .map_err(|e| DeployError::Template(format!("deploy/slurm/rosetta.sbatch: {e}")))?;
    let path = dir(run).join("rosetta.sbatch");
    rosetta_common::atomic::write_atomic(&path, script.as_bytes())
        .map_err(|e| DeployError::Process { what: format!("writing {}", e.path.display()), source: e.source })?;
    Ok(path)
}

fn run_command(mut command: Command, what: &str) -> Result<String> {
    let output = command.output().map_err(|source| DeployError::Process { what: format!("running {what}"), source })?;
    if !output.status.success() {
        return Err(DeployError::Scheduler(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Submits the script; records and returns the job id.
pub fn submit(run: &DeployRun, script: &std::path::Path) -> Result<String> {
    let mut command = Command::new("sbatch");
    command.arg("--parsable").arg(script);
    let id = run_command(command, "sbatch")?;
    let id = id.split(';').next().unwrap_or_default().to_string();
    rosetta_common::atomic::write_atomic(&dir(run).join("job-id"), id.as_bytes())
        .map_err(|e| DeployError::Process { what: format!("writing {}", e.path.display()), source: e.source })?;
    Ok(id)
}

/// The recorded job id.
pub fn job_id(run: &DeployRun) -> Result<String> {
    let path = dir(run).join("job-id");
    std::fs::read_to_string(&path).map(|id| id.trim().to_string()).map_err(|_| {
        DeployError::Scheduler(format!("no job was submitted for this run ({} is missing)", path.display()))
    })
}

/// `squeue` of the run's job (state, time, reason), or its final state from `scontrol`.
pub fn status(run: &DeployRun) -> Result<String> {
    let id = job_id(run)?;
    let mut command = Command::new("squeue");
    command.args(["-h", "-j", &id, "-o", "%i %T %M %R"]);
    let queued = run_command(command, "squeue").unwrap_or_default();
    if !queued.is_empty() {
        return Ok(queued);
    }
    let mut command = Command::new("scontrol");
    command.args(["show", "job", &id]);
    run_command(command, "scontrol show job").map(|text| {
        text.split_whitespace()
            .filter(|w| w.starts_with("JobState=") || w.starts_with("ExitCode="))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// `scancel` of the run's job; an error when the job has ended already (it says how).
pub fn cancel(run: &DeployRun) -> Result<String> {
    let id = job_id(run)?;
    let state = status(run)?;
    if let Some(ended) = state.split_whitespace().find_map(|w| w.strip_prefix("JobState="))
        && !["PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"].contains(&ended)
    {
        return Err(DeployError::Scheduler(format!("Slurm job {id} has ended already ({state}); nothing to cancel")));
    }
    let mut command = Command::new("scancel");
    command.arg(&id);
    run_command(command, "scancel")?;
    Ok(id)
}

/// The command line that submits by hand what `rosetta deploy slurm` submits.
pub fn manual_command(script: &std::path::Path) -> String {
    shell_line(&["sbatch", &script.display().to_string()])
}

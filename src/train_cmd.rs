//! `rosetta train` (a local cluster: the coordinator in this process, one worker process per
//! device), `rosetta coordinator` (the coordinator alone, for clusters launched elsewhere) and
//! `rosetta worker` (one worker): each command line is a type of the crate whose process it
//! starts, and each command calls that crate's process function.

use rosetta_coordinator::command::CoordinatorCommand;
use rosetta_coordinator::process::{RunEnd, STOPPED_EARLY_EXIT};
use rosetta_deploy::command::TrainCommand;
use rosetta_worker_config::WorkerProcessConfig;

/// Runs a local cluster to the end of its job and says what it did.
pub fn train(command: TrainCommand) -> anyhow::Result<()> {
    let (config, summary) = rosetta_deploy::coordinator::local_run(&command, |config, grpc, metrics| {
        println!("coordinator on {grpc}, metrics on http://{metrics}/metrics");
        println!("run directory {}", config.job.run_dir.root().display());
    })?;
    let workers = config.job.workers;
    if let Some(per_step) = summary.steady_seconds_per_step {
        let batch = config.schedule.global_batch_size as f64;
        println!("steady state: {per_step:.3} s/step, {:.1} examples/s (after the first 2 steps)", batch / per_step);
    }
    if let Some(mfu) = summary.mfu {
        println!(
            "model FLOPs utilisation: {:.1} % (after the first 2 steps; peak measured by each worker)",
            100.0 * mfu
        );
    }
    if summary.all_reduce_bytes_per_step > 0 {
        println!(
            "gradient all-reduce: {:.1} MB per step handed over by all {workers} workers (last step)",
            summary.all_reduce_bytes_per_step as f64 / 1e6
        );
    }
    match summary.last_checkpoint {
        Some(step) => println!(
            "trained {} steps; last checkpoint after step {step}: {}",
            summary.steps_done,
            config.job.run_dir.checkpoint(step).display()
        ),
        None => println!("trained {} steps; no checkpoint committed", summary.steps_done),
    }
    if let Some(dir) = summary.evaluated {
        println!("evaluation reports in {}", dir.display());
    }
    Ok(())
}

/// Runs the coordinator until the job finishes (every worker heard so, every evaluation done)
/// or fails.
pub fn coordinator(command: CoordinatorCommand) -> anyhow::Result<()> {
    let end = rosetta_deploy::coordinator::run_coordinator_command(&command, |running| {
        println!("coordinator on {}, metrics on http://{}/metrics", running.grpc_address, running.metrics_address);
        if let Some(step) = running.job.progress().last_checkpoint {
            println!("resuming after the checkpoint of step {step}");
        }
    })?;
    match end {
        RunEnd::StoppedEarly { last_step } => {
            println!(
                "stopped after step {last_step} as asked (SIGUSR1), at a committed checkpoint; continue with --resume"
            );
            // EX_TEMPFAIL: launchers (the Slurm batch script) requeue on it.
            std::process::exit(STOPPED_EARLY_EXIT);
        }
        RunEnd::Completed { steps_done, last_checkpoint, evaluations } => {
            match last_checkpoint {
                Some(step) => println!("trained {steps_done} steps; last checkpoint after step {step}"),
                None => println!("trained {steps_done} steps; no checkpoint committed"),
            }
            if let Some(dir) = evaluations.final_reports {
                println!("evaluation reports in {}", dir.display());
            }
            Ok(())
        }
    }
}

/// Runs one worker until the job finishes or fails.
pub fn worker(config: WorkerProcessConfig) -> anyhow::Result<()> {
    Ok(rosetta_worker::process::run_worker(config)?)
}

//! Evaluation during training, owned by the coordinator, which sees every checkpoint commit on
//! every target (local, ssh, Slurm, Kubernetes): the checkpoints `evaluation.every` names are
//! evaluated by `rosetta eval` processes beside the coordinator (in the background while
//! training goes on; every due one, in order), and the last one at the end (`at_end`); results land in
//! `RUN/eval/step-N/<benchmark>/`, `RUN/eval/latest`, `RUN/eval/best.json` and the
//! `rosetta_eval_*` series of the coordinator's Prometheus endpoint.
//!
//! Where that runs: on the coordinator's host, which is a rank's host on ssh and Slurm (the
//! first host, the batch script's node) and a pod of its own on Kubernetes. During training
//! the evaluation takes the CPU (`evaluation.device: auto`), so it never competes with the
//! training workers for GPU memory; after the last step the GPUs are free and the final
//! evaluation runs on `training.device`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rosetta_common::RunDir;
use rosetta_common::atomic::write_atomic;
use rosetta_eval::command::EvalCommand;
use rosetta_eval::config::EvaluationConfig;
use rosetta_eval::output::read_report;
use rosetta_worker_config::DeviceSpec;
use tokio::sync::watch;

use crate::job::{JobStateMachine, Phase};

/// What to evaluate during a run, and with which program.
#[derive(Debug, Clone)]
pub struct EvaluationPlan {
    /// The checked `evaluation:` section.
    pub config: EvaluationConfig,
    /// Benchmark directories (`data.benchmarks`, at least one).
    pub benchmarks: Vec<PathBuf>,
    /// The `rosetta` binary (its `eval` command does the work).
    pub program: PathBuf,
    /// The device the workers train on (the final evaluation's with `device: auto`).
    pub training_device: DeviceSpec,
}

/// Where the evaluations of a run stand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationStatus {
    /// The step of the evaluation running now.
    pub running: Option<u64>,
    /// The last step whose evaluation was recorded.
    pub last_recorded: Option<u64>,
    /// The reports of the last checkpoint's evaluation, once the job is complete and it is
    /// recorded (by the final evaluation, or by an earlier one of the same checkpoint).
    pub final_reports: Option<PathBuf>,
    /// Evaluations that failed, each described.
    pub failures: Vec<String>,
    /// Nothing more will be evaluated (the job ended and the final evaluation is done).
    pub done: bool,
}

/// Whether the checkpoint after `step` is due, `last` being the step evaluated before: the
/// first checkpoint at or after each multiple of `every` steps (counted from 1).
pub fn due(step: u64, last: Option<u64>, every: u64) -> bool {
    if every == 0 {
        return false;
    }
    match last {
        None => step + 1 >= every,
        Some(previous) => (step + 1) / every > (previous + 1) / every,
    }
}

/// Of the `committed` checkpoints (in step order), those still due for evaluation every `every`
/// steps after `last`: what [`next_evaluation`] will pick, one after the other, during training.
pub fn pending(committed: &[u64], mut last: Option<u64>, every: u64) -> Vec<u64> {
    let mut pending = Vec::new();
    for &step in committed {
        if last.is_none_or(|last| step > last) && due(step, last, every) {
            pending.push(step);
            last = Some(step);
        }
    }
    pending
}

/// The next checkpoint to evaluate among the `committed` ones (in step order), `last` being the
/// step evaluated before and `final_step` the job's last checkpoint once the job is complete;
/// `(step, true)` for the final evaluation. Every due checkpoint is evaluated, in order, however
/// far training has run ahead, so that the set of evaluated steps does not depend on timing.
pub fn next_evaluation(
    committed: &[u64],
    last: Option<u64>,
    final_step: Option<u64>,
    config: &EvaluationConfig,
) -> Option<(u64, bool)> {
    committed.iter().copied().filter(|&step| last.is_none_or(|last| step > last)).find_map(|step| {
        let at_end = config.at_end && final_step == Some(step);
        (at_end || due(step, last, config.every)).then_some((step, at_end))
    })
}

/// Evaluates the checkpoints of `job` as `plan` says until the job ends (and the final
/// evaluation is done) or `stop` is raised; publishes where it stands on `status`.
pub async fn evaluate_during_training(
    job: Arc<JobStateMachine>,
    plan: EvaluationPlan,
    status: watch::Sender<EvaluationStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let run_dir = job.settings().run_dir.clone();
    // A resumed run does not evaluate again what an earlier launch recorded.
    let first = job.progress().last_checkpoint;
    let mut last = run_dir.latest_eval().ok().flatten().filter(|step| Some(*step) <= first);
    status.send_modify(|s| s.last_recorded = last);
    // Retention keeps what is still to be evaluated.
    job.hold_for_evaluation(plan.config.every, last);
    loop {
        let progress = job.progress();
        let finished = match progress.phase {
            Phase::Finished => true,
            Phase::Failed(_) => break,
            Phase::Waiting | Phase::Running => false,
        };
        // A job stopped early (SIGUSR1, `--stop-after`) resumes later: its end is not the end,
        // and what is still due is evaluated by the resumed run.
        let complete = finished && progress.steps_done >= progress.total_steps;
        let wanted = if finished && !complete {
            None
        } else {
            let final_step = progress.last_checkpoint.filter(|_| complete);
            let dir = run_dir.clone();
            let committed = tokio::task::spawn_blocking(move || dir.committed_steps().map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|listed| listed)
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "listing the committed checkpoints");
                    Vec::new()
                });
            next_evaluation(&committed, last, final_step, &plan.config)
        };
        if let Some((step, at_end)) = wanted {
            last = Some(step);
            if !evaluate(&plan, &run_dir, step, at_end, &status, &mut stop).await {
                return;
            }
            job.evaluated(step);
            continue;
        }
        if complete {
            // The last checkpoint's evaluation (now, earlier in this launch or in an earlier one).
            if let Some(step) = progress.last_checkpoint.filter(|step| status.borrow().last_recorded == Some(*step)) {
                status.send_modify(|s| s.final_reports = Some(run_dir.eval_step(step)));
            }
        }
        if finished {
            break;
        }
        tokio::select! {
            _ = job.wait_change(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
    status.send_modify(|s| s.done = true);
}

/// Runs and records one evaluation; `false` when `stop` was raised meanwhile (the process is
/// killed, nothing is recorded).
async fn evaluate(
    plan: &EvaluationPlan,
    run_dir: &RunDir,
    step: u64,
    at_end: bool,
    status: &watch::Sender<EvaluationStatus>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let device = match plan.config.device {
        Some(device) => device,
        None if at_end => plan.training_device,
        None => DeviceSpec::Cpu,
    };
    let mut command = EvalCommand::new(run_dir.checkpoint(step), plan.benchmarks.clone());
    command.out = Some(run_dir.eval_step(step));
    command.workers = plan.config.workers;
    command.batch_size = plan.config.batch_size;
    command.trec_depth = plan.config.trec_depth;
    command.threads = plan.config.threads;
    command.device = device;
    command.quiet = true;
    let mut process = tokio::process::Command::new(&plan.program);
    process.args(command.to_args().into_vec()).stdout(std::process::Stdio::null()).kill_on_drop(true);
    status.send_modify(|s| s.running = Some(step));
    if at_end {
        eprintln!("evaluating the final checkpoint (step {step}) on {device}");
    } else {
        eprintln!("evaluating the checkpoint after step {step} in the background on {device}");
    }
    let outcome = match process.spawn() {
        Ok(mut child) => tokio::select! {
            waited = child.wait() => waited.map_err(|e| format!("waiting for rosetta eval: {e}")),
            _ = stop.wait_for(|stop| *stop) => return false,
        },
        Err(e) => Err(format!("starting {} eval: {e}", plan.program.display())),
    };
    let outcome = match outcome {
        Ok(exit) if exit.success() => {
            let (run_dir, config) = (run_dir.clone(), plan.config.clone());
            tokio::task::spawn_blocking(move || record(&run_dir, &config, step))
                .await
                .unwrap_or_else(|e| Err(format!("recording the evaluation: {e}")))
        }
        Ok(exit) => Err(format!("rosetta eval exited with {exit}")),
        Err(message) => Err(message),
    };
    status.send_modify(|s| {
        s.running = None;
        match outcome {
            Ok(_) => s.last_recorded = Some(step),
            Err(message) => {
                let failure = format!("evaluation of the checkpoint after step {step} failed: {message}");
                eprintln!("warning: {failure}");
                s.failures.push(failure);
            }
        }
    });
    true
}

/// Exports a finished evaluation to Prometheus, moves `eval/latest`, updates `eval/best.json`.
fn record(run_dir: &RunDir, config: &EvaluationConfig, step: u64) -> Result<(), String> {
    let dir = run_dir.eval_step(step);
    let unreadable = |e: &dyn std::fmt::Display| format!("reading {}: {e}", dir.display());
    let mut reports = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| unreadable(&e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| unreadable(&e)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries.into_iter().filter(|p| p.join(rosetta_eval::output::REPORT_JSON).is_file()) {
        let report = read_report(&path).map_err(|e| unreadable(&e))?;
        match crate::metrics::admit_eval_report(&report) {
            Ok(()) => crate::metrics::export_eval_report(&report),
            Err(reason) => tracing::warn!(%reason, "evaluation report not exported to prometheus"),
        }
        eprintln!("step {step}: {}", rosetta_eval::render::summary_line(&report));
        reports.push(report);
    }
    run_dir.set_latest_eval(step).map_err(|e| e.to_string())?;
    let Some(metric) = &config.select_best else { return Ok(()) };
    // The selection metric averaged over the benchmarks that report it.
    let values: Vec<f64> = reports.iter().filter_map(|r| r.metric(metric)).collect();
    if values.is_empty() {
        return Ok(());
    }
    let value = values.iter().sum::<f64>() / values.len() as f64;
    let best_path = run_dir.eval_best();
    let previous: Option<serde_json::Value> =
        std::fs::read(&best_path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let better = match previous.as_ref().and_then(|p| p["value"].as_f64()) {
        None => true,
        Some(old) if config.higher_is_better() => value > old,
        Some(old) => value < old,
    };
    if better {
        let best = serde_json::json!({
            "metric": metric, "value": value, "step": step,
            "checkpoint": run_dir.checkpoint(step), "reports": dir,
        });
        let text = serde_json::to_vec_pretty(&best).map_err(|e| e.to_string())?;
        write_atomic(&best_path, &text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_due_at_each_multiple_of_every() {
        // Checkpoints every 4 steps (after steps 3, 7, 11, …), evaluations every 8.
        let mut last = None;
        let mut evaluated = Vec::new();
        for step in [3, 7, 11, 15, 19, 23] {
            if due(step, last, 8) {
                evaluated.push(step);
                last = Some(step);
            }
        }
        assert_eq!(evaluated, [7, 15, 23]);
        // A checkpoint past a multiple catches up once, not once per missed multiple.
        assert!(due(30, Some(7), 8) && !due(30, Some(30), 8));
        assert!(!due(99, None, 0), "every: 0 never evaluates during training");
        assert!(due(0, None, 1) && due(1, Some(0), 1));
    }

    #[test]
    fn every_due_checkpoint_is_evaluated_in_order_and_the_last_at_the_end() {
        let config = EvaluationConfig { every: 4, ..EvaluationConfig::default() };
        let committed = [1, 3, 5, 7, 9];
        // Training ran ahead: the first due one is still next, then the next due one.
        assert_eq!(next_evaluation(&committed, None, None, &config), Some((3, false)));
        assert_eq!(next_evaluation(&committed, Some(3), None, &config), Some((7, false)));
        assert_eq!(next_evaluation(&committed, Some(7), None, &config), None);
        // Once complete, the last checkpoint is the final evaluation, after the due ones.
        assert_eq!(next_evaluation(&committed, Some(3), Some(9), &config), Some((7, false)));
        assert_eq!(next_evaluation(&committed, Some(7), Some(9), &config), Some((9, true)));
        assert_eq!(next_evaluation(&committed, Some(9), Some(9), &config), None);
        let no_end = EvaluationConfig { at_end: false, ..config };
        assert_eq!(next_evaluation(&committed, Some(7), Some(9), &no_end), None);
        let at_end_only = EvaluationConfig { every: 0, ..EvaluationConfig::default() };
        assert_eq!(next_evaluation(&committed, None, None, &at_end_only), None);
        assert_eq!(next_evaluation(&committed, None, Some(9), &at_end_only), Some((9, true)));
        // What retention keeps for it: the due ones not evaluated yet.
        assert_eq!(pending(&committed, None, 4), [3, 7]);
        assert_eq!(pending(&committed, Some(3), 4), [7]);
        assert_eq!(pending(&committed, Some(7), 4), Vec::<u64>::new());
        assert_eq!(pending(&committed, None, 0), Vec::<u64>::new());
    }
}

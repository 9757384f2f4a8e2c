//! Evaluation during a training run: committed checkpoints are evaluated by `rosetta eval`
//! processes (in the background while training goes on, and once at the end); results land in
//! `RUN/eval/step-N/<benchmark>/`, `RUN/eval/latest`, `RUN/eval/best.json` and Prometheus.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rosetta_common::RunDir;
use rosetta_common::atomic::write_atomic;
use rosetta_eval::config::EvaluationConfig;
use rosetta_eval::output::read_report;

use crate::error::{DeployError, Result};

/// What to evaluate during a run, and with which program.
#[derive(Debug, Clone)]
pub struct TrainingEvaluation {
    /// The checked `evaluation:` section.
    pub config: EvaluationConfig,
    /// Benchmark directories (`data.benchmarks`, at least one).
    pub benchmarks: Vec<PathBuf>,
    /// The `rosetta` binary (its `eval` command does the work).
    pub program: PathBuf,
}

/// Schedules and collects the evaluations of one training run.
pub struct TrainingEvaluator {
    config: EvaluationConfig,
    benchmarks: Vec<PathBuf>,
    run_dir: RunDir,
    executable: PathBuf,
    /// The evaluation in flight: its step and process.
    running: Option<(u64, Child)>,
    /// The last step evaluated (or started).
    last_started: Option<u64>,
}

impl TrainingEvaluator {
    /// An evaluator of the checkpoints of `run_dir`.
    pub fn new(evaluation: TrainingEvaluation, run_dir: &RunDir) -> Self {
        Self {
            config: evaluation.config,
            benchmarks: evaluation.benchmarks,
            run_dir: run_dir.clone(),
            executable: evaluation.program,
            running: None,
            last_started: None,
        }
    }

    fn command(&self, step: u64) -> Command {
        let mut command = Command::new(&self.executable);
        command
            .arg("eval")
            .arg("--model")
            .arg(self.run_dir.checkpoint(step))
            .arg("--out")
            .arg(self.run_dir.eval_step(step))
            .args(["--workers", &self.config.workers.to_string()])
            .args(["--batch-size", &self.config.batch_size.to_string()])
            .args(["--trec-depth", &self.config.trec_depth.to_string()])
            .arg("--quiet")
            .stdout(Stdio::null());
        for benchmark in &self.benchmarks {
            command.arg("--benchmark").arg(benchmark);
        }
        command
    }

    /// Called as training goes on: collects a finished evaluation, and starts one for the
    /// latest committed checkpoint when it reaches the next multiple of `every`.
    pub fn poll(&mut self, last_checkpoint: Option<u64>) {
        self.collect(false);
        let (Some(step), true) = (last_checkpoint, self.config.every > 0) else { return };
        let due = match self.last_started {
            None => step + 1 >= self.config.every,
            Some(previous) => (step + 1) / self.config.every > (previous + 1) / self.config.every,
        };
        if due && self.running.is_none() {
            match self.command(step).spawn() {
                Ok(child) => {
                    eprintln!("evaluating the checkpoint after step {step} in the background");
                    self.running = Some((step, child));
                    self.last_started = Some(step);
                }
                Err(error) => tracing::warn!(step, %error, "could not start an evaluation"),
            }
        }
    }

    /// At the end of training: waits for the evaluation in flight, then evaluates the last
    /// checkpoint (when `at_end` and not done yet). Returns the report directories of the last one.
    pub fn finish(&mut self, last_checkpoint: Option<u64>) -> Result<Option<PathBuf>> {
        self.collect(true);
        let Some(step) = last_checkpoint.filter(|_| self.config.at_end) else { return Ok(None) };
        if self.last_started != Some(step) {
            eprintln!("evaluating the final checkpoint (step {step})");
            let status = self
                .command(step)
                .stderr(Stdio::inherit())
                .status()
                .map_err(|source| DeployError::Process { what: "running rosetta eval".into(), source })?;
            if !status.success() {
                return Err(DeployError::Evaluation(format!(
                    "evaluation of the checkpoint after step {step} failed ({status})"
                )));
            }
            self.record(step)?;
        }
        Ok(Some(self.run_dir.eval_step(step)))
    }

    fn collect(&mut self, wait: bool) {
        let Some((step, child)) = self.running.as_mut() else { return };
        let status = if wait { child.wait().map(Some) } else { child.try_wait() };
        let step = *step;
        match status {
            Ok(None) => return,
            Ok(Some(status)) if status.success() => {
                if let Err(error) = self.record(step) {
                    tracing::warn!(step, error = %format!("{error:#}"), "evaluation results unreadable");
                }
            }
            Ok(Some(status)) => eprintln!("warning: evaluation of the checkpoint after step {step} failed ({status})"),
            Err(error) => tracing::warn!(step, %error, "waiting for an evaluation"),
        }
        self.running = None;
    }

    /// Exports a finished evaluation to Prometheus, moves `eval/latest`, updates `eval/best.json`.
    fn record(&self, step: u64) -> Result<()> {
        let dir = self.run_dir.eval_step(step);
        let unreadable = |e: &dyn std::fmt::Display| DeployError::Evaluation(format!("reading {}: {e}", dir.display()));
        let mut headline = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| unreadable(&e))? {
            let path = entry.map_err(|e| unreadable(&e))?.path();
            if path.join(rosetta_eval::output::REPORT_JSON).is_file() {
                let report = read_report(&path).map_err(|e| unreadable(&e))?;
                match rosetta_coordinator::metrics::admit_eval_report(&report) {
                    Ok(()) => rosetta_coordinator::metrics::export_eval_report(&report),
                    Err(reason) => tracing::warn!(%reason, "evaluation report not exported to Prometheus"),
                }
                eprintln!("step {step}: {}", rosetta_eval::render::summary_line(&report));
                headline.push(report);
            }
        }
        let written = |e: rosetta_common::atomic::FileError| DeployError::Evaluation(e.to_string());
        self.run_dir.set_latest_eval(step).map_err(written)?;
        if let Some(metric) = &self.config.select_best {
            // The selection metric averaged over the benchmarks that report it.
            let values: Vec<f64> = headline.iter().filter_map(|r| r.metric(metric)).collect();
            if values.is_empty() {
                return Ok(());
            }
            let value = values.iter().sum::<f64>() / values.len() as f64;
            let best_path = self.run_dir.eval_best();
            let previous: Option<serde_json::Value> =
                std::fs::read(&best_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let better = match previous.as_ref().and_then(|p| p["value"].as_f64()) {
                None => true,
                Some(old) => {
                    if self.config.higher_is_better() {
                        value > old
                    } else {
                        value < old
                    }
                }
            };
            if better {
                let best = serde_json::json!({
                    "metric": metric, "value": value, "step": step,
                    "checkpoint": self.run_dir.checkpoint(step), "reports": dir,
                });
                let text = serde_json::to_vec_pretty(&best).map_err(|e| DeployError::Evaluation(e.to_string()))?;
                write_atomic(&best_path, &text).map_err(written)?;
            }
        }
        Ok(())
    }
}

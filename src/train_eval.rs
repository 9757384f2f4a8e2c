//! Evaluation during `rosetta train`: committed checkpoints are evaluated by `rosetta eval`
//! processes (in the background while training goes on, and once at the end); results land in
//! `RUN/eval/step-N/<benchmark>/`, `RUN/eval/latest`, `RUN/eval/best.json` and Prometheus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use rosetta_eval::config::EvaluationConfig;
use rosetta_eval::output::{read_report, write_atomic};

/// Schedules and collects the evaluations of one training run.
pub struct TrainingEvaluator {
    config: EvaluationConfig,
    benchmarks: Vec<PathBuf>,
    run_dir: PathBuf,
    executable: PathBuf,
    /// The evaluation in flight: its step and process.
    running: Option<(u64, Child)>,
    /// The last step evaluated (or started).
    last_started: Option<u64>,
}

impl TrainingEvaluator {
    /// An evaluator, or `None` when the run has no benchmarks or no `evaluation:` section.
    pub fn new(
        config: Option<&EvaluationConfig>,
        benchmarks: &[PathBuf],
        run_dir: &Path,
    ) -> anyhow::Result<Option<Self>> {
        let Some(config) = config else { return Ok(None) };
        let problems = config.problems();
        if !problems.is_empty() {
            bail!("invalid run config:\n  - {}", problems.join("\n  - "));
        }
        if benchmarks.is_empty() {
            bail!("evaluation: needs at least one benchmark in data.benchmarks");
        }
        Ok(Some(Self {
            config: config.clone(),
            benchmarks: benchmarks.to_vec(),
            run_dir: run_dir.to_path_buf(),
            executable: std::env::current_exe().context("locating the rosetta binary")?,
            running: None,
            last_started: None,
        }))
    }

    fn command(&self, step: u64) -> Command {
        let checkpoint = rosetta_coordinator::manifest::checkpoint_dir(&self.run_dir, step);
        let mut command = Command::new(&self.executable);
        command
            .arg("eval")
            .arg("--model")
            .arg(&checkpoint)
            .arg("--out")
            .arg(self.step_dir(step))
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

    fn step_dir(&self, step: u64) -> PathBuf {
        self.run_dir.join("eval").join(format!("step-{step:08}"))
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
    pub fn finish(&mut self, last_checkpoint: Option<u64>) -> anyhow::Result<Option<PathBuf>> {
        self.collect(true);
        let Some(step) = last_checkpoint.filter(|_| self.config.at_end) else { return Ok(None) };
        if self.last_started != Some(step) {
            eprintln!("evaluating the final checkpoint (step {step})");
            let status = self.command(step).stderr(Stdio::inherit()).status().context("running rosetta eval")?;
            if !status.success() {
                bail!("evaluation of the checkpoint after step {step} failed ({status})");
            }
            self.record(step)?;
        }
        Ok(Some(self.step_dir(step)))
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
    fn record(&self, step: u64) -> anyhow::Result<()> {
        let dir = self.step_dir(step);
        let mut headline = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.join(rosetta_eval::output::REPORT_JSON).is_file() {
                let report = read_report(&path)?;
                rosetta_coordinator::eval_metrics::export_eval_report(&report);
                eprintln!("step {step}: {}", crate::eval_cmd::summary_line(&report));
                headline.push(report);
            }
        }
        let eval_dir = self.run_dir.join("eval");
        write_atomic(&eval_dir.join("latest"), format!("step-{step:08}").as_bytes())?;
        if let Some(metric) = &self.config.select_best {
            // The selection metric averaged over the benchmarks that report it.
            let values: Vec<f64> = headline.iter().filter_map(|r| r.metric(metric)).collect();
            if values.is_empty() {
                return Ok(());
            }
            let value = values.iter().sum::<f64>() / values.len() as f64;
            let best_path = eval_dir.join("best.json");
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
                let checkpoint = rosetta_coordinator::manifest::checkpoint_dir(&self.run_dir, step);
                let best = serde_json::json!({
                    "metric": metric, "value": value, "step": step,
                    "checkpoint": checkpoint, "reports": dir,
                });
                write_atomic(&best_path, serde_json::to_string_pretty(&best)?.as_bytes())?;
            }
        }
        Ok(())
    }
}

//! Running an experiment: the shared initial model, then every cell — train (fresh, or
//! `--resume` from its last checkpoint), choose the checkpoint, evaluate it on every test
//! benchmark — one after another or `parallel` at a time. A finished cell is skipped on the next
//! invocation, an interrupted one resumes; a failed cell does not stop the others.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rosetta_common::RunDir;
use rosetta_common::atomic::write_atomic;
use rosetta_common::digest::sha256_bytes;
use rosetta_coordinator::schedule::Strategy;
use serde::{Deserialize, Serialize};

use rosetta_common::argv::Argv;
use rosetta_coordinator::command::StartFlags;
use rosetta_coordinator::job::StartMode;
use rosetta_deploy::command::{DeployCommand, Target, TrainCommand};
use rosetta_eval::command::EvalCommand;
use rosetta_worker_config::ExportCommand;

use crate::child::{ChildRun, interrupted, log_tail};
use crate::error::{ExperimentError, Result};
use crate::plan::{Cell, ZERO_SHOT, zero_shot_dir};
use crate::spec::{ExperimentSettings, Launch, Selection};

/// File name of a finished cell's record.
pub const CELL_RECORD: &str = "cell.json";
/// File name of a cell's run config.
pub const CELL_CONFIG: &str = "config.yaml";

/// Where the model every run starts from comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseModel {
    /// Exported once from a run config's preset (`rosetta export --config`) into `dir`.
    Export {
        /// The run config to export from.
        config_yaml: String,
        /// Where the model goes.
        dir: PathBuf,
    },
    /// An existing model directory.
    Existing(PathBuf),
}

impl BaseModel {
    /// The model directory.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Export { dir, .. } | Self::Existing(dir) => dir,
        }
    }
}

/// A cell with its run config, ready to run.
#[derive(Debug, Clone)]
pub struct PreparedCell {
    /// The cell.
    pub cell: Cell,
    /// Its complete run config (YAML; `job.run_dir` is `CELL/run`).
    pub config_yaml: String,
    /// Its last step (0-based): the checkpoint `selection: last` evaluates.
    pub final_step: u64,
}

/// Everything an experiment run needs.
#[derive(Debug, Clone)]
pub struct ExperimentPlan {
    /// The experiment.
    pub settings: ExperimentSettings,
    /// The `rosetta` binary its steps run.
    pub program: PathBuf,
    /// The initial model.
    pub base_model: BaseModel,
    /// The training cells.
    pub cells: Vec<PreparedCell>,
}

/// What a finished cell records in `CELL/cell.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Cell id (`zero-shot` for the base model's row).
    pub id: String,
    /// Strategy (none for zero-shot).
    pub strategy: Option<Strategy>,
    /// α of hybrid.
    pub alpha: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
    /// SHA-256 of the run config it trained with.
    pub config_sha256: String,
    /// SHA-256 of the evaluation it got (benchmarks, selection, settings).
    pub evaluation_sha256: String,
    /// Step of the evaluated checkpoint (none for zero-shot).
    pub step: Option<u64>,
    /// The evaluated model.
    pub model: PathBuf,
    /// Benchmark names, each a directory under `eval/`.
    pub benchmarks: Vec<String>,
    /// Seconds spent training in the invocation that finished it.
    pub train_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// How an invocation went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Cells already finished before this invocation.
    pub skipped: Vec<String>,
    /// Cells finished now.
    pub finished: Vec<String>,
    /// Cells that failed, with why.
    pub failed: Vec<String>,
}

/// Reads `CELL/cell.json` (`None` when the cell has not finished).
pub fn read_record(dir: &Path) -> Result<Option<CellRecord>> {
    let path = dir.join(CELL_RECORD);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ExperimentError::format(&path, format!("not a cell record: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExperimentError::io(path, e)),
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ExperimentError::format(path, e.to_string()))?;
    Ok(write_atomic(path, &bytes)?)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))
}

/// The evaluation every cell gets, as one fingerprint.
fn evaluation_sha(settings: &ExperimentSettings, names: &[String]) -> String {
    let text = format!(
        "{names:?}|{:?}|{:?}|{:?}",
        settings.benchmarks.iter().map(|b| &b.path).collect::<Vec<_>>(),
        settings.selection,
        settings.evaluation
    );
    sha256_bytes(text.as_bytes())
}

struct Runner<'a> {
    plan: &'a ExperimentPlan,
    names: Vec<String>,
    evaluation_sha: String,
    relay_progress: bool,
}

impl Runner<'_> {
    /// `rosetta` with the arguments of a typed command line.
    fn command(&self, argv: Argv) -> Command {
        let mut command = Command::new(&self.plan.program);
        command.args(argv.into_vec());
        command
    }

    fn eval_command(&self, model: &Path, out: &Path) -> Command {
        let benchmarks = self.plan.settings.benchmarks.iter().map(|b| b.path.clone()).collect();
        let mut eval = EvalCommand::new(model.to_path_buf(), benchmarks);
        eval.out = Some(out.to_path_buf());
        eval.quiet = true;
        eval.workers = self.plan.settings.evaluation.workers;
        eval.batch_size = self.plan.settings.evaluation.batch_size;
        self.command(eval.to_args())
    }

    /// Evaluates `model` into `dir/eval` (replacing a partial evaluation).
    fn evaluate(&self, id: &str, model: &Path, dir: &Path) -> Result<f64> {
        let started = Instant::now();
        let eval_dir = dir.join("eval");
        if eval_dir.exists() {
            std::fs::remove_dir_all(&eval_dir).map_err(|e| ExperimentError::io(&eval_dir, e))?;
        }
        let log = dir.join("eval.log");
        ChildRun { cell: id, what: "evaluation", log, relay_progress: false }
            .run(self.eval_command(model, &eval_dir))?;
        for name in &self.names {
            let report = eval_dir.join(name).join(rosetta_eval::output::REPORT_JSON);
            if !report.is_file() {
                return Err(ExperimentError::format(report, "rosetta eval finished without writing this report"));
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// The base model: exported once (checked against the config it came from).
    fn prepare_base_model(&self) -> Result<()> {
        let BaseModel::Export { config_yaml, dir } = &self.plan.base_model else { return Ok(()) };
        let out = &self.plan.settings.out;
        let config_path = out.join("base-model.yaml");
        let sha = sha256_bytes(config_yaml.as_bytes());
        let stamp = out.join("base-model.sha256");
        if dir.join("model.safetensors").is_file() {
            match std::fs::read_to_string(&stamp) {
                Ok(old) if old.trim() == sha => return Ok(()),
                Ok(_) => {
                    return Err(ExperimentError::CellChanged {
                        cell: "base-model".into(),
                        dir: dir.clone(),
                        message: "the base config's model section changed".into(),
                    });
                }
                Err(_) => {}
            }
        }
        write_atomic(&config_path, config_yaml.as_bytes())?;
        let export = ExportCommand { model: None, config: Some(config_path.clone()), out: dir.clone() };
        let command = self.command(export.to_args());
        let log = out.join("base-model.log");
        ChildRun { cell: "base-model", what: "exporting the initial model", log, relay_progress: false }
            .run(command)?;
        write_atomic(&stamp, sha.as_bytes())?;
        println!("initial model (shared by every run) -> {}", dir.display());
        Ok(())
    }

    fn zero_shot(&self) -> Result<bool> {
        let dir = zero_shot_dir(&self.plan.settings.out);
        let model = self.plan.base_model.dir();
        let config_sha = sha256_bytes(model.to_string_lossy().as_bytes());
        if let Some(record) = read_record(&dir)?
            && record.config_sha256 == config_sha
            && record.evaluation_sha256 == self.evaluation_sha
        {
            return Ok(false);
        }
        create_dir(&dir)?;
        println!("{ZERO_SHOT}: evaluating the initial model");
        let eval_seconds = self.evaluate(ZERO_SHOT, model, &dir)?;
        let record = CellRecord {
            id: ZERO_SHOT.into(),
            strategy: None,
            alpha: None,
            seed: None,
            config_sha256: config_sha,
            evaluation_sha256: self.evaluation_sha.clone(),
            step: None,
            model: model.to_path_buf(),
            benchmarks: self.names.clone(),
            train_seconds: 0.0,
            eval_seconds,
        };
        write_json(&dir.join(CELL_RECORD), &record)?;
        println!("{ZERO_SHOT}: evaluated in {eval_seconds:.0}s");
        Ok(true)
    }

    /// Runs one cell to its record; `Ok(false)` when it had finished already.
    fn cell(&self, prepared: &PreparedCell, position: &str) -> Result<bool> {
        let id = prepared.cell.id();
        let dir = prepared.cell.dir(&self.plan.settings.out);
        let config_sha = sha256_bytes(prepared.config_yaml.as_bytes());
        let record = read_record(&dir)?;
        if let Some(record) = &record
            && record.config_sha256 == config_sha
            && record.evaluation_sha256 == self.evaluation_sha
        {
            println!("{position} {id}: finished earlier, skipped");
            return Ok(false);
        }
        create_dir(&dir)?;
        let run_dir = RunDir::new(dir.join("run"));
        let committed = run_dir.committed_steps()?;
        let config_path = dir.join(CELL_CONFIG);
        match std::fs::read_to_string(&config_path) {
            Ok(old) if old != prepared.config_yaml && !committed.is_empty() => {
                return Err(ExperimentError::CellChanged {
                    cell: id,
                    dir,
                    message: "its run config differs from what the experiment file now makes".into(),
                });
            }
            Ok(old) if old == prepared.config_yaml => {}
            _ => write_atomic(&config_path, prepared.config_yaml.as_bytes())?,
        }
        let started = Instant::now();
        let trained = committed.contains(&prepared.final_step);
        if !trained && self.plan.settings.launch == Launch::Slurm {
            self.train_on_slurm(&id, &dir, &config_path, &run_dir, prepared.final_step, position)?;
        } else if !trained {
            let mut train = TrainCommand::new(config_path.clone());
            let how = match committed.last() {
                Some(step) => {
                    train.start = StartFlags::of(StartMode::Resume);
                    format!("resuming after step {step}")
                }
                None => {
                    train.start = StartFlags::of(StartMode::Overwrite);
                    "from the start".to_string()
                }
            };
            let command = self.command(train.to_args());
            println!("{position} {id}: training {how}");
            ChildRun { cell: &id, what: "training", log: dir.join("train.log"), relay_progress: self.relay_progress }
                .run(command)?;
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let step = match &self.plan.settings.selection {
            Selection::Last => prepared.final_step,
            Selection::Best { .. } => best_step(&run_dir)?,
        };
        let model = run_dir.checkpoint(step);
        if !run_dir.manifest(step).is_file() {
            return Err(ExperimentError::format(&model, "the checkpoint to evaluate is not committed (pruned?)"));
        }
        println!("{position} {id}: evaluating the checkpoint after step {step}");
        let eval_seconds = self.evaluate(&id, &model, &dir)?;
        let record = CellRecord {
            id: id.clone(),
            strategy: Some(prepared.cell.arm.strategy),
            alpha: prepared.cell.arm.alpha,
            seed: Some(prepared.cell.seed),
            config_sha256: config_sha,
            evaluation_sha256: self.evaluation_sha.clone(),
            step: Some(step),
            model,
            benchmarks: self.names.clone(),
            train_seconds,
            eval_seconds,
        };
        write_json(&dir.join(CELL_RECORD), &record)?;
        println!("{position} {id}: done (training {train_seconds:.0}s, evaluation {eval_seconds:.0}s)");
        Ok(true)
    }
}

/// Whether `rosetta deploy slurm --status` describes a job that is still queued or running
/// (`squeue` lists it, or `scontrol` gives a state that is not final).
fn slurm_job_active(status: &str) -> bool {
    let status = status.trim();
    match status.find("JobState=") {
        Some(at) => {
            let state = status[at + "JobState=".len()..].split_whitespace().next().unwrap_or_default();
            matches!(state, "PENDING" | "RUNNING" | "REQUEUED" | "CONFIGURING" | "COMPLETING" | "SUSPENDED")
        }
        None => !status.is_empty(),
    }
}

impl Runner<'_> {
    fn slurm_status(&self, config: &Path) -> Option<String> {
        let mut status = DeployCommand::new(Target::Slurm, config.to_path_buf());
        status.actions.status = true;
        let out = self.command(status.to_args()).stdin(std::process::Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Trains a cell as a Slurm job: submits it (unless its job from an earlier invocation is
    /// still queued or running) and waits, bounded by `launch_timeout`, until the job has ended
    /// (its coordinator evaluates the checkpoints before it ends: `RUN/eval/best.json` is
    /// final then) with its last checkpoint committed.
    fn train_on_slurm(
        &self,
        id: &str,
        dir: &Path,
        config: &Path,
        run_dir: &RunDir,
        final_step: u64,
        position: &str,
    ) -> Result<()> {
        let log = dir.join("train.log");
        // The job's own log (`slurm-<id>.log`, the newest), whose tail the error shows.
        let failed = |status: String| {
            let slurm_dir = run_dir.root().join("deploy/slurm");
            let newest = std::fs::read_dir(&slurm_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "log"))
                .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok());
            ExperimentError::Step {
                cell: id.to_string(),
                what: "training on Slurm".into(),
                status,
                log: newest.unwrap_or(slurm_dir),
            }
        };
        match self.slurm_status(config) {
            Some(status) if slurm_job_active(&status) => {
                println!("{position} {id}: waiting for its Slurm job from before ({status})");
            }
            _ => {
                let command = self.command(DeployCommand::new(Target::Slurm, config.to_path_buf()).to_args());
                ChildRun { cell: id, what: "submitting to Slurm", log: log.clone(), relay_progress: false }
                    .run(command)?;
                println!("{position} {id}: submitted to Slurm");
            }
        }
        let started = Instant::now();
        let mut checked = Instant::now();
        loop {
            if interrupted() {
                println!("{id}: its Slurm job keeps running; the next invocation waits for it");
                return Err(ExperimentError::Interrupted);
            }
            if checked.elapsed() >= std::time::Duration::from_secs(5) {
                checked = Instant::now();
                let status = self.slurm_status(config).unwrap_or_default();
                if !slurm_job_active(&status) {
                    if run_dir.committed_steps()?.contains(&final_step) {
                        return Ok(());
                    }
                    return Err(failed(format!("the job ended before its last checkpoint ({status})")));
                }
            }
            if started.elapsed() > self.plan.settings.launch_timeout {
                return Err(failed(format!(
                    "not finished within {:?} (launch_timeout_hours)",
                    self.plan.settings.launch_timeout
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// The step `RUN/eval/best.json` names.
fn best_step(run_dir: &RunDir) -> Result<u64> {
    let path = run_dir.eval_best();
    let bytes = std::fs::read(&path).map_err(|e| ExperimentError::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ExperimentError::format(&path, e.to_string()))?;
    value["step"].as_u64().ok_or_else(|| ExperimentError::format(&path, "field `step` must be a step number"))
}

/// Runs every cell that has not finished, `parallel` at a time.
pub fn run_cells(plan: &ExperimentPlan, parallel: usize, relay_progress: bool) -> Result<RunSummary> {
    let names = plan.settings.benchmark_names();
    let evaluation_sha = evaluation_sha(&plan.settings, &names);
    let runner = Runner { plan, names, evaluation_sha, relay_progress: relay_progress && parallel == 1 };
    create_dir(&plan.settings.out)?;
    runner.prepare_base_model()?;
    let summary = Mutex::new(RunSummary::default());
    let record = |id: String, outcome: Result<bool>| {
        let mut summary = summary.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(true) => summary.finished.push(id),
            Ok(false) => summary.skipped.push(id),
            Err(ExperimentError::Interrupted) => {}
            Err(error) => {
                let tail = match &error {
                    ExperimentError::Step { log, .. } => format!("\n{}", log_tail(log, 5)),
                    _ => String::new(),
                };
                eprintln!("error: {error}{tail}");
                summary.failed.push(format!("{id}: {error}"));
            }
        }
    };
    if plan.settings.zero_shot {
        record(ZERO_SHOT.to_string(), runner.zero_shot());
    }
    let next = AtomicUsize::new(0);
    let total = plan.cells.len();
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, total.max(1)) {
            scope.spawn(|| {
                loop {
                    if interrupted() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(prepared) = plan.cells.get(i) else { return };
                    let position = format!("[{}/{total}]", i + 1);
                    record(prepared.cell.id(), runner.cell(prepared, &position));
                }
            });
        }
    });
    if interrupted() {
        return Err(ExperimentError::Interrupted);
    }
    Ok(summary.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_states_that_are_still_going_are_told_from_final_ones() {
        assert!(slurm_job_active("17 RUNNING 0:05 node1"));
        assert!(slurm_job_active("17 PENDING 0:00 (Priority)"));
        assert!(slurm_job_active("JobState=REQUEUED ExitCode=0:0"));
        assert!(!slurm_job_active("JobState=COMPLETED ExitCode=0:0"));
        assert!(!slurm_job_active("JobState=FAILED ExitCode=1:0"));
        assert!(!slurm_job_active("JobState=CANCELLED ExitCode=0:15"));
        assert!(!slurm_job_active(""));
    }
}

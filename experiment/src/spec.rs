//! The experiment file (`experiment.yaml`) as written ([`ExperimentSection`]) and built once into
//! checked, typed settings ([`ExperimentSettings`]), every problem reported with its YAML path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

use rosetta_coordinator::schedule::Strategy;

use crate::error::{ExperimentError, Result};

/// File name of the experiment file's copy in the experiment directory (what
/// `rosetta experiment report DIR` reads).
pub const EXPERIMENT_COPY: &str = "experiment.yaml";

/// The experiment-file format this Rosetta reads.
pub const EXPERIMENT_VERSION: u32 = 1;

/// Whether a benchmark is of the training domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// The training data's domain.
    In,
    /// Another domain (other facts, templates, sources; possibly languages unseen in training).
    Out,
}

impl Domain {
    /// `in-domain` or `out-of-domain`.
    pub fn label(self) -> &'static str {
        match self {
            Self::In => "in-domain",
            Self::Out => "out-of-domain",
        }
    }
}

/// One test benchmark as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkEntry {
    /// Benchmark directory (relative to the experiment file).
    pub path: PathBuf,
    /// `in` or `out` (of the training domain).
    pub domain: Domain,
}

/// Which checkpoint of a run is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointChoice {
    /// The last one.
    #[default]
    Last,
    /// The best on the validation benchmark by `metric`.
    Best,
}

/// Where each cell's training runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Launch {
    /// On this machine (`rosetta train`), `--parallel` cells at a time.
    #[default]
    Local,
    /// As a Slurm batch job per cell (`rosetta deploy slurm`, the base config's `deploy.slurm`),
    /// `--parallel` jobs in the queue at a time; evaluation runs here.
    Slurm,
}

/// `selection:` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionSection {
    /// `last` or `best`.
    #[serde(default)]
    pub checkpoint: CheckpointChoice,
    /// The validation benchmark of `best` (must not be a test benchmark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<PathBuf>,
    /// The metric of `best` (a name `rosetta eval` reports, e.g. `multilingual_map`).
    #[serde(default = "default_metric")]
    pub metric: String,
}

fn default_metric() -> String {
    "multilingual_map".into()
}

impl Default for SelectionSection {
    fn default() -> Self {
        Self { checkpoint: CheckpointChoice::Last, benchmark: None, metric: default_metric() }
    }
}

/// `evaluation:` as written: the same settings for every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSection {
    /// `rosetta eval --workers`.
    #[serde(default = "one")]
    pub workers: usize,
    /// `rosetta eval --batch-size`.
    #[serde(default = "batch")]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}
fn batch() -> usize {
    64
}

impl Default for EvaluationSection {
    fn default() -> Self {
        Self { workers: 1, batch_size: batch() }
    }
}

/// `significance:` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignificanceSection {
    /// Random sign flips of the randomisation test and resamples of the bootstrap (an exact
    /// test replaces the flips when there are at most 16 groups).
    #[serde(default = "resamples")]
    pub resamples: usize,
    /// Family-wise error rate after Holm's correction.
    #[serde(default = "level")]
    pub level: f64,
    /// Seed of the resampling.
    #[serde(default)]
    pub seed: u64,
}

fn resamples() -> usize {
    10_000
}
fn level() -> f64 {
    0.05
}

impl Default for SignificanceSection {
    fn default() -> Self {
        Self { resamples: resamples(), level: level(), seed: 0 }
    }
}

/// An experiment file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Format version; must be [`EXPERIMENT_VERSION`].
    #[serde(default)]
    pub version: Option<u32>,
    /// Base run config (relative to this file): data, model, training and job of every run.
    pub base: PathBuf,
    /// Experiment directory (relative to this file): runs, logs and the report go here.
    pub out: PathBuf,
    /// Schedule strategies to train (`x-x-mono`, `x-y`, `hybrid`, `x-x`, `en-en`), by name:
    /// checked with the rest of the file, so that a misspelt one is listed with every other problem.
    pub strategies: Vec<String>,
    /// α values of the `hybrid` strategy.
    #[serde(default = "default_alphas")]
    pub alphas: Vec<f64>,
    /// Seeds: each changes the schedule and dropout; the model is initialised once for all.
    pub seeds: Vec<u64>,
    /// Also evaluate the base model before any training, as a row of its own.
    #[serde(default = "yes")]
    pub zero_shot: bool,
    /// Test benchmarks, each in- or out-of-domain.
    pub benchmarks: Vec<BenchmarkEntry>,
    /// Languages counted as seen in training [default: every language of the training files].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_languages: Option<Vec<String>>,
    /// Which checkpoint of each run is evaluated.
    #[serde(default)]
    pub selection: SelectionSection,
    /// Evaluation settings shared by every run.
    #[serde(default)]
    pub evaluation: EvaluationSection,
    /// Significance testing.
    #[serde(default)]
    pub significance: SignificanceSection,
    /// Worker processes of every run (overrides the base config's `job.workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Steps of every run (overrides the base config's `job.steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Where cells train: `local` or `slurm`.
    #[serde(default)]
    pub launch: Launch,
    /// Longest wait for one cell's Slurm job, queueing included, in hours.
    #[serde(default = "default_launch_timeout")]
    pub launch_timeout_hours: f64,
}

fn default_launch_timeout() -> f64 {
    48.0
}

fn default_alphas() -> Vec<f64> {
    vec![0.5]
}
fn yes() -> bool {
    true
}

/// A test benchmark, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TestBenchmark {
    /// Its directory (absolute).
    pub path: PathBuf,
    /// The `name` of its `benchmark.yaml`: the directory `rosetta eval` writes its report to.
    pub name: String,
    /// Its domain.
    pub domain: Domain,
}

/// The name in a benchmark's `benchmark.yaml` (the directory `rosetta eval` writes its report to).
pub fn benchmark_name(dir: &Path) -> Result<String> {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let path = dir.join("benchmark.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| ExperimentError::io(&path, e))?;
    let named: Named =
        serde_saphyr::from_str(&text).map_err(|e| ExperimentError::format(&path, format!("field `name`: {e}")))?;
    Ok(named.name)
}

/// How the evaluated checkpoint is chosen, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// The last checkpoint.
    Last,
    /// The best on `benchmark` by `metric`.
    Best {
        /// Validation benchmark directory (absolute).
        benchmark: PathBuf,
        /// Metric name.
        metric: String,
    },
}

/// A built experiment: everything checked, paths absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSettings {
    /// The experiment file.
    pub file: PathBuf,
    /// Base run config.
    pub base: PathBuf,
    /// Experiment directory.
    pub out: PathBuf,
    /// Strategies in the order written.
    pub strategies: Vec<Strategy>,
    /// α values of `hybrid`.
    pub alphas: Vec<f64>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Whether the zero-shot row is evaluated.
    pub zero_shot: bool,
    /// Test benchmarks.
    pub benchmarks: Vec<TestBenchmark>,
    /// Seen languages, when given in the file.
    pub training_languages: Option<Vec<String>>,
    /// Checkpoint selection.
    pub selection: Selection,
    /// Evaluation settings.
    pub evaluation: EvaluationSection,
    /// Significance settings.
    pub significance: SignificanceSection,
    /// Worker override.
    pub workers: Option<usize>,
    /// Steps override.
    pub steps: Option<u64>,
    /// Where cells train.
    pub launch: Launch,
    /// Longest wait for one cell's Slurm job.
    pub launch_timeout: std::time::Duration,
    /// The file as written, re-serialised (recorded in the report).
    pub written: ExperimentSection,
}

/// `path` against `base`, with `.` and `..` resolved lexically (`configs/../runs` → `runs`).
fn absolute(base: &Path, path: &Path) -> PathBuf {
    rosetta_common::paths::resolve(base, path)
}

/// Two paths name the same directory (compared after resolving, when both exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl ExperimentSection {
    /// Parses an experiment file.
    pub fn read(file: &Path) -> Result<(Self, PathBuf)> {
        let text = std::fs::read_to_string(file).map_err(|e| ExperimentError::io(file, e))?;
        let section: Self = serde_saphyr::from_str(&text).map_err(|e| ExperimentError::format(file, e.to_string()))?;
        let base = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(base).map_err(|e| ExperimentError::io(base, e))?;
        Ok((section, base))
    }

    /// Checks the file; `base` is its directory.
    pub fn build(&self, file: &Path, base: &Path) -> Result<ExperimentSettings, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        match self.version {
            Some(EXPERIMENT_VERSION) => {}
            None => problems.push("version", format!("missing: add `version: {EXPERIMENT_VERSION}`")),
            Some(other) => problems
                .push("version", format!("{other} is not supported; this Rosetta reads version {EXPERIMENT_VERSION}")),
        }
        let base_config = absolute(base, &self.base);
        if !base_config.is_file() {
            problems.push("base", format!("{} is not a file (the base run config)", base_config.display()));
        }
        if self.strategies.is_empty() {
            problems.push("strategies", "empty: name at least one (x-x-mono, x-y, hybrid, x-x, en-en)");
        }
        let mut strategies = Vec::new();
        for (i, name) in self.strategies.iter().enumerate() {
            match Strategy::ALL.into_iter().find(|s| s.name() == name) {
                Some(strategy) if strategies.contains(&strategy) => {
                    problems.push(format!("strategies[{i}]"), format!("{name:?} is listed twice"));
                }
                Some(strategy) => strategies.push(strategy),
                None => {
                    let known: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                    problems.push(
                        format!("strategies[{i}]"),
                        format!("unknown strategy {name:?}; one of {}", known.join(", ")),
                    );
                }
            }
        }
        let hybrid = strategies.contains(&Strategy::Hybrid);
        if hybrid && self.alphas.is_empty() {
            problems.push("alphas", "empty: the hybrid strategy needs at least one α");
        }
        let mut alphas_seen = Vec::new();
        for (i, &alpha) in self.alphas.iter().enumerate() {
            if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
                problems.push(format!("alphas[{i}]"), format!("{alpha} is not a probability in [0, 1]"));
            } else if alphas_seen.contains(&alpha.to_bits()) {
                problems.push(format!("alphas[{i}]"), format!("{alpha} is listed twice"));
            }
            alphas_seen.push(alpha.to_bits());
        }
        if self.seeds.is_empty() {
            problems.push("seeds", "empty: give at least one seed (three or more to see seed noise)");
        }
        let mut seeds_seen = HashSet::new();
        for (i, seed) in self.seeds.iter().enumerate() {
            if !seeds_seen.insert(seed) {
                problems.push(format!("seeds[{i}]"), format!("{seed} is listed twice"));
            }
        }
        if self.benchmarks.is_empty() {
            problems.push("benchmarks", "empty: name at least one test benchmark with its domain (in or out)");
        }
        let mut benchmarks: Vec<TestBenchmark> = Vec::new();
        for (i, entry) in self.benchmarks.iter().enumerate() {
            let path = absolute(base, &entry.path);
            let name = if path.join("benchmark.yaml").is_file() {
                benchmark_name(&path).unwrap_or_else(|e| {
                    problems.push(format!("benchmarks[{i}].path"), e.to_string());
                    String::new()
                })
            } else {
                problems.push(
                    format!("benchmarks[{i}].path"),
                    format!("{} has no benchmark.yaml (convert or synthesise it first)", path.display()),
                );
                String::new()
            };
            if benchmarks.iter().any(|b| same_dir(&b.path, &path)) {
                problems.push(format!("benchmarks[{i}].path"), "listed twice");
            } else if !name.is_empty() && benchmarks.iter().any(|b| b.name == name) {
                problems.push(
                    format!("benchmarks[{i}].path"),
                    format!("another test benchmark has the name {name:?} too (reports would overwrite each other)"),
                );
            }
            benchmarks.push(TestBenchmark { path, name, domain: entry.domain });
        }
        let selection = match (self.selection.checkpoint, &self.selection.benchmark) {
            (CheckpointChoice::Last, None) => Selection::Last,
            (CheckpointChoice::Last, Some(_)) => {
                problems.push("selection.benchmark", "only `checkpoint: best` uses a validation benchmark");
                Selection::Last
            }
            (CheckpointChoice::Best, None) => {
                problems.push("selection.benchmark", "`checkpoint: best` needs a validation benchmark");
                Selection::Last
            }
            (CheckpointChoice::Best, Some(path)) => {
                let path = absolute(base, path);
                if !path.join("benchmark.yaml").is_file() {
                    problems.push("selection.benchmark", format!("{} has no benchmark.yaml", path.display()));
                }
                if benchmarks.iter().any(|b| same_dir(&b.path, &path)) {
                    problems.push(
                        "selection.benchmark",
                        "is also a test benchmark: choosing checkpoints on test data inflates its numbers",
                    );
                }
                Selection::Best { benchmark: path, metric: self.selection.metric.clone() }
            }
        };
        if let Selection::Best { metric, .. } = &selection
            && !rosetta_eval::report::METRICS.iter().any(|(name, _)| name == metric)
        {
            let known: Vec<&str> = rosetta_eval::report::METRICS.iter().map(|(n, _)| *n).collect();
            problems.push("selection.metric", format!("unknown metric {metric:?}; one of {}", known.join(", ")));
        }
        if self.evaluation.workers == 0 {
            problems.push("evaluation.workers", "must be at least 1");
        }
        if self.evaluation.batch_size == 0 {
            problems.push("evaluation.batch_size", "must be at least 1");
        }
        if self.significance.resamples < 100 {
            problems.push("significance.resamples", "must be at least 100");
        }
        if !(self.significance.level > 0.0 && self.significance.level < 1.0) {
            problems.push("significance.level", format!("{} is not in (0, 1)", self.significance.level));
        }
        if self.workers == Some(0) {
            problems.push("workers", "must be at least 1");
        }
        if self.steps == Some(0) {
            problems.push("steps", "must be at least 1");
        }
        if !(self.launch_timeout_hours.is_finite() && self.launch_timeout_hours > 0.0) {
            problems.push(
                "launch_timeout_hours",
                format!("{} is not a positive number of hours", self.launch_timeout_hours),
            );
        }
        if let Some(languages) = &self.training_languages
            && languages.is_empty()
        {
            problems.push("training_languages", "empty: leave it out to take the training files' languages");
        }
        problems.into_result(ExperimentSettings {
            file: file.to_path_buf(),
            base: base_config,
            out: absolute(base, &self.out),
            strategies,
            alphas: if hybrid { self.alphas.clone() } else { Vec::new() },
            seeds: self.seeds.clone(),
            zero_shot: self.zero_shot,
            benchmarks,
            training_languages: self.training_languages.clone(),
            selection,
            evaluation: self.evaluation.clone(),
            significance: self.significance.clone(),
            workers: self.workers,
            steps: self.steps,
            launch: self.launch,
            launch_timeout: std::time::Duration::from_secs_f64(self.launch_timeout_hours.clamp(1e-3, 1e4) * 3600.0),
            written: self.clone(),
        })
    }
}

impl ExperimentSettings {
    /// Writes `OUT/experiment.yaml`: the experiment file with absolute paths, so that
    /// `rosetta experiment report OUT` finds everything from the directory alone.
    pub fn write_copy(&self) -> Result<()> {
        let mut written = self.written.clone();
        written.base = self.base.clone();
        written.out = self.out.clone();
        for (entry, test) in written.benchmarks.iter_mut().zip(&self.benchmarks) {
            entry.path = test.path.clone();
        }
        if let Selection::Best { benchmark, .. } = &self.selection {
            written.selection.benchmark = Some(benchmark.clone());
        }
        let path = self.out.join(EXPERIMENT_COPY);
        let yaml = serde_saphyr::to_string(&written).map_err(|e| ExperimentError::format(&path, e.to_string()))?;
        Ok(rosetta_common::atomic::write_atomic(&path, yaml.as_bytes())?)
    }

    /// The test benchmarks' names, in the order of the file.
    pub fn benchmark_names(&self) -> Vec<String> {
        self.benchmarks.iter().map(|b| b.name.clone()).collect()
    }

    /// Reads and builds an experiment file.
    pub fn load(file: &Path) -> Result<Self> {
        let (section, base) = ExperimentSection::read(file)?;
        section.build(file, &base).map_err(|problems| ExperimentError::Config { file: file.to_path_buf(), problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn benchmark(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("benchmark.yaml"), format!("name: {name}\n")).unwrap();
        path
    }

    #[test]
    fn every_problem_is_named_by_its_yaml_path() {
        let dir = tempfile::tempdir().unwrap();
        let test = benchmark(dir.path(), "test");
        let text = format!(
            "base: missing.yaml\nout: exp\nstrategies: [hybrid, hybrid]\nalphas: [1.5]\nseeds: [1, 1]\n\
             benchmarks: [{{path: {t}, domain: in}}, {{path: {t}, domain: out}}]\n\
             selection: {{checkpoint: best, benchmark: {t}, metric: speed}}\nsignificance: {{level: 2}}\n",
            t = test.display()
        );
        let section: ExperimentSection = serde_saphyr::from_str(&text).unwrap();
        let problems = section.build(&dir.path().join("e.yaml"), dir.path()).unwrap_err().to_string();
        for expected in [
            "version: missing",
            "base: ",
            "strategies[1]: \"hybrid\" is listed twice",
            "alphas[0]: 1.5 is not a probability",
            "seeds[1]: 1 is listed twice",
            "benchmarks[1].path: listed twice",
            "selection.benchmark: is also a test benchmark",
            "selection.metric: unknown metric \"speed\"",
            "significance.level: 2 is not in (0, 1)",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }

    #[test]
    fn a_good_file_builds_with_absolute_paths_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        benchmark(dir.path(), "b");
        benchmark(dir.path(), "v");
        std::fs::write(dir.path().join("run.yaml"), "version: 1\n").unwrap();
        let text = "version: 1\nbase: run.yaml\nout: exp\nstrategies: [x-y, hybrid]\nseeds: [1, 2]\n\
                    benchmarks: [{path: b, domain: out}]\nselection: {checkpoint: best, benchmark: v}\n";
        let section: ExperimentSection = serde_saphyr::from_str(text).unwrap();
        let built = section.build(&dir.path().join("e.yaml"), dir.path()).unwrap();
        assert_eq!(built.alphas, [0.5]);
        assert_eq!(built.out, dir.path().join("exp"));
        assert_eq!(built.benchmarks[0].domain, Domain::Out);
        assert_eq!(
            built.selection,
            Selection::Best { benchmark: dir.path().join("v"), metric: "multilingual_map".into() }
        );
        assert_eq!(built.significance.resamples, 10_000);
        let unknown: Result<ExperimentSection, _> = serde_saphyr::from_str("base: a\nout: b\nstrategy: [x]\n");
        assert!(unknown.unwrap_err().to_string().contains("strategy"));
    }
}

//! The `job:` section of a run config, owned by the coordinator: as written in YAML
//! ([`JobSection`]) and as built once into typed values ([`JobSettings`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rosetta_common::{ConfigProblems, RunDir};
use serde::{Deserialize, Serialize};

fn default_workers() -> usize {
    2
}
fn default_every() -> u64 {
    50
}
fn default_keep() -> usize {
    3
}
fn default_heartbeat() -> f64 {
    10.0
}
fn default_rendezvous() -> f64 {
    120.0
}
fn default_step_timeout() -> f64 {
    1800.0
}
fn default_run_dir() -> PathBuf {
    PathBuf::from("runs/default")
}
fn default_restarts() -> u32 {
    3
}
fn default_metrics() -> String {
    "127.0.0.1:0".to_string()
}

/// Sane bounds of the timeouts, in seconds.
const HEARTBEAT_RANGE: (f64, f64) = (0.1, 3600.0);
const RENDEZVOUS_RANGE: (f64, f64) = (0.1, 86_400.0);
const STEP_RANGE: (f64, f64) = (0.5, 86_400.0);

/// `job:` as written in a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Optimiser steps of the whole job.
    pub steps: u64,
    /// Workers of a generation (one per device).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Checkpoint every this many steps (and after the last one).
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// Committed checkpoints to keep.
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// A worker silent this long (seconds) fails the generation.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_timeout_secs: f64,
    /// How long rendezvous waits for every worker (seconds).
    #[serde(default = "default_rendezvous")]
    pub rendezvous_timeout_secs: f64,
    /// A generation in which no step completes for this long (seconds) ends, even when every
    /// worker still heartbeats (a worker whose training thread is stuck).
    #[serde(default = "default_step_timeout")]
    pub step_timeout_secs: f64,
    /// Run directory: checkpoints, manifests, reports (relative to the config file).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// The run's name: the `run` label of its Prometheus series (default: the run directory's
    /// last component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint (`host:port`; port 0 picks a free one).
    #[serde(default = "default_metrics")]
    pub metrics_address: String,
    /// Generations that may fail before the job does: each restart resumes from the last
    /// committed checkpoint with freshly registered workers.
    #[serde(default = "default_restarts")]
    pub max_restarts: u32,
    /// Elastic membership: continue with fewer workers when not all of them come back.
    #[serde(default)]
    pub elastic: ElasticSection,
}

/// `job.elastic`: how few workers a generation may form with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticSection {
    /// When the rendezvous timeout passes with at least this many (and fewer than `workers`)
    /// registered, the generation starts with them: same global batch, cut into fewer
    /// micro-batches. Unset (the default): every generation needs all `workers`.
    #[serde(default)]
    pub min_workers: Option<usize>,
}

/// The built `job:` section: every value checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Optimiser steps of the whole job.
    pub steps: u64,
    /// Workers a generation waits for.
    pub workers: usize,
    /// Fewest workers a generation may start with once the rendezvous timeout passed
    /// (`workers` unless the job is elastic).
    pub min_workers: usize,
    /// Checkpoint after every this many steps (and after the last one).
    pub checkpoint_every: u64,
    /// Committed checkpoints kept.
    pub keep_checkpoints: usize,
    /// A ranked worker silent this long ends its generation.
    pub heartbeat_timeout: Duration,
    /// How long a generation waits for its workers.
    pub rendezvous_timeout: Duration,
    /// A generation without a completed step for this long ends.
    pub step_timeout: Duration,
    /// Where checkpoints, manifests and reports go (absolute).
    pub run_dir: RunDir,
    /// The run's name (the `run` label of its series).
    pub run_name: String,
    /// Where Prometheus scrapes (port 0: any free port).
    pub metrics_address: SocketAddr,
    /// Generations that may fail before the job does.
    pub max_restarts: u32,
}

fn seconds(problems: &mut ConfigProblems, name: &str, value: f64, (low, high): (f64, f64)) -> Duration {
    if !(value.is_finite() && (low..=high).contains(&value)) {
        problems.push(format!("job.{name}"), format!("{value} is not a number of seconds between {low} and {high}"));
        return Duration::ZERO;
    }
    Duration::from_secs_f64(value)
}

impl JobSection {
    /// Builds the typed settings; `base` is the config file's directory (relative `run_dir`s
    /// are resolved against it). Lists every problem with its YAML path.
    pub fn build(&self, base: &Path) -> Result<JobSettings, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        if self.steps == 0 {
            problems.push("job.steps", "must be at least 1");
        }
        if self.workers == 0 {
            problems.push("job.workers", "must be at least 1");
        }
        if self.checkpoint_every == 0 {
            problems.push("job.checkpoint_every", "must be at least 1");
        }
        if self.keep_checkpoints == 0 {
            problems.push("job.keep_checkpoints", "must be at least 1");
        }
        let min_workers = match self.elastic.min_workers {
            Some(min) if min == 0 || min > self.workers => {
                problems.push(
                    "job.elastic.min_workers",
                    format!("{min} must be between 1 and job.workers ({})", self.workers),
                );
                self.workers
            }
            Some(min) => min,
            None => self.workers,
        };
        let heartbeat_timeout =
            seconds(&mut problems, "heartbeat_timeout_secs", self.heartbeat_timeout_secs, HEARTBEAT_RANGE);
        let rendezvous_timeout =
            seconds(&mut problems, "rendezvous_timeout_secs", self.rendezvous_timeout_secs, RENDEZVOUS_RANGE);
        let step_timeout = seconds(&mut problems, "step_timeout_secs", self.step_timeout_secs, STEP_RANGE);
        let metrics_address = self.metrics_address.parse().unwrap_or_else(|_| {
            problems.push("job.metrics_address", format!("{:?} is not host:port", self.metrics_address));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let run_dir = rosetta_common::paths::resolve(base, &self.run_dir);
        let run_name = self.name.clone().unwrap_or_else(|| {
            run_dir.file_name().map_or_else(|| "rosetta".to_string(), |n| n.to_string_lossy().into_owned())
        });
        if run_name.is_empty() || run_name.len() > 128 || run_name.chars().any(char::is_control) {
            problems.push("job.name", format!("{run_name:?}: 1–128 printable characters"));
        }
        problems.into_result(JobSettings {
            steps: self.steps,
            workers: self.workers,
            min_workers,
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: self.keep_checkpoints,
            heartbeat_timeout,
            rendezvous_timeout,
            step_timeout,
            run_dir: RunDir::new(run_dir),
            run_name,
            metrics_address,
            max_restarts: self.max_restarts,
        })
    }
}

impl JobSettings {
    /// Settings for tests and tools: `steps` steps on `workers` workers in `run_dir`, every
    /// other value at its default.
    pub fn with_defaults(steps: u64, workers: usize, run_dir: &Path) -> Self {
        Self {
            steps,
            workers,
            min_workers: workers,
            checkpoint_every: default_every(),
            keep_checkpoints: default_keep(),
            heartbeat_timeout: Duration::from_secs_f64(default_heartbeat()),
            rendezvous_timeout: Duration::from_secs_f64(default_rendezvous()),
            step_timeout: Duration::from_secs_f64(default_step_timeout()),
            run_name: run_dir.file_name().map_or_else(|| "rosetta".to_string(), |n| n.to_string_lossy().into_owned()),
            run_dir: RunDir::new(run_dir),
            metrics_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_restarts: default_restarts(),
        }
    }

    /// Whether a checkpoint follows step `step` (0-based).
    pub fn checkpoint_after(&self, step: u64) -> bool {
        (step + 1).is_multiple_of(self.checkpoint_every) || step + 1 == self.steps
    }

    /// Whether a generation may start with fewer than `workers`.
    pub fn is_elastic(&self) -> bool {
        self.min_workers < self.workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> JobSection {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn builds_typed_values_and_resolves_the_run_dir() {
        let built = section("steps: 10\nheartbeat_timeout_secs: 2.5\nrun_dir: runs/x\nelastic: {min_workers: 1}\n")
            .build(Path::new("/base"))
            .unwrap();
        assert_eq!(built.heartbeat_timeout, Duration::from_millis(2500));
        assert_eq!(built.run_dir.root(), Path::new("/base/runs/x"));
        assert_eq!((built.workers, built.min_workers, built.is_elastic()), (2, 1, true));
        assert!(built.checkpoint_after(9) && built.checkpoint_after(49) && !built.checkpoint_after(10));
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let err = section(
            "steps: 0\nworkers: 2\nheartbeat_timeout_secs: .nan\nrendezvous_timeout_secs: -1\nmetrics_address: nowhere\nelastic: {min_workers: 3}\n",
        )
        .build(Path::new("/"))
        .unwrap_err()
        .to_string();
        for expected in [
            "job.steps: must be at least 1",
            "job.heartbeat_timeout_secs: NaN is not a number of seconds",
            "job.rendezvous_timeout_secs: -1 is not",
            "job.metrics_address: \"nowhere\" is not host:port",
            "job.elastic.min_workers: 3 must be between 1 and job.workers (2)",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }
}

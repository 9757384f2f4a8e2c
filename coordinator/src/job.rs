//! The `job:` section of a run config: how long the job runs, how many workers, checkpoints,
//! timeouts and where the run lives. Owned by the coordinator.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
fn default_run_dir() -> PathBuf {
    PathBuf::from("runs/default")
}
fn default_restarts() -> u32 {
    3
}
fn default_metrics() -> String {
    "127.0.0.1:0".to_string()
}

/// `job:` of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
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
    /// Run directory: checkpoints, manifests, reports (relative to the config file).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint (`host:port`; port 0 picks a free one).
    #[serde(default = "default_metrics")]
    pub metrics_address: String,
    /// Generations that may fail before the job does: each restart resumes from the last
    /// committed checkpoint with freshly registered workers.
    #[serde(default = "default_restarts")]
    pub max_restarts: u32,
    /// Elastic membership: continue with fewer workers when not all of them come back.
    #[serde(default)]
    pub elastic: ElasticConfig,
}

/// `job.elastic`: how few workers a generation may form with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticConfig {
    /// When the rendezvous timeout passes with at least this many (and fewer than `workers`)
    /// registered, the generation starts with them: same global batch, cut into fewer
    /// micro-batches. Unset (the default): every generation needs all `workers`.
    #[serde(default)]
    pub min_workers: Option<usize>,
}

impl JobConfig {
    /// Resolves `run_dir` against the config file's directory.
    pub fn resolve(mut self, base: &Path) -> Self {
        if self.run_dir.is_relative() {
            self.run_dir = base.join(&self.run_dir);
        }
        self
    }

    /// Every problem, as `job.<field>: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.steps == 0 {
            problems.push("job.steps: must be at least 1".to_string());
        }
        if self.workers == 0 {
            problems.push("job.workers: must be at least 1".to_string());
        }
        if self.checkpoint_every == 0 {
            problems.push("job.checkpoint_every: must be at least 1".to_string());
        }
        if let Some(min) = self.elastic.min_workers
            && (min == 0 || min > self.workers)
        {
            problems
                .push(format!("job.elastic.min_workers: {min} must be between 1 and job.workers ({})", self.workers));
        }
        if self.keep_checkpoints == 0 {
            problems.push("job.keep_checkpoints: must be at least 1".to_string());
        }
        for (name, value) in [
            ("heartbeat_timeout_secs", self.heartbeat_timeout_secs),
            ("rendezvous_timeout_secs", self.rendezvous_timeout_secs),
        ] {
            if !(value.is_finite() && value > 0.0) {
                problems.push(format!("job.{name}: {value} is not a positive number of seconds"));
            }
        }
        if self.metrics_address.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("job.metrics_address: {:?} is not host:port", self.metrics_address));
        }
        problems
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_timeout_secs)
    }

    /// The rendezvous timeout.
    pub fn rendezvous_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.rendezvous_timeout_secs)
    }

    /// Whether a checkpoint follows step `step` (0-based).
    pub fn checkpoint_after(&self, step: u64) -> bool {
        (step + 1).is_multiple_of(self.checkpoint_every) || step + 1 == self.steps
    }
}

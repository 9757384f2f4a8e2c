//! The `evaluation:` section of a run config: which benchmarks, how often, how to pick the best checkpoint.

use rosetta_common::ConfigProblems;
use rosetta_worker_config::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::report::METRICS;

/// Evaluation during training (benchmarks come from `data.benchmarks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Evaluate every N steps (at the first checkpoint at or after each multiple); 0 = never during training.
    #[serde(default)]
    pub every: u64,
    /// Evaluate the last checkpoint when training ends.
    #[serde(default = "yes")]
    pub at_end: bool,
    /// Worker processes per evaluation (corpus shards).
    #[serde(default = "one")]
    pub workers: usize,
    /// Texts per encoder forward pass.
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    /// Candidates per query and pool in TREC run files; 0 writes none.
    #[serde(default)]
    pub trec_depth: usize,
    /// Name a headline metric (e.g. `multilingual_map`, `rank_distance`) to record the best
    /// checkpoint by it in `eval/best.json`.
    #[serde(default)]
    pub select_best: Option<String>,
    /// Device of the evaluation workers (`cpu`, `cuda:N`); by default the CPU while training
    /// runs (the GPUs are the training workers') and `training.device` for the final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// libtorch threads of each evaluation worker [default: the host's cores / `workers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn batch_size() -> usize {
    64
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            every: 0,
            at_end: true,
            workers: 1,
            batch_size: batch_size(),
            trec_depth: 0,
            select_best: None,
            device: None,
            threads: None,
        }
    }
}

impl EvaluationConfig {
    /// Checks the section, listing every problem with its YAML path.
    pub fn build(&self) -> Result<Self, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        if self.workers == 0 {
            problems.push("evaluation.workers", "must be at least 1");
        }
        if self.batch_size == 0 {
            problems.push("evaluation.batch_size", "must be at least 1");
        }
        if self.threads == Some(0) {
            problems.push("evaluation.threads", "must be at least 1 (leave it out for the default)");
        }
        if let Some(name) = &self.select_best
            && !METRICS.iter().any(|(known, _)| known == name)
        {
            let known: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
            problems.push("evaluation.select_best", format!("unknown metric {name:?}; one of {}", known.join(", ")));
        }
        problems.into_result(self.clone())
    }

    /// Whether a higher value of the selection metric is better.
    pub fn higher_is_better(&self) -> bool {
        self.select_best.as_deref().and_then(|name| METRICS.iter().find(|(n, _)| *n == name)).is_none_or(|(_, up)| *up)
    }
}

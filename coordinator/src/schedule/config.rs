//! `schedule:` section of the run config, and its validation against a pair index.

use std::collections::BTreeMap;

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

/// The batch-sampling strategy (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Monolingual batch with probability `alpha`, else cross-lingual (the paper's method).
    #[serde(rename = "hybrid")]
    Hybrid,
    /// Only monolingual batches (α = 1).
    #[serde(rename = "x-x-mono")]
    XXMono,
    /// Only cross-lingual batches (α = 0).
    #[serde(rename = "x-y")]
    XY,
    /// LAReQA X-X: every example same-language, languages mixed within a batch.
    #[serde(rename = "x-x")]
    XX,
    /// LAReQA En-En: one language only (`en_en_language`).
    #[serde(rename = "en-en")]
    EnEn,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Strategy {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [Self; 5] = [Self::Hybrid, Self::XXMono, Self::XY, Self::XX, Self::EnEn];

    /// The name a run config uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::XXMono => "x-x-mono",
            Self::XY => "x-y",
            Self::XX => "x-x",
            Self::EnEn => "en-en",
        }
    }
}

/// How the dataset of each batch is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetSampling {
    /// Proportional to the dataset's number of parallel groups (the paper's choice).
    #[default]
    Proportional,
    /// Every dataset equally likely.
    Uniform,
}

/// How the languages of a cross-lingual batch are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrossPairing {
    /// Each example draws its own (query, passage) languages, different, among its group's.
    #[default]
    PerExample,
    /// One language pair for the whole batch.
    PerBatch,
}

fn default_alpha() -> f64 {
    0.5
}
fn default_batch() -> usize {
    100
}
fn default_en() -> String {
    "en".to_string()
}

/// The `schedule:` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Sampling strategy.
    pub strategy: Strategy,
    /// Probability of a monolingual batch (`hybrid` only; default 0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Examples per global batch (all ranks together).
    #[serde(default = "default_batch")]
    pub global_batch_size: usize,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// How datasets are weighted when `dataset_weights` is empty.
    #[serde(default)]
    pub dataset_sampling: DatasetSampling,
    /// Explicit dataset weights (≥ 0); datasets not named get 0.
    #[serde(default)]
    pub dataset_weights: BTreeMap<String, f64>,
    /// Weights of languages for monolingual batches (empty = uniform); languages not named get 0.
    #[serde(default)]
    pub language_weights: BTreeMap<String, f64>,
    /// Pairing of languages in cross-lingual batches.
    #[serde(default)]
    pub cross_pairing: CrossPairing,
    /// Training languages (empty = every language in the data).
    #[serde(default)]
    pub languages: Vec<String>,
    /// The single language of `en-en`.
    #[serde(default = "default_en")]
    pub en_en_language: String,
}

impl ScheduleConfig {
    /// A hybrid schedule (monolingual batches with probability `alpha`) of global batches of
    /// `global_batch_size`, every other field at its default.
    pub fn hybrid(alpha: f64, global_batch_size: usize, seed: u64) -> Self {
        Self {
            strategy: Strategy::Hybrid,
            alpha,
            global_batch_size,
            seed,
            dataset_sampling: DatasetSampling::default(),
            dataset_weights: BTreeMap::new(),
            language_weights: BTreeMap::new(),
            cross_pairing: CrossPairing::default(),
            languages: Vec::new(),
            en_en_language: default_en(),
        }
    }

    /// Checks what can be checked without the data (the rest is checked by `Scheduler::new`
    /// against the index); every problem has its YAML path.
    pub fn build(self) -> Result<Self, ConfigProblems> {
        self.static_problems().into_result(self)
    }

    /// Problems that need no data to find.
    pub(crate) fn static_problems(&self) -> ConfigProblems {
        let mut problems = ConfigProblems::new();
        if !(0.0..=1.0).contains(&self.alpha) {
            problems.push("schedule.alpha", format!("{} is outside 0..=1", self.alpha));
        }
        if self.strategy != Strategy::Hybrid && self.alpha != default_alpha() {
            problems.push(
                "schedule.alpha",
                format!("only used by strategy hybrid (the strategy fixes it); remove it for {:?}", self.strategy),
            );
        }
        if self.global_batch_size == 0 {
            problems.push("schedule.global_batch_size", "must be at least 1");
        }
        for (name, weight) in &self.dataset_weights {
            if !weight.is_finite() || *weight < 0.0 {
                problems
                    .push(format!("schedule.dataset_weights.{name}"), format!("{weight} is not a finite weight >= 0"));
            }
        }
        for (lang, weight) in &self.language_weights {
            if !weight.is_finite() || *weight < 0.0 {
                problems
                    .push(format!("schedule.language_weights.{lang}"), format!("{weight} is not a finite weight >= 0"));
            }
        }
        problems
    }
}

//! The grid of an experiment: arms (a strategy, with its α for `hybrid`) × seeds, each cell an
//! ordinary run directory `OUT/runs/<cell>/run`, and the zero-shot row `OUT/zero-shot`.

use std::path::{Path, PathBuf};

use rosetta_coordinator::schedule::Strategy;

use crate::spec::ExperimentSettings;

/// A strategy with its α: one row of the report's tables (its cells differ by seed only).
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Schedule strategy.
    pub strategy: Strategy,
    /// α of `hybrid` (`None` for the other strategies).
    pub alpha: Option<f64>,
}

/// Name of the zero-shot row.
pub const ZERO_SHOT: &str = "zero-shot";

impl Arm {
    /// The arm's name: `x-y`, `hybrid α=0.5`.
    pub fn label(&self) -> String {
        match self.alpha {
            Some(alpha) => format!("{} α={alpha}", self.strategy),
            None => self.strategy.name().to_string(),
        }
    }

    /// A file-name-safe form: `x-y`, `hybrid-a0.5`.
    pub fn slug(&self) -> String {
        match self.alpha {
            Some(alpha) => format!("{}-a{alpha}", self.strategy),
            None => self.strategy.name().to_string(),
        }
    }
}

/// One training run of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Its arm.
    pub arm: Arm,
    /// Its schedule seed.
    pub seed: u64,
}

impl Cell {
    /// `hybrid-a0.5.seed-2`.
    pub fn id(&self) -> String {
        format!("{}.seed-{}", self.arm.slug(), self.seed)
    }

    /// The cell's directory under the experiment directory.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join("runs").join(self.id())
    }
}

/// The experiment's arms in the order of the file: strategies, `hybrid` once per α.
pub fn arms(settings: &ExperimentSettings) -> Vec<Arm> {
    settings
        .strategies
        .iter()
        .flat_map(|strategy| {
            if *strategy == Strategy::Hybrid {
                settings.alphas.iter().map(|&a| Arm { strategy: *strategy, alpha: Some(a) }).collect()
            } else {
                vec![Arm { strategy: *strategy, alpha: None }]
            }
        })
        .collect()
}

/// Every training cell: seeds in the inner loop of each arm.
pub fn cells(settings: &ExperimentSettings) -> Vec<Cell> {
    arms(settings)
        .into_iter()
        .flat_map(|arm| settings.seeds.iter().map(move |&seed| Cell { arm: arm.clone(), seed }))
        .collect()
}

/// `OUT/zero-shot`: the base model's evaluation.
pub fn zero_shot_dir(out: &Path) -> PathBuf {
    out.join(ZERO_SHOT)
}

/// `OUT/base-model`: the initialisation every run starts from (when the base config names a preset).
pub fn base_model_dir(out: &Path) -> PathBuf {
    out.join("base-model")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExperimentSection;

    #[test]
    fn hybrid_takes_every_alpha_and_every_arm_every_seed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.yaml"), "").unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/benchmark.yaml"), "name: b\n").unwrap();
        let text = "version: 1\nbase: run.yaml\nout: exp\nstrategies: [x-x-mono, hybrid, x-y]\nalphas: [0.25, 0.5]\n\
                    seeds: [3, 4]\nbenchmarks: [{path: b, domain: in}]\n";
        let section: ExperimentSection = serde_saphyr::from_str(text).unwrap();
        let settings = section.build(&dir.path().join("e.yaml"), dir.path()).unwrap();
        let labels: Vec<String> = arms(&settings).iter().map(Arm::label).collect();
        assert_eq!(labels, ["x-x-mono", "hybrid α=0.25", "hybrid α=0.5", "x-y"]);
        let ids: Vec<String> = cells(&settings).iter().map(Cell::id).collect();
        assert_eq!(ids.len(), 8);
        assert_eq!(&ids[..3], ["x-x-mono.seed-3", "x-x-mono.seed-4", "hybrid-a0.25.seed-3"]);
        assert_eq!(cells(&settings)[0].dir(&settings.out), dir.path().join("exp/runs/x-x-mono.seed-3"));
    }
}

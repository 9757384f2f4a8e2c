//! The rows a worker needs for its micro-batches, by (dataset, pair_id, lang).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use rosetta_datasets::pairs::{TrainingPair, for_each_pair};
use rosetta_proto::v1::GetPlanResponse;
use rosetta_worker::train::MicroBatch;

/// Every training row in memory, keyed for plan look-ups.
pub struct PairLookup {
    rows: HashMap<(String, String, String), TrainingPair>,
}

impl PairLookup {
    /// Loads the training files.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut rows = HashMap::new();
        for path in paths {
            for_each_pair(path, |row| {
                rows.insert((row.dataset.clone(), row.pair_id.clone(), row.lang.clone()), row);
            })
            .with_context(|| format!("loading training pairs {}", path.display()))?;
        }
        Ok(Self { rows })
    }

    /// The micro-batch a plan names: queries in their language, positives (and up to
    /// `hard_negatives` negatives) in theirs.
    pub fn micro_batch(&self, plan: &GetPlanResponse, hard_negatives: usize) -> anyhow::Result<MicroBatch> {
        let mut batch = MicroBatch::default();
        for example in &plan.examples {
            let row = |lang: &str| {
                self.rows.get(&(plan.dataset.clone(), example.pair_id.clone(), lang.to_string())).with_context(|| {
                    format!(
                        "plan of step {} names ({}, {}, {}), which this worker's data does not have",
                        plan.step, plan.dataset, example.pair_id, lang
                    )
                })
            };
            let query = row(&example.query_lang)?;
            let passage = row(&example.passage_lang)?;
            batch.queries.push(query.query.clone());
            batch.positives.push(passage.positive.clone());
            if let Some(negatives) = &passage.negatives {
                batch.negatives.extend(negatives.iter().take(hard_negatives).cloned());
            }
        }
        Ok(batch)
    }
}

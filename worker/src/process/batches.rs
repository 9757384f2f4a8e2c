//! A rank's micro-batch, read from the pair store by the row numbers of its plan: only the rows
//! of the batch are ever read, so a worker's memory does not grow with the data set.

use rosetta_datasets::store::{PairStore, StoredRow};
use rosetta_proto::v1::GetPlanResponse;

use crate::error::{Result, WorkerError};
use crate::train::MicroBatch;

fn checked_row(store: &PairStore, row: u64, pair_id: &str, lang: &str, step: u64) -> Result<StoredRow> {
    let stored = store.read_row(row)?;
    if stored.pair_id != pair_id || stored.lang != lang {
        return Err(WorkerError::invalid(
            "plan",
            format!(
                "step {step} names ({pair_id}, {lang}) at row {row} of the store {}, which holds ({}, {}): \
                 the coordinator and this worker read different stores",
                store.dir().display(),
                stored.pair_id,
                stored.lang
            ),
        ));
    }
    Ok(stored)
}

/// The micro-batch a plan names: queries in their language, positives (and up to
/// `hard_negatives` negatives) in theirs.
pub fn micro_batch(store: &PairStore, plan: &GetPlanResponse, hard_negatives: usize) -> Result<MicroBatch> {
    let mut batch = MicroBatch::default();
    for example in &plan.examples {
        let query = checked_row(store, example.query_row, &example.pair_id, &example.query_lang, plan.step)?;
        let passage = checked_row(store, example.passage_row, &example.pair_id, &example.passage_lang, plan.step)?;
        batch.queries.push(query.query);
        batch.positives.push(passage.positive);
        batch.negatives.extend(passage.negatives.into_iter().take(hard_negatives));
    }
    Ok(batch)
}

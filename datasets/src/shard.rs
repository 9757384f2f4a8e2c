//! The shard index: splits a training-pairs file among N workers by whole row groups,
//! balanced by rows and deterministic, with every parallel group inside one shard; and an
//! async reader that streams one shard with column projection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use futures::{Stream, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};
use crate::table::{TableReader, text_column};

/// One worker's part of a training-pairs file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Worker rank this shard is for.
    pub rank: usize,
    /// Row-group indices, ascending and contiguous.
    pub row_groups: Vec<usize>,
    /// Rows in those row groups.
    pub rows: usize,
}

/// How a training-pairs file is split among workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// The file split.
    pub source: PathBuf,
    /// Rows in the file.
    pub total_rows: usize,
    /// Rows of each row group.
    pub row_group_rows: Vec<usize>,
    /// One shard per worker.
    pub shards: Vec<Shard>,
}

/// Splits row groups (sizes `row_group_rows`) into `workers` contiguous runs balanced by rows:
/// run k ends at the row-group boundary nearest to (k+1)·total/workers, and every run is
/// non-empty. Deterministic; needs `workers <= row_group_rows.len()`.
pub fn split_row_groups(row_group_rows: &[usize], workers: usize) -> Vec<Vec<usize>> {
    let groups = row_group_rows.len();
    assert!(workers >= 1 && workers <= groups, "need 1..={groups} workers, got {workers}");
    let total: usize = row_group_rows.iter().sum();
    let mut ends = Vec::with_capacity(groups);
    let mut cumulative = 0;
    for rows in row_group_rows {
        cumulative += rows;
        ends.push(cumulative);
    }
    let mut runs = Vec::with_capacity(workers);
    let mut start = 0;
    for k in 0..workers {
        let remaining_workers = workers - k - 1;
        // Leave at least one row group for every later worker.
        let last_allowed = groups - remaining_workers;
        let end = if remaining_workers == 0 {
            groups
        } else {
            let target = (total as u128 * (k as u128 + 1) / workers as u128) as usize;
            let mut best = start + 1;
            for candidate in start + 1..=last_allowed {
                let distance = ends[candidate - 1].abs_diff(target);
                if distance < ends[best - 1].abs_diff(target) {
                    best = candidate;
                }
            }
            best
        };
        runs.push((start..end).collect());
        start = end;
    }
    runs
}

/// Builds the shard index of `path` for `workers`, after checking that no parallel group is
/// split across row groups (the file must come from Rosetta's writer or obey its rule).
pub fn build_shard_index(path: &Path, workers: usize) -> Result<ShardIndex> {
    if workers == 0 {
        return Err(DatasetError::invalid("workers", "must be at least 1"));
    }
    let reader = TableReader::open(path)?;
    let row_group_rows = reader.row_group_rows();
    if workers > row_group_rows.len() {
        return Err(DatasetError::invalid(
            "workers",
            format!(
                "{} has {} row group(s), fewer than {workers} workers; rewrite it with smaller row groups \
                 (`--rows-per-group`)",
                path.display(),
                row_group_rows.len()
            ),
        ));
    }
    check_groups_within_row_groups(&reader, &row_group_rows)?;
    let shards = split_row_groups(&row_group_rows, workers)
        .into_iter()
        .enumerate()
        .map(|(rank, row_groups)| {
            let rows = row_groups.iter().map(|&g| row_group_rows[g]).sum();
            Shard { rank, row_groups, rows }
        })
        .collect();
    Ok(ShardIndex { source: path.to_path_buf(), total_rows: reader.num_rows(), row_group_rows, shards })
}

fn check_groups_within_row_groups(reader: &TableReader, row_group_rows: &[usize]) -> Result<()> {
    let path = reader.path();
    let mut ends = Vec::new();
    let mut acc = 0;
    for rows in row_group_rows {
        acc += rows;
        ends.push(acc);
    }
    let mut group_of: HashMap<String, usize> = HashMap::new();
    let mut failure = None;
    reader.scan_strict(&["pair_id"], 8192, |first, batch| {
        let ids = text_column(batch, "pair_id")
            .ok_or_else(|| DatasetError::format(path, "column \"pair_id\" is missing or not utf8"))?;
        for i in 0..batch.num_rows() {
            let row = first + i;
            let Some(id) = ids.get(i) else {
                return Err(DatasetError::at_cell(path, row, "pair_id", "null value"));
            };
            let row_group = ends.partition_point(|&end| end <= row);
            let first_group = *group_of.entry(id.to_string()).or_insert(row_group);
            if first_group != row_group && failure.is_none() {
                failure = Some(DatasetError::at_cell(
                    path,
                    row,
                    "pair_id",
                    format!("parallel group {id:?} spans row groups {first_group} and {row_group}"),
                ));
            }
        }
        Ok(())
    })?;
    failure.map_or(Ok(()), Err)
}

impl ShardIndex {
    /// Writes the index as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| DatasetError::format(path, e.to_string()))?;
        Ok(rosetta_common::atomic::write_atomic(path, text.as_bytes())?)
    }

    /// Reads an index written by [`ShardIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| DatasetError::format(path, e.to_string()))
    }
}

/// Streams the rows of one shard, reading only `columns`, in batches of `batch_size`.
pub async fn stream_shard(
    path: &Path,
    shard: &Shard,
    columns: &[&str],
    batch_size: usize,
) -> Result<impl Stream<Item = Result<RecordBatch>> + use<>> {
    let file = tokio::fs::File::open(path).await.map_err(|e| DatasetError::io(path, e))?;
    let builder = ParquetRecordBatchStreamBuilder::new(file).await.map_err(|e| DatasetError::parquet(path, e))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(columns.len());
    for name in columns {
        roots.push(schema.index_of(name).map_err(|_| DatasetError::format(path, format!("missing column {name:?}")))?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let owned_path = path.to_path_buf();
    let stream = builder
        .with_projection(mask)
        .with_row_groups(shard.row_groups.clone())
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| DatasetError::parquet(path, e))?
        .map_err(move |e| DatasetError::parquet(&owned_path, e));
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_covers_every_row_group_once_contiguously_and_balanced(
            sizes in proptest::collection::vec(1usize..500, 1..60),
            workers_seed in 0usize..1000,
        ) {
            let workers = 1 + workers_seed % sizes.len();
            let runs = split_row_groups(&sizes, workers);
            prop_assert_eq!(runs.len(), workers);
            let flat: Vec<usize> = runs.iter().flatten().copied().collect();
            prop_assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
            prop_assert!(runs.iter().all(|r| !r.is_empty()));
            // Every cut is within one row group of its ideal position, so each run is within
            // two of the largest row groups of the ideal share.
            let total: usize = sizes.iter().sum();
            let largest = *sizes.iter().max().unwrap();
            for run in &runs {
                let rows: usize = run.iter().map(|&g| sizes[g]).sum();
                let ideal = total / workers;
                prop_assert!(rows <= ideal + 2 * largest + 1, "rows {} ideal {}", rows, ideal);
            }
            prop_assert_eq!(split_row_groups(&sizes, workers), runs);
        }
    }

    #[test]
    fn equal_row_groups_split_evenly() {
        let runs = split_row_groups(&[10; 8], 4);
        assert_eq!(runs, vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]]);
    }
}

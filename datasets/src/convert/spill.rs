//! Bounded-memory grouping of training rows by `pair_id`: rows are hash-partitioned to
//! temporary files, then each partition (a small fraction of the input) is grouped in memory
//! and written group by group, so row groups never split a parallel group.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};
use crate::pairs::{PairWriter, TrainingPair, WriteSummary};

/// A spilled row with where it came from, for error messages.
#[derive(Serialize, Deserialize)]
struct Spilled {
    origin: String,
    pair: TrainingPair,
}

/// Partitions rows to disk by `pair_id`, then writes them grouped.
pub struct GroupSpill {
    dir: tempfile::TempDir,
    partitions: Vec<BufWriter<File>>,
    rows: usize,
}

impl GroupSpill {
    /// Creates `partitions` temporary files in a fresh directory next to `output`.
    pub fn new(output: &Path, partitions: usize) -> Result<Self> {
        let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix(".rosetta-spill-")
            .tempdir_in(parent)
            .map_err(|e| DatasetError::io(parent, e))?;
        let mut files = Vec::with_capacity(partitions.max(1));
        for k in 0..partitions.max(1) {
            let path = dir.path().join(format!("part-{k:03}.jsonl"));
            files.push(BufWriter::new(File::create(&path).map_err(|e| DatasetError::io(&path, e))?));
        }
        Ok(Self { dir, partitions: files, rows: 0 })
    }

    /// Adds one row; `origin` (e.g. `file:line`) is quoted if the row turns out to be a duplicate.
    pub fn push(&mut self, origin: String, pair: TrainingPair) -> Result<()> {
        let k = (crate::rng::fnv1a(pair.pair_id.as_bytes()) % self.partitions.len() as u64) as usize;
        let line = serde_json::to_string(&Spilled { origin, pair })
            .map_err(|e| DatasetError::format(self.dir.path(), e.to_string()))?;
        let file = &mut self.partitions[k];
        writeln!(file, "{line}").map_err(|e| DatasetError::io(self.dir.path(), e))?;
        self.rows += 1;
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes every group (partition by partition, groups by `pair_id`, rows by `lang`) to `writer`.
    pub fn write_into(self, mut writer: PairWriter) -> Result<WriteSummary> {
        let paths: Vec<PathBuf> =
            (0..self.partitions.len()).map(|k| self.dir.path().join(format!("part-{k:03}.jsonl"))).collect();
        for (file, path) in self.partitions.into_iter().zip(&paths) {
            file.into_inner().map_err(|e| DatasetError::io(path, e.into_error()))?;
        }
        for path in &paths {
            let reader = BufReader::new(File::open(path).map_err(|e| DatasetError::io(path, e))?);
            let mut groups: BTreeMap<String, Vec<Spilled>> = BTreeMap::new();
            for line in reader.lines() {
                let line = line.map_err(|e| DatasetError::io(path, e))?;
                let row: Spilled =
                    serde_json::from_str(&line).map_err(|e| DatasetError::format(path, e.to_string()))?;
                groups.entry(row.pair.pair_id.clone()).or_default().push(row);
            }
            for (_, mut rows) in groups {
                rows.sort_by(|a, b| a.pair.lang.cmp(&b.pair.lang));
                if let Some(dup) = rows.windows(2).find(|w| w[0].pair.lang == w[1].pair.lang) {
                    return Err(DatasetError::invalid(
                        "input",
                        format!(
                            "duplicate (pair_id, lang) = ({:?}, {:?}) at {} and {}",
                            dup[0].pair.pair_id, dup[0].pair.lang, dup[0].origin, dup[1].origin
                        ),
                    ));
                }
                writer.write_group(rows.into_iter().map(|r| r.pair).collect())?;
            }
        }
        writer.finish()
    }
}

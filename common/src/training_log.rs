//! `RUN/training-log.jsonl`: one JSON line per completed step (loss, batch kind, languages,
//! learning rate, speed), appended by the coordinator when the checkpoint that covers the step
//! commits, so the log never runs ahead of what a resumed run keeps. A step replayed after a
//! restart appears again; readers keep its last line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::{FileError, FileResult};

/// One completed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step (0-based).
    pub step: u64,
    /// Global-batch loss.
    pub loss: f64,
    /// Batch kind (`monolingual`, `cross-lingual`, `mixed-monolingual`).
    pub kind: String,
    /// The batch's language or language pair (empty when examples differ).
    #[serde(default)]
    pub languages: Vec<String>,
    /// Learning rate of the step.
    pub learning_rate: f64,
    /// Examples per second.
    pub examples_per_second: f64,
    /// Generation that ran it.
    pub generation: u64,
}

/// Appends `records` to the log at `path` (created when missing), one line each, and syncs it.
pub fn append(path: &Path, records: &[StepRecord]) -> FileResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for record in records {
        // A record of plain numbers and strings always serialises.
        text.push_str(&serde_json::to_string(record).unwrap_or_default());
        text.push('\n');
    }
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| FileError::new(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| FileError::new(path, e))?;
    file.sync_data().map_err(|e| FileError::new(path, e))
}

/// Reads a log: one record per step (the last line of a replayed step), in step order. A
/// missing file is an empty log; a torn or foreign line is skipped and counted.
pub fn read(path: &Path) -> FileResult<(Vec<StepRecord>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(FileError::new(path, e)),
    };
    let mut by_step = BTreeMap::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<StepRecord>(line) {
            Ok(record) => {
                by_step.insert(record.step, record);
            }
            Err(_) => skipped += 1,
        }
    }
    Ok((by_step.into_values().collect(), skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, loss: f64) -> StepRecord {
        StepRecord {
            step,
            loss,
            kind: "mono".into(),
            languages: vec!["qaa".into()],
            learning_rate: 1e-4,
            examples_per_second: 10.0,
            generation: 1,
        }
    }

    #[test]
    fn replayed_steps_keep_their_last_line_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("training-log.jsonl");
        assert_eq!(read(&path).unwrap(), (Vec::new(), 0));
        append(&path, &[record(0, 3.0), record(1, 2.5)]).unwrap();
        append(&path, &[record(1, 2.4), record(2, 2.0)]).unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"step\": 3, \"lo").unwrap();
        let (records, skipped) = read(&path).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(records.iter().map(|r| (r.step, r.loss)).collect::<Vec<_>>(), [(0, 3.0), (1, 2.4), (2, 2.0)]);
    }
}

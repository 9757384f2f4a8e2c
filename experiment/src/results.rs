//! The finished cells of an experiment read back from their directories: each cell's record,
//! its reports and per-query numbers on every benchmark, and its training log.

use std::collections::BTreeMap;
use std::path::Path;

use rosetta_common::RunDir;
use rosetta_common::training_log::{self, StepRecord};
use rosetta_eval::per_query::PerQueryResults;
use rosetta_eval::report::EvalReport;

use crate::error::{ExperimentError, Result};
use crate::plan::{Arm, Cell, ZERO_SHOT, cells, zero_shot_dir};
use crate::runner::{CellRecord, read_record};
use crate::spec::ExperimentSettings;

/// One benchmark's results of one cell.
#[derive(Debug, Clone)]
pub struct BenchmarkResult {
    /// The report.
    pub report: EvalReport,
    /// Its per-query numbers.
    pub per_query: PerQueryResults,
}

/// A finished cell read back.
#[derive(Debug, Clone)]
pub struct FinishedCell {
    /// Its record.
    pub record: CellRecord,
    /// Its arm (`None`: the zero-shot row).
    pub arm: Option<Arm>,
    /// Results by benchmark name.
    pub results: BTreeMap<String, BenchmarkResult>,
    /// Its training log (empty for zero-shot).
    pub training: Vec<StepRecord>,
}

/// What an experiment directory holds.
#[derive(Debug, Clone, Default)]
pub struct ExperimentResults {
    /// Finished cells, zero-shot first, then in grid order.
    pub cells: Vec<FinishedCell>,
    /// Ids of the grid's cells that have not finished.
    pub missing: Vec<String>,
}

impl ExperimentResults {
    /// The finished cells of `arm` (`None`: zero-shot).
    pub fn of_arm<'a>(&'a self, arm: Option<&'a Arm>) -> impl Iterator<Item = &'a FinishedCell> + 'a {
        self.cells.iter().filter(move |c| c.arm.as_ref() == arm)
    }
}

fn read_cell(dir: &Path, record: CellRecord, arm: Option<Arm>) -> Result<FinishedCell> {
    let mut results = BTreeMap::new();
    for name in &record.benchmarks {
        let report_dir = dir.join("eval").join(name);
        let report = rosetta_eval::output::read_report(&report_dir.join(rosetta_eval::output::REPORT_JSON))
            .map_err(|e| ExperimentError::format(&report_dir, e.to_string()))?;
        let per_query = rosetta_eval::output::read_per_query(&report_dir)
            .map_err(|e| ExperimentError::format(&report_dir, e.to_string()))?;
        results.insert(name.clone(), BenchmarkResult { report, per_query });
    }
    let training = if arm.is_some() {
        let path = RunDir::new(dir.join("run")).training_log();
        let (records, skipped) = training_log::read(&path)?;
        if skipped > 0 {
            tracing::warn!(path = %path.display(), skipped, "unreadable training-log lines skipped");
        }
        records
    } else {
        Vec::new()
    };
    Ok(FinishedCell { record, arm, results, training })
}

/// Reads every finished cell of the experiment (cells recorded under another evaluation are
/// counted missing).
pub fn read_results(settings: &ExperimentSettings) -> Result<ExperimentResults> {
    let expected = settings.benchmark_names();
    let mut results = ExperimentResults::default();
    let mut visit = |id: String, dir: &Path, arm: Option<Arm>| -> Result<()> {
        match read_record(dir)? {
            Some(record) if expected.iter().all(|name| record.benchmarks.contains(name)) => {
                results.cells.push(read_cell(dir, record, arm)?);
            }
            _ => results.missing.push(id),
        }
        Ok(())
    };
    if settings.zero_shot {
        visit(ZERO_SHOT.to_string(), &zero_shot_dir(&settings.out), None)?;
    }
    for cell in cells(settings) {
        let Cell { arm, .. } = &cell;
        visit(cell.id(), &cell.dir(&settings.out), Some(arm.clone()))?;
    }
    Ok(results)
}

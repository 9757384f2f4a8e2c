//! Rosetta's experiments (`rosetta experiment`): a grid of strategies × α × seeds over one base
//! run config, every cell an ordinary run directory trained and evaluated by the `rosetta`
//! binary's own commands, resumable cell by cell, and one report (`report.{json,md,html}` and
//! `figures/`) whose tables say which differences hold under paired tests over parallel
//! question groups with Holm's correction.

pub mod charts;
mod child;
pub mod error;
pub mod measure;
pub mod plan;
pub mod prepare;
pub mod render;
pub mod report;
pub mod results;
pub mod runner;
pub mod spec;
pub mod stats;

use std::path::PathBuf;

pub use child::stop_on_signals;
pub use error::{ExperimentError, Result};
use rosetta_common::atomic::write_atomic;

use crate::measure::Languages;
use crate::runner::{ExperimentPlan, RunSummary, run_cells};
use crate::spec::ExperimentSettings;

/// File names of the report, in the experiment directory.
pub const REPORT_FILES: [&str; 3] = ["report.json", "report.md", "report.html"];

/// Where a report was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPaths {
    /// `report.json`, `report.md`, `report.html`.
    pub files: Vec<PathBuf>,
    /// The SVG pictures.
    pub figures: Vec<PathBuf>,
    /// Cells shown.
    pub finished: usize,
    /// Cells of the grid not finished.
    pub missing: usize,
}

/// Rebuilds the report from the experiment directory's finished cells (no training).
pub fn write_report(settings: &ExperimentSettings, languages: &Languages) -> Result<ReportPaths> {
    let results = results::read_results(settings)?;
    let report = report::build_report(settings, &results, languages);
    let (document, figures) = render::document(&report, &results);
    let out = &settings.out;
    let figures_dir = out.join("figures");
    std::fs::create_dir_all(&figures_dir).map_err(|e| ExperimentError::io(&figures_dir, e))?;
    let mut figure_paths = Vec::new();
    for figure in &figures {
        let path = out.join(&figure.file);
        write_atomic(&path, figure.svg.as_bytes())?;
        figure_paths.push(path);
    }
    let json = serde_json::to_vec_pretty(&report).map_err(|e| ExperimentError::format(out, e.to_string()))?;
    let contents = [json, document.markdown().into_bytes(), document.html().into_bytes()];
    let mut files = Vec::new();
    for (name, bytes) in REPORT_FILES.iter().zip(contents) {
        let path = out.join(name);
        write_atomic(&path, &bytes)?;
        files.push(path);
    }
    Ok(ReportPaths { files, figures: figure_paths, finished: report.finished.len(), missing: report.missing.len() })
}

/// Runs every unfinished cell, then writes the report (also when cells failed: it shows what
/// finished and names what did not). Fails with [`ExperimentError::CellsFailed`] after the
/// report when any cell failed.
pub fn run_experiment(
    plan: &ExperimentPlan,
    languages: &Languages,
    parallel: usize,
    relay_progress: bool,
) -> Result<(RunSummary, ReportPaths)> {
    let summary = run_cells(plan, parallel, relay_progress)?;
    let paths = write_report(&plan.settings, languages)?;
    if !summary.failed.is_empty() {
        return Err(ExperimentError::CellsFailed { failed: summary.failed });
    }
    Ok((summary, paths))
}

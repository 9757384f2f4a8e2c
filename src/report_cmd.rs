//! `rosetta report compare`: several evaluated runs side by side.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rosetta_eval::compare::{ComparedRun, compare_markdown};
use rosetta_eval::output::{REPORT_JSON, read_report};

/// Work with evaluation reports.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Put several runs side by side: Table 1 (mAP mono / cross / multilingual per benchmark)
    /// and Table 2 (rank distance per query language), as Markdown on stdout.
    Compare(CompareArgs),
}

/// Arguments of `rosetta report compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Each a report.json, a report directory, an evaluation directory holding one directory
    /// per benchmark, or a run directory (its latest in-training evaluation).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// A label per run, in order [default: the path].
    #[arg(long)]
    pub label: Vec<String>,
}

/// Runs `rosetta report …`.
pub fn run(command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Compare(args) => {
            if !args.label.is_empty() && args.label.len() != args.runs.len() {
                bail!("--label given {} times for {} runs", args.label.len(), args.runs.len());
            }
            let runs = args
                .runs
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    let reports = report_files(path)?
                        .iter()
                        .map(|file| read_report(file).map_err(anyhow::Error::from))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let label = args.label.get(i).cloned().unwrap_or_else(|| path.display().to_string());
                    Ok(ComparedRun { label, reports })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            print!("{}", compare_markdown(&runs));
            Ok(())
        }
    }
}

/// The report files a path stands for.
fn report_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if path.join(REPORT_JSON).is_file() {
        return Ok(vec![path.join(REPORT_JSON)]);
    }
    let latest = path.join("eval/latest");
    if latest.is_file() {
        let name = std::fs::read_to_string(&latest).with_context(|| format!("reading {}", latest.display()))?;
        return report_files(&path.join("eval").join(name.trim()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: not a report, evaluation or run directory", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path().join(REPORT_JSON)))
        .filter(|file| file.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        bail!("{}: no {REPORT_JSON} in it or in its sub-directories (nor eval/latest)", path.display());
    }
    Ok(found)
}

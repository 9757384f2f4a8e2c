//! Several runs side by side, in the layout of the hybrid-batching paper's Table 1 (mAP by
//! setting, per benchmark) and Table 2 (rank distance per query language).

use std::fmt::Write as _;

use crate::render::{fmt1, fmt3};
use crate::report::EvalReport;

/// One run to compare: a label and its reports (one per benchmark).
#[derive(Debug, Clone)]
pub struct ComparedRun {
    /// Shown in the first column.
    pub label: String,
    /// Its reports.
    pub reports: Vec<EvalReport>,
}

/// Markdown with Table 1 (mono / cross / multilingual mAP per benchmark, or nDCG@10 and R@100)
/// and Table 2 (rank distance per query language, per LAReQA benchmark).
pub fn compare_markdown(runs: &[ComparedRun]) -> String {
    let mut benchmarks: Vec<String> = Vec::new();
    for run in runs {
        for report in &run.reports {
            if !benchmarks.contains(&report.benchmark) {
                benchmarks.push(report.benchmark.clone());
            }
        }
    }
    fn find<'a>(run: &'a ComparedRun, name: &str) -> Option<&'a EvalReport> {
        run.reports.iter().find(|r| r.benchmark == name)
    }
    let mut out = String::new();
    let _ = writeln!(out, "## Table 1: retrieval quality\n");
    let mut header = vec!["run".to_string()];
    for name in &benchmarks {
        let qrels = runs.iter().filter_map(|r| find(r, name)).any(|r| r.qrels.is_some());
        if qrels {
            header.extend([format!("{name} nDCG@10"), format!("{name} R@100")]);
        } else {
            header.extend([format!("{name} mono"), format!("{name} cross"), format!("{name} multi")]);
        }
    }
    let _ = writeln!(out, "| {} |\n|{}", header.join(" | "), "---|".repeat(header.len()));
    for run in runs {
        let mut cells = vec![run.label.clone()];
        for name in &benchmarks {
            let report = find(run, name);
            let qrels = runs.iter().filter_map(|r| find(r, name)).any(|r| r.qrels.is_some());
            let wanted: &[&str] = if qrels {
                &["ndcg_at_10", "recall_at_100"]
            } else {
                &["monolingual_map", "cross_lingual_map", "multilingual_map"]
            };
            cells.extend(wanted.iter().map(|metric| fmt3(report.and_then(|r| r.metric(metric)))));
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    for name in &benchmarks {
        let with_bias: Vec<(&ComparedRun, &EvalReport)> =
            runs.iter().filter_map(|run| find(run, name).filter(|r| r.lareqa.is_some()).map(|r| (run, r))).collect();
        if with_bias.is_empty() {
            continue;
        }
        let mut languages: Vec<String> = Vec::new();
        for (_, report) in &with_bias {
            for pooled in report.lareqa.iter().flat_map(|l| &l.pooled) {
                if !languages.contains(&pooled.query_lang) {
                    languages.push(pooled.query_lang.clone());
                }
            }
        }
        let _ = writeln!(out, "\n## Table 2: rank distance on {name} (lower is less biased)\n");
        let _ = writeln!(out, "| run | {} | avg |\n|{}", languages.join(" | "), "---|".repeat(languages.len() + 2));
        for (run, report) in with_bias {
            let lareqa = report.lareqa.as_ref();
            let cells: Vec<String> = languages
                .iter()
                .map(|lang| {
                    fmt1(
                        lareqa
                            .and_then(|l| l.pooled.iter().find(|p| &p.query_lang == lang))
                            .and_then(|p| p.rank_distance),
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                run.label,
                cells.join(" | "),
                fmt1(lareqa.and_then(|l| l.rank_distance))
            );
        }
    }
    out
}

//! The experiment report as a document (Markdown and one HTML page with real tables and inline
//! SVG): Table 1 (mono / cross / multilingual mAP), Table 2 (rank distance and parallel rank
//! correlation), nDCG@10 beside them, the significant differences, the α sweep, per-pair mAP
//! heatmaps side by side, and the training curves by batch kind.

use std::collections::BTreeMap;

use rosetta_coordinator::schedule::Strategy;
use rosetta_eval::document::{Document, Table};
use rosetta_eval::report::LareqaResults;

use crate::charts::{Chart, PALETTE, Series, smooth};
use crate::measure::{Setting, Subset};
use crate::plan::ZERO_SHOT;
use crate::report::{BenchmarkSummary, EXTRA_METRICS, ExperimentReport, OverSeeds, Row, key};
use crate::results::ExperimentResults;

/// A picture with the file it is written to (relative to the experiment directory).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// `figures/<name>.svg`.
    pub file: String,
    /// Caption.
    pub title: String,
    /// SVG markup.
    pub svg: String,
}

fn letter(i: usize) -> char {
    char::from(b'a' + (i % 26) as u8)
}

fn format_value(value: &OverSeeds, setting: Setting, zero_shot: bool) -> String {
    let digits = if setting == Setting::RankDistance { 1 } else { 3 };
    match (value.mean, value.std) {
        (None, _) => "–".into(),
        (Some(mean), _) if zero_shot => format!("{mean:.digits$}"),
        (Some(mean), Some(std)) => format!("{mean:.digits$} ± {std:.digits$}"),
        (Some(mean), None) => format!("{mean:.digits$}"),
    }
}

/// Letters of the arms `row` beats significantly in (benchmark, subset, setting).
fn marks(report: &ExperimentReport, summary: &BenchmarkSummary, row: &Row, subset: Subset, setting: Setting) -> String {
    let trained: Vec<&Row> = summary.rows.iter().filter(|r| r.strategy.is_some()).collect();
    let beaten: Vec<String> = report
        .comparisons
        .iter()
        .filter(|c| c.benchmark == summary.name && c.subset == subset && c.setting == setting)
        .filter(|c| c.better.as_deref() == Some(row.label.as_str()))
        .filter_map(|c| {
            let other = if c.a == row.label { &c.b } else { &c.a };
            trained.iter().position(|r| &r.label == other).map(|i| letter(i).to_string())
        })
        .collect();
    if beaten.is_empty() { String::new() } else { format!(" >{}", beaten.join(",")) }
}

fn row_name(summary: &BenchmarkSummary, row: &Row) -> String {
    match summary.rows.iter().filter(|r| r.strategy.is_some()).position(|r| r.label == row.label) {
        Some(i) => {
            let seeds = if row.seeds.len() == 1 { "1 seed".to_string() } else { format!("{} seeds", row.seeds.len()) };
            format!("({}) {} [{seeds}]", letter(i), row.label)
        }
        None => row.label.clone(),
    }
}

fn settings_table(
    report: &ExperimentReport,
    summary: &BenchmarkSummary,
    caption: String,
    settings: &[Setting],
) -> Option<Table> {
    let settings: Vec<Setting> = settings.iter().copied().filter(|s| summary.settings.contains(s)).collect();
    if settings.is_empty() {
        return None;
    }
    let mut header = vec!["strategy".to_string()];
    for subset in &summary.subsets {
        for setting in &settings {
            header.push(if summary.subsets.len() == 1 {
                setting.name().to_string()
            } else {
                format!("{} ({})", setting.name(), subset.name())
            });
        }
    }
    let rows = summary
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![row_name(summary, row)];
            for &subset in &summary.subsets {
                for &setting in &settings {
                    let value = row.values.get(&key(subset, setting)).cloned().unwrap_or_default();
                    let text = format_value(&value, setting, row.label == ZERO_SHOT);
                    cells.push(format!("{text}{}", marks(report, summary, row, subset, setting)));
                }
            }
            cells
        })
        .collect();
    Some(Table { caption, header, rows })
}

fn extra_table(summary: &BenchmarkSummary, caption: String) -> Option<Table> {
    if summary.protocol != "lareqa" {
        return None;
    }
    let mut header = vec!["strategy".to_string()];
    header.extend(EXTRA_METRICS.iter().map(|(_, name)| name.to_string()));
    let rows = summary
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![row_name(summary, row)];
            for (metric, _) in EXTRA_METRICS {
                let value = row.extra.get(metric).cloned().unwrap_or_default();
                cells.push(format_value(&value, Setting::Mono, row.label == ZERO_SHOT));
            }
            cells
        })
        .collect();
    Some(Table { caption, header, rows })
}

fn describe(summary: &BenchmarkSummary) -> String {
    let unseen = if summary.unseen.is_empty() {
        "all seen in training".to_string()
    } else {
        format!("unseen in training: {}", summary.unseen.join(" "))
    };
    format!(
        "{} ({}, {}; languages {}; {unseen})",
        summary.name,
        summary.domain.label(),
        summary.protocol,
        summary.languages.join(" ")
    )
}

/// The α sweep of one benchmark and setting: hybrid at each α, x-y at 0 and x-x-mono at 1.
fn alpha_sweep(summary: &BenchmarkSummary, setting: Setting) -> Option<Chart> {
    let point = |row: &Row, x: f64| {
        let value = row.values.get(&key(Subset::All, setting))?;
        Some((x, value.mean?, value.std))
    };
    let hybrid: Vec<_> = summary.rows.iter().filter_map(|r| r.alpha.and_then(|a| point(r, a))).collect();
    if hybrid.is_empty() {
        return None;
    }
    let mut series =
        vec![Series { name: "hybrid".into(), color: PALETTE[0].into(), points: hybrid, markers_only: false }];
    for (strategy, x, color, name) in
        [(Strategy::XY, 0.0, PALETTE[1], "x-y (α=0)"), (Strategy::XXMono, 1.0, PALETTE[2], "x-x-mono (α=1)")]
    {
        if let Some(p) = summary.rows.iter().find(|r| r.strategy == Some(strategy)).and_then(|r| point(r, x)) {
            series.push(Series { name: name.into(), color: color.into(), points: vec![p], markers_only: true });
        }
    }
    if let Some(p) = summary.rows.iter().find(|r| r.label == ZERO_SHOT).and_then(|r| point(r, 0.5)) {
        series.push(Series { name: "zero-shot".into(), color: "#777777".into(), points: vec![p], markers_only: true });
    }
    let y_label =
        if setting == Setting::RankDistance { "rank distance".to_string() } else { format!("{} mAP", setting.name()) };
    Some(Chart {
        title: format!("{}: {y_label} against α (mean ± sd over seeds)", summary.name),
        x_label: "α (probability of a monolingual batch)".into(),
        y_label,
        series,
    })
}

/// Seed-averaged per-pair mAP of one row, as the LAReQA results the heatmap draws.
fn averaged_pairs(results: &ExperimentResults, benchmark: &str, label: &str) -> Option<LareqaResults> {
    let reports: Vec<&LareqaResults> = results
        .cells
        .iter()
        .filter(|c| c.arm.as_ref().map_or(ZERO_SHOT.to_string(), |a| a.label()) == label)
        .filter_map(|c| c.results.get(benchmark)?.report.lareqa.as_ref())
        .collect();
    let mut averaged = (*reports.first()?).clone();
    for (i, pair) in averaged.pairs.iter_mut().enumerate() {
        let values: Vec<f64> = reports.iter().filter_map(|r| r.pairs.get(i)?.map).collect();
        pair.map = rosetta_eval::metrics::mean(values);
    }
    Some(averaged)
}

/// Loss per step of each arm and batch kind (mean over seeds, smoothed over 10 steps).
fn training_curves(results: &ExperimentResults) -> Vec<(String, Chart)> {
    let mut by_kind: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    let mut labels: Vec<String> = Vec::new();
    for cell in &results.cells {
        if let Some(arm) = &cell.arm
            && !labels.contains(&arm.label())
        {
            labels.push(arm.label());
        }
    }
    for (i, label) in labels.iter().enumerate() {
        let mut sums: BTreeMap<(String, u64), (f64, usize)> = BTreeMap::new();
        for cell in results.cells.iter().filter(|c| c.arm.as_ref().is_some_and(|a| &a.label() == label)) {
            for record in &cell.training {
                let entry = sums.entry((record.kind.clone(), record.step)).or_insert((0.0, 0));
                entry.0 += record.loss;
                entry.1 += 1;
            }
        }
        let mut per_kind: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for ((kind, step), (sum, n)) in sums {
            per_kind.entry(kind).or_default().push((step as f64, sum / n as f64));
        }
        for (kind, points) in per_kind {
            let points = smooth(&points, 10).into_iter().map(|(x, y)| (x, y, None)).collect();
            by_kind.entry(kind).or_default().push(Series {
                name: label.clone(),
                color: PALETTE[i % PALETTE.len()].into(),
                points,
                markers_only: false,
            });
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, series)| {
            let chart = Chart {
                title: format!("training loss of {kind} batches (mean over seeds, 10-step moving average)"),
                x_label: "step".into(),
                y_label: "InfoNCE loss".into(),
                series,
            };
            (kind, chart)
        })
        .collect()
}

/// A file-name-safe form of a label: `hybrid α=0.5` → `hybrid-a0.5`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.replace('α', "a").chars().filter(|&c| c != '=') {
        let c = if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches('-').to_string()
}

/// The whole report as a document, and the figures it shows.
pub fn document(report: &ExperimentReport, results: &ExperimentResults) -> (Document, Vec<Figure>) {
    let mut doc = Document::new("Rosetta experiment: hybrid batches and cross-lingual robustness");
    let mut figures = Vec::new();
    let experiment = &report.experiment;
    doc.paragraph(format!(
        "Strategies {}; hybrid α {:?}; seeds {:?} (the model is initialised once; a seed changes the schedule and \
         dropout). Languages seen in training: {}. Cells finished: {}{}.",
        experiment.strategies.join(", "),
        experiment.alphas,
        experiment.seeds,
        report.training_languages.join(" "),
        report.finished.len(),
        if report.missing.is_empty() {
            String::new()
        } else {
            format!("; not finished: {}", report.missing.join(", "))
        }
    ));
    doc.paragraph(format!(
        "Values are mean ± standard deviation over seeds (zero-shot: one model). “>b,c” marks a difference to arms b \
         and c that holds after Holm's correction over all {} comparisons of this report at family-wise level {}: a \
         paired two-sided sign-flip randomisation test over parallel question groups (each query averaged over seeds, \
         each group over its queries; exact with at most 16 groups), with a percentile bootstrap 95 % interval that \
         resamples groups. Differences without a mark are within seed and query noise.",
        report.comparisons.len(),
        report.level
    ));
    doc.heading(1, "Table 1: mAP");
    for (i, summary) in report.benchmarks.iter().enumerate() {
        let table_settings: &[Setting] = if summary.protocol == "lareqa" { &Setting::MAP } else { &summary.settings };
        if let Some(table) =
            settings_table(report, summary, format!("Table 1{}: {}", letter(i), describe(summary)), table_settings)
        {
            doc.table(table);
        }
    }
    doc.heading(1, "Table 2: language bias (rank distance, lower is less biased)");
    for (i, summary) in report.benchmarks.iter().enumerate() {
        if let Some(table) = settings_table(
            report,
            summary,
            format!("Table 2{}: {}", letter(i), describe(summary)),
            &[Setting::RankDistance],
        ) {
            doc.table(table);
        }
    }
    doc.heading(1, "nDCG@10 and parallel rank correlation (all languages)");
    doc.paragraph(
        "nDCG@10 as MTEB reports it, to set beside published numbers; parallel rank ρ: mean Spearman correlation \
         between the orders in which the parallel versions of a question rank their shared relevant set (1: every \
         language ranks the answers alike).",
    );
    for summary in &report.benchmarks {
        if let Some(table) = extra_table(summary, describe(summary)) {
            doc.table(table);
        }
    }
    doc.heading(1, "Paired comparisons");
    let holding: Vec<_> = report.comparisons.iter().filter(|c| c.holds).collect();
    doc.paragraph(format!(
        "{} of {} comparisons hold at family-wise level {} (Holm).",
        holding.len(),
        report.comparisons.len(),
        report.level
    ));
    doc.table(Table {
        caption: "A − B per comparison (rank distance: lower is better)".into(),
        header: [
            "benchmark",
            "setting",
            "languages",
            "A",
            "B",
            "A − B",
            "95 % interval",
            "groups",
            "p",
            "p (Holm)",
            "holds",
        ]
        .map(String::from)
        .to_vec(),
        rows: report
            .comparisons
            .iter()
            .map(|c| {
                vec![
                    c.benchmark.clone(),
                    c.setting.name().into(),
                    c.subset.name().into(),
                    c.a.clone(),
                    c.b.clone(),
                    format!("{:+.4}", c.test.difference),
                    format!("[{:+.4}, {:+.4}]", c.test.interval.0, c.test.interval.1),
                    c.test.groups.to_string(),
                    format!("{:.4}{}", c.test.p_value, if c.test.exact { " (exact)" } else { "" }),
                    format!("{:.4}", c.p_holm),
                    c.better.as_ref().map_or_else(|| "no".to_string(), |b| format!("yes: {b} better")),
                ]
            })
            .collect(),
    });
    doc.heading(1, "α sweep");
    for summary in &report.benchmarks {
        for setting in [Setting::Cross, Setting::Multi, Setting::RankDistance] {
            if let Some(chart) = alpha_sweep(summary, setting) {
                let file = format!("figures/alpha-{}-{}.svg", slug(&summary.name), slug(setting.name()));
                doc.picture(chart.title.clone(), chart.svg(), Some(&file));
                figures.push(Figure { file, title: chart.title.clone(), svg: chart.svg() });
            }
        }
    }
    doc.heading(1, "Per language pair mAP (mean over seeds)");
    for summary in report.benchmarks.iter().filter(|s| s.protocol == "lareqa") {
        doc.heading(2, describe(summary));
        for row in &summary.rows {
            if let Some(averaged) = averaged_pairs(results, &summary.name, &row.label) {
                let title = format!("{}: {}", summary.name, row.label);
                let svg = rosetta_eval::render::heatmap_svg(&averaged, &title);
                let file = format!("figures/heatmap-{}-{}.svg", slug(&summary.name), slug(&row.label));
                doc.picture(title.clone(), svg.clone(), Some(&file));
                figures.push(Figure { file, title, svg });
            }
        }
    }
    doc.heading(1, "Training curves by batch kind");
    for (kind, chart) in training_curves(results) {
        let file = format!("figures/training-{}.svg", slug(&kind));
        doc.picture(chart.title.clone(), chart.svg(), Some(&file));
        figures.push(Figure { file, title: chart.title.clone(), svg: chart.svg() });
    }
    (doc, figures)
}

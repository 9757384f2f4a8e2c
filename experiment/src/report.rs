//! The experiment report's numbers (`report.json`): per benchmark, arm and language subset each
//! setting as mean ± standard deviation over seeds, and every paired comparison of two arms
//! with its randomisation-test p-value, Holm-adjusted p-value, and bootstrap interval.

use std::collections::BTreeMap;

use rosetta_coordinator::schedule::Strategy;
use rosetta_datasets::benchmark::Protocol;
use serde::{Deserialize, Serialize};

use crate::measure::{Languages, Setting, Subset, settings_of};
use crate::plan::{Arm, ZERO_SHOT, arms};
use crate::results::{ExperimentResults, FinishedCell};
use crate::spec::{Domain, ExperimentSettings};
use crate::stats::{PairedTest, holm, mean_std, paired_test};

/// Headline numbers of LAReQA reports shown beside Tables 1 and 2, by `rosetta eval` name.
pub const EXTRA_METRICS: [(&str, &str); 4] = [
    ("monolingual_ndcg_at_10", "mono nDCG@10"),
    ("cross_lingual_ndcg_at_10", "cross nDCG@10"),
    ("multilingual_ndcg_at_10", "multi nDCG@10"),
    ("parallel_rank_correlation", "parallel rank ρ"),
];

/// A value over seeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverSeeds {
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (0 for one seed).
    pub std: Option<f64>,
    /// Each seed's value, in seed order.
    pub values: Vec<f64>,
}

impl OverSeeds {
    fn of(values: Vec<f64>) -> Self {
        let stats = mean_std(&values);
        Self { mean: stats.map(|s| s.0), std: stats.map(|s| s.1), values }
    }
}

/// One row of a benchmark's tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `zero-shot`, `x-y`, `hybrid α=0.5`.
    pub label: String,
    /// Strategy (none for zero-shot).
    pub strategy: Option<Strategy>,
    /// α of hybrid.
    pub alpha: Option<f64>,
    /// Seeds that finished.
    pub seeds: Vec<u64>,
    /// `subset/setting` (e.g. `unseen/cross`) → value over seeds.
    pub values: BTreeMap<String, OverSeeds>,
    /// Extra headline numbers (see [`EXTRA_METRICS`]) → value over seeds.
    pub extra: BTreeMap<String, OverSeeds>,
}

/// The key of a table value.
pub fn key(subset: Subset, setting: Setting) -> String {
    format!("{}/{}", subset.name(), setting.name())
}

/// One benchmark's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSummary {
    /// Benchmark name.
    pub name: String,
    /// Its domain.
    pub domain: Domain,
    /// `lareqa` or `qrels`.
    pub protocol: String,
    /// Its languages (pool labels for qrels benchmarks).
    pub languages: Vec<String>,
    /// Of them, those not seen in training.
    pub unseen: Vec<String>,
    /// Subsets shown.
    pub subsets: Vec<Subset>,
    /// Settings shown.
    pub settings: Vec<Setting>,
    /// Zero-shot first, then the arms.
    pub rows: Vec<Row>,
}

/// A paired comparison of two arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Benchmark.
    pub benchmark: String,
    /// Setting.
    pub setting: Setting,
    /// Language subset.
    pub subset: Subset,
    /// Arm A.
    pub a: String,
    /// Arm B.
    pub b: String,
    /// The test of A − B (per query: mean over seeds; per group: mean over its queries).
    pub test: PairedTest,
    /// Holm-adjusted p-value over every comparison of the report.
    pub p_holm: f64,
    /// Whether the difference holds at the family-wise level.
    pub holds: bool,
    /// The better arm when it holds.
    pub better: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// The experiment file as written.
    pub experiment: crate::spec::ExperimentSection,
    /// Languages counted as seen in training.
    pub training_languages: Vec<String>,
    /// Cells finished.
    pub finished: Vec<String>,
    /// Cells of the grid not (yet) finished.
    pub missing: Vec<String>,
    /// Family-wise level of the comparisons.
    pub level: f64,
    /// Per benchmark.
    pub benchmarks: Vec<BenchmarkSummary>,
    /// Every comparison.
    pub comparisons: Vec<Comparison>,
}

fn row(
    label: String,
    arm: Option<&Arm>,
    cells: &[&FinishedCell],
    benchmark: &str,
    summary: &BenchmarkSummary,
    languages: &Languages,
) -> Row {
    let mut values = BTreeMap::new();
    for &subset in &summary.subsets {
        for &setting in &summary.settings {
            let seeds: Vec<f64> = cells
                .iter()
                .filter_map(|c| c.results.get(benchmark))
                .filter_map(|r| languages.value(&r.report, setting, subset))
                .collect();
            values.insert(key(subset, setting), OverSeeds::of(seeds));
        }
    }
    let mut extra = BTreeMap::new();
    if summary.protocol == "lareqa" {
        for (metric, _) in EXTRA_METRICS {
            let seeds: Vec<f64> =
                cells.iter().filter_map(|c| c.results.get(benchmark)).filter_map(|r| r.report.metric(metric)).collect();
            extra.insert(metric.to_string(), OverSeeds::of(seeds));
        }
    }
    Row {
        label,
        strategy: arm.map(|a| a.strategy),
        alpha: arm.and_then(|a| a.alpha),
        seeds: cells.iter().filter_map(|c| c.record.seed).collect(),
        values,
        extra,
    }
}

/// Per-group mean differences A − B of a setting over a subset (queries matched by id; each
/// query's value averaged over the arm's seeds first).
pub fn group_differences(
    a: &[&FinishedCell],
    b: &[&FinishedCell],
    benchmark: &str,
    setting: Setting,
    subset: Subset,
    languages: &Languages,
) -> Vec<f64> {
    let per_query = |cells: &[&FinishedCell]| -> BTreeMap<String, (u32, f64)> {
        let mut sums: BTreeMap<String, (u32, f64, usize)> = BTreeMap::new();
        for cell in cells {
            let Some(result) = cell.results.get(benchmark) else { continue };
            let results = &result.per_query;
            for query in &results.queries {
                if let Some(value) = languages.query_value(results, query, setting, subset) {
                    let entry = sums.entry(query.id.clone()).or_insert((query.group, 0.0, 0));
                    entry.1 += value;
                    entry.2 += 1;
                }
            }
        }
        sums.into_iter().map(|(id, (group, sum, n))| (id, (group, sum / n as f64))).collect()
    };
    let (values_a, values_b) = (per_query(a), per_query(b));
    let mut groups: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for (id, (group, value_a)) in &values_a {
        if let Some((_, value_b)) = values_b.get(id) {
            let entry = groups.entry(*group).or_insert((0.0, 0));
            entry.0 += value_a - value_b;
            entry.1 += 1;
        }
    }
    groups.into_values().map(|(sum, n)| sum / n as f64).collect()
}

/// Builds the report's numbers from the finished cells.
pub fn build_report(
    settings: &ExperimentSettings,
    results: &ExperimentResults,
    languages: &Languages,
) -> ExperimentReport {
    let arms = arms(settings);
    let zero_shot: Vec<&FinishedCell> = results.of_arm(None).collect();
    let mut benchmarks = Vec::new();
    let mut comparisons = Vec::new();
    for test in &settings.benchmarks {
        let name = test.name.clone();
        let Some(sample) = results.cells.iter().find_map(|c| c.results.get(&name)) else { continue };
        let mut summary = BenchmarkSummary {
            name: name.clone(),
            domain: test.domain,
            protocol: match sample.report.protocol {
                Protocol::Lareqa => "lareqa".into(),
                Protocol::Qrels => "qrels".into(),
            },
            languages: sample.report.languages.clone(),
            unseen: sample.report.languages.iter().filter(|l| !languages.is_seen(l)).cloned().collect(),
            subsets: languages.subsets(&sample.report.languages),
            settings: settings_of(&sample.report),
            rows: Vec::new(),
        };
        if settings.zero_shot && !zero_shot.is_empty() {
            summary.rows.push(row(ZERO_SHOT.into(), None, &zero_shot, &name, &summary, languages));
        }
        let arm_cells: Vec<Vec<&FinishedCell>> = arms.iter().map(|arm| results.of_arm(Some(arm)).collect()).collect();
        for (arm, cells) in arms.iter().zip(&arm_cells) {
            if !cells.is_empty() {
                summary.rows.push(row(arm.label(), Some(arm), cells, &name, &summary, languages));
            }
        }
        for &subset in &summary.subsets {
            for &setting in &summary.settings {
                for i in 0..arms.len() {
                    for j in i + 1..arms.len() {
                        if arm_cells[i].is_empty() || arm_cells[j].is_empty() {
                            continue;
                        }
                        let differences =
                            group_differences(&arm_cells[i], &arm_cells[j], &name, setting, subset, languages);
                        if differences.is_empty() {
                            continue;
                        }
                        let seed = settings.significance.seed ^ (comparisons.len() as u64).wrapping_mul(0x9E37_79B9);
                        let test = paired_test(&differences, settings.significance.resamples, seed);
                        comparisons.push(Comparison {
                            benchmark: name.clone(),
                            setting,
                            subset,
                            a: arms[i].label(),
                            b: arms[j].label(),
                            test,
                            p_holm: f64::NAN,
                            holds: false,
                            better: None,
                        });
                    }
                }
            }
        }
        benchmarks.push(summary);
    }
    let adjusted = holm(&comparisons.iter().map(|c| c.test.p_value).collect::<Vec<_>>());
    for (comparison, p_holm) in comparisons.iter_mut().zip(adjusted) {
        comparison.p_holm = p_holm;
        comparison.holds = p_holm <= settings.significance.level && comparison.test.difference != 0.0;
        if comparison.holds {
            let a_better = (comparison.test.difference > 0.0) == comparison.setting.higher_is_better();
            comparison.better = Some(if a_better { comparison.a.clone() } else { comparison.b.clone() });
        }
    }
    ExperimentReport {
        experiment: settings.written.clone(),
        training_languages: languages.seen.iter().cloned().collect(),
        finished: results.cells.iter().map(|c| c.record.id.clone()).collect(),
        missing: results.missing.clone(),
        level: settings.significance.level,
        benchmarks,
        comparisons,
    }
}

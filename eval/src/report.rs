//! The numbers of one evaluation (DESIGN.md §1), computed from a [`Ranking`], and their JSON form.

use serde::{Deserialize, Serialize};

use rosetta_datasets::benchmark::{Pool, Protocol};

use crate::metrics::{average_precision, mean, ndcg_at, rank_distance, recall_at, spearman};
use crate::per_query::{PerQueryResults, QueryResult};
use crate::rank::Ranking;
use crate::task::EvalTask;

/// Which AP a report shows (DESIGN.md §1).
pub const AP_VARIANT: &str = "trec_eval map: full ranking, divisor = relevant candidates in the pool";

/// Queries scored and skipped (no relevant candidate in the pool) for one mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Queries that entered the mean.
    pub evaluated: usize,
    /// Queries of the setting left out because the pool held none of their relevant candidates.
    pub skipped: usize,
}

/// One (query language, corpus language) setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// Query language.
    pub query_lang: String,
    /// Corpus (pool) language.
    pub corpus_lang: String,
    /// Mean AP; `None` when no query could be evaluated.
    pub map: Option<f64>,
    /// Mean recall at 1.
    pub recall_at_1: Option<f64>,
    /// Mean nDCG@10 (gain 1 per relevant candidate), to set beside MTEB's numbers.
    #[serde(default)]
    pub ndcg_at_10: Option<f64>,
    /// Queries evaluated and skipped.
    pub coverage: Coverage,
}

/// A macro-average over settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MacroAverage {
    /// Mean of the settings' mAP.
    pub map: Option<f64>,
    /// Mean of the settings' R@k (k = 1 for mono/cross, 10 for multilingual).
    pub recall: Option<f64>,
    /// Mean of the settings' nDCG@10.
    #[serde(default)]
    pub ndcg_at_10: Option<f64>,
    /// Settings that entered the mean.
    pub settings: usize,
}

/// One query language in the pooled (multilingual) corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledResult {
    /// Query language.
    pub query_lang: String,
    /// Mean AP over the pooled corpus.
    pub map: Option<f64>,
    /// Mean recall at 10 over the pooled corpus.
    pub recall_at_10: Option<f64>,
    /// Mean nDCG@10 over the pooled corpus.
    #[serde(default)]
    pub ndcg_at_10: Option<f64>,
    /// Mean rank distance (max − min rank of the relevant candidates; queries with at least two).
    pub rank_distance: Option<f64>,
    /// Queries evaluated and skipped for mAP and R@10.
    pub coverage: Coverage,
    /// Queries evaluated and skipped (fewer than two relevant candidates) for rank distance.
    pub rank_distance_coverage: Coverage,
}

/// The LAReQA protocol's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LareqaResults {
    /// Every (query language, corpus language) setting.
    pub pairs: Vec<PairResult>,
    /// Macro-average over the settings with query language = corpus language.
    pub monolingual: MacroAverage,
    /// Macro-average over the settings with query language ≠ corpus language.
    pub cross_lingual: MacroAverage,
    /// Macro-average over query languages in the pooled corpus (mAP, R@10).
    pub multilingual: MacroAverage,
    /// Mean over every query in the pooled corpus (mAP), for reference.
    pub multilingual_map_all_queries: Option<f64>,
    /// Per query language in the pooled corpus.
    pub pooled: Vec<PooledResult>,
    /// Rank distance macro-averaged over query languages (lower is less biased).
    pub rank_distance: Option<f64>,
    /// A second language-bias measure: for every parallel group, the mean Spearman correlation
    /// between the orders its query versions (one per language) give their shared relevant
    /// candidates in the pooled corpus, averaged over groups. 1: every version orders the
    /// answers the same way, whatever its language; lower: the query's language changes which
    /// answers come first (groups with at least two versions and three relevant candidates).
    #[serde(default)]
    pub parallel_rank_correlation: Option<f64>,
    /// Groups that entered it, and groups left out.
    #[serde(default)]
    pub parallel_rank_correlation_coverage: Coverage,
}

/// One language of the qrels protocol (queries ranked against the corpus of their language).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrelsLanguage {
    /// The language.
    pub lang: String,
    /// Mean nDCG@10 (trec_eval `ndcg_cut.10`).
    pub ndcg_at_10: Option<f64>,
    /// Mean Recall@100.
    pub recall_at_100: Option<f64>,
    /// Mean AP (trec_eval `map`).
    pub map: Option<f64>,
    /// Share of queries with a relevant candidate in the top 20 (success@20; MKQA's and
    /// BGE-M3's "Recall@20": a retrieved passage contains an answer).
    #[serde(default)]
    pub success_at_20: Option<f64>,
    /// Share of queries with a relevant candidate in the top 100.
    #[serde(default)]
    pub success_at_100: Option<f64>,
    /// Queries evaluated and skipped.
    pub coverage: Coverage,
    /// Judgements naming a relevant candidate of another language (outside the pool, ignored).
    pub judgements_outside_pool: usize,
}

/// The qrels protocol's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrelsResults {
    /// Per language.
    pub languages: Vec<QrelsLanguage>,
    /// Macro-average over languages of nDCG@10.
    pub ndcg_at_10: Option<f64>,
    /// Macro-average over languages of Recall@100.
    pub recall_at_100: Option<f64>,
    /// Macro-average over languages of mAP.
    pub map: Option<f64>,
    /// Macro-average over languages of success@20.
    #[serde(default)]
    pub success_at_20: Option<f64>,
    /// Macro-average over languages of success@100.
    #[serde(default)]
    pub success_at_100: Option<f64>,
}

/// Everything one evaluation measured, serialised as `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Benchmark name.
    pub benchmark: String,
    /// Protocol of the benchmark.
    pub protocol: Protocol,
    /// The model or checkpoint evaluated.
    pub model: String,
    /// Training step of the checkpoint, when known.
    pub step: Option<u64>,
    /// Languages in table order.
    pub languages: Vec<String>,
    /// Queries and candidates.
    pub queries: usize,
    /// Candidates in the pooled corpus.
    pub candidates: usize,
    /// Which AP the numbers are.
    pub ap_variant: String,
    /// LAReQA results (for `lareqa` benchmarks).
    pub lareqa: Option<LareqaResults>,
    /// Qrels results (for `qrels` benchmarks).
    pub qrels: Option<QrelsResults>,
    /// The numbers of every query (written to `per_query.json`, not into `report.json`).
    #[serde(skip)]
    pub per_query: Option<PerQueryResults>,
}

impl EvalReport {
    /// Computes every metric of the task's protocol from the ranks (and every query's numbers).
    pub fn compute(task: &EvalTask, ranking: &Ranking, model: &str, step: Option<u64>) -> Self {
        let mut per_query = per_query_skeleton(task);
        let (lareqa, qrels) = match task.protocol {
            Protocol::Lareqa => (Some(lareqa_results(task, ranking, &mut per_query)), None),
            Protocol::Qrels => (None, Some(qrels_results(task, ranking, &mut per_query))),
        };
        Self {
            benchmark: task.name.clone(),
            protocol: task.protocol,
            model: model.to_string(),
            step,
            languages: task.languages.clone(),
            queries: task.num_queries(),
            candidates: task.num_docs(),
            ap_variant: AP_VARIANT.to_string(),
            lareqa,
            qrels,
            per_query: Some(per_query),
        }
    }

    /// A headline number by name, for checkpoint selection: `monolingual_map`, `cross_lingual_map`,
    /// `multilingual_map`, `rank_distance`, `ndcg_at_10`, `recall_at_100`, `map`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match (name, &self.lareqa, &self.qrels) {
            ("monolingual_map", Some(l), _) => l.monolingual.map,
            ("cross_lingual_map", Some(l), _) => l.cross_lingual.map,
            ("multilingual_map", Some(l), _) => l.multilingual.map,
            ("rank_distance", Some(l), _) => l.rank_distance,
            ("parallel_rank_correlation", Some(l), _) => l.parallel_rank_correlation,
            ("monolingual_ndcg_at_10", Some(l), _) => l.monolingual.ndcg_at_10,
            ("cross_lingual_ndcg_at_10", Some(l), _) => l.cross_lingual.ndcg_at_10,
            ("multilingual_ndcg_at_10", Some(l), _) => l.multilingual.ndcg_at_10,
            ("ndcg_at_10", _, Some(q)) => q.ndcg_at_10,
            ("recall_at_100", _, Some(q)) => q.recall_at_100,
            ("map", _, Some(q)) => q.map,
            ("success_at_20", _, Some(q)) => q.success_at_20,
            ("success_at_100", _, Some(q)) => q.success_at_100,
            _ => None,
        }
    }
}

/// The metric names [`EvalReport::metric`] knows, and whether higher is better.
pub const METRICS: &[(&str, bool)] = &[
    ("monolingual_map", true),
    ("cross_lingual_map", true),
    ("multilingual_map", true),
    ("rank_distance", false),
    ("parallel_rank_correlation", true),
    ("monolingual_ndcg_at_10", true),
    ("cross_lingual_ndcg_at_10", true),
    ("multilingual_ndcg_at_10", true),
    ("ndcg_at_10", true),
    ("recall_at_100", true),
    ("map", true),
    ("success_at_20", true),
    ("success_at_100", true),
];

/// Every query with its parallel group (the set of its relevant candidates) and no numbers yet.
fn per_query_skeleton(task: &EvalTask) -> PerQueryResults {
    let mut groups: Vec<String> = Vec::new();
    let mut group_of: std::collections::HashMap<Vec<u32>, u32> = std::collections::HashMap::new();
    let queries = task
        .relevant
        .iter()
        .enumerate()
        .map(|(q, list)| {
            let mut key: Vec<u32> = list.iter().map(|r| r.doc).collect();
            key.sort_unstable();
            let next = groups.len() as u32;
            let group = *group_of.entry(key).or_insert_with(|| {
                groups.push(task.query_ids[q].clone());
                next
            });
            QueryResult { id: task.query_ids[q].clone(), group, lang: task.query_lang[q], ..QueryResult::default() }
        })
        .collect();
    PerQueryResults { benchmark: task.name.clone(), languages: task.languages.clone(), groups, queries }
}

fn binary_ndcg(ranks: &[u64]) -> f64 {
    let judged: Vec<(u64, i32)> = ranks.iter().map(|&r| (r, 1)).collect();
    ndcg_at(&judged, 10)
}

fn lareqa_results(task: &EvalTask, ranking: &Ranking, per_query: &mut PerQueryResults) -> LareqaResults {
    let languages = task.languages.len();
    let offsets = task.pair_offsets();
    // Per (query language, corpus language): AP, R@1 and nDCG@10 of each evaluated query, and skips.
    let mut ap = vec![Vec::new(); languages * languages];
    let mut r1 = vec![Vec::new(); languages * languages];
    let mut ndcg = vec![Vec::new(); languages * languages];
    let mut skipped = vec![0usize; languages * languages];
    let mut pooled_ap = vec![Vec::new(); languages];
    let mut pooled_r10 = vec![Vec::new(); languages];
    let mut pooled_ndcg = vec![Vec::new(); languages];
    let mut pooled_skipped = vec![0usize; languages];
    let mut distances = vec![Vec::new(); languages];
    let mut distance_skipped = vec![0usize; languages];
    let mut all_ap = Vec::new();
    let mut in_pool: Vec<Vec<u64>> = vec![Vec::new(); languages];
    // Per group: each version's pooled ranks of the relevant candidates, in corpus order.
    let mut versions: Vec<Vec<Vec<u64>>> = vec![Vec::new(); per_query.groups.len()];
    for (q, ((&query_lang, list), &first_pair)) in task.query_lang.iter().zip(&task.relevant).zip(&offsets).enumerate()
    {
        let ql = query_lang as usize;
        for ranks in &mut in_pool {
            ranks.clear();
        }
        let mut pooled = Vec::with_capacity(list.len());
        for (j, relevant) in list.iter().enumerate() {
            let pair = first_pair + j;
            let cl = task.doc_lang[relevant.doc as usize] as usize;
            in_pool[cl].push(ranking.rank_in(pair, [cl]));
            pooled.push(ranking.rank_pooled(pair));
        }
        let result = &mut per_query.queries[q];
        result.pair_ap = vec![None; languages];
        result.pair_ndcg = vec![None; languages];
        for (cl, ranks) in in_pool.iter().enumerate() {
            let setting = ql * languages + cl;
            if ranks.is_empty() {
                skipped[setting] += 1;
            } else {
                let (value, gain) = (average_precision(ranks), binary_ndcg(ranks));
                ap[setting].push(value);
                r1[setting].push(recall_at(ranks, 1));
                ndcg[setting].push(gain);
                result.pair_ap[cl] = Some(value as f32);
                result.pair_ndcg[cl] = Some(gain as f32);
            }
        }
        if pooled.is_empty() {
            pooled_skipped[ql] += 1;
        } else {
            let (value, gain) = (average_precision(&pooled), binary_ndcg(&pooled));
            pooled_ap[ql].push(value);
            all_ap.push(value);
            pooled_r10[ql].push(recall_at(&pooled, 10));
            pooled_ndcg[ql].push(gain);
            result.pooled_ap = Some(value as f32);
            result.pooled_ndcg = Some(gain as f32);
        }
        if pooled.len() < 2 {
            distance_skipped[ql] += 1;
        } else {
            let distance = rank_distance(&pooled) as f64;
            distances[ql].push(distance);
            result.rank_distance = Some(distance as f32);
        }
        versions[result.group as usize].push(pooled);
    }
    let mut pairs = Vec::with_capacity(languages * languages);
    for ql in 0..languages {
        for cl in 0..languages {
            let setting = ql * languages + cl;
            pairs.push(PairResult {
                query_lang: task.languages[ql].clone(),
                corpus_lang: task.languages[cl].clone(),
                map: mean(ap[setting].iter().copied()),
                recall_at_1: mean(r1[setting].iter().copied()),
                ndcg_at_10: mean(ndcg[setting].iter().copied()),
                coverage: Coverage { evaluated: ap[setting].len(), skipped: skipped[setting] },
            });
        }
    }
    let macro_of = |keep: &dyn Fn(&PairResult) -> bool| {
        let chosen: Vec<&PairResult> = pairs.iter().filter(|p| keep(p) && p.map.is_some()).collect();
        MacroAverage {
            map: mean(chosen.iter().filter_map(|p| p.map)),
            recall: mean(chosen.iter().filter_map(|p| p.recall_at_1)),
            ndcg_at_10: mean(chosen.iter().filter_map(|p| p.ndcg_at_10)),
            settings: chosen.len(),
        }
    };
    let monolingual = macro_of(&|p| p.query_lang == p.corpus_lang);
    let cross_lingual = macro_of(&|p| p.query_lang != p.corpus_lang);
    let pooled: Vec<PooledResult> = (0..languages)
        .filter(|&ql| !pooled_ap[ql].is_empty() || pooled_skipped[ql] > 0)
        .map(|ql| PooledResult {
            query_lang: task.languages[ql].clone(),
            map: mean(pooled_ap[ql].iter().copied()),
            recall_at_10: mean(pooled_r10[ql].iter().copied()),
            ndcg_at_10: mean(pooled_ndcg[ql].iter().copied()),
            rank_distance: mean(distances[ql].iter().copied()),
            coverage: Coverage { evaluated: pooled_ap[ql].len(), skipped: pooled_skipped[ql] },
            rank_distance_coverage: Coverage { evaluated: distances[ql].len(), skipped: distance_skipped[ql] },
        })
        .collect();
    let evaluated: Vec<&PooledResult> = pooled.iter().filter(|p| p.map.is_some()).collect();
    let multilingual = MacroAverage {
        map: mean(evaluated.iter().filter_map(|p| p.map)),
        recall: mean(evaluated.iter().filter_map(|p| p.recall_at_10)),
        ndcg_at_10: mean(evaluated.iter().filter_map(|p| p.ndcg_at_10)),
        settings: evaluated.len(),
    };
    let rank_distance = mean(pooled.iter().filter_map(|p| p.rank_distance));
    let (correlation, correlation_coverage) = parallel_rank_correlation(&versions);
    LareqaResults {
        pairs,
        monolingual,
        cross_lingual,
        multilingual,
        multilingual_map_all_queries: mean(all_ap),
        pooled,
        rank_distance,
        parallel_rank_correlation: correlation,
        parallel_rank_correlation_coverage: correlation_coverage,
    }
}

/// The mean over groups of the mean pairwise Spearman correlation of the group's versions.
fn parallel_rank_correlation(versions: &[Vec<Vec<u64>>]) -> (Option<f64>, Coverage) {
    let mut per_group = Vec::new();
    let mut skipped = 0;
    for group in versions {
        let mut correlations = Vec::new();
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if let Some(r) = spearman(a, b) {
                    correlations.push(r);
                }
            }
        }
        match mean(correlations) {
            Some(r) => per_group.push(r),
            None => skipped += 1,
        }
    }
    let coverage = Coverage { evaluated: per_group.len(), skipped };
    (mean(per_group), coverage)
}

fn qrels_results(task: &EvalTask, ranking: &Ranking, per_query: &mut PerQueryResults) -> QrelsResults {
    let languages = task.languages.len();
    let offsets = task.pair_offsets();
    let mut ndcg = vec![Vec::new(); languages];
    let mut recall = vec![Vec::new(); languages];
    let mut ap = vec![Vec::new(); languages];
    let mut success = [vec![Vec::new(); languages], vec![Vec::new(); languages]];
    let mut skipped = vec![0usize; languages];
    let whole_corpus = task.pool == Pool::Corpus;
    let mut outside = vec![0usize; languages];
    let mut seen = vec![false; languages];
    for (q, ((&query_lang, list), &first_pair)) in task.query_lang.iter().zip(&task.relevant).zip(&offsets).enumerate()
    {
        let ql = query_lang as usize;
        seen[ql] = true;
        let mut judged = Vec::new();
        for (j, relevant) in list.iter().enumerate() {
            if whole_corpus {
                judged.push((ranking.rank_pooled(first_pair + j), relevant.relevance));
            } else if task.doc_lang[relevant.doc as usize] as usize == ql {
                judged.push((ranking.rank_in(first_pair + j, [ql]), relevant.relevance));
            } else {
                outside[ql] += 1;
            }
        }
        if judged.is_empty() {
            skipped[ql] += 1;
            continue;
        }
        let ranks: Vec<u64> = judged.iter().map(|(rank, _)| *rank).collect();
        let (gain, precision) = (ndcg_at(&judged, 10), average_precision(&ranks));
        ndcg[ql].push(gain);
        recall[ql].push(recall_at(&ranks, 100));
        ap[ql].push(precision);
        let best = ranks.iter().copied().min().unwrap_or(u64::MAX);
        for (hits, k) in success.iter_mut().zip([20, 100]) {
            hits[ql].push(if best <= k { 1.0 } else { 0.0 });
        }
        let result = &mut per_query.queries[q];
        (result.ndcg_at_10, result.ap) = (Some(gain as f32), Some(precision as f32));
    }
    let per_language: Vec<QrelsLanguage> = (0..languages)
        .filter(|&l| seen[l])
        .map(|l| QrelsLanguage {
            lang: task.languages[l].clone(),
            ndcg_at_10: mean(ndcg[l].iter().copied()),
            recall_at_100: mean(recall[l].iter().copied()),
            map: mean(ap[l].iter().copied()),
            success_at_20: mean(success[0][l].iter().copied()),
            success_at_100: mean(success[1][l].iter().copied()),
            coverage: Coverage { evaluated: ndcg[l].len(), skipped: skipped[l] },
            judgements_outside_pool: outside[l],
        })
        .collect();
    QrelsResults {
        ndcg_at_10: mean(per_language.iter().filter_map(|l| l.ndcg_at_10)),
        recall_at_100: mean(per_language.iter().filter_map(|l| l.recall_at_100)),
        map: mean(per_language.iter().filter_map(|l| l.map)),
        success_at_20: mean(per_language.iter().filter_map(|l| l.success_at_20)),
        success_at_100: mean(per_language.iter().filter_map(|l| l.success_at_100)),
        languages: per_language,
    }
}

//! What the report's tables hold: a setting (mono-, cross-, multilingual mAP, rank distance,
//! nDCG@10 of qrels benchmarks) over a language subset (all, languages seen in training,
//! unseen ones), taken from one report — and the same per query, for the paired tests.

use std::collections::BTreeSet;

use rosetta_eval::metrics::mean;
use rosetta_eval::per_query::{PerQueryResults, QueryResult};
use rosetta_eval::report::EvalReport;
use serde::{Deserialize, Serialize};

/// A column of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// LAReQA mAP against the query's own language.
    Mono,
    /// LAReQA mAP against each other language.
    Cross,
    /// LAReQA mAP in the pooled corpus of every language.
    Multi,
    /// Rank distance in the pooled corpus (lower: less language bias).
    RankDistance,
    /// Qrels benchmarks: nDCG@10 in each query's pool.
    Ndcg,
    /// Qrels benchmarks: nDCG@10 of the monolingual sub-sets (pools named by one language).
    MonoNdcg,
    /// Qrels benchmarks: nDCG@10 of the cross-lingual sub-sets (pools `q-c`).
    CrossNdcg,
}

impl Setting {
    /// The LAReQA settings of Table 1.
    pub const MAP: [Setting; 3] = [Self::Mono, Self::Cross, Self::Multi];

    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mono => "mono",
            Self::Cross => "cross",
            Self::Multi => "multi",
            Self::RankDistance => "rank distance",
            Self::Ndcg => "nDCG@10",
            Self::MonoNdcg => "mono nDCG@10",
            Self::CrossNdcg => "cross nDCG@10",
        }
    }

    /// Whether higher is better.
    pub fn higher_is_better(self) -> bool {
        self != Self::RankDistance
    }
}

/// Which languages a value covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Every language of the benchmark.
    All,
    /// Only languages seen in training (for cross: both languages seen).
    Seen,
    /// Involving a language unseen in training (for cross: either language unseen).
    Unseen,
}

impl Subset {
    /// Column-group name.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Seen => "seen",
            Self::Unseen => "unseen",
        }
    }
}

/// The training languages, and how a subset keeps a language or a pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Languages {
    /// Languages seen in training.
    pub seen: BTreeSet<String>,
}

impl Languages {
    /// Whether a pool label is seen: a language, or `x-y` of a cross-lingual qrels sub-set,
    /// whose every part was seen.
    pub fn is_seen(&self, label: &str) -> bool {
        self.seen.contains(label) || label.split('-').all(|part| self.seen.contains(part))
    }

    /// The subsets a benchmark over `languages` has: all, and seen/unseen when it has both.
    pub fn subsets(&self, languages: &[String]) -> Vec<Subset> {
        let seen = languages.iter().filter(|l| self.is_seen(l)).count();
        if seen == 0 || seen == languages.len() {
            vec![Subset::All]
        } else {
            vec![Subset::All, Subset::Seen, Subset::Unseen]
        }
    }

    fn keeps_query(&self, subset: Subset, query: &str) -> bool {
        match subset {
            Subset::All => true,
            Subset::Seen => self.is_seen(query),
            Subset::Unseen => !self.is_seen(query),
        }
    }

    fn keeps_pair(&self, subset: Subset, query: &str, corpus: &str) -> bool {
        match subset {
            Subset::All => true,
            Subset::Seen => self.is_seen(query) && self.is_seen(corpus),
            Subset::Unseen => !(self.is_seen(query) && self.is_seen(corpus)),
        }
    }

    /// A report's value of `setting` over `subset` (macro-averaged as `rosetta eval` does:
    /// over language pairs, or over query languages).
    pub fn value(&self, report: &EvalReport, setting: Setting, subset: Subset) -> Option<f64> {
        if let Some(l) = &report.lareqa {
            let pairs = |keep: &dyn Fn(&str, &str) -> bool| {
                mean(l.pairs.iter().filter(|p| keep(&p.query_lang, &p.corpus_lang)).filter_map(|p| p.map))
            };
            return match setting {
                Setting::Mono => pairs(&|q, c| q == c && self.keeps_query(subset, q)),
                Setting::Cross => pairs(&|q, c| q != c && self.keeps_pair(subset, q, c)),
                Setting::Multi => {
                    mean(l.pooled.iter().filter(|p| self.keeps_query(subset, &p.query_lang)).filter_map(|p| p.map))
                }
                Setting::RankDistance => mean(
                    l.pooled.iter().filter(|p| self.keeps_query(subset, &p.query_lang)).filter_map(|p| p.rank_distance),
                ),
                Setting::Ndcg | Setting::MonoNdcg | Setting::CrossNdcg => None,
            };
        }
        let q = report.qrels.as_ref()?;
        let pools = |keep: &dyn Fn(&str) -> bool| {
            mean(
                q.languages
                    .iter()
                    .filter(|l| keep(&l.lang) && self.keeps_query(subset, &l.lang))
                    .filter_map(|l| l.ndcg_at_10),
            )
        };
        match setting {
            Setting::Ndcg => pools(&|_| true),
            Setting::MonoNdcg => pools(&|label| !is_cross_pool(label)),
            Setting::CrossNdcg => pools(&is_cross_pool),
            _ => None,
        }
    }

    /// One query's value of `setting` over `subset` (`None`: the query is outside it or was not
    /// evaluated there).
    pub fn query_value(
        &self,
        results: &PerQueryResults,
        query: &QueryResult,
        setting: Setting,
        subset: Subset,
    ) -> Option<f64> {
        let name = |i: u16| results.languages.get(usize::from(i)).map_or("", String::as_str);
        let own = name(query.lang);
        use rosetta_eval::per_query::Measure;
        match setting {
            Setting::Cross => {
                query.value(Measure::CrossLingualMap, |corpus| self.keeps_pair(subset, own, name(corpus)))
            }
            _ if !self.keeps_query(subset, own) => None,
            Setting::Mono => query.value(Measure::MonolingualMap, |_| true),
            Setting::Multi => query.value(Measure::MultilingualMap, |_| true),
            Setting::RankDistance => query.value(Measure::RankDistance, |_| true),
            Setting::Ndcg => query.value(Measure::NdcgAt10, |_| true),
            Setting::MonoNdcg if !is_cross_pool(own) => query.value(Measure::NdcgAt10, |_| true),
            Setting::CrossNdcg if is_cross_pool(own) => query.value(Measure::NdcgAt10, |_| true),
            Setting::MonoNdcg | Setting::CrossNdcg => None,
        }
    }
}

/// A qrels pool label of a cross-lingual sub-set (`en-de`: queries in one language, corpus in another).
fn is_cross_pool(label: &str) -> bool {
    label.contains('-')
}

/// The settings a report's tables show: Table 1's and Table 2's for LAReQA; nDCG@10 for qrels,
/// also split into mono- and cross-lingual sub-sets when the benchmark has both.
pub fn settings_of(report: &EvalReport) -> Vec<Setting> {
    if report.lareqa.is_some() {
        return vec![Setting::Mono, Setting::Cross, Setting::Multi, Setting::RankDistance];
    }
    let labels: Vec<&str> = report.qrels.iter().flat_map(|q| q.languages.iter().map(|l| l.lang.as_str())).collect();
    if labels.iter().any(|l| is_cross_pool(l)) && labels.iter().any(|l| !is_cross_pool(l)) {
        vec![Setting::Ndcg, Setting::MonoNdcg, Setting::CrossNdcg]
    } else {
        vec![Setting::Ndcg]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_eval::report::{QrelsLanguage, QrelsResults};

    fn pool(lang: &str, ndcg: f64) -> QrelsLanguage {
        QrelsLanguage {
            lang: lang.into(),
            ndcg_at_10: Some(ndcg),
            recall_at_100: None,
            map: None,
            success_at_20: None,
            success_at_100: None,
            coverage: Default::default(),
            judgements_outside_pool: 0,
        }
    }

    #[test]
    fn qrels_sub_sets_split_into_mono_and_cross_lingual_pools() {
        let mut report: EvalReport = serde_json::from_value(serde_json::json!({
            "benchmark": "xpqa", "protocol": "qrels", "model": "m", "step": null, "languages": [],
            "queries": 0, "candidates": 0, "ap_variant": "trec_eval", "lareqa": null, "qrels": null
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        report.qrels = Some(QrelsResults {
            languages: vec![pool("de", 0.6), pool("en-de", 0.2), pool("fr", 0.4), pool("en-qag", 0.1)],
            ndcg_at_10: None,
            recall_at_100: None,
            map: None,
            success_at_20: None,
            success_at_100: None,
        });
        assert_eq!(settings_of(&report), [Setting::Ndcg, Setting::MonoNdcg, Setting::CrossNdcg]);
        let languages = Languages { seen: ["de", "en", "fr"].into_iter().map(String::from).collect() };
        let value = |setting, subset| languages.value(&report, setting, subset).unwrap();
        assert!((value(Setting::MonoNdcg, Subset::All) - 0.5).abs() < 1e-12);
        assert!((value(Setting::CrossNdcg, Subset::All) - 0.15).abs() < 1e-12);
        assert!((value(Setting::CrossNdcg, Subset::Seen) - 0.2).abs() < 1e-12);
        assert!((value(Setting::Ndcg, Subset::Unseen) - 0.1).abs() < 1e-12);
    }
}

//! The numbers of every query of one evaluation (`per_query.json` beside `report.json`), with
//! the parallel group each query belongs to: what paired significance tests between two models
//! need (they resample or flip whole groups, never single queries of a group).

use serde::{Deserialize, Serialize};

/// Per-query numbers of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerQueryResults {
    /// The benchmark.
    pub benchmark: String,
    /// Language codes; `lang` and the per-language vectors index into this.
    pub languages: Vec<String>,
    /// Parallel groups: queries with the same set of relevant candidates (the translations of
    /// one question in LAReQA-style benchmarks; usually one query each in qrels benchmarks).
    pub groups: Vec<String>,
    /// Every query, in benchmark order.
    pub queries: Vec<QueryResult>,
}

/// One query's numbers (`None`: not evaluated there, e.g. no relevant candidate in that pool).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Query id.
    pub id: String,
    /// Its parallel group (index into `groups`).
    pub group: u32,
    /// Its language (index into `languages`).
    pub lang: u16,
    /// LAReQA: AP against the corpus of each language.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair_ap: Vec<Option<f32>>,
    /// LAReQA: nDCG@10 against the corpus of each language.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair_ndcg: Vec<Option<f32>>,
    /// LAReQA: AP in the pooled corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled_ap: Option<f32>,
    /// LAReQA: nDCG@10 in the pooled corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled_ndcg: Option<f32>,
    /// LAReQA: rank distance in the pooled corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_distance: Option<f32>,
    /// Qrels: nDCG@10 in the corpus of its language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndcg_at_10: Option<f32>,
    /// Qrels: AP in the corpus of its language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ap: Option<f32>,
}

/// A per-query measure a paired test can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// AP against the corpus of the query's own language.
    MonolingualMap,
    /// Mean AP against the corpora of the other languages.
    CrossLingualMap,
    /// AP in the pooled corpus.
    MultilingualMap,
    /// Rank distance in the pooled corpus (lower is better).
    RankDistance,
    /// nDCG@10 of the qrels protocol.
    NdcgAt10,
}

impl Measure {
    /// Every measure.
    pub const ALL: [Measure; 5] =
        [Self::MonolingualMap, Self::CrossLingualMap, Self::MultilingualMap, Self::RankDistance, Self::NdcgAt10];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::MonolingualMap => "mono mAP",
            Self::CrossLingualMap => "cross mAP",
            Self::MultilingualMap => "multi mAP",
            Self::RankDistance => "rank distance",
            Self::NdcgAt10 => "nDCG@10",
        }
    }

    /// Whether a higher value is better.
    pub fn higher_is_better(self) -> bool {
        self != Self::RankDistance
    }
}

impl QueryResult {
    /// The query's value of `measure`, restricted to corpus languages for which `corpus` is true.
    pub fn value(&self, measure: Measure, corpus: impl Fn(u16) -> bool) -> Option<f64> {
        let own = self.lang as usize;
        match measure {
            Measure::MonolingualMap => self.pair_ap.get(own).copied().flatten().map(f64::from),
            Measure::CrossLingualMap => {
                let values: Vec<f64> = self
                    .pair_ap
                    .iter()
                    .enumerate()
                    .filter(|&(c, _)| c != own && corpus(c as u16))
                    .filter_map(|(_, v)| v.map(f64::from))
                    .collect();
                crate::metrics::mean(values)
            }
            Measure::MultilingualMap => self.pooled_ap.map(f64::from),
            Measure::RankDistance => self.rank_distance.map(f64::from),
            Measure::NdcgAt10 => self.ndcg_at_10.map(f64::from),
        }
    }
}

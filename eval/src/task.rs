//! A benchmark turned into index form: queries, candidates and judgements by position, with
//! language ids, ready for scoring (queries × corpus) and for exact sharded ranks.

use std::collections::HashMap;

use rosetta_datasets::benchmark::{Benchmark, Pool, Protocol};

use crate::error::{EvalError, Result};

/// One relevant candidate of a query: its corpus position and judged relevance (> 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relevant {
    /// Position in the corpus (the tie-breaking order).
    pub doc: u32,
    /// The judged relevance (the nDCG gain).
    pub relevance: i32,
}

/// An evaluation task: who is relevant to whom, and in which language everything is.
#[derive(Debug, Clone)]
pub struct EvalTask {
    /// Benchmark name (from `benchmark.yaml`).
    pub name: String,
    /// `lareqa` or `qrels`.
    pub protocol: Protocol,
    /// Language codes; `query_lang` and `doc_lang` index into this.
    pub languages: Vec<String>,
    /// Query ids in file order.
    pub query_ids: Vec<String>,
    /// Language id of every query.
    pub query_lang: Vec<u16>,
    /// Candidate ids in corpus order.
    pub doc_ids: Vec<String>,
    /// Language id of every candidate.
    pub doc_lang: Vec<u16>,
    /// Relevant candidates of every query, in corpus order.
    pub relevant: Vec<Vec<Relevant>>,
    /// What a `qrels` query is ranked against: its language's candidates, or the whole corpus.
    pub pool: Pool,
}

impl EvalTask {
    /// Indexes a loaded benchmark; judgements naming unknown ids are an error that names them.
    pub fn from_benchmark(benchmark: &Benchmark) -> Result<Self> {
        let mut languages: Vec<String> = benchmark.spec.languages.clone();
        let lang_id = |code: &str, languages: &mut Vec<String>| -> Result<u16> {
            let position = match languages.iter().position(|l| l == code) {
                Some(p) => p,
                None => {
                    languages.push(code.to_string());
                    languages.len() - 1
                }
            };
            u16::try_from(position).map_err(|_| EvalError::invalid("benchmark", "more than 65535 languages"))
        };
        let mut query_lang = Vec::with_capacity(benchmark.queries.len());
        let mut query_index = HashMap::with_capacity(benchmark.queries.len());
        for (i, query) in benchmark.queries.iter().enumerate() {
            query_lang.push(lang_id(&query.lang, &mut languages)?);
            if query_index.insert(query.query_id.as_str(), i).is_some() {
                return Err(EvalError::invalid("queries.parquet", format!("duplicate query_id {:?}", query.query_id)));
            }
        }
        let mut doc_lang = Vec::with_capacity(benchmark.corpus.len());
        let mut doc_index = HashMap::with_capacity(benchmark.corpus.len());
        for (i, doc) in benchmark.corpus.iter().enumerate() {
            doc_lang.push(lang_id(&doc.lang, &mut languages)?);
            if doc_index.insert(doc.doc_id.as_str(), i).is_some() {
                return Err(EvalError::invalid("corpus.parquet", format!("duplicate doc_id {:?}", doc.doc_id)));
            }
        }
        if benchmark.corpus.len() > u32::MAX as usize {
            return Err(EvalError::invalid("corpus.parquet", "more than 2^32 - 1 candidates"));
        }
        let mut relevant = vec![Vec::new(); benchmark.queries.len()];
        for (row, qrel) in benchmark.qrels.iter().enumerate() {
            let query = *query_index.get(qrel.query_id.as_str()).ok_or_else(|| {
                EvalError::invalid(format!("qrels.parquet row {row}"), format!("unknown query_id {:?}", qrel.query_id))
            })?;
            let doc = *doc_index.get(qrel.doc_id.as_str()).ok_or_else(|| {
                EvalError::invalid(format!("qrels.parquet row {row}"), format!("unknown doc_id {:?}", qrel.doc_id))
            })?;
            if qrel.relevance > 0 {
                relevant[query].push(Relevant { doc: doc as u32, relevance: qrel.relevance });
            }
        }
        for list in &mut relevant {
            list.sort_by_key(|r| r.doc);
            list.dedup_by_key(|r| r.doc);
        }
        Ok(Self {
            name: benchmark.spec.name.clone(),
            protocol: benchmark.spec.protocol,
            languages,
            query_ids: benchmark.queries.iter().map(|q| q.query_id.clone()).collect(),
            query_lang,
            doc_ids: benchmark.corpus.iter().map(|d| d.doc_id.clone()).collect(),
            doc_lang,
            relevant,
            pool: benchmark.spec.pool,
        })
    }

    /// Number of queries.
    pub fn num_queries(&self) -> usize {
        self.query_ids.len()
    }

    /// Number of candidates.
    pub fn num_docs(&self) -> usize {
        self.doc_ids.len()
    }

    /// Every (query, relevant) pair in order: the layout of thresholds and beater counts.
    pub fn relevant_pairs(&self) -> impl Iterator<Item = (usize, Relevant)> + '_ {
        self.relevant.iter().enumerate().flat_map(|(q, list)| list.iter().map(move |r| (q, *r)))
    }

    /// Index of each query's first relevant pair, plus the total at the end (`num_queries + 1` entries).
    pub fn pair_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.num_queries() + 1);
        let mut total = 0;
        for list in &self.relevant {
            offsets.push(total);
            total += list.len();
        }
        offsets.push(total);
        offsets
    }

    /// Total number of (query, relevant) pairs.
    pub fn num_relevant_pairs(&self) -> usize {
        self.relevant.iter().map(Vec::len).sum()
    }

    /// The contiguous corpus range of shard `index` of `count` (balanced by candidates).
    pub fn shard_range(&self, index: usize, count: usize) -> std::ops::Range<usize> {
        aligned_range(self.num_docs(), index, count, 1)
    }
}

/// Part `index` of `count` contiguous parts of `0..len`, balanced, with inner boundaries on
/// multiples of `align` (so that encoding batches are the same whatever the number of parts).
pub fn aligned_range(len: usize, index: usize, count: usize, align: usize) -> std::ops::Range<usize> {
    let align = align.max(1);
    let count = count.max(1);
    let boundary = |i: usize| if i >= count { len } else { ((len * i / count) / align * align).min(len) };
    boundary(index)..boundary(index + 1)
}

#[cfg(test)]
mod tests {
    use super::aligned_range;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn aligned_parts_partition_the_range(len in 0usize..5000, count in 1usize..9, align in 1usize..130) {
            let mut next = 0;
            for index in 0..count {
                let part = aligned_range(len, index, count, align);
                prop_assert_eq!(part.start, next);
                prop_assert!(part.start <= part.end);
                if index + 1 < count {
                    prop_assert_eq!(part.end % align, 0);
                }
                next = part.end;
            }
            prop_assert_eq!(next, len);
        }
    }
}

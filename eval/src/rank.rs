//! Exact ranks without gathering the corpus in one place.
//!
//! The corpus is cut into contiguous shards; each shard scores every query against its own
//! candidates (dot products of the given embeddings). Ranks need two rounds:
//! 1. each shard reports the score of every relevant candidate it holds ([`ShardEngine::thresholds`]);
//! 2. with every threshold known, each shard counts, per relevant candidate and per corpus
//!    language, the candidates it holds that rank above it — a higher score, or an equal score
//!    and an earlier corpus position ([`ShardEngine::count`]).
//!
//! The rank of a relevant candidate in a pool is 1 + the sum of those counts over every shard
//! and every language of the pool: the same number a single machine sorting everything would
//! give, whatever the number of shards (scores of one pair are computed once, by one shard).

use std::ops::Range;

use crate::error::{EvalError, Result};
use crate::task::EvalTask;

/// Queries scored per matrix product (bounds the memory of one block to `BLOCK × shard`).
const QUERY_BLOCK: usize = 512;

/// One entry of a top-k list: a corpus position and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Corpus position.
    pub doc: u32,
    /// Similarity score.
    pub score: f32,
}

/// Round 1 of one shard: the score of every relevant (query, candidate) pair whose candidate it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardThresholds {
    /// (index into [`EvalTask::relevant_pairs`], score).
    pub scores: Vec<(u32, f32)>,
}

/// Round 2 of one shard: beaters per relevant pair and language, and optional top-k lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardCounts {
    /// `beaters[pair * languages + lang]`: candidates of this shard in `lang` ranked above the pair's candidate.
    pub beaters: Vec<u32>,
    /// `top[query * languages + lang]`: this shard's best `depth` candidates in `lang` (empty without depth).
    pub top: Vec<Vec<Hit>>,
}

/// Scores one corpus shard against every query.
pub struct ShardEngine<'a> {
    task: &'a EvalTask,
    queries: &'a [f32],
    dim: usize,
    /// The shard's embeddings, rows grouped by language (stable), row-major.
    docs: Vec<f32>,
    /// Corpus position of each grouped row.
    order: Vec<u32>,
    /// (language id, grouped rows) of each language present.
    segments: Vec<(u16, Range<usize>)>,
    /// Grouped row of each corpus position in the shard, by `doc - range.start`.
    grouped_row: Vec<u32>,
    range: Range<usize>,
    /// First relevant-pair index of each query.
    pair_offsets: Vec<usize>,
}

impl<'a> ShardEngine<'a> {
    /// Prepares shard `range` of the corpus: `queries` holds every query's embedding (row-major,
    /// `dim` wide), `docs` the embeddings of the shard's candidates in corpus order.
    pub fn new(task: &'a EvalTask, queries: &'a [f32], docs: &[f32], dim: usize, range: Range<usize>) -> Result<Self> {
        if dim == 0 || queries.len() != task.num_queries() * dim {
            return Err(EvalError::invalid(
                "query embeddings",
                format!("expected {} × {dim} values, got {}", task.num_queries(), queries.len()),
            ));
        }
        if range.end > task.num_docs() || docs.len() != range.len() * dim {
            return Err(EvalError::invalid(
                "corpus embeddings",
                format!(
                    "shard {range:?} of {} candidates needs {} values, got {}",
                    task.num_docs(),
                    range.len() * dim,
                    docs.len()
                ),
            ));
        }
        check_finite("query embeddings", queries, dim)?;
        check_finite("corpus embeddings", docs, dim)?;
        let mut order: Vec<u32> = (range.start as u32..range.end as u32).collect();
        order.sort_by_key(|&doc| (task.doc_lang[doc as usize], doc));
        let mut grouped = Vec::with_capacity(docs.len());
        let mut grouped_row = vec![0u32; range.len()];
        let mut segments: Vec<(u16, Range<usize>)> = Vec::new();
        for (row, &doc) in order.iter().enumerate() {
            let local = doc as usize - range.start;
            grouped.extend_from_slice(&docs[local * dim..(local + 1) * dim]);
            grouped_row[local] = row as u32;
            let lang = task.doc_lang[doc as usize];
            match segments.last_mut() {
                Some((last, rows)) if *last == lang => rows.end = row + 1,
                _ => segments.push((lang, row..row + 1)),
            }
        }
        let pair_offsets = task.pair_offsets();
        Ok(Self { task, queries, dim, docs: grouped, order, segments, grouped_row, range, pair_offsets })
    }

    /// Round 1: the score of every relevant pair whose candidate is in this shard.
    pub fn thresholds(&self) -> ShardThresholds {
        let mut scores = Vec::new();
        self.for_each_block(|first, block| {
            for (i, row) in block.chunks_exact(self.order.len()).enumerate() {
                let query = first + i;
                for (j, relevant) in self.task.relevant[query].iter().enumerate() {
                    if self.range.contains(&(relevant.doc as usize)) {
                        let grouped = self.grouped_row[relevant.doc as usize - self.range.start] as usize;
                        scores.push(((self.pair_offsets[query] + j) as u32, row[grouped]));
                    }
                }
            }
        });
        ShardThresholds { scores }
    }

    /// Round 2: beaters of every relevant pair by language, given every pair's score
    /// (`thresholds`, from [`merge_thresholds`]), and the shard's top `depth` per query and language.
    pub fn count(&self, thresholds: &[f32], depth: usize) -> Result<ShardCounts> {
        let languages = self.task.languages.len();
        if thresholds.len() != self.task.num_relevant_pairs() {
            return Err(EvalError::invalid(
                "thresholds",
                format!("expected {} scores, got {}", self.task.num_relevant_pairs(), thresholds.len()),
            ));
        }
        let mut beaters = vec![0u32; self.task.num_relevant_pairs() * languages];
        let mut top = if depth > 0 { vec![Vec::new(); self.task.num_queries() * languages] } else { Vec::new() };
        let width = self.order.len();
        self.for_each_block(|first, block| {
            let rows = block.len() / width;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows.max(1));
            let per_thread = rows.div_ceil(threads);
            let first_pair = self.pair_offsets[first];
            let last_pair = self.pair_offsets[first + rows];
            let block_beaters = &mut beaters[first_pair * languages..last_pair * languages];
            let block_top: &mut [Vec<Hit>] =
                if depth > 0 { &mut top[first * languages..(first + rows) * languages] } else { &mut [] };
            std::thread::scope(|scope| {
                let mut beaters_rest = block_beaters;
                let mut top_rest = block_top;
                for chunk in 0..threads {
                    let rows_here = (chunk * per_thread)..((chunk + 1) * per_thread).min(rows);
                    if rows_here.is_empty() {
                        continue;
                    }
                    let queries = (first + rows_here.start)..(first + rows_here.end);
                    let pairs = self.pair_offsets[queries.end] - self.pair_offsets[queries.start];
                    let (mine, rest) = std::mem::take(&mut beaters_rest).split_at_mut(pairs * languages);
                    beaters_rest = rest;
                    let (my_top, rest) = if depth > 0 {
                        std::mem::take(&mut top_rest).split_at_mut(queries.len() * languages)
                    } else {
                        (&mut [][..], &mut [][..])
                    };
                    top_rest = rest;
                    let scores = &block[rows_here.start * width..rows_here.end * width];
                    scope.spawn(move || self.count_rows(queries, scores, thresholds, depth, mine, my_top));
                }
            });
        });
        Ok(ShardCounts { beaters, top })
    }

    fn count_rows(
        &self,
        queries: Range<usize>,
        scores: &[f32],
        thresholds: &[f32],
        depth: usize,
        beaters: &mut [u32],
        top: &mut [Vec<Hit>],
    ) {
        let languages = self.task.languages.len();
        let width = self.order.len();
        let base_pair = self.pair_offsets[queries.start];
        for (i, query) in queries.enumerate() {
            let row = &scores[i * width..(i + 1) * width];
            for (j, relevant) in self.task.relevant[query].iter().enumerate() {
                let pair = self.pair_offsets[query] + j;
                let threshold = thresholds[pair];
                let counts = &mut beaters[(pair - base_pair) * languages..(pair - base_pair + 1) * languages];
                for (lang, rows) in &self.segments {
                    // Candidates before the relevant one in corpus order win ties; the rest must score higher.
                    let split = rows.start + self.order[rows.clone()].partition_point(|&doc| doc < relevant.doc);
                    let ahead = row[rows.start..split].iter().map(|&s| u32::from(s >= threshold)).sum::<u32>();
                    let above = row[split..rows.end].iter().map(|&s| u32::from(s > threshold)).sum::<u32>();
                    counts[*lang as usize] = ahead + above;
                }
            }
            if depth > 0 {
                for (lang, rows) in &self.segments {
                    top[i * languages + *lang as usize] = top_k(&row[rows.clone()], &self.order[rows.clone()], depth);
                }
            }
        }
    }

    /// Scores blocks of queries against the shard (one matrix product each) and hands each
    /// block (row-major, `block rows × shard size`) with its first query to `visit`.
    fn for_each_block(&self, mut visit: impl FnMut(usize, &[f32])) {
        let n = self.order.len();
        let nq = self.task.num_queries();
        if n == 0 {
            // No candidates: nothing to score, every count stays zero.
            return;
        }
        let mut block = vec![0f32; QUERY_BLOCK.min(nq) * n];
        for first in (0..nq).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(nq - first);
            let out = &mut block[..rows * n];
            score_block(&self.queries[first * self.dim..(first + rows) * self.dim], &self.docs, self.dim, out);
            visit(first, out);
        }
    }
}

/// `out = queries · docsᵀ` for row-major `queries` (m × dim) and `docs` (n × dim).
pub fn score_block(queries: &[f32], docs: &[f32], dim: usize, out: &mut [f32]) {
    let m = queries.len() / dim;
    let n = docs.len() / dim;
    debug_assert_eq!(out.len(), m * n);
    // SAFETY: the slices hold m × dim, n × dim and m × n values, and the strides describe them.
    unsafe {
        matrixmultiply::sgemm(
            m,
            dim,
            n,
            1.0,
            queries.as_ptr(),
            dim as isize,
            1,
            docs.as_ptr(),
            1,
            dim as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The best `depth` of `scores` (higher score first, then earlier corpus position).
fn top_k(scores: &[f32], docs: &[u32], depth: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = scores.iter().zip(docs).map(|(&score, &doc)| Hit { doc, score }).collect();
    if hits.len() > depth {
        hits.select_nth_unstable_by(depth - 1, hit_order);
        hits.truncate(depth);
    }
    hits.sort_unstable_by(hit_order);
    hits
}

/// Ranking order of hits: higher score first, ties by corpus position.
pub fn hit_order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc))
}

fn check_finite(what: &str, values: &[f32], dim: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(EvalError::invalid(what, format!("row {} holds a non-finite value", i / dim))),
        None => Ok(()),
    }
}

/// Joins round 1 of every shard into one score per relevant pair; each pair must be reported by
/// exactly one shard.
pub fn merge_thresholds(task: &EvalTask, shards: &[ShardThresholds]) -> Result<Vec<f32>> {
    let mut thresholds = vec![f32::NAN; task.num_relevant_pairs()];
    for (shard, part) in shards.iter().enumerate() {
        for &(pair, score) in &part.scores {
            let slot = thresholds.get_mut(pair as usize).ok_or_else(|| {
                EvalError::invalid(format!("shard {shard} thresholds"), format!("pair {pair} out of range"))
            })?;
            if !slot.is_nan() {
                return Err(EvalError::invalid(
                    format!("shard {shard} thresholds"),
                    format!("pair {pair} reported twice"),
                ));
            }
            *slot = score;
        }
    }
    if let Some(pair) = thresholds.iter().position(|s| s.is_nan()) {
        return Err(EvalError::invalid("thresholds", format!("no shard reported relevant pair {pair}")));
    }
    Ok(thresholds)
}

/// Every shard's round 2 summed: the ranks of all relevant pairs, in every pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Number of languages (the stride of `beaters`).
    pub languages: usize,
    /// Beaters per relevant pair and corpus language, summed over shards.
    pub beaters: Vec<u64>,
    /// The best candidates per query and corpus language (merged top-k; empty without depth).
    pub top: Vec<Vec<Hit>>,
}

impl Ranking {
    /// 1-based rank of relevant pair `pair` in the pool made of `pool` languages.
    pub fn rank_in(&self, pair: usize, pool: impl IntoIterator<Item = usize>) -> u64 {
        1 + pool.into_iter().map(|lang| self.beaters[pair * self.languages + lang]).sum::<u64>()
    }

    /// 1-based rank of relevant pair `pair` in the pool of every language.
    pub fn rank_pooled(&self, pair: usize) -> u64 {
        1 + self.beaters[pair * self.languages..(pair + 1) * self.languages].iter().sum::<u64>()
    }
}

/// Sums round 2 of every shard and merges their top-k lists.
pub fn merge_counts(task: &EvalTask, shards: &[ShardCounts], depth: usize) -> Result<Ranking> {
    let languages = task.languages.len();
    let mut beaters = vec![0u64; task.num_relevant_pairs() * languages];
    let mut top = if depth > 0 { vec![Vec::new(); task.num_queries() * languages] } else { Vec::new() };
    for (shard, part) in shards.iter().enumerate() {
        if part.beaters.len() != beaters.len() || (depth > 0 && part.top.len() != top.len()) {
            return Err(EvalError::invalid(
                format!("shard {shard} counts"),
                format!(
                    "expected {} counts and {} top lists, got {} and {}",
                    beaters.len(),
                    top.len(),
                    part.beaters.len(),
                    part.top.len()
                ),
            ));
        }
        for (total, &count) in beaters.iter_mut().zip(&part.beaters) {
            *total += u64::from(count);
        }
        if depth > 0 {
            for (merged, hits) in top.iter_mut().zip(&part.top) {
                merged.extend_from_slice(hits);
            }
        }
    }
    for list in &mut top {
        list.sort_unstable_by(hit_order);
        list.truncate(depth);
    }
    Ok(Ranking { languages, beaters, top })
}

/// Ranks on one machine: the corpus cut into `shards` shards, both rounds run here.
pub fn rank_sharded(
    task: &EvalTask,
    queries: &[f32],
    docs: &[f32],
    dim: usize,
    shards: usize,
    depth: usize,
) -> Result<Ranking> {
    let shards = shards.max(1);
    let engines = (0..shards)
        .map(|i| {
            let range = task.shard_range(i, shards);
            ShardEngine::new(task, queries, &docs[range.start * dim..range.end * dim], dim, range)
        })
        .collect::<Result<Vec<_>>>()?;
    let thresholds = merge_thresholds(task, &engines.iter().map(ShardEngine::thresholds).collect::<Vec<_>>())?;
    let counts = engines.iter().map(|e| e.count(&thresholds, depth)).collect::<Result<Vec<_>>>()?;
    merge_counts(task, &counts, depth)
}

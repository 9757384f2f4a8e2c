//! Exact sharded ranks against a brute-force sort, and shard-count independence.

mod common;

use common::random_task;
use proptest::prelude::*;
use rosetta_datasets::benchmark::Protocol;
use rosetta_eval::rank::{Hit, hit_order, rank_sharded, score_block};

/// Every relevant pair's rank in its own-language pool and in the pooled corpus, by sorting.
fn brute_force(task: &rosetta_eval::task::EvalTask, q: &[f32], d: &[f32], dim: usize) -> Vec<(u64, u64)> {
    let n = task.num_docs();
    let mut scores = vec![0f32; task.num_queries() * n];
    score_block(q, d, dim, &mut scores);
    let mut out = Vec::new();
    for (query, list) in task.relevant.iter().enumerate() {
        let row = &scores[query * n..(query + 1) * n];
        let mut order: Vec<Hit> = (0..n).map(|i| Hit { doc: i as u32, score: row[i] }).collect();
        order.sort_by(hit_order);
        for relevant in list {
            let lang = task.doc_lang[relevant.doc as usize];
            let pooled = order.iter().position(|h| h.doc == relevant.doc).unwrap() as u64 + 1;
            let own = order
                .iter()
                .filter(|h| task.doc_lang[h.doc as usize] == lang)
                .position(|h| h.doc == relevant.doc)
                .unwrap() as u64
                + 1;
            out.push((own, pooled));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sharded_ranks_equal_a_full_sort(seed in any::<u64>(), shards in 1usize..6, ties in any::<bool>(),
                                       docs in 1usize..90, queries in 1usize..40) {
        let (task, q, d, dim) = random_task(seed, Protocol::Lareqa, 3, queries, docs, ties);
        let ranking = rank_sharded(&task, &q, &d, dim, shards, 5).unwrap();
        let expected = brute_force(&task, &q, &d, dim);
        for (pair, (query, relevant)) in task.relevant_pairs().enumerate() {
            let lang = task.doc_lang[relevant.doc as usize] as usize;
            prop_assert_eq!(ranking.rank_in(pair, [lang]), expected[pair].0, "query {} doc {}", query, relevant.doc);
            prop_assert_eq!(ranking.rank_pooled(pair), expected[pair].1);
        }
        // The same numbers and the same top lists whatever the number of shards.
        prop_assert_eq!(&ranking, &rank_sharded(&task, &q, &d, dim, 1, 5).unwrap());
    }
}

#[test]
fn shard_count_does_not_change_float_scores_or_ties() {
    // Random floats, sizes that are not multiples of any kernel tile.
    let (task, q, d, dim) = random_task(7, Protocol::Lareqa, 4, 517, 1031, false);
    let one = rank_sharded(&task, &q, &d, dim, 1, 10).unwrap();
    for shards in [2, 3, 7] {
        assert_eq!(one, rank_sharded(&task, &q, &d, dim, shards, 10).unwrap(), "{shards} shards");
    }
}

#[test]
fn bad_embeddings_are_refused_with_a_reason() {
    let (task, q, mut d, dim) = random_task(1, Protocol::Lareqa, 2, 4, 6, false);
    let err = rank_sharded(&task, &q[..q.len() - 1], &d, dim, 1, 0).unwrap_err().to_string();
    assert!(err.contains("query embeddings") && err.contains("expected 4 × 8"), "{err}");
    d[9] = f32::NAN;
    let err = rank_sharded(&task, &q, &d, dim, 1, 0).unwrap_err().to_string();
    assert!(err.contains("corpus embeddings") && err.contains("row 1"), "{err}");
}

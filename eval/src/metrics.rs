//! Retrieval metrics of one query, computed from the 1-based ranks of its relevant candidates in
//! the full ranking of a pool (DESIGN.md §1; trec_eval semantics).
//!
//! Every function takes the ranks of the relevant candidates *that are in the pool*, in any order;
//! a query with none is not evaluated by the callers (it is skipped and counted).

/// Average precision over the full ranking (trec_eval `map`, LAReQA's mAP):
/// (1/|R|) · Σ over the ranks k holding a relevant candidate of (relevant in the top k) / k.
pub fn average_precision(ranks: &[u64]) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let sum: f64 = sorted.iter().enumerate().map(|(i, &rank)| (i + 1) as f64 / rank as f64).sum();
    sum / sorted.len() as f64
}

/// Recall at cut-off `k` (trec_eval `recall_k`): the share of relevant candidates ranked in the top k.
pub fn recall_at(ranks: &[u64], k: u64) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|&&rank| rank <= k).count() as f64 / ranks.len() as f64
}

/// nDCG at cut-off `k` (trec_eval `ndcg_cut.k`): gain = the judged relevance, discount
/// log2(rank + 1), normalised by the ideal ordering of every judged relevant document.
/// `judged` holds (rank, relevance) of the relevant candidates (relevance > 0).
pub fn ndcg_at(judged: &[(u64, i32)], k: u64) -> f64 {
    let dcg: f64 = judged
        .iter()
        .filter(|(rank, _)| *rank <= k)
        .map(|&(rank, relevance)| f64::from(relevance) / ((rank + 1) as f64).log2())
        .sum();
    let mut gains: Vec<i32> = judged.iter().map(|&(_, relevance)| relevance).collect();
    gains.sort_unstable_by(|a, b| b.cmp(a));
    let ideal: f64 =
        gains.iter().take(k as usize).enumerate().map(|(i, &gain)| f64::from(gain) / ((i + 2) as f64).log2()).sum();
    if ideal > 0.0 { dcg / ideal } else { 0.0 }
}

/// Rank distance (language bias, DESIGN.md §1): max rank − min rank over the relevant candidates.
pub fn rank_distance(ranks: &[u64]) -> u64 {
    match (ranks.iter().max(), ranks.iter().min()) {
        (Some(max), Some(min)) => max - min,
        _ => 0,
    }
}

/// Spearman's rank correlation of two paired samples without ties (Pearson's r of their ranks);
/// `None` with fewer than three pairs or a constant sample.
pub fn spearman(a: &[u64], b: &[u64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let ranks = |values: &[u64]| {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by_key(|&i| values[i]);
        let mut ranks = vec![0.0; values.len()];
        for (rank, &i) in order.iter().enumerate() {
            ranks[i] = rank as f64;
        }
        ranks
    };
    let (x, y) = (ranks(a), ranks(b));
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (vx, vy): (f64, f64) = (x.iter().map(|a| (a - mx).powi(2)).sum(), y.iter().map(|b| (b - my).powi(2)).sum());
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// Arithmetic mean; `None` for no values.
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn average_precision_by_hand() {
        // One relevant at rank 1 / 2 / 4.
        assert!(close(average_precision(&[1]), 1.0));
        assert!(close(average_precision(&[2]), 0.5));
        assert!(close(average_precision(&[4]), 0.25));
        // Relevant at ranks 1, 3, 6: (1/1 + 2/3 + 3/6) / 3.
        assert!(close(average_precision(&[6, 1, 3]), (1.0 + 2.0 / 3.0 + 0.5) / 3.0));
        assert_eq!(average_precision(&[]), 0.0);
    }

    #[test]
    fn recall_and_rank_distance_by_hand() {
        assert!(close(recall_at(&[1, 5, 11, 30], 10), 0.5));
        assert!(close(recall_at(&[2], 1), 0.0));
        assert_eq!(rank_distance(&[7, 2, 40]), 38);
        assert_eq!(rank_distance(&[3]), 0);
    }

    #[test]
    fn ndcg_by_hand() {
        // Gains 3 at rank 1 and 1 at rank 3, ideal 3, 1 at ranks 1, 2.
        let dcg = 3.0 + 1.0 / 4f64.log2();
        let ideal = 3.0 + 1.0 / 3f64.log2();
        assert!(close(ndcg_at(&[(1, 3), (3, 1)], 10), dcg / ideal));
        // A relevant document beyond the cut-off still counts in the ideal ordering.
        assert!(close(ndcg_at(&[(1, 1), (11, 1)], 10), 1.0 / (1.0 + 1.0 / 3f64.log2())));
        assert!(close(ndcg_at(&[(1, 2)], 10), 1.0));
    }

    #[test]
    fn spearman_by_hand() {
        // Same order, reversed order, and one swap of four (1 − 6·2 / (4·15) = 0.8).
        assert!(close(spearman(&[1, 5, 9], &[2, 3, 40]).unwrap(), 1.0));
        assert!(close(spearman(&[1, 5, 9], &[40, 3, 2]).unwrap(), -1.0));
        assert!(close(spearman(&[1, 2, 3, 4], &[1, 3, 2, 4]).unwrap(), 0.8));
        assert_eq!(spearman(&[1, 2], &[2, 1]), None);
    }
}

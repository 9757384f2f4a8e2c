//! The statistics of an experiment report: mean ± standard deviation over seeds, and paired
//! tests between two arms over parallel question groups — a sign-flip randomisation test of the
//! mean difference (exact when there are few groups), a percentile bootstrap 95 % interval that
//! resamples groups, and Holm's step-down correction over all comparisons of a report.

/// Mean and sample standard deviation (n − 1; 0 for one value); `None` for no values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() == 1 {
        return Some((mean, 0.0));
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, variance.sqrt()))
}

/// SplitMix64: a small, fast, seeded generator (resampling needs no more).
#[derive(Debug, Clone)]
pub struct Resampler(u64);

impl Resampler {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Groups up to which the randomisation test enumerates all 2^n sign patterns.
pub const EXACT_GROUPS: usize = 16;

/// A paired comparison of two arms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedTest {
    /// Parallel groups compared.
    pub groups: usize,
    /// Mean over groups of (A − B).
    pub difference: f64,
    /// Two-sided p-value of the sign-flip randomisation test.
    pub p_value: f64,
    /// Whether `p_value` is exact (all sign patterns) or estimated (random flips).
    pub exact: bool,
    /// Bootstrap percentile interval of `difference` (95 % by default).
    pub interval: (f64, f64),
}

/// Tests whether the mean of paired per-group differences is zero: under the null each group's
/// difference is as likely to have either sign. p = share of sign patterns whose |mean| is at
/// least the observed one (exact for at most [`EXACT_GROUPS`] groups; otherwise
/// (1 + hits) / (1 + resamples) over random patterns, which never reports 0).
pub fn sign_flip_test(differences: &[f64], resamples: usize, rng: &mut Resampler) -> (f64, bool) {
    let n = differences.len();
    if n == 0 {
        return (1.0, true);
    }
    let observed = differences.iter().sum::<f64>().abs();
    // Floating-point sums of the same values in another order may differ in the last bits.
    let tolerance = 1e-9 * differences.iter().map(|d| d.abs()).sum::<f64>().max(f64::MIN_POSITIVE);
    if n <= EXACT_GROUPS {
        let patterns = 1u64 << n;
        let hits = (0..patterns)
            .filter(|pattern| {
                let sum: f64 =
                    differences.iter().enumerate().map(|(i, d)| if pattern >> i & 1 == 1 { -d } else { *d }).sum();
                sum.abs() >= observed - tolerance
            })
            .count();
        return (hits as f64 / patterns as f64, true);
    }
    let mut hits = 0usize;
    for _ in 0..resamples {
        let mut sum = 0.0;
        let mut bits = 0u64;
        for (i, d) in differences.iter().enumerate() {
            if i % 64 == 0 {
                bits = rng.next_u64();
            }
            sum += if bits >> (i % 64) & 1 == 1 { -d } else { *d };
        }
        if sum.abs() >= observed - tolerance {
            hits += 1;
        }
    }
    ((1 + hits) as f64 / (1 + resamples) as f64, false)
}

/// Percentile bootstrap interval of the mean, resampling whole groups; `level` e.g. 0.95.
pub fn bootstrap_interval(differences: &[f64], resamples: usize, level: f64, rng: &mut Resampler) -> (f64, f64) {
    let n = differences.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut means: Vec<f64> =
        (0..resamples.max(1)).map(|_| (0..n).map(|_| differences[rng.below(n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let at = |q: f64| {
        let index = (q * (means.len() - 1) as f64).round() as usize;
        means[index.min(means.len() - 1)]
    };
    (at(tail), at(1.0 - tail))
}

/// The paired test of A against B, given each group's difference (A − B).
pub fn paired_test(differences: &[f64], resamples: usize, seed: u64) -> PairedTest {
    let mut rng = Resampler::new(seed);
    let (p_value, exact) = sign_flip_test(differences, resamples, &mut rng);
    let interval = bootstrap_interval(differences, resamples, 0.95, &mut rng);
    let difference =
        if differences.is_empty() { f64::NAN } else { differences.iter().sum::<f64>() / differences.len() as f64 };
    PairedTest { groups: differences.len(), difference, p_value, exact, interval }
}

/// Holm's step-down adjustment: the i-th smallest of m p-values becomes
/// max over j ≤ i of min(1, (m − j + 1) · p_(j)); reject where the adjusted value ≤ α.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mean_and_sample_deviation() {
        assert_eq!(mean_std(&[]), None);
        assert_eq!(mean_std(&[2.0]), Some((2.0, 0.0)));
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((mean - 2.5).abs() < 1e-12 && (std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn holm_by_hand() {
        // m = 4, sorted p: 0.01 (×4 = 0.04), 0.02 (×3 = 0.06), 0.03 (×2 = 0.06), 0.5 (×1 = 0.5).
        let adjusted = holm(&[0.03, 0.5, 0.01, 0.02]);
        let expected = [0.06, 0.5, 0.04, 0.06];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adjusted:?}");
        }
        // Monotone even when a later product is smaller: 0.04·2 = 0.08, 0.045·1 = 0.045 → 0.08.
        let adjusted = holm(&[0.001, 0.04, 0.045]);
        assert!((adjusted[2] - 0.08).abs() < 1e-12, "{adjusted:?}");
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
    }

    #[test]
    fn exact_sign_flip_by_hand() {
        // Differences 1, 2, 3: of the 8 sign patterns, |sum| ≥ 6 only for +++ and −−−.
        let (p, exact) = sign_flip_test(&[1.0, 2.0, 3.0], 0, &mut Resampler::new(0));
        assert!(exact && (p - 0.25).abs() < 1e-12, "{p}");
        // 1, 1, −1: every pattern's sum is odd, so |sum| ≥ 1 always: p = 1.
        let (p, _) = sign_flip_test(&[1.0, 1.0, -1.0], 0, &mut Resampler::new(0));
        assert!((p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_clear_difference_is_found_and_no_difference_is_not() {
        let clear: Vec<f64> = (0..200).map(|i| 0.05 + 0.01 * ((i % 7) as f64 - 3.0)).collect();
        let test = paired_test(&clear, 2000, 1);
        assert!(!test.exact && test.p_value < 0.001, "{test:?}");
        assert!(test.interval.0 > 0.0 && test.interval.1 < 0.1, "{test:?}");
        let noise: Vec<f64> = (0..200).map(|i| if i % 2 == 0 { 0.03 } else { -0.03 }).collect();
        let test = paired_test(&noise, 2000, 1);
        assert!(test.p_value > 0.5 && test.interval.0 < 0.0 && test.interval.1 > 0.0, "{test:?}");
    }

    proptest! {
        #[test]
        fn p_values_are_probabilities_and_symmetric_in_sign(values in proptest::collection::vec(-1.0f64..1.0, 1..40)) {
            let (p, _) = sign_flip_test(&values, 500, &mut Resampler::new(3));
            let negated: Vec<f64> = values.iter().map(|v| -v).collect();
            let (q, _) = sign_flip_test(&negated, 500, &mut Resampler::new(3));
            prop_assert!(p > 0.0 && p <= 1.0);
            prop_assert!((p - q).abs() < 1e-12);
        }

        #[test]
        fn holm_never_lowers_a_p_value_and_keeps_their_order(values in proptest::collection::vec(0.0f64..1.0, 1..20)) {
            let adjusted = holm(&values);
            for (i, (&p, &a)) in values.iter().zip(&adjusted).enumerate() {
                prop_assert!(a >= p && a <= 1.0);
                for (j, &other) in values.iter().enumerate() {
                    if values[j] < values[i] { prop_assert!(adjusted[j] <= a, "{i} {j} {other}"); }
                }
            }
        }

        #[test]
        fn the_bootstrap_interval_is_ordered_and_inside_the_data(values in proptest::collection::vec(-1.0f64..1.0, 2..50)) {
            let (lo, hi) = bootstrap_interval(&values, 400, 0.95, &mut Resampler::new(5));
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(lo.is_finite() && lo <= hi && lo >= min - 1e-12 && hi <= max + 1e-12);
        }
    }
}

//! Dropout whose mask is drawn on every core. libtorch's CPU dropout draws its Bernoulli mask
//! on one thread, one generator call per element: on multilingual-e5-small's shape (12 layers,
//! 32 × 128-token passages) that was a tenth of a training step's time (`perf` of
//! `train_bench`). Here each dropout call takes one 64-bit seed from libtorch's generator, so
//! `tch::manual_seed` (per step and rank, per GradCache chunk) replays it exactly as before,
//! and the mask is a counter-based hash of (seed, element index): the same bits whatever the
//! number of threads. On CUDA, libtorch's fused dropout is kept.

use tch::{Device, Kind, Tensor};

use crate::kernels::parallel::for_chunks;

/// `input` with each element zeroed with probability `p` and the others scaled by
/// `1 / (1 - p)` when `train` (as `torch.nn.functional.dropout`); `input` itself otherwise.
pub fn dropout(input: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return input.shallow_clone();
    }
    if input.device() != Device::Cpu || p >= 1.0 {
        return input.dropout(p, train);
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    input * mask(&input.size(), input.kind(), p, seed)
}

/// A CPU tensor of `size` in `kind` whose elements are 0 with probability `p` and `1 / (1 - p)`
/// otherwise, a pure function of `seed` (`0 <= p < 1`).
fn mask(size: &[i64], kind: Kind, p: f64, seed: u64) -> Tensor {
    let keep = 1.0 / (1.0 - p);
    match kind {
        Kind::Double => filled(size, Kind::Double, p, seed, 0.0f64, keep),
        Kind::Float => filled(size, Kind::Float, p, seed, 0.0f32, keep as f32),
        other => filled(size, Kind::Float, p, seed, 0.0f32, keep as f32).to_kind(other),
    }
}

/// A new `[size]` tensor of `kind` (whose elements are `T`) filled by [`fill`].
fn filled<T: Copy + Send + Sync>(size: &[i64], kind: Kind, p: f64, seed: u64, dropped: T, kept: T) -> Tensor {
    let out = Tensor::empty(size, (kind, Device::Cpu));
    let len = out.numel();
    let threshold = drop_threshold(p);
    let base = SharedOut(out.data_ptr().cast::<T>());
    // Pairs of elements share one 64-bit hash; each thread fills whole pairs.
    for_chunks(len.div_ceil(2), |pairs| {
        let start = pairs.start * 2;
        let end = (pairs.end * 2).min(len);
        // SAFETY: `out` is a fresh contiguous tensor of `len` elements of `T` that lives until
        // this loop returns, and the threads' pair ranges are disjoint.
        let values = unsafe { std::slice::from_raw_parts_mut(base.pointer().add(start), end - start) };
        fill(values, start, seed, threshold, dropped, kept);
    });
    out
}

/// Writes the mask elements `first..first + values.len()` of `seed`: `dropped` where the
/// element's 32 random bits fall below `threshold`, `kept` elsewhere. `first` must be even.
/// In the widest vectors the CPU has (AVX-512's `vpmullq` multiplies the hash's 64-bit lanes):
/// the same bits as the scalar loop x86-64's baseline gets, measured 3× faster (the masks of an
/// e5-small training step: 0.30 → 0.10 s).
fn fill<T: Copy>(values: &mut [T], first: usize, seed: u64, threshold: u64, dropped: T, kept: T) {
    debug_assert!(first.is_multiple_of(2));
    crate::kernels::simd::widest!(fill_at_any_width(values, first, seed, threshold, dropped, kept));
}

/// [`fill`]'s loop: whole pairs first (one hash each, no branch, so the loop vectorises), then
/// a last odd element.
#[inline(always)]
fn fill_at_any_width<T: Copy>(values: &mut [T], first: usize, seed: u64, threshold: u64, dropped: T, kept: T) {
    let first_pair = (first / 2) as u64;
    let whole_pairs = (values.len() / 2) as u64;
    let mut pairs = values.chunks_exact_mut(2);
    for (offset, pair) in (&mut pairs).enumerate() {
        let bits = pair_bits(seed, first_pair + offset as u64);
        pair[0] = if (bits & 0xffff_ffff) < threshold { dropped } else { kept };
        pair[1] = if (bits >> 32) < threshold { dropped } else { kept };
    }
    if let [last] = pairs.into_remainder() {
        let bits = pair_bits(seed, first_pair + whole_pairs);
        *last = if (bits & 0xffff_ffff) < threshold { dropped } else { kept };
    }
}

/// The 32-bit draws below which an element is dropped: `ceil(p · 2³²)`.
fn drop_threshold(p: f64) -> u64 {
    (p * 4_294_967_296.0).ceil().clamp(0.0, 4_294_967_296.0) as u64
}

/// 64 random bits for pair `index` of the mask of `seed` (SplitMix64's output function over
/// the Weyl sequence, Steele et al. 2014: a counter-based generator, so any pair is computed
/// without the ones before it).
#[inline(always)]
fn pair_bits(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The mask's base pointer, shared by the filling threads (each writes its own range).
struct SharedOut<T>(*mut T);

impl<T> SharedOut<T> {
    fn pointer(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the threads write disjoint ranges through the pointer (see `filled`).
unsafe impl<T: Send> Sync for SharedOut<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    #[test]
    fn the_mask_drops_a_fraction_p_and_scales_the_rest() {
        for p in [0.1, 0.5] {
            let m = values(&mask(&[1000, 1001], Kind::Float, p, 42));
            let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64;
            assert!((dropped - p).abs() < 0.003, "p {p}: dropped {dropped}");
            let keep = f64::from((1.0 / (1.0 - p)) as f32);
            assert!(m.iter().all(|&v| v == 0.0 || v == keep), "values other than 0 and {keep}");
        }
        assert_eq!(drop_threshold(0.0), 0);
        assert_eq!(drop_threshold(0.5), 1 << 31);
    }

    #[test]
    fn the_mask_is_a_function_of_the_seed_and_of_each_index_alone() {
        let size = [3, 70_001];
        assert_eq!(values(&mask(&size, Kind::Float, 0.1, 7)), values(&mask(&size, Kind::Float, 0.1, 7)));
        assert_ne!(values(&mask(&size, Kind::Float, 0.1, 7)), values(&mask(&size, Kind::Float, 0.1, 8)));
        // Filled in two pieces (as two threads do) or in one: the same elements.
        let whole = values(&mask(&size, Kind::Double, 0.1, 7));
        let mut pieces = vec![0.0f64; whole.len()];
        let threshold = drop_threshold(0.1);
        let keep = 1.0 / 0.9;
        let (left, right) = pieces.split_at_mut(1000);
        fill(left, 0, 7, threshold, 0.0, keep);
        fill(right, 1000, 7, threshold, 0.0, keep);
        assert_eq!(pieces, whole);
        // The scalar loop of x86-64's baseline, in two pieces (the second ending in an odd
        // element): the same elements as the vector width the CPU picked.
        let mut scalar = vec![0.0f64; whole.len()];
        let (left, right) = scalar.split_at_mut(2 * 4099);
        let baseline = crate::kernels::simd::Level::Baseline;
        crate::kernels::simd::at!(baseline, fill_at_any_width(left, 0, 7, threshold, 0.0, keep));
        crate::kernels::simd::at!(baseline, fill_at_any_width(right, 2 * 4099, 7, threshold, 0.0, keep));
        assert_eq!(scalar, whole);
        // Neighbouring elements are not correlated (each pair's two halves are used).
        let kept: Vec<bool> = whole.iter().map(|&v| v != 0.0).collect();
        let both_dropped = kept.windows(2).filter(|w| !w[0] && !w[1]).count() as f64 / (kept.len() - 1) as f64;
        assert!((both_dropped - 0.01).abs() < 0.002, "P(both dropped) = {both_dropped}");
    }

    /// That `tch::manual_seed` replays the mask is tested in `tests/dropout_replay.rs`, a
    /// binary of its own: libtorch's generator is global, and the other tests here draw from
    /// it in parallel threads (a draw between the seed and the dropout failed CI once).
    #[test]
    fn dropout_keeps_the_kind_and_passes_the_mask_back() {
        let x = Tensor::randn([64, 96], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let first = dropout(&x, 0.2, true);
        assert_eq!(first.kind(), Kind::Double);
        first.sum(Kind::Double).backward();
        // The gradient is the mask: 0 or 1 / (1 - p) exactly, 0 exactly where the output is.
        let grad = values(&x.grad());
        let out = values(&first);
        let input = values(&x);
        for ((g, o), i) in grad.iter().zip(&out).zip(&input) {
            assert!(*g == 0.0 || *g == 1.0 / 0.8, "gradient {g}");
            assert_eq!(*o, i * g);
        }
        let bf16 = Tensor::ones([4, 8], (Kind::BFloat16, Device::Cpu));
        assert_eq!(dropout(&bf16, 0.5, true).kind(), Kind::BFloat16);
        assert_eq!(values(&dropout(&x, 0.2, false)), input, "no dropout outside training");
        assert_eq!(values(&dropout(&x, 0.0, true)), input);
    }
}

//! Attention for bf16 inference on CPUs with AVX-512 BF16 and no AMX, straight from the fused
//! QKV product. There libtorch's flash kernel takes 18% of a bf16 encoding pass on e5-small's
//! shape (32 × 91 tokens, 12 heads of 32): it widens short blocks to f32 and multiplies them
//! with general GEMM calls. Here each head's keys are laid out in bf16 pairs once, each query's
//! scores are `vdpbf16ps` dot products in f32 registers (the products of bf16 inputs are exact
//! in f32, as in libtorch's f32 accumulation), the softmax runs in f32 in place, the weighted
//! sum of the values is in f32, and the output is rounded to bf16 once and written in
//! `[B, L, H]` order, so the copy behind `transpose(1, 2).reshape` goes too. fp32 inference on
//! CPUs with AVX-512 takes the same blocks in f32 (the `float` module). Inference only (no graph, no
//! dropout); every other case, and bf16 on every CPU with AMX (whose tiles libtorch's kernel
//! uses), takes libtorch's kernel.

#[cfg(target_arch = "x86_64")]
mod float;

use tch::{Device, Kind, Tensor};

use crate::kernels::parallel::{SharedOut, cpu_has_avx512};

/// Longest sequence the kernel takes (its score rows are kept on the stack).
const MAX_LENGTH: usize = 512;

/// Whether the kernel can take attention over `qkv`'s kind and device on this CPU (so that the
/// caller prepares the key mask once per pass): on the CPU, bf16 with AVX-512 BF16 and no AMX,
/// or f32 with AVX-512 F.
pub fn applies_to(qkv: &Tensor) -> bool {
    qkv.device() == Device::Cpu
        && match qkv.kind() {
            Kind::BFloat16 => cpu_has_bf16_dot_without_amx(),
            Kind::Float => cpu_has_avx512(),
            _ => false,
        }
}

/// The key mask in the kernel's form: one byte per token of `attention_mask` `[B, L]`, 1 where
/// the token may be attended to.
pub fn keep_bytes(attention_mask: &Tensor) -> Option<Vec<u8>> {
    Vec::try_from(attention_mask.ne(0).to_kind(Kind::Uint8).reshape([-1])).ok()
}

/// The context `[B, L, heads · head]` (in `qkv`'s kind, bf16 or f32) of `qkv` `[B, L, 3, heads, head]` (the fused
/// projection's output, before any permute) attending over the keys where `keep` (from
/// [`keep_bytes`]) is 1, or `None` where this kernel does not apply: see [`applies_to`], and a
/// graph being recorded, a head width that is not 16, 32, 48 or 64, a sequence longer than 512
/// or a mask of another size.
pub fn context(qkv: &Tensor, keep: &[u8]) -> Option<Tensor> {
    let size = qkv.size();
    let &[batch, length, 3, heads, head] = size.as_slice() else { return None };
    let usable = applies_to(qkv)
        && !qkv.requires_grad()
        && head % 16 == 0
        && head <= 64
        && length as usize <= MAX_LENGTH
        && keep.len() == (batch * length) as usize;
    if !usable {
        return None;
    }
    let qkv = qkv.contiguous();
    let out = Tensor::empty([batch, length, heads * head], (qkv.kind(), Device::Cpu));
    let shape = Shape { length: length as usize, heads: heads as usize, head: head as usize };
    let total = (batch * length * 3 * heads * head) as usize;
    let each_sequence = |run: &(dyn Fn(usize, &[u8]) + Sync)| {
        crate::kernels::parallel::for_parts(
            batch as usize,
            crate::kernels::parallel::intra_op_threads(),
            |sequences| {
                for b in sequences {
                    run(b, &keep[b * shape.length..(b + 1) * shape.length]);
                }
            },
        );
    };
    // SAFETY (both kinds): `qkv` is a contiguous CPU tensor of `total` elements of its kind,
    // alive for this call; `out` is a fresh contiguous tensor of that kind nobody else sees
    // until it is returned. The CPU has the instructions (checked by `applies_to`), and each
    // sequence writes only its own rows of the output, so the threads never write the same
    // element.
    if qkv.kind() == Kind::Float {
        let input = unsafe { std::slice::from_raw_parts(qkv.data_ptr() as *const f32, total) };
        let output = SharedOut(out.data_ptr().cast::<f32>());
        each_sequence(&|b, keep| unsafe { float_attention(input, output.pointer(), shape, b, keep) });
    } else {
        let input = unsafe { std::slice::from_raw_parts(qkv.data_ptr() as *const u16, total) };
        let output = SharedOut(out.data_ptr().cast::<u16>());
        each_sequence(&|b, keep| unsafe { sequence_attention(input, output.pointer(), shape, b, keep) });
    }
    Some(out)
}

/// The f32 path's sequence function ([`float::sequence_attention`]).
#[cfg(target_arch = "x86_64")]
use float::sequence_attention as float_attention;

#[cfg(not(target_arch = "x86_64"))]
unsafe fn float_attention(_: &[f32], _: *mut f32, _: Shape, _: usize, _: &[u8]) {
    unreachable!("`context` takes this kernel only on x86-64 with AVX-512")
}

/// libtorch's attention over the same input as [`context`], in the same `[B, L, H]` layout and
/// the kind of `qkv`: the kernel's reference in tests and its peer in `examples/attention_bench`.
#[cfg(any(test, feature = "bench"))]
pub fn libtorch_context(qkv: &Tensor, attention_mask: &Tensor) -> Tensor {
    let size = qkv.size();
    let (batch, length, width) = (size[0], size[1], size[3] * size[4]);
    let parts = qkv.permute([2, 0, 3, 1, 4]);
    let keep = attention_mask.ne(0).view([batch, 1, 1, length]);
    let (q, k, v) = (parts.get(0), parts.get(1), parts.get(2));
    let context = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&keep), 0.0, false, None, false);
    context.transpose(1, 2).reshape([batch, length, width])
}

/// Whether the CPU has AVX-512 F and BF16 but no AMX-BF16 (std caches the detection; AMX is
/// read from CPUID leaf 7, EDX bit 22, as std's AMX detection is not stable yet).
fn cpu_has_bf16_dot_without_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static ANSWER: OnceLock<bool> = OnceLock::new();
        *ANSWER.get_or_init(|| {
            let dot =
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16");
            // CPUID leaf 7 exists on every CPU with AVX-512.
            let amx_bf16 = dot && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 22) != 0;
            dot && !amx_bf16
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The sequence length and the head layout of one fused QKV tensor.
#[derive(Debug, Clone, Copy)]
struct Shape {
    length: usize,
    heads: usize,
    head: usize,
}

/// f32 from bf16 bits (exact).
fn widen(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn sequence_attention(_: &[u16], _: *mut u16, _: Shape, _: usize, _: &[u8]) {
    unreachable!("`context` takes this kernel only on x86-64 with AVX-512 BF16")
}

/// Attention of every head of sequence `b`: for every query, scaled scores against every key
/// (masked keys −∞), softmax, and the probability-weighted sum of the values, written to
/// `output[b, i, h · head ..]`. One pass in memory order first lays the sequence's queries (as
/// bf16 pairs) and values (widened to f32) out head by head: read in place, a head's rows lie
/// `3 × width` elements apart, so every row is a cache miss and they share a few of L1's sets.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn sequence_attention(input: &[u16], output: *mut u16, shape: Shape, b: usize, keep: &[u8]) {
    let Shape { length, heads, head } = shape;
    let width = heads * head;
    let row = 3 * width; // elements between one token's QKV and the next's
    let pairs = head / 2;
    let padded = length.div_ceil(16) * 16;
    let Some(bias) = key_bias(keep, padded) else {
        // No key to attend to: zeros, as libtorch's kernels give.
        // SAFETY: sequence `b`'s rows of `output` (`[B, length, width]`, checked by `context`).
        unsafe { std::ptr::write_bytes(output.add(b * length * width), 0, length * width) };
        return;
    };
    let pair = |at: usize| u32::from(input[at]) | (u32::from(input[at + 1]) << 16);
    // Queries `[heads][length][pairs]` (two bf16 in each u32, as `vdpbf16ps` reads them) and
    // values `[heads][length][head]` in f32.
    let mut queries = vec![0u32; heads * length * pairs];
    let mut values = vec![0.0f32; heads * length * head];
    for j in 0..length {
        let token = (b * length + j) * row;
        for h in 0..heads {
            let at = h * length + j;
            for (p, q) in queries[at * pairs..(at + 1) * pairs].iter_mut().enumerate() {
                *q = pair(token + h * head + 2 * p);
            }
            let value = &input[token + 2 * width + h * head..][..head];
            for (v, &x) in values[at * head..(at + 1) * head].iter_mut().zip(value) {
                *v = widen(x);
            }
        }
    }
    // One head's keys `[pairs][padded]` at a time, a bf16 pair per key and lane (the padding
    // stays 0, and its bias −∞).
    let mut keys = vec![0u32; pairs * padded];
    // SAFETY (for the loops below): every load and store is inside `queries`, `keys`, `values`
    // or `output`'s rows of sequence `b` (laid out `[B, length, width]`, checked by `context`).
    unsafe {
        for h in 0..heads {
            // This head's keys in pairs, built here so that the writes stay in L1.
            for j in 0..length {
                let key = (b * length + j) * row + width + h * head;
                for p in 0..pairs {
                    keys[p * padded + j] = pair(key + 2 * p);
                }
            }
            let block_of = |rows: [usize; 2]| Scores {
                queries: rows.map(|r| queries.as_ptr().add((h * length + r) * pairs)),
                pairs,
                keys: keys.as_ptr(),
                stride: padded,
            };
            let values = values.as_ptr().add(h * length * head);
            head_attention(block_of, shape, &bias, values, |r| output.add((b * length + r) * width + h * head));
        }
    }
}

/// The additive key mask of a sequence, `padded` long: 0 for a key, −∞ for a masked one or
/// one past the end; `None` when no key may be attended to.
fn key_bias(keep: &[u8], padded: usize) -> Option<Vec<f32>> {
    keep.iter().any(|&k| k != 0).then(|| {
        (0..padded).map(|j| if keep.get(j).is_some_and(|&k| k != 0) { 0.0 } else { f32::NEG_INFINITY }).collect()
    })
}

/// One head's attention, two queries at a time (each key and value vector loaded feeds both):
/// the scores of the block `block_of` gives for the pair's rows, plus `bias` (see [`key_bias`]),
/// softmax, and the probability-weighted sums of the head's f32 `values` `[length][head]`,
/// stored at `out_of(row)`.
///
/// # Safety
/// The blocks' keys hold `bias.len()` keys (`≤ MAX_LENGTH`), each `out_of(row)` `head`
/// elements, and the CPU has the instructions the block and the store use.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn head_attention<S: ScoreBlock, T: StoreSums>(
    block_of: impl Fn([usize; 2]) -> S,
    shape: Shape,
    bias: &[f32],
    values: *const f32,
    out_of: impl Fn(usize) -> *mut T,
) {
    let Shape { length, head, .. } = shape;
    let vectors = bias.len() / 16;
    let mut scores = [[0.0f32; MAX_LENGTH]; 2];
    // SAFETY: `scores` holds `MAX_LENGTH ≥ bias.len()` lanes per query; the rest is the
    // caller's contract.
    unsafe {
        let scale = std::arch::x86_64::_mm512_set1_ps(1.0 / (head as f32).sqrt());
        let mut i = 0;
        while i < length {
            let rows = [i, (i + 1).min(length - 1)];
            let into = [scores[0].as_mut_ptr(), scores[1].as_mut_ptr()];
            all_scores(block_of(rows), bias.as_ptr(), scale, vectors, into);
            // Two calls, not a closure: a closure would not take this function's instructions.
            let inverse =
                [softmax_in_place(scores[0].as_mut_ptr(), vectors), softmax_in_place(scores[1].as_mut_ptr(), vectors)];
            let outputs = rows.map(&out_of);
            let sums = ([scores[0].as_ptr(), scores[1].as_ptr()], values, length, head);
            match head / 16 {
                1 => store_pair(weighted_sum::<1>(sums, inverse), outputs),
                2 => store_pair(weighted_sum::<2>(sums, inverse), outputs),
                3 => store_pair(weighted_sum::<3>(sums, inverse), outputs),
                _ => store_pair(weighted_sum::<4>(sums, inverse), outputs),
            }
            i += 2;
        }
    }
}

/// The element type of an attention output, and how 16 f32 sums are stored in it.
trait StoreSums: Sized {
    /// Writes the 16 lanes of `sum` to `out`.
    ///
    /// # Safety
    /// `out` has 16 elements, and the CPU has the instructions used.
    unsafe fn store(sum: std::arch::x86_64::__m512, out: *mut Self);
}

/// Writes two queries' weighted sums (`16 C` lanes each) to `out`, 16 lanes at a time.
///
/// # Safety
/// Each `out` has `16 C` elements, and the CPU has the instructions `T::store` uses.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_pair<T: StoreSums, const C: usize>(sums: [[std::arch::x86_64::__m512; C]; 2], out: [*mut T; 2]) {
    for (sums, out) in sums.iter().zip(out) {
        for (c, &sum) in sums.iter().enumerate() {
            // SAFETY: lanes `16 c .. 16 (c + 1)` of `out`, within its `16 C` (the contract).
            unsafe { T::store(sum, out.add(16 * c)) };
        }
    }
}

/// Two queries' bf16 pairs against one head's keys in pairs `[pairs][stride]`.
#[derive(Clone, Copy)]
struct Scores {
    queries: [*const u32; 2],
    pairs: usize,
    keys: *const u32,
    stride: usize,
}

/// Two queries' scores against `N` vectors of 16 keys from vector `start` on, in one
/// precision's registers.
trait ScoreBlock: Copy {
    /// Writes `scale · q · k + bias` of both queries against keys `16 start .. 16 (start + N)`
    /// to `into`.
    ///
    /// # Safety
    /// The keys, `bias` and `into` hold those vectors, and the CPU has the instructions used.
    unsafe fn scores<const N: usize>(
        self,
        start: usize,
        bias: *const f32,
        scale: std::arch::x86_64::__m512,
        into: [*mut f32; 2],
    );
}

/// Both queries' scores (`scale · q · k + bias`) against all `vectors` vectors of keys, in
/// blocks of up to 8 vectors (128 keys) held in registers over the head. Inlined into each
/// precision's sequence function, so that its score blocks compile with that function's
/// instructions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn all_scores<S: ScoreBlock>(
    block: S,
    bias: *const f32,
    scale: std::arch::x86_64::__m512,
    vectors: usize,
    into: [*mut f32; 2],
) {
    let mut start = 0;
    // SAFETY: the caller's keys, mask and score rows hold `vectors` vectors.
    unsafe {
        while start < vectors {
            let count = (vectors - start).min(8);
            let (bias, into) = (bias.add(start * 16), into.map(|row| row.add(start * 16)));
            match count {
                1 => block.scores::<1>(start, bias, scale, into),
                2 => block.scores::<2>(start, bias, scale, into),
                3 => block.scores::<3>(start, bias, scale, into),
                4 => block.scores::<4>(start, bias, scale, into),
                5 => block.scores::<5>(start, bias, scale, into),
                6 => block.scores::<6>(start, bias, scale, into),
                7 => block.scores::<7>(start, bias, scale, into),
                _ => block.scores::<8>(start, bias, scale, into),
            }
            start += count;
        }
    }
}

impl ScoreBlock for Scores {
    /// `vdpbf16ps` sums each pair's two products into f32 lanes, one lane per key.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn scores<const N: usize>(
        self,
        start: usize,
        bias: *const f32,
        scale: std::arch::x86_64::__m512,
        into: [*mut f32; 2],
    ) {
        use std::arch::x86_64::*;
        let Scores { queries: [q0, q1], pairs, keys, stride } = self;
        // SAFETY: the caller's keys, mask and score rows hold `N` vectors from `start` (in
        // every one of the `pairs` rows of `keys`), and each query `pairs` pairs. `__m512i`
        // and `__m512bh` are the same 64 bytes.
        unsafe {
            let keys = keys.add(start * 16);
            let mut first = [_mm512_setzero_ps(); N];
            let mut second = first;
            for p in 0..pairs {
                let x0: __m512bh = std::mem::transmute(_mm512_set1_epi32(*q0.add(p) as i32));
                let x1: __m512bh = std::mem::transmute(_mm512_set1_epi32(*q1.add(p) as i32));
                let column = keys.add(p * stride);
                for u in 0..N {
                    let k: __m512bh = std::mem::transmute(_mm512_loadu_si512(column.add(u * 16).cast()));
                    first[u] = _mm512_dpbf16_ps(first[u], x0, k);
                    second[u] = _mm512_dpbf16_ps(second[u], x1, k);
                }
            }
            store_scores(first, second, bias, scale, into);
        }
    }
}

/// Writes `scale · score + bias` of two queries' `N` score vectors to `into`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_scores<const N: usize>(
    first: [std::arch::x86_64::__m512; N],
    second: [std::arch::x86_64::__m512; N],
    bias: *const f32,
    scale: std::arch::x86_64::__m512,
    into: [*mut f32; 2],
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's mask and score rows hold `N` vectors.
    unsafe {
        for u in 0..N {
            let bias = _mm512_loadu_ps(bias.add(u * 16));
            _mm512_storeu_ps(into[0].add(u * 16), _mm512_fmadd_ps(first[u], scale, bias));
            _mm512_storeu_ps(into[1].add(u * 16), _mm512_fmadd_ps(second[u], scale, bias));
        }
    }
}

/// Replaces a row of `vectors` scores by `e^(score − max)` and returns `1 / Σ` in every lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn softmax_in_place(scores: *mut f32, vectors: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's row holds `vectors` vectors.
    unsafe {
        let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
        for v in 0..vectors {
            top = _mm512_max_ps(top, _mm512_loadu_ps(scores.add(v * 16)));
        }
        let top = _mm512_set1_ps(_mm512_reduce_max_ps(top));
        let mut total = _mm512_setzero_ps();
        for v in 0..vectors {
            let p = exp(_mm512_sub_ps(_mm512_loadu_ps(scores.add(v * 16)), top));
            total = _mm512_add_ps(total, p);
            _mm512_storeu_ps(scores.add(v * 16), p);
        }
        _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(total))
    }
}

/// `inverse · Σ_j p_j v_j` for two queries: `sums` is (their probabilities, the head's f32
/// values `[length][16 C]`, the length, the head width `16 C`). Two sets of partial sums per
/// query (even and odd keys) so that consecutive FMAs do not wait on each other.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weighted_sum<const C: usize>(
    sums: ([*const f32; 2], *const f32, usize, usize),
    inverse: [std::arch::x86_64::__m512; 2],
) -> [[std::arch::x86_64::__m512; C]; 2] {
    use std::arch::x86_64::*;
    let ([p0, p1], values, length, head) = sums;
    // SAFETY: the caller's score rows hold `length` probabilities and `values` `length` rows
    // of `head = 16 C` floats.
    unsafe {
        let mut even = [[_mm512_setzero_ps(); C]; 2];
        let mut odd = [[_mm512_setzero_ps(); C]; 2];
        let mut j = 0;
        while j + 2 <= length {
            let (a0, b0) = (_mm512_set1_ps(*p0.add(j)), _mm512_set1_ps(*p0.add(j + 1)));
            let (a1, b1) = (_mm512_set1_ps(*p1.add(j)), _mm512_set1_ps(*p1.add(j + 1)));
            let (ra, rb) = (values.add(j * head), values.add((j + 1) * head));
            for c in 0..C {
                let (va, vb) = (_mm512_loadu_ps(ra.add(16 * c)), _mm512_loadu_ps(rb.add(16 * c)));
                even[0][c] = _mm512_fmadd_ps(a0, va, even[0][c]);
                even[1][c] = _mm512_fmadd_ps(a1, va, even[1][c]);
                odd[0][c] = _mm512_fmadd_ps(b0, vb, odd[0][c]);
                odd[1][c] = _mm512_fmadd_ps(b1, vb, odd[1][c]);
            }
            j += 2;
        }
        if j < length {
            let (a0, a1) = (_mm512_set1_ps(*p0.add(j)), _mm512_set1_ps(*p1.add(j)));
            let [first, second] = &mut even;
            for (c, (first, second)) in first.iter_mut().zip(second.iter_mut()).enumerate() {
                let va = _mm512_loadu_ps(values.add(j * head + 16 * c));
                *first = _mm512_fmadd_ps(a0, va, *first);
                *second = _mm512_fmadd_ps(a1, va, *second);
            }
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|c| _mm512_mul_ps(_mm512_add_ps(even[r][c], odd[r][c]), inverse[r]))
        })
    }
}

impl StoreSums for u16 {
    /// bf16 bits: the sums rounded to nearest, ties to even.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn store(sum: std::arch::x86_64::__m512, out: *mut u16) {
        use std::arch::x86_64::*;
        // SAFETY: `out` has 16 elements. `__m256bh` and `__m256i` are the same 32 bytes.
        unsafe {
            let rounded: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(sum));
            _mm256_storeu_si256(out.cast(), rounded);
        }
    }
}

/// `e^x` in each lane for `x ≤ 0` (the scores less their maximum), to a few ulps (tested:
/// within 4 × `f32::EPSILON` relative): `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-7
/// Taylor polynomial for `e^r` (error below 6e-9 relative) scaled by `2^n`; below −87.3 (and
/// −∞, a masked key) exactly 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let live = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.3));
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.3));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 in two parts, so that `x − n ln 2` loses nothing for |n| ≤ 126.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for coefficient in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(coefficient));
    }
    _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n))
}

#[cfg(test)]
mod tests;

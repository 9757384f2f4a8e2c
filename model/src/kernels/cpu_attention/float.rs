//! The kernel's f32 path, for fp32 inference on CPUs with AVX-512 F: the same blocks as the
//! bf16 path, with the scores summed in f32 FMAs over each head's keys laid out `[head][keys]`
//! and the output stored in f32. libtorch's flash kernel takes about 10% of an fp32 encoding
//! pass on e5-small's shape, most of it in general GEMM calls on 32 × 32 blocks.

use super::{ScoreBlock, Shape, StoreSums, head_attention, key_bias};

/// Two queries (rows of `head` f32) against one head's keys `[head][stride]`.
#[derive(Clone, Copy)]
struct Scores {
    queries: [*const f32; 2],
    head: usize,
    keys: *const f32,
    stride: usize,
}

impl ScoreBlock for Scores {
    /// One FMA per head element and vector of 16 keys, the query element broadcast.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn scores<const N: usize>(
        self,
        start: usize,
        bias: *const f32,
        scale: std::arch::x86_64::__m512,
        into: [*mut f32; 2],
    ) {
        use std::arch::x86_64::*;
        let Scores { queries: [q0, q1], head, keys, stride } = self;
        // SAFETY: the caller's keys, mask and score rows hold `N` vectors from `start` (in
        // every one of the `head` rows of `keys`), and each query `head` values.
        unsafe {
            let keys = keys.add(start * 16);
            let mut first = [_mm512_setzero_ps(); N];
            let mut second = first;
            for d in 0..head {
                let (x0, x1) = (_mm512_set1_ps(*q0.add(d)), _mm512_set1_ps(*q1.add(d)));
                let column = keys.add(d * stride);
                for u in 0..N {
                    let k = _mm512_loadu_ps(column.add(u * 16));
                    first[u] = _mm512_fmadd_ps(x0, k, first[u]);
                    second[u] = _mm512_fmadd_ps(x1, k, second[u]);
                }
            }
            super::store_scores(first, second, bias, scale, into);
        }
    }
}

/// Attention of every head of sequence `b` (see the bf16 path's `sequence_attention`), from the
/// f32 `input` `[B, L, 3, heads, head]` into the f32 `output` `[B, L, heads · head]`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sequence_attention(input: &[f32], output: *mut f32, shape: Shape, b: usize, keep: &[u8]) {
    use std::arch::x86_64::*;
    let Shape { length, heads, head } = shape;
    let width = heads * head;
    let row = 3 * width;
    let padded = length.div_ceil(16) * 16;
    let vectors = padded / 16;
    let Some(bias) = key_bias(keep, padded) else {
        // SAFETY: sequence `b`'s rows of `output` (`[B, length, width]`, checked by `context`).
        unsafe { std::ptr::write_bytes(output.add(b * length * width), 0, length * width) };
        return;
    };
    // One pass in memory order over the sequence's rows lays out every head's queries and
    // values `[heads][length][head]` (read head by head in place, rows `3 × width` apart,
    // every row is a cache miss); then the keys `[heads][head][padded]`.
    let mut queries = vec![0.0f32; heads * length * head];
    let mut values = vec![0.0f32; heads * length * head];
    let mut keys = vec![0.0f32; heads * head * padded];
    for j in 0..length {
        let token = &input[(b * length + j) * row..][..row];
        for h in 0..heads {
            let at = (h * length + j) * head;
            // Vector copies: `copy_from_slice` calls `memmove` for every 64 to 256 bytes.
            for c in (0..head).step_by(16) {
                // SAFETY: `head` is a multiple of 16 (checked by `context`), so every 16 lanes
                // lie inside the token's row and the head's rows of `queries` and `values`.
                unsafe {
                    let query = _mm512_loadu_ps(token[h * head + c..].as_ptr());
                    _mm512_storeu_ps(queries[at + c..].as_mut_ptr(), query);
                    let value = _mm512_loadu_ps(token[2 * width + h * head + c..].as_ptr());
                    _mm512_storeu_ps(values[at + c..].as_mut_ptr(), value);
                }
            }
        }
    }
    // Keys transposed 16 at a time: one gather per head element and group of 16 tokens (the
    // group past the sequence's end masked), a vector store into `[heads][head][padded]`.
    let rows = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(row as i32),
    );
    for group in 0..vectors {
        let first = group * 16;
        let lanes = (length - first).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        let base = input[(b * length + first) * row + width..].as_ptr();
        for h in 0..heads {
            for d in 0..head {
                // SAFETY: lane `t < lanes` reads element `width + h · head + d` of token
                // `first + t`'s row, inside sequence `b`'s rows of `input`; `keys` holds
                // `heads × head × padded` elements and `first + 16 ≤ padded`.
                unsafe {
                    let column =
                        _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, rows, base.add(h * head + d).cast());
                    _mm512_storeu_ps(keys[(h * head + d) * padded + first..].as_mut_ptr(), column);
                }
            }
        }
    }
    for h in 0..heads {
        let block_of = |rows: [usize; 2]| Scores {
            // SAFETY: rows of this head's queries and keys, inside `queries` and `keys`.
            queries: rows.map(|r| unsafe { queries.as_ptr().add((h * length + r) * head) }),
            head,
            keys: unsafe { keys.as_ptr().add(h * head * padded) },
            stride: padded,
        };
        // SAFETY: the head's values, `[length][head]` inside `values`; the outputs are sequence
        // `b`'s rows of `output` (laid out `[B, length, width]`, checked by `context`); the
        // keys hold `padded` (the bias's length) keys per head element.
        unsafe {
            let values = values.as_ptr().add(h * length * head);
            head_attention(block_of, shape, &bias, values, |r| output.add((b * length + r) * width + h * head));
        }
    }
}

impl StoreSums for f32 {
    /// The sums as they are.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(sum: std::arch::x86_64::__m512, out: *mut f32) {
        // SAFETY: `out` has 16 elements.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(out, sum) };
    }
}

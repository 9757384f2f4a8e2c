use super::*;

/// A `[batch, length]` mask whose sequence `b` has `length − 5 b` tokens (at least 1).
fn right_padded(batch: i64, length: i64) -> Tensor {
    let lengths: Vec<i64> = (0..batch).map(|b| (length - 5 * b).max(1)).collect();
    Tensor::arange(length, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1))
        .to_kind(Kind::Int64)
}

/// The fixed cases' shapes `(batch, length, heads, head)`: lengths around the 16-key vector and
/// the 128-key register block, heads of 16 to 64.
const FIXED_CASES: [(i64, i64, i64, i64); 6] =
    [(3, 1, 2, 32), (2, 17, 3, 32), (4, 91, 12, 32), (2, 130, 2, 64), (1, 300, 1, 16), (2, 40, 2, 48)];

/// The fixed cases' mask: right padding, and past 20 tokens a hole in the first sequence and
/// the second masked whole (a sequence with no key at all: zeros, as libtorch gives).
fn fixed_case_mask(batch: i64, length: i64) -> Tensor {
    let mask = right_padded(batch, length);
    if length > 20 {
        let _ = mask.get(0).narrow(0, 3, 4).zero_();
    }
    if length > 20 && batch > 1 {
        let _ = mask.get(1).zero_();
    }
    mask
}

/// The property tests' mask: right padding, and every `hole_every`-th token of the last
/// sequence masked (all of them when it is 1).
fn holed_mask(batch: i64, length: i64, hole_every: i64) -> Tensor {
    let mask = right_padded(batch, length);
    let mut last = mask.get(batch - 1);
    let holes = Tensor::arange(length, (Kind::Int64, Device::Cpu)).remainder(hole_every).ne(0);
    last.copy_(&(&last * holes.to_kind(Kind::Int64)));
    mask
}

#[test]
fn the_kernel_is_as_close_to_exact_attention_as_libtorchs_bf16_kernel() {
    if !cpu_has_bf16_dot_without_amx() {
        eprintln!("SKIPPED: no AVX-512 BF16, or AMX, on this CPU (the encoder uses libtorch's kernel here)");
        return;
    }
    tch::manual_seed(7);
    for (batch, length, heads, head) in FIXED_CASES {
        let qkv =
            (Tensor::randn([batch, length, 3, heads, head], (Kind::Float, Device::Cpu)) * 2.0).to_kind(Kind::BFloat16);
        let mask = fixed_case_mask(batch, length);
        let keep = keep_bytes(&mask).unwrap();
        let ours = tch::no_grad(|| context(&qkv, &keep)).expect("the kernel applies");
        assert_eq!(ours.kind(), Kind::BFloat16);
        let exact = libtorch_context(&qkv.to_kind(Kind::Double), &mask);
        let theirs = libtorch_context(&qkv, &mask);
        let gap = |t: &Tensor| (t.to_kind(Kind::Double) - &exact).abs().max().double_value(&[]);
        let (ours_max, theirs_max) = (gap(&ours), gap(&theirs));
        eprintln!("{batch} × {length}, heads {heads} × {head}: max error {ours_max:e}, libtorch's {theirs_max:e}");
        let beyond = beyond_bf16_rounding(&ours, &exact);
        assert!(beyond <= 0.0, "{batch} × {length}, heads {heads} × {head}: beyond bf16 rounding by {beyond}");
        assert!(ours_max <= theirs_max * 1.01 + 1e-6, "{ours_max} against libtorch's {theirs_max}");
    }
}

/// One property-test case: a shape, a seed, and how often the last sequence's mask has a hole.
#[derive(Debug, Clone)]
struct RandomCase {
    batch: i64,
    length: i64,
    heads: i64,
    head: i64,
    seed: i64,
    hole_every: i64,
}

impl RandomCase {
    /// The case's fused QKV `[B, L, 3, heads, head]` in f32 (normal, scaled by 3) and its
    /// holed mask (see `holed_mask`).
    fn tensors(&self) -> (Tensor, Tensor) {
        tch::manual_seed(self.seed);
        let shape = [self.batch, self.length, 3, self.heads, self.head];
        (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 3.0, holed_mask(self.batch, self.length, self.hole_every))
    }
}

proptest::prop_compose! {
    /// Up to 3 sequences of up to 69 tokens, up to 3 heads of 16 to 64.
    fn random_case()(
        batch in 1i64..4,
        length in 1i64..70,
        heads in 1i64..4,
        head_sixteenths in 1i64..5,
        seed in 0i64..1_000_000,
        hole_every in 1i64..9,
    ) -> RandomCase {
        RandomCase { batch, length, heads, head: 16 * head_sixteenths, seed, hole_every }
    }
}

/// How far `ours` lies beyond bf16's output rounding of `exact` (at most half of bf16's 2^-7
/// relative step, plus 1e-5): positive means beyond.
fn beyond_bf16_rounding(ours: &Tensor, exact: &Tensor) -> f64 {
    ((ours.to_kind(Kind::Double) - exact).abs() - (exact.abs() * 2f64.powi(-8) + 1e-5)).max().double_value(&[])
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Any shape and any mask (holes, whole sequences masked): within bf16's output rounding
    /// of f64 attention of the same bf16 inputs.
    #[test]
    fn any_shape_and_mask_stays_within_bf16_rounding_of_exact_attention(case in random_case()) {
        if !cpu_has_bf16_dot_without_amx() {
            return Ok(());
        }
        let (qkv, mask) = case.tensors();
        let qkv = qkv.to_kind(Kind::BFloat16);
        let keep = keep_bytes(&mask).unwrap();
        let ours = tch::no_grad(|| context(&qkv, &keep)).expect("the kernel applies");
        let beyond = beyond_bf16_rounding(&ours, &libtorch_context(&qkv.to_kind(Kind::Double), &mask));
        proptest::prop_assert!(beyond <= 0.0, "beyond bf16 rounding by {}", beyond);
    }

    /// Any shape and any mask: the f32 kernel within its bound of f64 attention (see
    /// `f32_error_and_bound`).
    #[test]
    fn any_shape_and_mask_stays_close_to_exact_attention_in_f32(case in random_case()) {
        if !cpu_has_avx512() {
            return Ok(());
        }
        let (qkv, mask) = case.tensors();
        let (error, bound) = f32_error_and_bound(&qkv, &mask);
        proptest::prop_assert!(error <= bound, "{} beyond {}", error, bound);
    }
}

#[test]
fn the_kernel_declines_what_it_does_not_cover() {
    let mask = Tensor::ones([2, 8], (Kind::Int64, Device::Cpu));
    let keep = keep_bytes(&mask).unwrap();
    let qkv = Tensor::randn([2, 8, 3, 2, 32], (Kind::Float, Device::Cpu));
    assert!(context(&qkv.to_kind(Kind::Double), &keep).is_none(), "f64 takes libtorch's kernel");
    assert!(context(&qkv.view([2, 8, 3, 8, 8]), &keep).is_none(), "f32, head width 8");
    let qkv = qkv.to_kind(Kind::BFloat16);
    assert!(context(&qkv.view([2, 8, 3, 8, 8]), &keep).is_none(), "head width 8");
    assert!(context(&qkv, &keep[..8]).is_none(), "a mask of another size");
    let recorded = qkv.to_kind(Kind::Float).set_requires_grad(true).to_kind(Kind::BFloat16);
    assert!(context(&recorded, &keep).is_none(), "a graph being recorded");
    let long = Tensor::zeros([1, 513, 3, 1, 16], (Kind::BFloat16, Device::Cpu));
    let long_keep = vec![1u8; 513];
    assert!(context(&long, &long_keep).is_none(), "513 tokens");
}

#[test]
fn exp_is_within_four_ulps_of_the_exact_value_and_zero_for_masked_keys() {
    if !cpu_has_avx512() {
        return;
    }
    use std::arch::x86_64::*;
    let inputs: Vec<f32> =
        (0..4096).map(|i| -90.0 * i as f32 / 4095.0).chain([0.0, -1e-8, f32::NEG_INFINITY]).collect();
    for chunk in inputs.chunks(16) {
        let mut lanes = [f32::NEG_INFINITY; 16];
        lanes[..chunk.len()].copy_from_slice(chunk);
        let mut got = [0.0f32; 16];
        // SAFETY: AVX-512 F is present (checked above).
        unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp(_mm512_loadu_ps(lanes.as_ptr()))) };
        for (&x, &y) in lanes.iter().zip(&got) {
            let exact = (x as f64).exp();
            if x < -87.3 {
                assert_eq!(y, 0.0, "exp({x})");
            } else {
                let ulp = f32::EPSILON as f64 * exact.max(f32::MIN_POSITIVE as f64);
                assert!((y as f64 - exact).abs() <= 4.0 * ulp, "exp({x}) = {y}, exact {exact}");
            }
        }
    }
}

/// The f32 kernel's largest error against f64 attention of the same inputs, and the bound it
/// must stay within for `qkv` and `mask`: twice libtorch's f32 kernel's error, plus 64 f32 ulps
/// of the largest value (the kernel's exp and summation order differ from libtorch's; measured
/// over 1,000 random cases: one row in one case reached 5 times libtorch's error, 1.2e-5 with
/// values up to 9; a 2% error in the score scale gives 1e-2).
fn f32_error_and_bound(qkv: &Tensor, mask: &Tensor) -> (f64, f64) {
    let keep = keep_bytes(mask).unwrap();
    let ours = tch::no_grad(|| context(qkv, &keep)).expect("the kernel applies to f32");
    assert_eq!(ours.kind(), Kind::Float);
    let exact = libtorch_context(&qkv.to_kind(Kind::Double), mask);
    let theirs = libtorch_context(qkv, mask);
    let gap = |t: &Tensor| (t.to_kind(Kind::Double) - &exact).abs().max().double_value(&[]);
    let largest_value = qkv.select(2, 2).abs().max().double_value(&[]);
    (gap(&ours), 2.0 * gap(&theirs) + 2f64.powi(-18) * largest_value)
}

#[test]
fn the_f32_kernel_is_as_close_to_exact_attention_as_libtorchs_f32_kernel() {
    if !cpu_has_avx512() {
        eprintln!("SKIPPED: no AVX-512 on this CPU (the encoder uses libtorch's kernel here)");
        return;
    }
    tch::manual_seed(11);
    for (batch, length, heads, head) in FIXED_CASES {
        let qkv = Tensor::randn([batch, length, 3, heads, head], (Kind::Float, Device::Cpu)) * 2.0;
        let mask = fixed_case_mask(batch, length);
        let (error, bound) = f32_error_and_bound(&qkv, &mask);
        eprintln!("f32 {batch} × {length}, heads {heads} × {head}: max error {error:e}, bound {bound:e}");
        assert!(error <= bound, "{error} beyond {bound}");
    }
}

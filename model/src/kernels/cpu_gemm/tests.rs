use super::*;

/// `x Wᵀ + b (+ residual)` in f64, and the forward error bound of summing `k` f32 products in
/// any order: `(k + 2) · 2⁻²⁴ · (Σ |x w| + |b| + |residual|)`.
fn exact_and_bound(x: &Tensor, parts: &[(Tensor, Tensor)], residual: Option<&Tensor>) -> (Tensor, Tensor) {
    let weight = Tensor::cat(&parts.iter().map(|(w, _)| w).collect::<Vec<_>>(), 0).to_kind(Kind::Double);
    let bias = Tensor::cat(&parts.iter().map(|(_, b)| b).collect::<Vec<_>>(), 0).to_kind(Kind::Double);
    let x = x.to_kind(Kind::Double);
    let mut exact = x.linear(&weight, Some(&bias));
    let mut magnitude = x.abs().linear(&weight.abs(), Some(&bias.abs()));
    if let Some(residual) = residual {
        let residual = residual.to_kind(Kind::Double);
        exact += &residual;
        magnitude += residual.abs();
    }
    let k = weight.size()[1] as f64;
    (exact, magnitude * ((k + 2.0) * 2f64.powi(-24)) + 1e-30)
}

/// Checks the kernel on `rows × inputs` against `outputs` (in `parts` stacked weights).
fn check(rows: i64, inputs: i64, outputs: &[i64], with_residual: bool) {
    let float = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([rows, inputs], float);
    let parts: Vec<(Tensor, Tensor)> =
        outputs.iter().map(|&n| (Tensor::randn([n, inputs], float), Tensor::randn([n], float))).collect();
    let total: i64 = outputs.iter().sum();
    let residual = with_residual.then(|| Tensor::randn([rows, total], float));
    let borrowed: Vec<(&Tensor, &Tensor)> = parts.iter().map(|(w, b)| (w, b)).collect();
    let packed = PackedLinear::new(&borrowed).expect("the kernel applies to f32 weights");
    let ours = packed.forward(&x, residual.as_ref()).expect("the kernel applies to f32 input");
    assert_eq!(ours.size(), [rows, total]);
    let (exact, bound) = exact_and_bound(&x, &parts, residual.as_ref());
    let beyond = ((ours.to_kind(Kind::Double) - exact).abs() - bound).max().double_value(&[]);
    assert!(beyond <= 0.0, "{rows} × {inputs} → {outputs:?}: beyond the f32 summation bound by {beyond}");
}

#[test]
fn products_are_within_f32_summation_error_of_exact_ones_on_every_tile_edge() {
    if !cpu_has_avx512() {
        eprintln!("SKIPPED: no AVX-512 on this CPU (the encoder uses libtorch's linear here)");
        assert!(
            PackedLinear::new(&[(
                &Tensor::ones([2, 2], (Kind::Float, Device::Cpu)),
                &Tensor::ones([2], (Kind::Float, Device::Cpu))
            )])
            .is_none()
        );
        return;
    }
    tch::manual_seed(3);
    // Rows around the 12-row tile and the block; outputs around the 32-column panel and the
    // 16-lane vector; the fused QKV's three parts; e5-small's widths.
    for (rows, inputs, outputs, residual) in [
        (1, 1, vec![1], false),
        (11, 7, vec![15], true),
        (12, 16, vec![16], false),
        (13, 33, vec![17], true),
        (25, 64, vec![31, 32, 33], false),
        (100, 384, vec![384], true),
        (300, 384, vec![128, 128, 128], false),
        (97, 1536, vec![384], true),
    ] {
        check(rows, inputs, &outputs, residual);
    }
}

#[test]
fn a_large_pass_split_over_blocks_and_threads_gives_the_same_bits() {
    if !cpu_has_avx512() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    tch::manual_seed(5);
    let float = (Kind::Float, Device::Cpu);
    let (w, b) = (Tensor::randn([40, 384], float), Tensor::randn([40], float));
    let packed = PackedLinear::new(&[(&w, &b)]).unwrap();
    // 2,000 rows are several blocks; each row's result must not depend on its block or thread.
    let x = Tensor::randn([2000, 384], float);
    let before = tch::get_num_threads();
    tch::set_num_threads(1);
    let one = packed.forward(&x, None).unwrap();
    tch::set_num_threads(3);
    let three = packed.forward(&x, None).unwrap();
    tch::set_num_threads(before);
    let alone = packed.forward(&x.narrow(0, 1500, 7), None).unwrap();
    assert!(one.equal(&three), "the thread split changed a result");
    assert!(one.narrow(0, 1500, 7).equal(&alone), "a row's result depends on the rows beside it");
}

#[test]
fn shapes_and_kinds_it_does_not_take_go_back_to_libtorch() {
    let float = (Kind::Float, Device::Cpu);
    let (w, b) = (Tensor::randn([8, 4], float), Tensor::randn([8], float));
    assert!(PackedLinear::new(&[(&w.to_kind(Kind::BFloat16), &b)]).is_none(), "bf16 weights");
    assert!(PackedLinear::new(&[(&w, &b.narrow(0, 0, 7))]).is_none(), "a bias of another length");
    assert!(PackedLinear::new(&[]).is_none(), "no weight");
    let Some(packed) = PackedLinear::new(&[(&w, &b)]) else { return };
    assert!(packed.forward(&Tensor::randn([3, 5], float), None).is_none(), "another input width");
    assert!(packed.forward(&Tensor::randn([3, 4], float), Some(&Tensor::randn([3, 7], float))).is_none());
    assert!(packed.forward(&Tensor::randn([3, 4], float).set_requires_grad(true), None).is_none(), "a graph");
    assert!(packed.forward(&Tensor::randn([3, 4], float).to_kind(Kind::Double), None).is_none(), "f64 input");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Any shape, with or without a residual: within f32 summation error of the f64 product.
    #[test]
    fn any_shape_stays_within_f32_summation_error(
        rows in 1i64..60,
        inputs in 1i64..100,
        outputs in proptest::collection::vec(1i64..70, 1..4),
        residual: bool,
        seed in 0i64..1000,
    ) {
        if cpu_has_avx512() {
            tch::manual_seed(seed);
            check(rows, inputs, &outputs, residual);
        }
    }
}

#[test]
fn autocast_keeps_libtorchs_bf16_linear() {
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let inside = crate::autocast::with_bf16_autocast(crate::autocast::AutocastDevice::Cpu, || applies_to(&x));
    assert!(!inside, "the kernel took a linear layer under bf16 autocast");
    assert_eq!(applies_to(&x), cpu_has_avx512());
}

//! AdamW with decoupled weight decay (the exact update of `torch.optim.AdamW`), no decay on
//! biases and LayerNorm, linear warm-up then linear decay, and global-norm gradient clipping.
//! The optimiser state is plain named tensors, so checkpoints hold it in safetensors.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::kernels::parallel::{CHUNK_ELEMENTS, for_chunks};
use crate::tensor_file::TensorSource;
pub use rosetta_worker_config::training::AdamWConfig;

/// True for parameters that get no weight decay: biases and LayerNorm weights.
pub fn exempt_from_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm")
}

struct Slot {
    name: String,
    param: Tensor,
    decay: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over every trainable variable of a `VarStore`, in name order.
pub struct AdamW {
    config: AdamWConfig,
    step: i64,
    slots: Vec<Slot>,
}

impl AdamW {
    /// Optimises the trainable variables of `vs`.
    pub fn new(vs: &VarStore, config: AdamWConfig) -> Self {
        let mut variables: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = variables
            .into_iter()
            .map(|(name, param)| Slot {
                decay: !exempt_from_decay(&name),
                exp_avg: param.zeros_like().detach(),
                exp_avg_sq: param.zeros_like().detach(),
                name,
                param,
            })
            .collect();
        Self { config, step: 0, slots }
    }

    /// Optimiser steps taken.
    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    /// The parameters, in the optimiser's order.
    pub fn parameters(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.param))
    }

    /// One update with learning rate `lr` from the current gradients (missing gradients skip).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = &self.config;
        let bias_correction1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias_correction2 = 1.0 - c.beta2.powi(self.step as i32);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.sqrt();
        let hyper = FusedAdamW {
            decay_factor: (1.0 - lr * c.weight_decay) as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            bias_correction2_sqrt: bias_correction2_sqrt as f32,
            eps: c.eps as f32,
            neg_step_size: (-step_size) as f32,
        };
        tch::no_grad(|| {
            // The contiguous f32 CPU parameters are updated together, in one threaded pass
            // (`grads` keeps their gradients alive until it is done); any other goes the
            // tensor-op way here.
            let (mut jobs, mut grads) = (Vec::with_capacity(self.slots.len()), Vec::with_capacity(self.slots.len()));
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                let decay = slot.decay && c.weight_decay != 0.0;
                if let Some(job) = Job::new(&slot.param, &grad, &slot.exp_avg, &slot.exp_avg_sq, decay) {
                    jobs.push(job);
                    grads.push(grad);
                    continue;
                }
                if decay {
                    let _ = slot.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = slot.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = slot.exp_avg_sq.addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
                let denom = slot.exp_avg_sq.sqrt() / bias_correction2_sqrt + c.eps;
                let _ = slot.param.addcdiv_(&(&slot.exp_avg * -step_size), &denom);
            }
            hyper.update(&jobs);
            drop(grads);
        });
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// The state as named tensors: `optimizer.exp_avg.NAME`, `optimizer.exp_avg_sq.NAME`, `optimizer.step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.slots.len() * 2 + 1);
        for slot in &self.slots {
            out.push((format!("optimizer.exp_avg.{}", slot.name), slot.exp_avg.shallow_clone()));
            out.push((format!("optimizer.exp_avg_sq.{}", slot.name), slot.exp_avg_sq.shallow_clone()));
        }
        out.push(("optimizer.step".to_string(), Tensor::from_slice(&[self.step])));
        out
    }

    /// Restores state saved by [`AdamW::state`] (from a file or from tensors in memory);
    /// names the first missing or mis-shaped tensor.
    pub fn load_state(&mut self, tensors: &dyn TensorSource) -> Result<()> {
        let mut step = Tensor::zeros([1], (Kind::Int64, tch::Device::Cpu));
        tensors.fill("optimizer.step", &mut step)?;
        for slot in &mut self.slots {
            tensors.fill(&format!("optimizer.exp_avg.{}", slot.name), &mut slot.exp_avg)?;
            tensors.fill(&format!("optimizer.exp_avg_sq.{}", slot.name), &mut slot.exp_avg_sq)?;
        }
        self.step = step.int64_value(&[0]);
        Ok(())
    }
}

/// One AdamW update's constants in f32, for the fused CPU loop.
struct FusedAdamW {
    decay_factor: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

/// The f32 values of a contiguous CPU tensor (None for any other tensor).
fn f32_values(tensor: &Tensor) -> Option<(*mut f32, usize)> {
    (tensor.device() == tch::Device::Cpu && tensor.kind() == Kind::Float && tensor.is_contiguous())
        .then(|| (tensor.data_ptr() as *mut f32, tensor.numel()))
}

/// One parameter's update in the fused loop: its four arrays (parameter, gradient, both
/// moments: contiguous f32 CPU tensors of one size) and whether it decays.
struct Job {
    arrays: Arrays,
    len: usize,
    decay: bool,
}

impl Job {
    /// The job for these tensors, or None (take the tensor-op way) unless all four are
    /// contiguous f32 CPU tensors of one non-zero size. The tensors must outlive the job.
    fn new(param: &Tensor, grad: &Tensor, exp_avg: &Tensor, exp_avg_sq: &Tensor, decay: bool) -> Option<Self> {
        let (p, g, m, v) = (f32_values(param)?, f32_values(grad)?, f32_values(exp_avg)?, f32_values(exp_avg_sq)?);
        let len = p.1;
        (g.1 == len && m.1 == len && v.1 == len && len > 0).then_some(Self {
            arrays: Arrays { p: p.0, g: g.0, m: m.0, v: v.0 },
            len,
            decay,
        })
    }
}

impl FusedAdamW {
    /// The update of every job's parameter in a single pass over its four arrays (libtorch's
    /// element-wise ops take ten passes and five temporaries), with torch's operation order:
    /// decay, `lerp`, `mul`+`addcmul`, `sqrt`/bias correction + eps, `addcdiv`. The jobs'
    /// elements, end to end, are split over the threads once per step, not once per tensor
    /// (an e5-small step has 73 tensors large enough to thread).
    fn update(&self, jobs: &[Job]) {
        let total = jobs.iter().map(|job| job.len).sum();
        for_chunks(total, |range| {
            let mut start = 0;
            for job in jobs {
                let end = start + job.len;
                let (from, to) = (range.start.max(start), range.end.min(end));
                if from < to {
                    // SAFETY: each job's four arrays are distinct contiguous f32 CPU tensors of
                    // `len` elements, alive until `update` returns (the optimiser's state, the
                    // parameter and its gradient, which the caller holds); nothing else touches
                    // them while the optimiser steps (no autograd graph holds them after the
                    // backward pass), and each thread gets a disjoint range of the jobs'
                    // elements end to end, so a disjoint range of each array.
                    let (p, g, m, v) = unsafe { job.arrays.slices(from - start..to - start) };
                    self.update_slices(p, g, m, v, job.decay);
                }
                if end >= range.end {
                    break;
                }
                start = end;
            }
        });
    }

    /// The update of one range of elements, in the widest vectors the CPU has (the same bits
    /// at every width: each element's operations and their order do not change).
    fn update_slices(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: bool) {
        crate::kernels::simd::widest!(self.update_slices_at_any_width(p, g, m, v, decay));
    }

    /// The update loop, inlined into each vector width's compilation.
    #[inline(always)]
    fn update_slices_at_any_width(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: bool) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            if decay {
                *p *= self.decay_factor;
            }
            *m += self.one_minus_beta1 * (g - *m);
            *v = *v * self.beta2 + self.one_minus_beta2 * g * g;
            let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
            *p += self.neg_step_size * (*m / denom);
        }
    }
}

/// The four arrays of one parameter's update, shared by the threads of [`for_chunks`](crate::kernels::parallel::for_chunks).
#[derive(Clone, Copy)]
struct Arrays {
    p: *mut f32,
    g: *mut f32,
    m: *mut f32,
    v: *mut f32,
}

// SAFETY: the pointers are only turned into slices of disjoint ranges, one range per thread.
unsafe impl Send for Arrays {}
// SAFETY: as above; `Arrays` itself is never written through a shared reference.
unsafe impl Sync for Arrays {}

impl Arrays {
    /// The elements `range` of each array.
    ///
    /// # Safety
    /// The arrays must hold `range.end` elements and no other live slice may overlap `range`.
    #[allow(clippy::type_complexity)]
    unsafe fn slices<'a>(
        self,
        range: std::ops::Range<usize>,
    ) -> (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32]) {
        let len = range.len();
        // SAFETY: guaranteed by the caller.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.p.add(range.start), len),
                std::slice::from_raw_parts(self.g.add(range.start) as *const f32, len),
                std::slice::from_raw_parts_mut(self.m.add(range.start), len),
                std::slice::from_raw_parts_mut(self.v.add(range.start), len),
            )
        }
    }
}

/// Linear warm-up to the peak over `warmup_steps`, then linear decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Steps of warm-up.
    pub warmup_steps: u64,
    /// Total optimiser steps.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// Learning rate for optimiser step `step` (0-based), as transformers' linear schedule.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let remaining = self.total_steps.saturating_sub(step) as f64;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak * (remaining / span).max(0.0)
    }
}

/// Scales gradients so that their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm<'a>(params: impl Iterator<Item = &'a Tensor>, max_norm: f64) -> f64 {
    let grads: Vec<Tensor> = params.map(Tensor::grad).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let total = tch::no_grad(|| {
        let mut sum = 0.0f64;
        for g in &grads {
            sum += match f32_values(g) {
                // SAFETY: a contiguous f32 CPU tensor of `len` elements, only read here.
                Some((pointer, len)) => {
                    squares_chunked(unsafe { std::slice::from_raw_parts(pointer as *const f32, len) })
                }
                None => g.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]),
            };
        }
        sum.sqrt()
    });
    let coefficient = max_norm / (total + 1e-6);
    if coefficient < 1.0 {
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_scalar_(coefficient);
            }
        });
    }
    total
}

/// Sum of squares in f64 over fixed chunks of [`CHUNK_ELEMENTS`] (computed on several threads,
/// added in chunk order: the same bits whatever the thread count).
fn squares_chunked(values: &[f32]) -> f64 {
    let chunks = values.len().div_ceil(CHUNK_ELEMENTS);
    if chunks <= 2 {
        return values.chunks(CHUNK_ELEMENTS).map(squares_f64).sum();
    }
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..chunks).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
    for_chunks(chunks * CHUNK_ELEMENTS, |range| {
        let (first, last) = (range.start.div_ceil(CHUNK_ELEMENTS), range.end.div_ceil(CHUNK_ELEMENTS));
        for chunk in first..last.min(chunks) {
            let end = ((chunk + 1) * CHUNK_ELEMENTS).min(values.len());
            let sum = squares_f64(&values[chunk * CHUNK_ELEMENTS..end]);
            sums[chunk].store(sum.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    sums.iter().map(|s| f64::from_bits(s.load(std::sync::atomic::Ordering::Relaxed))).sum()
}

/// Sum of squares in f64, in one pass (eight running sums, so the loop vectorises), in the
/// widest vectors the CPU has (the same bits at every width: the eight sums are fixed).
fn squares_f64(values: &[f32]) -> f64 {
    crate::kernels::simd::widest!(squares_f64_at_any_width(values))
}

/// The sum-of-squares loop, inlined into each vector width's compilation.
#[inline(always)]
fn squares_f64_at_any_width(values: &[f32]) -> f64 {
    let mut sums = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (sum, &x) in sums.iter_mut().zip(chunk) {
            let x = f64::from(x);
            *sum += x * x;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    sums.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Update constants with visible effects (strong decay, large step).
    fn test_constants() -> FusedAdamW {
        FusedAdamW {
            decay_factor: 0.999,
            one_minus_beta1: 0.1,
            beta2: 0.999,
            one_minus_beta2: 0.001,
            bias_correction2_sqrt: 0.05,
            eps: 1e-8,
            neg_step_size: -0.01,
        }
    }

    #[test]
    fn fused_update_matches_the_tensor_ops() {
        let hyper = test_constants();
        let param = Tensor::randn([1000], (Kind::Float, tch::Device::Cpu));
        let grad = Tensor::randn([1000], (Kind::Float, tch::Device::Cpu));
        let exp_avg = Tensor::randn([1000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let exp_avg_sq = Tensor::rand([1000], (Kind::Float, tch::Device::Cpu)) * 0.01;
        let mut expected = &param * 0.999;
        let m = &exp_avg + (&grad - &exp_avg) * 0.1;
        let v = &exp_avg_sq * 0.999 + &grad * &grad * 0.001;
        expected += (&m / (v.sqrt() / 0.05 + 1e-8)) * -0.01;
        hyper.update(&[Job::new(&param, &grad, &exp_avg, &exp_avg_sq, true).expect("f32 tensors")]);
        let difference = (&param - &expected).abs().max().double_value(&[]);
        // A few f32 ulps at most (values up to ~4, moments up to ~0.5 and ~0.02).
        assert!(difference < 2e-6, "{difference}");
        assert!((&exp_avg - &m).abs().max().double_value(&[]) < 2e-7);
        assert!((&exp_avg_sq - &v).abs().max().double_value(&[]) < 1e-8);
        // Anything but contiguous f32 CPU tensors goes the tensor-op way.
        let transposed = Tensor::randn([10, 10], (Kind::Float, tch::Device::Cpu)).tr();
        assert!(Job::new(&transposed, &transposed.contiguous(), &exp_avg, &exp_avg_sq, true).is_none());
        let short = Tensor::zeros([999], (Kind::Float, tch::Device::Cpu));
        assert!(Job::new(&param, &short, &exp_avg, &exp_avg_sq, true).is_none());
    }

    #[test]
    fn threaded_update_of_several_parameters_and_norm_give_the_single_threaded_bits() {
        let hyper = test_constants();
        let cpu = (Kind::Float, tch::Device::Cpu);
        let values = |t: &Tensor| Vec::<f32>::try_from(t).unwrap();
        // Three parameters, one too small to thread and one that decays not: the threads'
        // ranges over the elements end to end cut through the parameters.
        let sizes = [(5 * CHUNK_ELEMENTS + 123, true), (7, true), (3 * CHUNK_ELEMENTS + 5, false)];
        let tensors: Vec<[Tensor; 4]> = sizes
            .iter()
            .map(|&(n, _)| {
                let n = n as i64;
                [
                    Tensor::randn([n], cpu),
                    Tensor::randn([n], cpu),
                    Tensor::randn([n], cpu) * 0.1,
                    Tensor::rand([n], cpu) * 0.01,
                ]
            })
            .collect();
        let expected: Vec<[Vec<f32>; 3]> = tensors
            .iter()
            .zip(&sizes)
            .map(|([param, grad, exp_avg, exp_avg_sq], &(_, decay))| {
                let (mut p, g, mut m, mut v) = (values(param), values(grad), values(exp_avg), values(exp_avg_sq));
                hyper.update_slices(&mut p, &g, &mut m, &mut v, decay);
                [p, m, v]
            })
            .collect();
        let jobs: Vec<Job> = tensors
            .iter()
            .zip(&sizes)
            .map(|([param, grad, exp_avg, exp_avg_sq], &(_, decay))| {
                Job::new(param, grad, exp_avg, exp_avg_sq, decay).expect("f32 tensors")
            })
            .collect();
        let g = values(&tensors[0][1]);
        let threads = tch::get_num_threads();
        tch::set_num_threads(3);
        hyper.update(&jobs);
        let norm_three = squares_chunked(&g);
        tch::set_num_threads(1);
        let norm_one = squares_chunked(&g);
        tch::set_num_threads(threads);
        for (index, ([param, _, exp_avg, exp_avg_sq], [p, m, v])) in tensors.iter().zip(&expected).enumerate() {
            assert_eq!(&values(param), p, "parameter {index}");
            assert_eq!(&values(exp_avg), m, "parameter {index}");
            assert_eq!(&values(exp_avg_sq), v, "parameter {index}");
        }
        assert_eq!(norm_three.to_bits(), norm_one.to_bits());
        let exact: f64 = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((norm_one - exact).abs() < 1e-9 * exact);
    }

    #[test]
    fn every_vector_width_gives_the_baseline_bits() {
        use crate::kernels::simd::{Level, at};
        let hyper = test_constants();
        let values = |seed: u64, scale: f32| -> Vec<f32> {
            (0..4099u64).map(|i| ((i * 2654435761 + seed) % 1000) as f32 * scale - 0.3).collect()
        };
        let (p0, g, m0) = (values(1, 0.004), values(2, 0.002), values(3, 0.0001));
        let v0: Vec<f32> = values(4, 0.00002).iter().map(|x| x.abs()).collect();
        let update_at = |level: Level| {
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            at!(level, hyper.update_slices_at_any_width(&mut p, &g, &mut m, &mut v, true));
            (p, m, v, at!(level, squares_f64_at_any_width(&g)).to_bits())
        };
        let baseline = update_at(Level::Baseline);
        assert_ne!(baseline.0, p0, "the update changed nothing");
        // Levels this CPU lacks run at its widest, so each one it has is compared.
        for level in [Level::Avx2, Level::Avx512] {
            assert_eq!(update_at(level), baseline, "{level:?}");
        }
    }

    #[test]
    fn squares_sum_in_f64() {
        let values: Vec<f32> = (0..1003).map(|i| i as f32 * 0.5 - 200.0).collect();
        let expected: f64 = values.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((squares_f64(&values) - expected).abs() < 1e-6 * expected);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = LinearSchedule { peak: 1.0, warmup_steps: 10, total_steps: 110 };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
    }

    #[test]
    fn decay_exemptions_follow_hf_names() {
        assert!(exempt_from_decay("encoder.layer.0.attention.output.LayerNorm.weight"));
        assert!(exempt_from_decay("encoder.layer.0.intermediate.dense.bias"));
        assert!(!exempt_from_decay("encoder.layer.0.intermediate.dense.weight"));
        assert!(!exempt_from_decay("embeddings.word_embeddings.weight"));
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
        (&a * &a / 2.0 + &b * &b / 2.0).sum(Kind::Float).backward();
        let norm = clip_grad_norm([&a, &b].into_iter(), 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let clipped = (a.grad().square() + b.grad().square()).sqrt().double_value(&[0]);
        assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
    }
}

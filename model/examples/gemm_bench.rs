//! Rosetta's fp32 linear kernel against libtorch's (`linear`, and `addmm` onto the residual as
//! the encoder's inference path does) on the four linear layers of one multilingual-e5-small
//! layer (384 wide, 1,536 inner) for a 32 × 90-token batch (the feed-forward in its 960-row
//! chunks), on one thread, in alternating rounds. The kernel's time includes laying the weights
//! out (evaluation does that once per corpus, so this is its worst case). Prints the core's
//! FMA peak (a loop of independent FMAs), each round and the median ratio; on a CPU without
//! AVX-512 it says so and exits.
//!
//! usage: gemm_bench [ROUNDS] [CALLS_PER_ROUND]

mod common;

use common::{median, milliseconds, rounds_and_calls};
use rosetta_model::kernels::cpu_gemm::{PackedLinear, applies_to};
use tch::{Device, Kind, Tensor};

/// One linear layer of the benchmark: its input, weight, bias and optional residual.
struct Layer {
    name: &'static str,
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    residual: Option<Tensor>,
}

impl Layer {
    fn new(name: &'static str, rows: i64, inputs: i64, outputs: i64, residual: bool) -> Self {
        let float = (Kind::Float, Device::Cpu);
        Self {
            name,
            x: Tensor::randn([rows, inputs], float),
            weight: Tensor::randn([outputs, inputs], float) * 0.05,
            bias: Tensor::randn([outputs], float),
            residual: residual.then(|| Tensor::randn([rows, outputs], float)),
        }
    }

    fn flops(&self) -> f64 {
        2.0 * (self.x.size()[0] * self.weight.size()[0] * self.weight.size()[1]) as f64
    }

    fn ours(&self) -> Option<Tensor> {
        PackedLinear::new(&[(&self.weight, &self.bias)])?.forward(&self.x, self.residual.as_ref())
    }

    fn libtorch(&self) -> Tensor {
        match &self.residual {
            None => self.x.linear(&self.weight, Some(&self.bias)),
            Some(residual) => (residual + &self.bias).addmm(&self.x, &self.weight.tr()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let (rounds, calls) = rounds_and_calls(10)?;
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let layers = [
        Layer::new("qkv 2880x384->1152", 2880, 384, 1152, false),
        Layer::new("attention output 2880x384->384 +residual", 2880, 384, 384, true),
        Layer::new("ffn up 960x384->1536", 960, 384, 1536, false),
        Layer::new("ffn down 960x1536->384 +residual", 960, 1536, 384, true),
    ];
    if !applies_to(&layers[0].x) {
        println!("this CPU lacks AVX-512: the encoder uses libtorch's linear here");
        return Ok(());
    }
    let peak = fma_peak_gflops();
    println!("FMA peak of one core: {peak:.0} GFLOPS (16 independent 16-lane FMA chains)");
    tch::no_grad(|| -> anyhow::Result<()> {
        for layer in &layers {
            let ours = layer.ours().ok_or_else(|| anyhow::anyhow!("the kernel declined {}", layer.name))?;
            let gap = (&ours - layer.libtorch()).abs().max().double_value(&[]);
            let (mut mine, mut theirs) = (Vec::new(), Vec::new());
            for round in 1..=rounds {
                mine.push(milliseconds(calls, || drop(layer.ours())));
                theirs.push(milliseconds(calls, || drop(layer.libtorch())));
                let gflops = |ms: f64| layer.flops() / ms / 1e6;
                println!(
                    "{}, round {round}: kernel {:.2} ms ({:.0} GFLOPS), libtorch {:.2} ms ({:.0} GFLOPS)",
                    layer.name,
                    mine[round - 1],
                    gflops(mine[round - 1]),
                    theirs[round - 1],
                    gflops(theirs[round - 1])
                );
            }
            let (mine, theirs) = (median(mine), median(theirs));
            println!(
                "{}: medians kernel {mine:.2} ms ({:.0} % of the FMA peak), libtorch {theirs:.2} ms -> {:.2}x (largest difference {gap:.1e})",
                layer.name,
                100.0 * layer.flops() / mine / 1e6 / peak,
                theirs / mine
            );
        }
        Ok(())
    })
}

/// GFLOPS of one core in 512-bit FMAs: 16 independent accumulators (more than the FMA latency
/// times its throughput), so that nothing but the FMA units limits the loop.
fn fma_peak_gflops() -> f64 {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(iterations: usize) -> f32 {
        use std::arch::x86_64::*;
        let (scale, step) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
        let mut chains: [__m512; 16] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..iterations {
            for chain in &mut chains {
                *chain = _mm512_fmadd_ps(*chain, scale, step);
            }
        }
        chains.iter().map(|&c| _mm512_reduce_add_ps(c)).sum()
    }
    #[cfg(target_arch = "x86_64")]
    {
        let iterations = 20_000_000;
        let started = std::time::Instant::now();
        // SAFETY: `main` runs this only where the kernel applies, which needs AVX-512 F.
        let sum = unsafe { run(iterations) };
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        (iterations * 16 * 32) as f64 / seconds / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    0.0
}

//! Model FLOPs utilisation: the FLOPs a step's model arithmetic needs (from the shapes, not from
//! what ran: GradCache's second forward pass and recomputation count for nothing) over the
//! device's peak. Per token of a sequence of `s` tokens, training costs `6 N + 12 L H s` FLOPs
//! (N non-embedding parameters, L layers, H hidden width: forward 2N + attention 4LHs, backward
//! twice that; Chowdhery et al. 2022, "PaLM", appendix B). The peak is measured once, with a
//! large matmul (bf16 on CUDA, f32 on the CPU), or given by `ROSETTA_PEAK_TFLOPS`.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use rosetta_model::sentence::SentenceEncoder;

/// The shapes a step's model FLOPs are counted from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlopModel {
    /// Parameters outside the embedding tables (they cost a lookup, not a matmul).
    pub non_embedding_parameters: f64,
    /// Transformer layers.
    pub layers: f64,
    /// Hidden width.
    pub hidden: f64,
}

impl FlopModel {
    /// The counts of `model`.
    pub fn of(model: &SentenceEncoder) -> Self {
        let non_embedding: i64 = model
            .var_store()
            .variables()
            .iter()
            .filter(|(name, _)| !(name.contains("embeddings.") && name.ends_with("_embeddings.weight")))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        let config = model.encoder().config();
        Self {
            non_embedding_parameters: non_embedding as f64,
            layers: config.num_hidden_layers as f64,
            hidden: config.hidden_size as f64,
        }
    }

    /// Training FLOPs (forward and backward) of sequences of these token counts.
    pub fn training_flops(&self, lengths: impl IntoIterator<Item = i64>) -> f64 {
        lengths
            .into_iter()
            .map(|s| {
                let s = s as f64;
                s * (6.0 * self.non_embedding_parameters + 12.0 * self.layers * self.hidden * s)
            })
            .sum()
    }
}

/// A device's peak FLOP/s and where the figure came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakFlops {
    /// FLOP/s.
    pub flops_per_second: f64,
    /// `measured: ...` or `ROSETTA_PEAK_TFLOPS`.
    pub source: String,
}

/// The peak of `device`: `ROSETTA_PEAK_TFLOPS` when set, else the best of a few large matmuls
/// (4096² bf16 on CUDA, 1024² f32 on the CPU; about a tenth of a second).
pub fn peak_flops(device: Device) -> PeakFlops {
    if let Some(tflops) = std::env::var("ROSETTA_PEAK_TFLOPS").ok().and_then(|v| v.parse::<f64>().ok())
        && tflops > 0.0
    {
        return PeakFlops { flops_per_second: tflops * 1e12, source: "ROSETTA_PEAK_TFLOPS".into() };
    }
    let (n, kind, label) = match device {
        Device::Cuda(_) => (4096, Kind::BFloat16, "bf16"),
        _ => (1024, Kind::Float, "f32"),
    };
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let sync = || {
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    let _ = a.matmul(&b);
    sync();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let _ = a.matmul(&b);
        sync();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (n as f64).powi(3) / best.max(1e-9);
    PeakFlops { flops_per_second: flops, source: format!("measured: {n}x{n} {label} matmul") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_grow_with_parameters_and_quadratically_in_length() {
        let model = FlopModel { non_embedding_parameters: 1e6, layers: 2.0, hidden: 64.0 };
        // One 10-token sequence: 10 * (6e6 + 12 * 2 * 64 * 10).
        assert_eq!(model.training_flops([10]), 10.0 * (6e6 + 15_360.0));
        assert_eq!(model.training_flops([10, 10]), 2.0 * model.training_flops([10]));
        assert_eq!(model.training_flops(Vec::<i64>::new()), 0.0);
    }

    #[test]
    fn the_cpu_peak_is_measured_or_taken_from_the_environment() {
        let peak = peak_flops(Device::Cpu);
        assert!(peak.flops_per_second > 1e8 && peak.source.starts_with("measured"), "{peak:?}");
    }
}

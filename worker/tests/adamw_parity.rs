//! Rosetta's AdamW against `torch.optim.AdamW` (decoupled decay, no decay on biases and
//! LayerNorm) over several steps with a changing learning rate.

mod common;

use rosetta_model::checkpoint::{read_tensors, write_tensors_atomically};
use rosetta_model::optim::{AdamW, AdamWConfig};
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

#[test]
fn matches_torch_adamw_over_several_steps() {
    let dir = tempfile::tempdir().unwrap();
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let init = Init::Randn { mean: 0.0, stdev: 1.0 };
    let shapes: [(&str, &[i64]); 4] =
        [("dense.weight", &[5, 3]), ("dense.bias", &[5]), ("LayerNorm.weight", &[3]), ("embeddings.weight", &[7, 3])];
    let mut params = Vec::new();
    for (name, shape) in shapes {
        let (family, leaf) = name.split_once('.').unwrap();
        params.push((name, root.sub(family).var(leaf, shape, init)));
    }
    let grads: Vec<Tensor> = params.iter().map(|(_, p)| Tensor::randn(p.size(), (Kind::Float, Device::Cpu))).collect();
    let mut saved: Vec<(String, Tensor)> = Vec::new();
    for ((name, p), g) in params.iter().zip(&grads) {
        saved.push((format!("param.{name}"), p.detach().copy()));
        saved.push((format!("grad.{name}"), g.copy()));
    }
    let input = dir.path().join("in.safetensors");
    write_tensors_atomically(&input, &saved).unwrap();

    let lrs = [1e-2, 5e-3, 2e-2, 1e-3];
    let mut optimizer = AdamW::new(&vs, AdamWConfig::default());
    for lr in lrs {
        for ((_, p), g) in params.iter().zip(&grads) {
            (p * g).sum(Kind::Float).backward();
        }
        optimizer.step(lr);
        optimizer.zero_grad();
    }
    let output = dir.path().join("out.safetensors");
    let lr_list = lrs.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
    common::run_python("adamw_reference.py", &[input.to_str().unwrap(), output.to_str().unwrap(), &lr_list]);
    let reference = read_tensors(&output).unwrap();
    for (name, p) in &params {
        let diff = (p - &reference[*name]).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: differs from torch by {diff}");
    }
}

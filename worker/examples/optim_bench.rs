//! Rosetta's side of `bench/optim`: AdamW steps over the parameters of a
//! multilingual-e5-small-shaped encoder (BERT, 12 x 384, 250,002-token vocabulary: 118M
//! parameters), gradients fixed and random; prints the mean and the fastest seconds per step
//! as JSON.
//!
//! usage: optim_bench STEPS

use std::time::Instant;

use rosetta_model::optim::{AdamW, AdamWConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// (name, shape) of every parameter of a BERT encoder of `layers` x `width`.
fn e5_small_shapes() -> Vec<(String, Vec<i64>)> {
    let (vocab, width, ff, layers) = (250_002, 384, 1536, 12);
    let mut shapes = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![vocab, width]),
        ("embeddings.position_embeddings.weight".to_string(), vec![512, width]),
        ("embeddings.token_type_embeddings.weight".to_string(), vec![2, width]),
        ("embeddings.LayerNorm.weight".to_string(), vec![width]),
        ("embeddings.LayerNorm.bias".to_string(), vec![width]),
    ];
    for layer in 0..layers {
        let p = format!("encoder.layer.{layer}");
        for (name, shape) in [
            ("attention.self.query", vec![width, width]),
            ("attention.self.key", vec![width, width]),
            ("attention.self.value", vec![width, width]),
            ("attention.output.dense", vec![width, width]),
            ("intermediate.dense", vec![ff, width]),
            ("output.dense", vec![width, ff]),
        ] {
            shapes.push((format!("{p}.{name}.bias"), vec![shape[0]]));
            shapes.push((format!("{p}.{name}.weight"), shape));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{norm}.weight"), vec![width]));
            shapes.push((format!("{p}.{norm}.bias"), vec![width]));
        }
    }
    shapes
}

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).unwrap_or_else(|| "5".into()).parse()?;
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let mut parameters = 0;
    for (name, shape) in e5_small_shapes() {
        // Nested paths, so the variables keep their HF names (biases and LayerNorm: no decay).
        let (path, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
        let mut root = vs.root();
        for part in path.split('.').filter(|p| !p.is_empty()) {
            root = root / part;
        }
        let var = root.var(leaf, &shape, tch::nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        parameters += var.numel();
        // The gradient: a fixed random tensor, made by one backward pass.
        (&var * Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu))).sum(Kind::Float).backward();
    }
    let mut optimizer = AdamW::new(&vs, AdamWConfig { lr: 3e-5, weight_decay: 0.01, ..AdamWConfig::default() });
    optimizer.step(3e-5);
    let started = Instant::now();
    let mut fastest = f64::INFINITY;
    for _ in 0..steps {
        let step_started = Instant::now();
        optimizer.step(3e-5);
        fastest = fastest.min(step_started.elapsed().as_secs_f64());
    }
    let seconds = started.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{}",
        serde_json::json!({"impl": "rosetta", "seconds_per_step": seconds, "fastest_step_seconds": fastest,
                           "parameters": parameters, "threads": tch::get_num_threads()})
    );
    Ok(())
}

//! Rosetta's attention kernel (bf16, and f32) against libtorch's `scaled_dot_product_attention` (with the
//! transpose back to `[B, L, H]` that the kernel's output layout saves), one layer of a
//! 32 × 91-token batch with 12 heads of 32 (multilingual-e5-small) and of 64 (XLM-R base,
//! LaBSE), right-padded to 48–91 tokens, on one thread, in alternating rounds. Prints each
//! round's milliseconds and the median ratio; for a precision the CPU's kernel does not cover
//! (bf16: no AVX-512 BF16, or AMX; f32: no AVX-512) it says so.
//!
//! usage: attention_bench [ROUNDS] [CALLS_PER_ROUND]

mod common;

use common::{median, milliseconds, rounds_and_calls};
use rosetta_model::kernels::cpu_attention::{applies_to, context, keep_bytes, libtorch_context};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let (rounds, calls) = rounds_and_calls(20)?;
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let (batch, length) = (32i64, 91i64);
    let lengths: Vec<i64> = (0..batch).map(|b| 48 + (43 * b) / (batch - 1)).collect();
    let mask = Tensor::arange(length, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1))
        .to_kind(Kind::Int64);
    let keep = keep_bytes(&mask).ok_or_else(|| anyhow::anyhow!("the mask did not convert to bytes"))?;
    for (kind, head) in [(Kind::BFloat16, 32i64), (Kind::BFloat16, 64), (Kind::Float, 32), (Kind::Float, 64)] {
        let qkv = Tensor::randn([batch, length, 3, 12, head], (Kind::Float, Device::Cpu)).to_kind(kind);
        if !applies_to(&qkv) {
            println!("{kind:?}: this CPU lacks the instructions (bf16: AVX-512 BF16 without AMX; f32: AVX-512)");
            continue;
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        tch::no_grad(|| -> anyhow::Result<()> {
            let _ = (context(&qkv, &keep), libtorch_context(&qkv, &mask));
            for round in 1..=rounds {
                let mut declined = false;
                ours.push(milliseconds(calls, || declined |= context(&qkv, &keep).is_none()));
                theirs.push(milliseconds(calls, || drop(libtorch_context(&qkv, &mask))));
                anyhow::ensure!(!declined, "the kernel declined 12 heads of {head}");
                println!(
                    "{kind:?}, 12 heads of {head}, round {round}: kernel {:.2} ms, libtorch {:.2} ms",
                    ours[round - 1],
                    theirs[round - 1]
                );
            }
            Ok(())
        })?;
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{kind:?}, 12 heads of {head}, {batch} x {length} tokens, one thread: medians kernel {ours:.2} ms, libtorch {theirs:.2} ms -> {:.2}x",
            theirs / ours
        );
    }
    Ok(())
}

"""Optimiser benchmark (issue 14): one AdamW step over the parameters of a
multilingual-e5-small-shaped encoder (BERT, 12 layers, 384 wide, 250,002-token vocabulary:
117.6M parameters, 96M of them the embedding matrix), fixed random gradients, lr 3e-5, weight
decay 0.01 (biases and LayerNorm exempt). Rosetta's AdamW (examples/optim_bench) against
torch.optim.AdamW with its for-loop, foreach and fused implementations, in alternating rounds on
the same cores. Prints each round's seconds per step (mean and fastest step), the medians, the
ratios, and the memory bandwidth each reaches (an AdamW step reads parameter, gradient and both
moments and writes three of them: 28 bytes per f32 parameter).

usage: optim.py --rosetta-example PATH [--steps 5] [--rounds 3]
"""

import argparse
import json
import math
import statistics
import subprocess
import time

import torch

VOCAB, WIDTH, FF, LAYERS = 250_002, 384, 1536, 12


def shapes() -> list:
    out = [("embeddings.word_embeddings.weight", (VOCAB, WIDTH)), ("embeddings.position_embeddings.weight", (512, WIDTH)),
           ("embeddings.token_type_embeddings.weight", (2, WIDTH)), ("embeddings.LayerNorm.weight", (WIDTH,)),
           ("embeddings.LayerNorm.bias", (WIDTH,))]
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"
        for name, shape in [("attention.self.query", (WIDTH, WIDTH)), ("attention.self.key", (WIDTH, WIDTH)),
                            ("attention.self.value", (WIDTH, WIDTH)), ("attention.output.dense", (WIDTH, WIDTH)),
                            ("intermediate.dense", (FF, WIDTH)), ("output.dense", (WIDTH, FF))]:
            out.append((f"{p}.{name}.weight", shape))
            out.append((f"{p}.{name}.bias", (shape[0],)))
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            out.append((f"{p}.{norm}.weight", (WIDTH,)))
            out.append((f"{p}.{norm}.bias", (WIDTH,)))
    return out


def torch_step_seconds(variant: str, steps: int) -> tuple:
    """(mean, fastest) seconds per step of torch.optim.AdamW's `variant`."""
    torch.manual_seed(0)
    decay, no_decay = [], []
    for name, shape in shapes():
        p = torch.nn.Parameter(torch.randn(shape) * 0.02)
        p.grad = torch.randn(shape)
        (no_decay if name.endswith(".bias") or "LayerNorm" in name else decay).append(p)
    options = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-5, **options)
    optimizer.step()
    started, fastest = time.perf_counter(), math.inf
    for _ in range(steps):
        step_started = time.perf_counter()
        optimizer.step()
        fastest = min(fastest, time.perf_counter() - step_started)
    seconds = (time.perf_counter() - started) / steps
    del optimizer, decay, no_decay
    return seconds, fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rosetta-example", required=True, help="the optim_bench example binary")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and implementation")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    params = sum(math.prod(shape) for _, shape in shapes())
    times = {"rosetta": [], "loop": [], "foreach": [], "fused": []}
    fastest = {name: [] for name in times}
    for round_index in range(args.rounds):
        out = subprocess.run([args.rosetta_example, str(args.steps)], check=True, capture_output=True, text=True).stdout
        report = json.loads(out.strip().splitlines()[-1])
        times["rosetta"].append(report["seconds_per_step"])
        fastest["rosetta"].append(report["fastest_step_seconds"])
        for variant in ("loop", "foreach", "fused"):
            mean, fast = torch_step_seconds(variant, args.steps)
            times[variant].append(mean)
            fastest[variant].append(fast)
        print(f"round {round_index + 1}: " + "  ".join(f"{k} {v[-1] * 1000:.0f} ms (fastest {fastest[k][-1] * 1000:.0f})"
                                                       for k, v in times.items()), flush=True)
    print(f"AdamW step over {params / 1e6:.1f}M parameters (e5-small shape), {args.steps} steps x {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, median in medians.items():
        label = "rosetta" if name == "rosetta" else f"torch {name}"
        print(f"  {label:<14}: {median * 1000:7.1f} ms/step  {28 * params / median / 1e9:5.1f} GB/s  "
              f"ratio {medians[name] / medians['rosetta']:.2f}x (their time / rosetta's)")
    # A shared machine's memory bandwidth moves between minutes; each side's fastest step is
    # the figure least moved by it.
    best = {k: statistics.median(v) for k, v in fastest.items()}
    print("  fastest step (median over rounds): " + "  ".join(
        f"{k} {v * 1000:.1f} ms ({best[k] / best['rosetta']:.2f}x)" for k, v in best.items()))


if __name__ == "__main__":
    main()

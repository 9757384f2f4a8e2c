"""End-to-end 2-worker training throughput (issue 5): `rosetta train` (coordinator + 2 worker
processes, TCP ring) next to a PyTorch DistributedDataParallel script on the gloo backend, with
the same XLM-R-shaped encoder (6 layers, 384 wide, passages cut at 128 tokens), the very same
global batches (dumped from Rosetta's hybrid schedule by `rosetta schedule preview --dump`), cut
into the same per-rank halves, the same InfoNCE over the global batch (embeddings all-gathered
with gradients) and AdamW with clipping. Each side runs N and 2N steps from launch to exit; the
throughput is the steady state after the first 2 steps (timed by `rosetta train` itself and by
rank 0 of the DDP script), and launch-to-exit times are printed too.

With `--shape e5-small` the encoder is multilingual-e5-small-shaped (BERT 12 x 384, 250,002-token
vocabulary, issue 14); `--dense-too` adds a third side, `rosetta train` with
`training.sparse_embedding_all_reduce: false`, and every Rosetta side prints the gradient bytes
its workers handed to the all-reduce per step. `--precision bf16` trains both sides under bf16
autocast on the CPU (`training.precision: bf16`; `torch.autocast("cpu")` around DDP's forward).

usage: cluster_train.py --rosetta BIN [--shape xlmr-6x384|e5-small] [--steps N] [--batch 32]
                        [--workers 2] [--repeat R] [--dense-too] [--precision auto|fp32|bf16]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import SHAPES, build_model  # noqa: E402  (the same model builder as bench-train)


def ddp_worker(rank, world, st_dir, train, plan_path, steps, port, result, bf16=False):
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rows = {}
    for r in pq.read_table(train, columns=["dataset", "pair_id", "lang", "query", "positive"]).to_pylist():
        rows[(r["dataset"], r["pair_id"], r["lang"])] = r
    with open(plan_path) as f:
        plans = [json.loads(line) for line in f][:steps]
    model = SentenceTransformer(st_dir, device="cpu", local_files_only=True)
    model.train()
    # static_graph: some parameters never get a gradient from sentence embeddings, and the
    # all-gather's backward would otherwise trip DDP's once-per-step readiness check.
    ddp = torch.nn.parallel.DistributedDataParallel(model, static_graph=True)
    decay = [p for n, p in model.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(".bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-5)
    started = None
    for index, plan in enumerate(plans):
        if index == 2:
            started = time.perf_counter()
        examples = plan["examples"]
        lo, hi = len(examples) * rank // world, len(examples) * (rank + 1) // world
        mine = examples[lo:hi]
        queries = [rows[(plan["dataset"], pid, ql)]["query"] for pid, ql, _ in mine]
        passages = [rows[(plan["dataset"], pid, pl)]["positive"] for pid, _, pl in mine]
        # One forward per step (DDP expects each parameter used once before backward).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            both = ddp(model.tokenize(queries + passages))["sentence_embedding"].float()
        q, p = both[: len(queries)], both[len(queries):]
        all_q = torch.cat(torch.distributed.nn.functional.all_gather(q))
        all_p = torch.cat(torch.distributed.nn.functional.all_gather(p))
        logits = all_q @ all_p.T * 20.0
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(all_q)))
        # Every rank holds the whole loss; DDP averages gradients, which equals the global gradient.
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    if rank == 0 and started is not None:
        per_step = (time.perf_counter() - started) / (len(plans) - 2)
        with open(result, "w") as f:
            json.dump({"seconds_per_step": per_step}, f)
    dist.destroy_process_group()


def run_ddp(st_dir, train, plan_path, steps, world, bf16=False):
    port = 29500 + os.getpid() % 1000
    result = os.path.join(os.path.dirname(plan_path), f"ddp{steps}.json")
    started = time.perf_counter()
    mp.spawn(ddp_worker, args=(world, st_dir, train, plan_path, steps, port, result, bf16), nprocs=world, join=True)
    seconds = time.perf_counter() - started
    with open(result) as f:
        return seconds, json.load(f)["seconds_per_step"]


def write_config(work, st_dir, steps, batch, world, name, sparse=True, precision="auto"):
    config = os.path.join(work, f"{name}.yaml")
    with open(config, "w") as f:
        f.write(
            "version: 1\ndata:\n  train: [data/train.parquet]\n"
            f"schedule:\n  strategy: hybrid\n  alpha: 0.5\n  global_batch_size: {batch}\n  seed: 7\n"
            f"model:\n  path: {st_dir}\n  max_seq_length: 128\n"
            "training:\n  hard_negatives: 0\n  optimizer:\n    lr: 3.0e-5\n  loss:\n    temperature: 0.05\n"
            f"  sparse_embedding_all_reduce: {'true' if sparse else 'false'}\n  precision: {precision}\n"
            f"job:\n  steps: {steps}\n  workers: {world}\n  checkpoint_every: {steps}\n  run_dir: runs/{name}\n"
        )
    return config


def run_rosetta(rosetta, work, config):
    started = time.perf_counter()
    out = subprocess.run([rosetta, "train", "--config", config, "--quiet", "--overwrite"], check=True, capture_output=True,
                         cwd=work, text=True).stdout
    seconds = time.perf_counter() - started
    # "steady state: X s/step, ..." (timed by rosetta train after the first 2 steps)
    per_step = float(next(l for l in out.splitlines() if l.startswith("steady state:")).split()[2])
    # "gradient all-reduce: X MB per step ..."
    megabytes = next((float(l.split()[2]) for l in out.splitlines() if l.startswith("gradient all-reduce:")), 0.0)
    return seconds, per_step, megabytes


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rosetta", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", choices=SHAPES, default="xlmr-6x384")
    parser.add_argument("--dense-too", action="store_true",
                        help="also run rosetta with the dense embedding all-reduce (bytes and speed before/after)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds, alternating which side runs first; medians are reported (a shared or "
                             "virtual machine drifts by 10%% and more between minutes)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="both sides: bf16 = autocast on the CPU (auto and fp32: fp32 on the CPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rosetta-cluster-bench-") as work:
        subprocess.run([args.rosetta, "data", "synth", "--out", os.path.join(work, "data"), "--mono-people", "0"],
                       check=True, capture_output=True)
        st_dir = build_model(work, os.path.join(work, "data", "tokenizer.json"), args.shape)
        train = os.path.join(work, "data", "train.parquet")
        results = {}  # (impl, steps) -> [(launch-to-exit seconds, steady s/step) per round]
        configs = {}
        for steps in (args.steps, 2 * args.steps):
            config = write_config(work, st_dir, steps, args.batch, args.workers, f"r{steps}", precision=args.precision)
            dense = write_config(work, st_dir, steps, args.batch, args.workers, f"d{steps}", sparse=False,
                                 precision=args.precision)
            plan = os.path.join(work, f"plan{steps}.jsonl")
            subprocess.run([args.rosetta, "schedule", "preview", "--config", config, "--steps", str(steps),
                            "--dump", plan], check=True, capture_output=True)
            configs[steps] = (config, dense, plan)
        sides = ("ddp", "rosetta", "rosetta-dense") if args.dense_too else ("ddp", "rosetta")
        for round_index in range(max(1, args.repeat)):
            order = sides if round_index % 2 == 0 else tuple(reversed(sides))
            for steps, (config, dense, plan) in configs.items():
                for impl in order:
                    if impl == "ddp":
                        outcome = run_ddp(st_dir, train, plan, steps, args.workers, args.precision == "bf16") + (None,)
                    else:
                        name = f"r{steps}" if impl == "rosetta" else f"d{steps}"
                        shutil.rmtree(os.path.join(work, "runs", name), ignore_errors=True)
                        outcome = run_rosetta(args.rosetta, work, config if impl == "rosetta" else dense)
                    results.setdefault((impl, steps), []).append(outcome)
                    print(f"round {round_index + 1}, {steps} steps, {impl}: {outcome[1]:.3f} s/step", flush=True)
    print(f"2-worker training, {args.shape}, global batch {args.batch}, precision {args.precision}, "
          f"{os.cpu_count()} cores, "
          f"{max(1, args.repeat)} round(s), medians; steady state = after the first 2 steps (rosetta train "
          f"reports it; the DDP script times rank 0)")
    rates, exits = {}, {}
    for impl in sides[1:] + ("ddp",):
        short = statistics.median(r[0] for r in results[(impl, args.steps)])
        long = statistics.median(r[0] for r in results[(impl, 2 * args.steps)])
        per_step = statistics.median(r[1] for r in results[(impl, 2 * args.steps)])
        rates[impl], exits[impl] = args.batch / per_step, long
        rounds = " ".join(f"{r[1]:.3f}" for r in results[(impl, 2 * args.steps)])
        traffic = results[(impl, 2 * args.steps)][0][2]
        moved = "" if traffic is None else f"; all-reduce {traffic:.1f} MB/step (all workers)"
        print(f"  {impl:<13}: launch to exit {short:6.1f} s ({args.steps} steps) / {long:6.1f} s ({2 * args.steps} steps); "
              f"steady state {per_step:.3f} s/step = {rates[impl]:6.2f} samples/s (rounds: {rounds}){moved}")
    per_round = " ".join(f"{d[1] / r[1]:.2f}" for r, d in zip(results[("rosetta", 2 * args.steps)],
                                                            results[("ddp", 2 * args.steps)]))
    print(f"  ratio   : {rates['rosetta'] / rates['ddp']:.2f}x steady state (rounds: {per_round}), "
          f"{exits['ddp'] / exits['rosetta']:.2f}x launch to exit ({2 * args.steps} steps) "
          f"(rosetta / pytorch DDP gloo)")
    if "rosetta-dense" in rates:
        print(f"  sparse vs dense embedding all-reduce: {rates['rosetta'] / rates['rosetta-dense']:.2f}x steady state")


if __name__ == "__main__":
    main()

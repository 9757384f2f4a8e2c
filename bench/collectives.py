"""Collective benchmark (issue 5, part a): all-reduce bus bandwidth of f32 buffers between 2
local processes, Rosetta's TCP ring next to torch.distributed with the gloo backend, same sizes,
same machine, one run. Bus bandwidth = bytes / time x 2(W-1)/W (the nccl-tests convention).

usage: collectives.py --ring-bench PATH [--sizes 1,4,16,64,256] [--iterations 5]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gloo_worker(rank: int, world: int, port: int, sizes: list, iterations: int, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    for size_mb in sizes:
        buffer = torch.ones((size_mb << 20) // 4, dtype=torch.float32)
        dist.all_reduce(buffer)
        dist.barrier()
        started = time.perf_counter()
        for _ in range(iterations):
            dist.all_reduce(buffer)
        dist.barrier()
        seconds = (time.perf_counter() - started) / iterations
        if rank == 0:
            bus = (size_mb << 20) / seconds * 2 * (world - 1) / world
            queue.put({"impl": "gloo", "size_mb": size_mb, "seconds": seconds, "bus_gbps": bus / 1e9})
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ring-bench", required=True)
    parser.add_argument("--sizes", default="1,4,16,64,256")
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    world = 2

    peers = ",".join(f"127.0.0.1:{free_port()}" for _ in range(world))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([args.ring_bench, str(r), peers, args.sizes, str(args.iterations)],
                              stdout=subprocess.PIPE, text=True, env=env) for r in range(world)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("ring_bench failed")
    ours = {r["size_mb"]: r for r in map(json.loads, outs[0].strip().splitlines())}

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    workers = [ctx.Process(target=gloo_worker, args=(r, world, port, sizes, args.iterations, queue)) for r in range(world)]
    for w in workers:
        w.start()
    theirs = {}
    for _ in sizes:
        r = queue.get(timeout=600)
        theirs[r["size_mb"]] = r
    for w in workers:
        w.join()

    print(f"all-reduce, f32, 2 local processes, {args.iterations} iterations per size, {os.cpu_count()} cores")
    print(f"  {'size':>8}  {'rosetta ring':>14}  {'gloo':>14}  ratio")
    for size in sizes:
        a, b = ours[size]["bus_gbps"], theirs[size]["bus_gbps"]
        print(f"  {size:>5} MB  {a:>9.2f} GB/s  {b:>9.2f} GB/s  {a / b:5.2f}x")


if __name__ == "__main__":
    main()

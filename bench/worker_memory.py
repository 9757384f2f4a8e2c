"""Worker memory and start-up against the size of the training set (issue 10): the design that
loads every training row into every worker (the `rosetta` binary of commit 1a052ac, built by
the caller and passed as --old) beside the row-store design (--new). For each size, the same
synthetic corpus and the same tiny job (2 workers, 3 steps) run through `rosetta coordinator`
and two `rosetta worker` processes; each worker's peak RSS comes from wait4(2), its start-up
time is from its launch to its "rendezvous complete" log line (model built, data ready, world
formed). The new design packs the row store first (`rosetta data pack`, timed on its own, once
per version of the data); the old design is skipped above --old-max-groups (its workers would
not fit in this machine's memory; the table says so).

usage: worker_memory.py --new BIN [--old BIN] [--groups 1000000,10000000] [--old-max-groups 2000000] [--work DIR]
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time

GROUPS_PER_PERSON = 6  # the synthetic corpus gives 6 parallel groups per person


def synth(binary, out, groups, vocab):
    if os.path.exists(os.path.join(out, "train.parquet")):
        return
    people = max(1, groups // GROUPS_PER_PERSON)
    subprocess.run([binary, "data", "synth", "--out", out, "--train-people", str(people), "--mono-people", "0",
                    "--benchmark-people", "2", "--vocab-size", str(vocab)], check=True, stdout=subprocess.DEVNULL)


def write_config(path, data, tokenizer, run_dir, store=None):
    lines = []
    if store is not None:
        lines.append("version: 1")
    lines += ["data:", f"  train: [{data}/train.parquet]"]
    if store is not None:
        lines.append(f"  store: {store}")
    lines += [
        "schedule: {strategy: hybrid, alpha: 0.5, global_batch_size: 32, seed: 7}",
        f"model: {{preset: small, tokenizer: {tokenizer}, layers: 2, hidden_size: 64, heads: 4, "
        "intermediate_size: 128, max_seq_length: 32}",
        "training: {hard_negatives: 1}",
        f"job: {{steps: 3, workers: 2, checkpoint_every: 1000, heartbeat_timeout_secs: 600, run_dir: {run_dir}}}",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def timed(command):
    """Runs a command; returns (seconds, peak RSS in MiB)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return time.monotonic() - started, usage.ru_maxrss / 1024


def run_job(binary, config, token_file, extra=()):
    """A coordinator and two workers; returns [(start-up s, peak RSS MiB) per worker], coordinator RSS."""
    env = dict(os.environ, RUST_LOG="info")
    coordinator = subprocess.Popen([binary, "coordinator", "--config", config, "--listen", "127.0.0.1:0",
                                    "--token-file", token_file, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env=env)
    line = coordinator.stdout.readline().decode()
    match = re.search(r"coordinator on (\S+),", line)
    if not match:
        coordinator.kill()
        sys.exit(f"unexpected first line of the coordinator: {line!r}")
    address = f"http://{match.group(1)}"
    workers, ready = [], {}
    for rank in range(2):
        launched = time.monotonic()
        worker = subprocess.Popen([binary, "worker", "--coordinator", address, "--token-file", token_file,
                                   "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

        def watch(stream, key, launched):
            tail = []
            for raw in stream:
                text = raw.decode(errors="replace")
                tail = (tail + [text])[-20:]
                if "rendezvous complete" in text and key not in ready:
                    ready[key] = time.monotonic() - launched
            ready.setdefault(("tail", key), "".join(tail))

        threading.Thread(target=watch, args=(worker.stderr, rank, launched), daemon=True).start()
        workers.append(worker)
    results = []
    for rank, worker in enumerate(workers):
        _, status, usage = os.wait4(worker.pid, 0)
        if status != 0:
            coordinator.kill()
            time.sleep(0.5)
            sys.exit(f"worker {rank} failed:\n{ready.get(('tail', rank), '')}")
        time.sleep(0.1)
        results.append((ready.get(rank, float("nan")), usage.ru_maxrss / 1024))
    _, _, usage = os.wait4(coordinator.pid, 0)
    return results, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--new", required=True)
    parser.add_argument("--old")
    parser.add_argument("--groups", default="1000000,10000000")
    parser.add_argument("--old-max-groups", type=int, default=2_000_000)
    parser.add_argument("--work", default="/tmp/rosetta-worker-memory")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    token = os.path.join(args.work, "token")
    with open(token, "w") as f:
        f.write("bench-token\n")
    sizes = [int(g) for g in args.groups.split(",")]
    vocab_dir = os.path.join(args.work, "vocab")
    synth(args.new, vocab_dir, 6000, 4000)
    tokenizer = os.path.join(vocab_dir, "tokenizer.json")
    rows = []
    for groups in sizes:
        data = os.path.join(args.work, f"g{groups}")
        synth(args.new, data, groups, 0)
        size_mb = os.path.getsize(os.path.join(data, "train.parquet")) / 2**20
        store = os.path.join(data, "store")
        new_config = os.path.join(data, "new.yaml")
        write_config(new_config, data, tokenizer, os.path.join(data, "run-new"), store)
        pack = timed([args.new, "data", "pack", "--config", new_config])
        workers, coordinator = run_job(args.new, new_config, token, ["--overwrite"])
        rows.append(("row store (new)", groups, size_mb, workers, coordinator, pack))
        print(f"new, {groups} groups: pack {pack[0]:.1f} s at {pack[1]:.0f} MiB; workers {workers}; "
              f"coordinator {coordinator:.0f} MiB", flush=True)
        if args.old and groups <= args.old_max_groups:
            old_config = os.path.join(data, "old.yaml")
            write_config(old_config, data, tokenizer, os.path.join(data, "run-old"))
            workers, coordinator = run_job(args.old, old_config, token)
            rows.append(("all rows in every worker (old)", groups, size_mb, workers, coordinator, None))
            print(f"old, {groups} groups: workers {workers}; coordinator {coordinator:.0f} MiB", flush=True)
        elif args.old:
            rows.append(("all rows in every worker (old)", groups, size_mb, None, None, None))
    print("\n| design | groups | train.parquet | worker start-up (s) | worker peak RSS (MiB) | coordinator peak RSS (MiB) | store pack |")
    print("|---|---|---|---|---|---|---|")
    for design, groups, size_mb, workers, coordinator, pack in rows:
        if workers is None:
            print(f"| {design} | {groups:,} | {size_mb:.0f} MiB | not run | would not fit (see the 1M row: it grows "
                  f"linearly) | — | — |")
            continue
        start = " / ".join(f"{s:.2f}" for s, _ in workers)
        rss = " / ".join(f"{r:.0f}" for _, r in workers)
        packed = f"{pack[0]:.1f} s, {pack[1]:.0f} MiB peak" if pack else "—"
        print(f"| {design} | {groups:,} | {size_mb:.0f} MiB | {start} | {rss} | {coordinator:.0f} | {packed} |")


if __name__ == "__main__":
    main()

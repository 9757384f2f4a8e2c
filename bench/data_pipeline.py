"""Driver of bench/data-pipeline: Rosetta vs pyarrow + tokenizers on the same files and cores."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
from tokenizers import Tokenizer


def python_read_tokenise(pairs: str, tokenizer_path: str, batch_size: int) -> dict:
    """The same work as `rosetta data bench-read`, the way a Python user would write it."""
    tokenizer = Tokenizer.from_file(tokenizer_path)
    started = time.perf_counter()
    rows = tokens = 0
    parquet = pq.ParquetFile(pairs)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=["query", "positive"]):
        queries = batch.column("query").to_pylist()
        positives = batch.column("positive").to_pylist()
        texts = [t for pair in zip(queries, positives) for t in pair]
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=True))
        rows += batch.num_rows
    seconds = time.perf_counter() - started
    return {"impl": "python", "pairs": rows, "tokens": tokens, "seconds": seconds, "pairs_per_second": rows / seconds}


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rosetta", required=True)
    parser.add_argument("--people", type=int, default=int(os.environ.get("PAIRS_PEOPLE", "27778")))
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rosetta-bench-") as work:
        vocab_dir = os.path.join(work, "vocab")
        run([args.rosetta, "data", "synth", "--out", vocab_dir])
        tokenizer = os.path.join(vocab_dir, "tokenizer.json")
        big = os.path.join(work, "big")
        run([args.rosetta, "data", "synth", "--out", big, "--train-people", str(args.people),
             "--mono-people", "0", "--benchmark-people", "1", "--coverage", "1.0", "--vocab-size", "0"])
        pairs = os.path.join(big, "train.parquet")

        best = {}
        for _ in range(args.repeats):
            ours = json.loads(run([args.rosetta, "data", "bench-read", "--pairs", pairs, "--tokenizer", tokenizer,
                                   "--batch-size", str(args.batch_size)]))
            theirs = python_read_tokenise(pairs, tokenizer, args.batch_size)
            assert ours["tokens"] == theirs["tokens"], (ours, theirs)
            for result in (ours, theirs):
                if result["impl"] not in best or result["seconds"] < best[result["impl"]]["seconds"]:
                    best[result["impl"]] = result
        r, p = best["rosetta"], best["python"]
        print(f"read+tokenise {r['pairs']} pairs ({r['tokens']} tokens, identical in both), best of {args.repeats}, "
              f"{os.cpu_count()} cores")
        print(f"  rosetta : {r['pairs_per_second']:>10.0f} pairs/s  ({r['seconds']:.2f} s)")
        print(f"  python  : {p['pairs_per_second']:>10.0f} pairs/s  ({p['seconds']:.2f} s)  pyarrow + tokenizers")
        print(f"  ratio   : {r['pairs_per_second'] / p['pairs_per_second']:.2f}x (rosetta / python)")

        # Streaming conversion: ~100 MB of JSONL pairs, peak RSS of the converter.
        jsonl = os.path.join(work, "pairs.jsonl")
        table = pq.read_table(pairs, columns=["pair_id", "lang", "query", "positive"])
        with open(jsonl, "w") as out:
            written = 0
            copy = 0
            while written < 100 * 1024 * 1024:
                for row in table.to_pylist():
                    line = json.dumps({**row, "pair_id": f"{row['pair_id']}-{copy}"}) + "\n"
                    out.write(line)
                    written += len(line.encode())
                    if written >= 100 * 1024 * 1024:
                        break
                copy += 1
        # A fresh Python parent, so its RUSAGE_CHILDREN peak is the converter's alone.
        probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                 "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                 "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = run([sys.executable, "-c", probe, args.rosetta, "data", "convert", "--from", "jsonl-pairs",
                   "--out", os.path.join(work, "conv.parquet"), jsonl])
        seconds, peak_kib = out.split()
        print(f"convert {written / 2**20:.0f} MiB of JSONL pairs: {float(seconds):.1f} s, "
              f"converter peak RSS {int(peak_kib) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

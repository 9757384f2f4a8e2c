"""Evaluation benchmark: Rosetta's exact ranks + metrics vs the same computation in numpy.

Runs eval_bench (Rust) on a pooled 13,002 x 13,002 benchmark with 384-d embeddings, then
computes the same numbers with numpy from the embeddings it wrote: scores by matrix product,
exact ranks (ties by corpus order) per corpus language and pooled, mAP for every (query
language, corpus language) pair, mono / cross macro-averages, multilingual mAP, rank distance.
Prints both times, the ratio and the largest difference between the two sets of numbers.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def numpy_eval(root, meta):
    languages, groups, dim = meta["languages"], meta["groups"], meta["dim"]
    n = languages * groups
    q = np.fromfile(os.path.join(root, "queries.f32"), dtype="<f4").reshape(n, dim)
    d = np.fromfile(os.path.join(root, "docs.f32"), dtype="<f4").reshape(n, dim)
    started = time.perf_counter()
    scores = q @ d.T  # candidates are already grouped by language, in corpus order
    starts = np.arange(0, n, groups)
    doc_index = np.arange(n)
    # Relevant candidate of query i in language l: l * groups + i % groups.
    relevant = (np.arange(languages)[None, :] * groups + (np.arange(n) % groups)[:, None])  # n x L
    beaters = np.zeros((n, languages, languages), dtype=np.int64)  # query, relevant lang, corpus lang
    block = 256
    for b in range(0, n, block):
        s = scores[b : b + block]  # B x n
        rel = relevant[b : b + block]  # B x L
        t = np.take_along_axis(s, rel, axis=1)  # B x L
        above = s[:, None, :] > t[:, :, None]
        tie = (s[:, None, :] == t[:, :, None]) & (doc_index[None, None, :] < rel[:, :, None])
        beaters[b : b + block] = np.add.reduceat(above | tie, starts, axis=2)
    own = 1 + beaters[:, np.arange(languages), np.arange(languages)]  # rank in the relevant's language pool
    pooled = 1 + beaters.sum(axis=2)  # n x L
    query_lang = np.arange(n) // groups
    pair_map = np.zeros((languages, languages))
    for ql in range(languages):
        pair_map[ql] = (1.0 / own[query_lang == ql]).mean(axis=0)
    mono = np.mean(np.diag(pair_map))
    cross = pair_map[~np.eye(languages, dtype=bool)].mean()
    ranks = np.sort(pooled, axis=1)
    ap = (np.arange(1, languages + 1)[None, :] / ranks).mean(axis=1)
    multi = np.mean([ap[query_lang == l].mean() for l in range(languages)])
    distance = np.mean([(pooled.max(axis=1) - pooled.min(axis=1))[query_lang == l].mean() for l in range(languages)])
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "monolingual_map": float(mono),
        "cross_lingual_map": float(cross),
        "multilingual_map": float(multi),
        "rank_distance": float(distance),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-bench", required=True, help="path of the eval_bench example binary")
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        out = subprocess.run([args.eval_bench, root, str(args.shards)], check=True, capture_output=True, text=True)
        ours = json.loads(out.stdout)
        theirs = numpy_eval(root, ours)
    keys = ["monolingual_map", "cross_lingual_map", "multilingual_map", "rank_distance"]
    diff = max(abs(ours[k] - theirs[k]) for k in keys)
    print(f"pooled benchmark: {ours['queries']} queries x {ours['candidates']} candidates, {ours['dim']}-d, "
          f"{ours['languages']} languages; rosetta with {ours['shards']} shard(s)")
    for k in keys:
        print(f"  {k:18s} rosetta {ours[k]:.6f}  numpy {theirs[k]:.6f}")
    print(f"rosetta: {ours['seconds']:.2f} s (ranks {ours['rank_seconds']:.2f} s)   numpy: {theirs['seconds']:.2f} s   "
          f"ratio (numpy / rosetta): {theirs['seconds'] / ours['seconds']:.2f}x   largest difference: {diff:.2e}")


if __name__ == "__main__":
    sys.exit(main())

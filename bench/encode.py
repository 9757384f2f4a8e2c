"""Encoding benchmark (issue 14): a multilingual-e5-small-shaped encoder (BERT, 12 layers, 384
wide, 12 heads, 1536 feed-forward, 250,002-token vocabulary; random weights made here, saved as
a sentence-transformers directory) encodes the same texts — the synthetic corpus's questions as
queries, and passages built from its sentences up to lengths spread evenly over 48-128 tokens
(the header prints the measured token lengths) — with `rosetta eval` (one worker, the whole
process timed: loading, tokenising, encoding, ranking) and with `SentenceTransformer.encode`
(loading and encoding timed), in alternating rounds on the same cores. Prints each round, the
medians, the ratio and both peak RSS figures. `--precision bf16` runs both sides in bfloat16
(`rosetta eval --precision bf16`; the peer's model cast with `.to(torch.bfloat16)`), which on a
CPU with bf16 units (AMX, Sapphire Rapids and later; or `avx512_bf16`, as on AMD Zen 4, where
Rosetta also runs its own bf16 attention kernel) uses them. `--keep DIR` leaves the
model, benchmark and texts there (for profiling one side alone).

usage: encode.py --rosetta PATH [--texts 1200] [--rounds 2] [--batch 32] [--precision fp32|bf16]
                 [--keep DIR]
"""

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

VOCAB = 250_002


def build_model(out: str, tokenizer_json: str) -> str:
    torch.manual_seed(0)
    fast = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=VOCAB, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0)
    hf_dir = os.path.join(out, "hf")
    BertModel(config, add_pooling_layer=False).save_pretrained(hf_dir, safe_serialization=True)
    fast.save_pretrained(hf_dir)
    transformer = models.Transformer(hf_dir, max_seq_length=128)
    st = SentenceTransformer(modules=[transformer, models.Pooling(384, pooling_mode="mean"), models.Normalize()],
                             device="cpu")
    st_dir = os.path.join(out, "st")
    st.save(st_dir)
    return st_dir


def texts_from_synth(train: str, count: int, tokenizer) -> tuple:
    """A quarter queries (the synthetic questions), the rest passages built from the corpus's
    sentences up to a target length spread evenly over 48-128 tokens of `tokenizer`."""
    rows = pq.read_table(train, columns=["query", "positive", "negatives"]).to_pylist()
    queries = [r["query"] for r in rows[: count // 4]]
    sentences = [s for r in rows for s in [r["positive"]] + (r["negatives"] or [])]
    passages, next_sentence = [], 0
    for i in range(count - len(queries)):
        target = 48 + (i * 37) % 81
        parts = []
        while not parts or len(tokenizer.encode(" ".join(parts)).ids) < target:
            parts.append(sentences[next_sentence % len(sentences)])
            next_sentence += 1
        passages.append(" ".join(parts))
    return queries, passages


def token_lengths(tokenizer, texts: list) -> str:
    lengths = sorted(min(len(e.ids), 128) for e in tokenizer.encode_batch(texts))
    return f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}"


def write_benchmark(rosetta: str, out: str, queries: list, passages: list) -> str:
    raw = os.path.join(out, "raw")
    os.makedirs(os.path.join(raw, "qrels"), exist_ok=True)
    with open(os.path.join(raw, "corpus.jsonl"), "w") as f:
        for i, text in enumerate(passages):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with open(os.path.join(raw, "queries.jsonl"), "w") as f:
        for i, text in enumerate(queries):
            f.write(json.dumps({"_id": f"q{i}", "text": text}) + "\n")
    with open(os.path.join(raw, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in range(len(queries)):
            f.write(f"q{i}\td{i}\t1\n")
    bench = os.path.join(out, "bench")
    subprocess.run([rosetta, "data", "convert", "--from", "beir", "--out", bench, f"en={raw}"], check=True,
                   stdout=subprocess.DEVNULL)
    return bench


def time_rosetta(rosetta: str, st_dir: str, bench: str, out: str, batch: int, precision: str) -> tuple:
    started = time.perf_counter()
    # A small wrapper reports the peak RSS of its only child, the rosetta process.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    command = [sys.executable, "-c", wrapper, rosetta, "eval", "--model", st_dir, "--benchmark", bench, "--out", out,
               "--workers", "1", "--batch-size", str(batch), "--precision", precision, "--quiet"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return seconds, float(done.stdout.strip().splitlines()[-1])


PEER = """
import resource, sys, time
started = time.perf_counter()
from sentence_transformers import SentenceTransformer
import json
texts = json.load(open(sys.argv[2]))
model = SentenceTransformer(sys.argv[1], device="cpu", local_files_only=True)
if sys.argv[4] == "bf16":
    import torch
    model = model.to(torch.bfloat16)
model.encode(texts["queries"], batch_size=int(sys.argv[3]))
model.encode(texts["passages"], batch_size=int(sys.argv[3]))
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def time_peer(st_dir: str, texts_file: str, batch: int, precision: str) -> tuple:
    done = subprocess.run([sys.executable, "-c", PEER, st_dir, texts_file, str(batch), precision], check=True,
                          capture_output=True, text=True)
    seconds, rss = done.stdout.split()
    return float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rosetta", required=True)
    parser.add_argument("--texts", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--keep", help="write the model, benchmark and texts here and keep them")
    args = parser.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        subprocess.run([args.rosetta, "data", "synth", "--out", os.path.join(tmp, "data"), "--train-people", "200",
                        "--mono-people", "0", "--benchmark-people", "2", "--ood-people", "0"], check=True,
                       stdout=subprocess.DEVNULL)
        st_dir = build_model(tmp, os.path.join(tmp, "data", "tokenizer.json"))
        tokenizer = Tokenizer.from_file(os.path.join(tmp, "data", "tokenizer.json"))
        queries, passages = texts_from_synth(os.path.join(tmp, "data", "train.parquet"), args.texts, tokenizer)
        bench = write_benchmark(args.rosetta, tmp, queries, passages)
        texts_file = os.path.join(tmp, "texts.json")
        json.dump({"queries": queries, "passages": passages}, open(texts_file, "w"))
        print(f"model: BERT 12 x 384, vocabulary {VOCAB:,}, random; {len(queries)} queries + {len(passages)} passages "
              f"(tokens min/median/max: queries {token_lengths(tokenizer, queries)}, passages "
              f"{token_lengths(tokenizer, passages)}), batch {args.batch}, {args.precision}, 1 process, "
              f"{os.cpu_count()} cores")
        ours, theirs = [], []
        def report(round_: int, name: str, result: tuple) -> tuple:
            print(f"round {round_} {name:22s} {result[0]:7.1f} s  peak RSS {result[1]:7.0f} MiB", flush=True)
            return result

        for round_ in range(1, args.rounds + 1):
            out = os.path.join(tmp, f"eval{round_}")
            ours.append(report(round_, "rosetta", time_rosetta(args.rosetta, st_dir, bench, out, args.batch, args.precision)))
            theirs.append(report(round_, "sentence-transformers", time_peer(st_dir, texts_file, args.batch, args.precision)))
        ours_s, theirs_s = statistics.median(s for s, _ in ours), statistics.median(s for s, _ in theirs)
        # Each round's own ratio too: on a shared machine the speed drifts between rounds, and
        # the two sides of one round ran back to back.
        per_round = [t / o for (o, _), (t, _) in zip(ours, theirs)]
        print(f"median: rosetta {ours_s:.1f} s, sentence-transformers {theirs_s:.1f} s -> rosetta is "
              f"{theirs_s / ours_s:.2f}x the peer's speed (per round: "
              f"{', '.join(f'{r:.2f}' for r in per_round)}; median {statistics.median(per_round):.2f}x); "
              f"peak RSS {max(r for _, r in ours):.0f} vs {max(r for _, r in theirs):.0f} MiB")


if __name__ == "__main__":
    main()

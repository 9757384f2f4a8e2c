"""Training-throughput benchmark (issues 4 and 14): the same encoder, the same batches, the same
optimiser (AdamW 3e-5, wd 0.01, clip 1.0), trained by Rosetta and by PyTorch with
sentence-transformers' MultipleNegativesRankingLoss (scale 20 = temperature 0.05), in
alternating rounds on the same cores; medians of the rounds and both peak RSS figures.

Shapes: `xlmr-6x384` (issue 4: XLM-R-shaped, 6 layers, 384 wide, the synthetic corpus's small
vocabulary, passages at 128 tokens), `e5-small` (issue 14: multilingual-e5-small's shape,
BERT 12 x 384 with a 250,002-token vocabulary, queries of ~16 tokens, passages of 48-128) and
`xlmr-base` (issue 14, for GPUs: XLM-R base, 12 x 768, 12 heads, 3,072 feed-forward, 250,002
tokens, 278M parameters; the same inputs as e5-small). Both sides are trained on the same
batches, so they do the same model FLOPs: Rosetta's count (6N + 12LHs per token, see
rosetta_worker::mfu) over its measured time and the peer's gives each side's achieved TFLOP/s
and MFU against the peak Rosetta measured on the device (or ROSETTA_PEAK_TFLOPS).
On CUDA (--device cuda:N) both sides run under bf16 autocast, as Rosetta's trainer does there;
--precision bf16 runs both under bf16 autocast on the CPU too (torch.autocast("cpu") on the peer's
side, `training.precision: bf16` on Rosetta's), --precision fp32 neither.

usage: train_step.py --rosetta-example PATH [--shape xlmr-6x384|e5-small|xlmr-base] [--steps N] [--rounds R]
                     [--batch 32] [--device cpu|cuda:N] [--precision auto|fp32|bf16]
"""

import argparse
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
from sentence_transformers import SentenceTransformer, losses, models
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

SHAPES = ("xlmr-6x384", "e5-small", "xlmr-base")
# Shapes with a real model's 250,002-token vocabulary and mixed query / passage lengths.
REAL_SHAPES = ("e5-small", "xlmr-base")


def build_model(out: str, tokenizer_json: str, shape: str = "xlmr-6x384") -> str:
    torch.manual_seed(0)
    fast = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    hf_dir = os.path.join(out, "hf")
    if shape == "e5-small":
        # multilingual-e5-small: BERT, 12 x 384, 12 heads, 1536 feed-forward, 250,002 tokens.
        config = BertConfig(vocab_size=250_002, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0)
        BertModel(config, add_pooling_layer=False).save_pretrained(hf_dir, safe_serialization=True)
    elif shape == "xlmr-base":
        # XLM-R base: 12 x 768, 12 heads, 3072 feed-forward, 250,002 tokens (the synthetic
        # tokenizer's [PAD] is id 0, so positions count from 1 as in RoBERTa with its pad id).
        config = XLMRobertaConfig(vocab_size=250_002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                                  pad_token_id=0, layer_norm_eps=1e-5)
        XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(hf_dir, safe_serialization=True)
    else:
        config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                                  intermediate_size=1536, max_position_embeddings=130, type_vocab_size=1,
                                  pad_token_id=0, layer_norm_eps=1e-5)
        XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(hf_dir, safe_serialization=True)
    fast.save_pretrained(hf_dir)
    transformer = models.Transformer(hf_dir, max_seq_length=128)
    pooling = models.Pooling(config.hidden_size, pooling_mode="mean")
    st = SentenceTransformer(modules=[transformer, pooling, models.Normalize()],
                             device="cpu")
    st_dir = os.path.join(out, "st")
    st.save(st_dir)
    return st_dir


def batches_from_synth(train: str, batch: int, count: int, shape: str = "xlmr-6x384") -> list:
    rows = pq.read_table(train, columns=["query", "positive", "negatives"]).to_pylist()
    if batch * count > len(rows):
        sys.exit(f"{train} has {len(rows)} pairs: too few for {count} batches of {batch} (lower --steps or --batch)")
    out = []
    for b in range(count):
        chunk = rows[b * batch:(b + 1) * batch]
        if shape in REAL_SHAPES:
            # Passages of one to four sentences: 48-128 tokens, lengths mixed as in a real corpus.
            passages = [" ".join([r["positive"]] + (r["negatives"] or []) * (1 + i % 4)) for i, r in enumerate(chunk)]
        else:
            # Passages of a whole paragraph and more, so they reach the 128-token limit.
            passages = [" ".join([r["positive"]] + (r["negatives"] or []) * 6) for r in chunk]
        out.append(([r["query"] for r in chunk], passages))
    return out


def python_train(st_dir: str, batches: list, steps: int, device: str = "cpu", precision: str = "auto") -> dict:
    model = SentenceTransformer(st_dir, device=device, local_files_only=True)
    on_cuda = device.startswith("cuda")
    bf16 = precision == "bf16" or (precision == "auto" and on_cuda)
    autocast = torch.autocast("cuda" if on_cuda else "cpu", dtype=torch.bfloat16, enabled=bf16)
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    decay = [p for n, p in model.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(".bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-5)

    def step(i: int) -> float:
        queries, passages = batches[i % len(batches)]
        features = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in model.tokenize(texts).items()} for texts in (queries, passages)]
        with autocast:
            loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    for i in range(2):
        step(i)
    started = time.perf_counter()
    samples = 0
    loss = 0.0
    for i in range(steps):
        samples += len(batches[(i + 2) % len(batches)][0])
        loss = step(i + 2)
    if on_cuda:
        torch.cuda.synchronize()  # the last optimiser step may still be queued
    seconds = time.perf_counter() - started
    return {"impl": "pytorch", "samples_per_second": samples / seconds, "seconds": seconds, "last_loss": loss,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rosetta", required=True, help="the rosetta binary (for data synth)")
    parser.add_argument("--rosetta-example", required=True, help="the train_bench example binary")
    parser.add_argument("--shape", choices=SHAPES, default="xlmr-6x384")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (after 2 untimed)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, alternating which side runs first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (both sides)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="both sides: auto = bf16 autocast on CUDA, fp32 on CPU; bf16 = autocast anywhere")
    args = parser.parse_args()
    results = {"rosetta": [], "pytorch": []}
    with tempfile.TemporaryDirectory(prefix="rosetta-train-bench-") as work:
        subprocess.run([args.rosetta, "data", "synth", "--out", os.path.join(work, "data")], check=True,
                       capture_output=True)
        st_dir = build_model(work, os.path.join(work, "data", "tokenizer.json"), args.shape)
        batches = batches_from_synth(os.path.join(work, "data", "train.parquet"), args.batch, args.steps + 2, args.shape)
        batches_path = os.path.join(work, "batches.json")
        with open(batches_path, "w") as f:
            json.dump(batches, f)
        python_side = [sys.executable, os.path.abspath(__file__), "--python-side", st_dir, batches_path,
                       str(args.steps), args.device, args.precision]
        for round_index in range(max(1, args.rounds)):
            order = ("rosetta", "pytorch") if round_index % 2 == 0 else ("pytorch", "rosetta")
            for side in order:
                # Each side in its own process, so that peak RSS is its own.
                command = ([args.rosetta_example, st_dir, batches_path, str(args.steps), args.device, args.precision]
                           if side == "rosetta" else python_side)
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                results[side].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {round_index + 1}: " + "  ".join(
                f"{side} {results[side][-1]['samples_per_second']:.2f} samples/s" for side in results), flush=True)
    ours, theirs = results["rosetta"][0], results["pytorch"][0]
    print(f"train step: {args.shape}, batch {args.batch}, {args.steps} timed steps x {len(results['rosetta'])} rounds, "
          f"{args.device}, precision {args.precision}, {os.cpu_count()} cores, libtorch threads {ours['threads']} / {theirs['threads']}")
    medians = {}
    for side, rounds in results.items():
        medians[side] = statistics.median(r["samples_per_second"] for r in rounds)
        peak = max(r["peak_rss_mib"] for r in rounds)
        listed = " ".join(f"{r['samples_per_second']:.2f}" for r in rounds)
        print(f"  {side:<8}: {medians[side]:7.2f} samples/s median (rounds: {listed})  peak RSS {peak:6.0f} MiB  "
              f"last loss {rounds[-1]['last_loss']:.4f}")
    print(f"  ratio   : {medians['rosetta'] / medians['pytorch']:.2f}x (rosetta / pytorch)")
    # The same batches, so the same model FLOPs per sample on both sides (Rosetta's count).
    flops_per_sample = ours["model_flops"] / ours["samples"]
    peak = statistics.median(r["peak_flops"] for r in results["rosetta"])
    achieved = {side: medians[side] * flops_per_sample for side in medians}
    print(f"  MFU     : rosetta {achieved['rosetta'] / peak:.1%} ({achieved['rosetta'] / 1e12:.2f} TFLOP/s), "
          f"pytorch {achieved['pytorch'] / peak:.1%} ({achieved['pytorch'] / 1e12:.2f} TFLOP/s) of "
          f"{peak / 1e12:.1f} TFLOP/s ({ours['peak_source']}); {flops_per_sample / 1e9:.1f} GFLOP per sample")
    if "checkpoint_write" in ours:
        w, t, r = ours["checkpoint_write"], ours["checkpoint_write_tch"], ours["checkpoint_restore"]
        print(f"  checkpoint ({ours['checkpoint_mb']:.0f} MB, weights + AdamW state): streaming write {w['seconds']:.2f} s, "
              f"+{w['extra_rss_mib']:.0f} MiB RSS; tch's safetensors writer {t['seconds']:.2f} s, "
              f"+{t['extra_rss_mib']:.0f} MiB; streaming restore {r['seconds']:.2f} s, +{r['extra_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--python-side":
        print(json.dumps(python_train(sys.argv[2], json.load(open(sys.argv[3])), int(sys.argv[4]), sys.argv[5],
                                      sys.argv[6])))
    else:
        main()

"""Training-throughput benchmark (issue 4): the same XLM-R-shaped encoder (6 layers, 384 wide),
the same batches (32 pairs, passages truncated at 128 tokens), the same optimiser (AdamW 3e-5,
wd 0.01, clip 1.0), trained by Rosetta and by PyTorch with sentence-transformers'
MultipleNegativesRankingLoss (scale 20 = temperature 0.05), in one run on the same cores.

On CUDA (--device cuda:N) both sides run under bf16 autocast, as Rosetta's trainer does there.

usage: train_step.py --rosetta-example PATH [--steps N] [--batch 32] [--device cpu|cuda:N]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import torch
from sentence_transformers import SentenceTransformer, losses, models
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel


def build_model(out: str, tokenizer_json: str) -> str:
    torch.manual_seed(0)
    fast = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                              intermediate_size=1536, max_position_embeddings=130, type_vocab_size=1,
                              pad_token_id=0, layer_norm_eps=1e-5)
    hf_dir = os.path.join(out, "hf")
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(hf_dir, safe_serialization=True)
    fast.save_pretrained(hf_dir)
    transformer = models.Transformer(hf_dir, max_seq_length=128)
    st = SentenceTransformer(modules=[transformer, models.Pooling(384, pooling_mode="mean"), models.Normalize()],
                             device="cpu")
    st_dir = os.path.join(out, "st")
    st.save(st_dir)
    return st_dir


def batches_from_synth(train: str, batch: int, count: int) -> list:
    rows = pq.read_table(train, columns=["query", "positive", "negatives"]).to_pylist()
    out = []
    for b in range(count):
        chunk = rows[b * batch:(b + 1) * batch]
        # Passages of a whole paragraph and more, so they reach the 128-token limit.
        passages = [" ".join([r["positive"]] + (r["negatives"] or []) * 6) for r in chunk]
        out.append(([r["query"] for r in chunk], passages))
    return out


def python_train(st_dir: str, batches: list, steps: int, device: str = "cpu") -> dict:
    model = SentenceTransformer(st_dir, device=device, local_files_only=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
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
    seconds = time.perf_counter() - started
    return {"impl": "pytorch", "samples_per_second": samples / seconds, "seconds": seconds, "last_loss": loss,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rosetta", required=True, help="the rosetta binary (for data synth)")
    parser.add_argument("--rosetta-example", required=True, help="the train_bench example binary")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--python-only", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (both sides)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rosetta-train-bench-") as work:
        subprocess.run([args.rosetta, "data", "synth", "--out", os.path.join(work, "data")], check=True,
                       capture_output=True)
        st_dir = build_model(work, os.path.join(work, "data", "tokenizer.json"))
        batches = batches_from_synth(os.path.join(work, "data", "train.parquet"), args.batch, args.steps + 2)
        batches_path = os.path.join(work, "batches.json")
        with open(batches_path, "w") as f:
            json.dump(batches, f)
        ours = json.loads(subprocess.run([args.rosetta_example, st_dir, batches_path, str(args.steps), args.device], check=True,
                                         capture_output=True, text=True).stdout.strip().splitlines()[-1])
        theirs = python_train(st_dir, batches, args.steps, args.device)
    print(f"train step: XLM-R-shaped 6x384, batch {args.batch}, passages at 128 tokens, {args.steps} timed steps, "
          f"{args.device}, {os.cpu_count()} cores, libtorch threads {ours['threads']} / {theirs['threads']}")
    for r in (ours, theirs):
        print(f"  {r['impl']:<8}: {r['samples_per_second']:7.2f} samples/s  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
              f"last loss {r['last_loss']:.4f}")
    print(f"  ratio   : {ours['samples_per_second'] / theirs['samples_per_second']:.2f}x (rosetta / pytorch)")


if __name__ == "__main__":
    main()

# Rosetta's two everyday commands (see README): `make demo` and `make test`.
# Both run scripts/setup.sh first, which installs the Python side (libtorch from pip,
# the comparison peers) into a project-local venv once; later runs cost nothing.

CARGO_TARGET_DIR ?= $(CURDIR)/target
ROSETTA_VENV ?= $(CURDIR)/.venv
export CARGO_TARGET_DIR ROSETTA_VENV
# tch (the libtorch bindings) builds against the venv's torch==2.11.0 (DESIGN.md §6).
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(ROSETTA_VENV)/bin:$(PATH)

.PHONY: setup demo experiment test bench-encode bench-attention bench-gemm bench-optim bench-train-e5 bench-train-e5-bf16 bench-cluster-e5 bench-cluster-e5-bf16 bench-train-gpu bench-data bench-train bench-plan bench-collectives bench-cluster bench-eval bench-memory lint

setup:
	@scripts/setup.sh

## The main job on the embedded default (synthetic corpus, CPU, minutes).
demo: setup
	cargo run --release --bin rosetta -- demo

## The embedded experiment: x-x-mono, x-y and hybrid x 3 seeds on the synthetic corpus,
## evaluated in- and out-of-domain, with significance tests (about 16 minutes on 2 cores;
## rerunning skips finished cells). Report: runs/experiment/study/report.html.
experiment: setup
	cargo build --release --bin rosetta
	test -f runs/experiment/data/benchmark-ood/benchmark.yaml || $(CARGO_TARGET_DIR)/release/rosetta data synth --out runs/experiment/data
	$(CARGO_TARGET_DIR)/release/rosetta experiment --config configs/experiment.yaml

## The whole test suite (unit, property and integration tests). In the release profile, as
## `make demo` builds: the two commands share one build of every dependency (libtorch's
## bindings, arrow, tonic, ...) instead of compiling each twice.
test: setup
	cargo test --release --workspace --all-targets

## Data-pipeline benchmark: read + tokenise 1M synthetic pairs, Rosetta vs pyarrow + tokenizers.
bench-data: setup
	cargo build --release --bin rosetta
	bench/data-pipeline

## Training-step benchmark: Rosetta vs PyTorch + sentence-transformers (MNRL), same model and batches.
bench-train: setup
	cargo build --release --bin rosetta
	cargo build --release -p rosetta-worker --example train_bench
	bench/train-step

## Collective benchmark: TCP ring all-reduce bus bandwidth vs torch.distributed gloo, 2 processes.
bench-collectives: setup
	cargo build --release -p rosetta-worker --example ring_bench
	bench/collectives

## Scheduler benchmark: plans/s for B = 100 on a 10M-pair index, and index memory.
bench-plan:
	cargo run --release -p rosetta-coordinator --example plan_bench

## Lints every crate and target, the kernel benchmarks (the model crate's `bench` feature) included.
lint: setup
	cargo clippy --release --workspace --all-targets --all-features -- -D warnings

## Evaluation benchmark: exact ranks + metrics on a pooled 13k x 13k benchmark, Rosetta vs numpy.
bench-eval: setup
	cargo build --release -p rosetta-eval --example eval_bench
	bench/eval

## End-to-end 2-worker training throughput: rosetta train vs PyTorch DDP (gloo), same batches.
bench-cluster: setup
	cargo build --release --bin rosetta
	bench/cluster-train

## Encoding on a real shape (multilingual-e5-small: 12 x 384, 250k vocabulary): rosetta eval vs
## SentenceTransformer.encode on the same texts, alternating rounds.
bench-encode: setup
	cargo build --release --bin rosetta
	bench/encode

## Training on multilingual-e5-small's shape (12 x 384, 250,002-token vocabulary), one process:
## Rosetta vs PyTorch + sentence-transformers (MNRL), 3 alternating rounds, peak RSS of both.
bench-train-e5: setup
	cargo build --release --bin rosetta
	cargo build --release -p rosetta-worker --example train_bench
	bench/train-step --shape e5-small --steps 3 --rounds 3

## The same in bf16 autocast on both sides (training.precision: bf16; torch.autocast("cpu")):
## for CPUs with bf16 units (amx_bf16 or avx512_bf16 in /proc/cpuinfo).
bench-train-e5-bf16: setup
	cargo build --release --bin rosetta
	cargo build --release -p rosetta-worker --example train_bench
	bench/train-step --shape e5-small --steps 3 --rounds 3 --precision bf16

## The same shape on 2 workers: rosetta train (sparse and dense embedding all-reduce, bytes
## per step) vs PyTorch DDP on gloo, 2 alternating rounds.
bench-cluster-e5: setup
	cargo build --release --bin rosetta
	bench/cluster-train --shape e5-small --steps 3 --repeat 2 --dense-too

## 2 workers on e5-small's shape in bf16 autocast on both sides (rosetta train vs DDP gloo).
bench-cluster-e5-bf16: setup
	cargo build --release --bin rosetta
	bench/cluster-train --shape e5-small --steps 3 --repeat 2 --precision bf16

## Training on XLM-R base's shape (12 x 768, 250,002-token vocabulary, 278M parameters) on a
## GPU, global batches of 100 and 256, bf16 autocast on both sides, one process each: Rosetta vs
## PyTorch + sentence-transformers, 3 alternating rounds, each side's MFU (GPU=cuda:N).
GPU ?= cuda:0
bench-train-gpu: setup
	cargo build --release --bin rosetta
	cargo build --release -p rosetta-worker --example train_bench
	bench/train-step --shape xlmr-base --device $(GPU) --batch 100 --steps 10 --rounds 3
	bench/train-step --shape xlmr-base --device $(GPU) --batch 256 --steps 10 --rounds 3

## Rosetta's bf16 attention kernel vs libtorch's SDPA, one layer of 32 x 91 tokens, heads of 32
## and 64, one thread, alternating rounds (CPUs with avx512_bf16 and no AMX).
bench-attention: setup
	cargo build --release -p rosetta-model --features bench --example attention_bench
	$(CARGO_TARGET_DIR)/release/examples/attention_bench

## Rosetta's fp32 linear kernel against libtorch's (MKL) on one e5-small layer's four linear
## layers, one thread, alternating rounds (CPUs with AVX-512).
bench-gemm: setup
	cargo build --release -p rosetta-model --features bench --example gemm_bench
	$(CARGO_TARGET_DIR)/release/examples/gemm_bench

## AdamW over multilingual-e5-small's 118M parameters: Rosetta vs torch.optim.AdamW (for-loop,
## foreach, fused), alternating rounds, with the memory bandwidth each reaches.
bench-optim: setup
	cargo build --release -p rosetta-worker --example optim_bench
	bench/optim

## Worker memory and start-up for 1M and 10M synthetic groups (ROSETTA_OLD_BINARY: the design
## before the row store, for comparison); needs ~8 GB of disk under /tmp.
bench-memory: setup
	cargo build --release --bin rosetta
	bench/worker-memory

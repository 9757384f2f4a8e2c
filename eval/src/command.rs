//! The command lines of evaluation: `rosetta eval` ([`EvalCommand`]) and the shard process it
//! starts per worker, `rosetta eval-shard` ([`EvalShardCommand`]); each one type that clap
//! parses and that turns back into its arguments, so that the coordinator's in-training
//! evaluation, the experiment and the driver start them from typed values.

use std::path::PathBuf;

use clap::Args;
use rosetta_common::argv::Argv;
use rosetta_worker_config::DeviceSpec;
use rosetta_worker_config::precision::Precision;

use crate::driver::ShardRequest;

/// Evaluate a model on LAReQA-style or qrels benchmarks, with exact ranks over a sharded corpus.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct EvalCommand {
    /// The model: a sentence-transformers or Hugging Face directory, a checkpoint directory
    /// (`RUN/checkpoints/step-N`), or a run directory (its latest committed checkpoint).
    #[arg(long)]
    pub model: PathBuf,
    /// A benchmark directory (benchmark.yaml + queries/corpus/qrels.parquet); repeat for several.
    #[arg(long, required = true)]
    pub benchmark: Vec<PathBuf>,
    /// Worker processes; each encodes the queries and one shard of the corpus. Ranks are exact
    /// whatever the number (the corpus is never gathered in one place).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Report directory; one sub-directory per benchmark [default: RUN/eval/step-N for a checkpoint, ./runs/eval for a model directory].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Texts per encoder forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Device of the workers (`cpu`, `cuda`, `cuda:N`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Encoder precision: `auto` (bf16 on CUDA, fp32 on CPU), `fp32` or `bf16`. Scores and ranks
    /// are always computed in fp32. On a CPU with AMX (`amx_bf16` in /proc/cpuinfo) `bf16`
    /// encodes about twice as fast as `fp32`; with `avx512_bf16` alone (AMD Zen 4) about 1.7x.
    #[arg(long, default_value = "auto")]
    pub precision: Precision,
    /// Torch threads per worker [default: CPU cores / workers].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Candidates per query and pool in TREC run files (with qrels.txt, under `trec/`); 0 (the
    /// default) writes none. A LAReQA benchmark gets one run per language pair plus the pooled
    /// one: the size is printed before they are written (XQuAD-R at depth 1000: several GB).
    #[arg(long, default_value_t = 0)]
    pub trec_depth: usize,
    /// Also write the query and corpus embeddings with their ids as Parquet into this directory.
    #[arg(long)]
    pub save_embeddings: Option<PathBuf>,
    /// Keep the tokenised queries and passages in this directory, so that evaluating the next
    /// checkpoint does not tokenise them again [default: RUN/eval/token-cache for a checkpoint
    /// of a run; none for a model directory]. Files are named by a digest of the tokenizer and
    /// the texts: a changed benchmark or tokenizer never reads stale ids.
    #[arg(long)]
    pub token_cache: Option<PathBuf>,
    /// Print only the report paths.
    #[arg(long)]
    pub quiet: bool,
    /// Also send each report to this coordinator (e.g. `http://HOST:50051`), which exports it
    /// as `rosetta_eval_*` on its Prometheus endpoint.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Token file for `--coordinator` (default: `$ROSETTA_TOKEN`).
    #[arg(long, requires = "coordinator")]
    pub token_file: Option<PathBuf>,
    /// CA certificate for an `https://` `--coordinator`.
    #[arg(long, requires = "coordinator")]
    pub tls_ca: Option<PathBuf>,
}

impl EvalCommand {
    /// An evaluation of `model` on `benchmarks` with every other setting at its default.
    pub fn new(model: PathBuf, benchmarks: Vec<PathBuf>) -> Self {
        Self {
            model,
            benchmark: benchmarks,
            workers: 1,
            out: None,
            batch_size: 64,
            device: DeviceSpec::Cpu,
            precision: Precision::Auto,
            threads: None,
            trec_depth: 0,
            save_embeddings: None,
            token_cache: None,
            quiet: false,
            coordinator: None,
            token_file: None,
            tls_ca: None,
        }
    }

    /// The arguments of `rosetta eval` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        Argv::new("eval")
            .path("--model", &self.model)
            .repeated_paths("--benchmark", self.benchmark.iter().map(PathBuf::as_path))
            .value("--workers", self.workers)
            .optional_path("--out", self.out.as_deref())
            .value("--batch-size", self.batch_size)
            .value("--device", self.device)
            .value("--precision", self.precision.name())
            .optional("--threads", self.threads)
            .value("--trec-depth", self.trec_depth)
            .optional_path("--save-embeddings", self.save_embeddings.as_deref())
            .optional_path("--token-cache", self.token_cache.as_deref())
            .flag("--quiet", self.quiet)
            .optional("--coordinator", self.coordinator.as_ref())
            .optional_path("--token-file", self.token_file.as_deref())
            .optional_path("--tls-ca", self.tls_ca.as_deref())
    }

    /// The shard process of `request` in this evaluation: `threads` libtorch threads, the
    /// token cache in `token_cache`.
    pub fn shard(&self, request: &ShardRequest<'_>, threads: usize, token_cache: Option<PathBuf>) -> EvalShardCommand {
        EvalShardCommand {
            model: self.model.clone(),
            benchmark: request.benchmark.to_path_buf(),
            shard: request.shard,
            shards: request.shards,
            batch_size: self.batch_size,
            device: self.device,
            threads,
            depth: request.depth,
            precision: self.precision,
            save_embeddings: self.save_embeddings.as_ref().map(|dir| dir.join(request.task_name)),
            token_cache,
        }
    }
}

/// One shard of an evaluation (started by `rosetta eval`; speaks the binary protocol of
/// [`crate::wire`] on stdin/stdout).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct EvalShardCommand {
    /// The model, as `rosetta eval --model` takes it.
    #[arg(long)]
    pub model: PathBuf,
    /// The benchmark directory.
    #[arg(long)]
    pub benchmark: PathBuf,
    /// This shard (0-based).
    #[arg(long)]
    pub shard: usize,
    /// Shards in all.
    #[arg(long)]
    pub shards: usize,
    /// Texts per forward pass.
    #[arg(long)]
    pub batch_size: usize,
    /// The device.
    #[arg(long)]
    pub device: DeviceSpec,
    /// libtorch threads.
    #[arg(long)]
    pub threads: usize,
    /// Candidates per query kept for the run files.
    #[arg(long)]
    pub depth: usize,
    /// Encoder precision.
    #[arg(long)]
    pub precision: Precision,
    /// Where this benchmark's embeddings go, if anywhere.
    #[arg(long)]
    pub save_embeddings: Option<PathBuf>,
    /// The token cache directory, if any.
    #[arg(long)]
    pub token_cache: Option<PathBuf>,
}

impl EvalShardCommand {
    /// The arguments of `rosetta eval-shard` that parse back into this value.
    pub fn to_args(&self) -> Argv {
        Argv::new("eval-shard")
            .path("--model", &self.model)
            .path("--benchmark", &self.benchmark)
            .value("--shard", self.shard)
            .value("--shards", self.shards)
            .value("--batch-size", self.batch_size)
            .value("--device", self.device)
            .value("--threads", self.threads)
            .value("--depth", self.depth)
            .value("--precision", self.precision.name())
            .optional_path("--save-embeddings", self.save_embeddings.as_deref())
            .optional_path("--token-cache", self.token_cache.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "rosetta")]
    enum Cli {
        Eval(EvalCommand),
        EvalShard(EvalShardCommand),
    }

    fn parse(argv: Argv) -> Cli {
        Cli::try_parse_from(std::iter::once("rosetta".to_string()).chain(argv.into_vec())).unwrap()
    }

    #[test]
    fn evaluation_command_lines_parse_back_into_their_values() {
        let mut full = EvalCommand::new("/runs/a b/checkpoints/step-9".into(), vec!["/b/1".into(), "/b/2".into()]);
        full.workers = 3;
        full.out = Some("/out".into());
        full.batch_size = 8;
        full.device = DeviceSpec::Cuda(1);
        full.precision = Precision::Bf16;
        full.threads = Some(2);
        full.trec_depth = 100;
        full.save_embeddings = Some("/emb".into());
        full.token_cache = Some("/cache".into());
        full.quiet = true;
        full.coordinator = Some("https://c:1".into());
        full.token_file = Some("/t".into());
        full.tls_ca = Some("/ca.pem".into());
        for command in [EvalCommand::new("/m".into(), vec!["/b".into()]), full.clone()] {
            match parse(command.to_args()) {
                Cli::Eval(parsed) => assert_eq!(parsed, command),
                other => panic!("{other:?}"),
            }
        }
        let request = ShardRequest { benchmark: "/b/1".as_ref(), task_name: "one", shard: 1, shards: 3, depth: 100 };
        let shard = full.shard(&request, 4, Some("/cache".into()));
        assert_eq!(shard.save_embeddings.as_deref(), Some("/emb/one".as_ref()));
        match parse(shard.to_args()) {
            Cli::EvalShard(parsed) => assert_eq!(parsed, shard),
            other => panic!("{other:?}"),
        }
    }
}

//! `rosetta eval` (and its hidden per-shard worker `rosetta eval-shard`) and `rosetta export`:
//! flags mapped to the evaluation driver of `rosetta-eval` (which starts one shard process per
//! worker and drives the exact-rank rounds) and to the shard and model loading of
//! `rosetta-worker`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rosetta_common::RunDir;
use rosetta_eval::driver::{EvalRun, ShardRequest, evaluate};
use rosetta_eval::report::EvalReport;
use rosetta_worker::eval_shard::{EvalShardConfig, ModelToLoad, run_eval_shard};
use rosetta_worker::precision::Precision;
use rosetta_worker::process::{ClientTls, CoordinatorEndpoint};
use rosetta_worker::sections::DeviceSpec;

/// Evaluate a model on LAReQA-style or qrels benchmarks, with exact ranks over a sharded corpus.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
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

/// One shard of an evaluation (started by `rosetta eval`; speaks the binary protocol of
/// rosetta_eval::wire on stdin/stdout).
#[derive(Debug, Args)]
pub struct EvalShardArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    benchmark: PathBuf,
    #[arg(long)]
    shard: usize,
    #[arg(long)]
    shards: usize,
    #[arg(long)]
    batch_size: usize,
    #[arg(long)]
    device: DeviceSpec,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    depth: usize,
    #[arg(long)]
    precision: Precision,
    #[arg(long)]
    save_embeddings: Option<PathBuf>,
    #[arg(long)]
    token_cache: Option<PathBuf>,
}

/// Export a checkpoint as a sentence-transformers directory (loads in Python unchanged).
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint directory (`RUN/checkpoints/step-N`) or a run directory (its latest checkpoint).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Export instead the model a run config's `model:` section starts from, before any
    /// training (a preset initialised from `model.seed`): the zero-shot baseline, and one
    /// initialisation several runs can share as `model.path`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The directory to write (replaced only once the new export is complete).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `rosetta export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let encoder = match (&args.model, &args.config) {
        (_, Some(config)) => rosetta::run_config::RunConfig::load(config)?.model.build_encoder(tch::Device::Cpu)?,
        (Some(path), None) => {
            let model = ModelToLoad::resolve(path)?;
            if matches!(model, ModelToLoad::Pretrained(_)) {
                bail!("{} is already a model directory; export takes a checkpoint or a run directory", path.display());
            }
            model.load(tch::Device::Cpu)?
        }
        (None, None) => bail!("give --model (a checkpoint or run directory) or --config (a run config)"),
    };
    rosetta_worker::export::export_sentence_transformers(&encoder, &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}

/// Runs `rosetta eval`: prints the report directories.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.device == DeviceSpec::Cpu
        && let Some(warning) = args.precision.slow_on(tch::Device::Cpu)
    {
        eprintln!("warning: --precision {warning}");
    }
    let model = ModelToLoad::resolve(&args.model)?;
    // A checkpoint's reports go to RUN/eval/step-N, where in-training evaluation writes too (a
    // checkpoint directory may be pruned later; its reports should not go with it).
    let (default_out, default_cache) = match &model {
        ModelToLoad::Pretrained(_) => (PathBuf::from("runs/eval"), None),
        ModelToLoad::Checkpoint { dir, .. } => match RunDir::of_checkpoint(dir) {
            Some((run_dir, step)) => (run_dir.eval_step(step), Some(run_dir.token_cache())),
            None => (dir.join("eval"), None),
        },
    };
    let token_cache = args.token_cache.clone().or(default_cache);
    let run = EvalRun {
        benchmarks: args.benchmark.clone(),
        shards: args.workers,
        out: args.out.clone().unwrap_or(default_out),
        model_label: model.label(),
        step: model.step(),
        trec_depth: args.trec_depth,
        quiet: args.quiet,
    };
    let threads = args.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.workers.max(1)).max(1)
    });
    let program = std::env::current_exe().context("locating the rosetta binary")?;
    let shard_command = |request: &ShardRequest<'_>| {
        let mut command = Command::new(&program);
        command
            .arg("eval-shard")
            .arg("--model")
            .arg(&args.model)
            .arg("--benchmark")
            .arg(request.benchmark)
            .args(["--shard", &request.shard.to_string(), "--shards", &request.shards.to_string()])
            .args(["--batch-size", &args.batch_size.to_string(), "--device", &args.device.to_string()])
            .args(["--threads", &threads.to_string(), "--depth", &request.depth.to_string()])
            .args(["--precision", args.precision.name()])
            .env("OMP_NUM_THREADS", threads.to_string());
        if let Some(dir) = &args.save_embeddings {
            command.arg("--save-embeddings").arg(dir.join(request.task_name));
        }
        if let Some(dir) = &token_cache {
            command.arg("--token-cache").arg(dir);
        }
        command
    };
    for evaluated in evaluate(&run, &shard_command)? {
        if let Some(address) = &args.coordinator {
            send_report(address, &args, &evaluated.report)?;
        }
        println!("{}", evaluated.dir.display());
    }
    Ok(())
}

/// Sends a report to a coordinator's `ReportEvaluation`.
fn send_report(address: &str, args: &EvalArgs, report: &EvalReport) -> anyhow::Result<()> {
    let token = rosetta_deploy::token::read_token(args.token_file.as_deref())?;
    let tls = args.tls_ca.as_deref().map(|ca| ClientTls::from_file(ca, None)).transpose()?;
    let endpoint = CoordinatorEndpoint { url: address.to_string(), tls };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = rosetta_worker::process::client::connect(&endpoint, &token, Duration::from_secs(10)).await?;
        let report_json = serde_json::to_string(report)?;
        client
            .report_evaluation(rosetta_proto::v1::ReportEvaluationRequest { report_json })
            .await
            .map_err(|s| anyhow::anyhow!("sending the report to {address}: {} ({:?})", s.message(), s.code()))?;
        anyhow::Ok(())
    })
}

/// Runs one shard (`rosetta eval-shard`).
pub fn run_shard(args: EvalShardArgs) -> anyhow::Result<()> {
    Ok(run_eval_shard(&EvalShardConfig {
        model: args.model,
        benchmark: args.benchmark,
        shard: args.shard,
        shards: args.shards,
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
        depth: args.depth,
        precision: args.precision,
        save_embeddings: args.save_embeddings,
        token_cache: args.token_cache,
    })?)
}

//! `rosetta eval` (and its hidden per-shard worker `rosetta eval-shard`): encode a benchmark
//! with N worker processes, each holding one shard of the corpus, compute exact ranks in two
//! rounds over pipes (rosetta_eval::rank), and write the reports.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rosetta_datasets::benchmark::Benchmark;
use rosetta_datasets::embeddings::{Embeddings, write_embeddings};
use rosetta_eval::output::{write_report, write_trec};
use rosetta_eval::rank::{ShardEngine, merge_counts, merge_thresholds};
use rosetta_eval::report::EvalReport;
use rosetta_eval::task::{EvalTask, aligned_range};
use rosetta_eval::wire;
use rosetta_worker::sentence::{SentenceEncoder, SentenceSettings};

use crate::run_config::RunConfig;

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
    pub device: String,
    /// Encoder precision: `auto` (bf16 on CUDA, fp32 on CPU), `fp32` or `bf16`. Scores and ranks
    /// are always computed in fp32.
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    pub precision: Precision,
    /// Torch threads per worker [default: CPU cores / workers].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Candidates per query and pool in the TREC run files (with qrels.txt, under `trec/`);
    /// 0 writes none. Run files hold one line per candidate: mind the size on large benchmarks.
    #[arg(long, default_value_t = 1000)]
    pub trec_depth: usize,
    /// Also write the query and corpus embeddings with their ids as Parquet into this directory.
    #[arg(long)]
    pub save_embeddings: Option<PathBuf>,
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

/// Number format of the encoder's weights and activations during evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// bf16 on CUDA, fp32 on CPU.
    Auto,
    /// 32-bit floats.
    Fp32,
    /// bfloat16.
    Bf16,
}

impl Precision {
    /// The flag value.
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }

    fn bf16_on(self, device: tch::Device) -> bool {
        match self {
            Self::Auto => matches!(device, tch::Device::Cuda(_)),
            Self::Fp32 => false,
            Self::Bf16 => true,
        }
    }
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
    device: String,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    depth: usize,
    #[arg(long, value_enum)]
    precision: Precision,
    #[arg(long)]
    save_embeddings: Option<PathBuf>,
}

/// Where a model comes from.
enum ModelSource {
    /// A sentence-transformers or Hugging Face directory.
    Pretrained(PathBuf),
    /// A training checkpoint and the run config that built its model.
    Checkpoint { file: PathBuf, run_yaml: PathBuf, step: Option<u64> },
}

fn resolve_model(path: &Path) -> anyhow::Result<ModelSource> {
    if path.join("modules.json").exists() || path.join("config.json").exists() {
        return Ok(ModelSource::Pretrained(path.to_path_buf()));
    }
    let checkpoint_dir = if path.join("model.safetensors").exists() {
        path.to_path_buf()
    } else if let Ok(latest) = std::fs::read_to_string(path.join("checkpoints/latest")) {
        path.join("checkpoints").join(latest.trim())
    } else {
        bail!(
            "{}: not a model (no modules.json or config.json), a checkpoint (no model.safetensors) or a run directory (no checkpoints/latest)",
            path.display()
        );
    };
    let run_dir = checkpoint_dir
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| checkpoint_dir.join("../.."), Path::to_path_buf);
    let run_yaml = run_dir.join("run.yaml");
    if !run_yaml.exists() {
        bail!("{}: a checkpoint needs its run's run.yaml at {}", checkpoint_dir.display(), run_yaml.display());
    }
    let step = checkpoint_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse().ok());
    Ok(ModelSource::Checkpoint { file: checkpoint_dir.join("model.safetensors"), run_yaml, step })
}

fn load_model(source: &ModelSource, device: tch::Device) -> anyhow::Result<SentenceEncoder> {
    match source {
        ModelSource::Pretrained(dir) => Ok(SentenceEncoder::load(dir, &SentenceSettings::default(), device)?),
        ModelSource::Checkpoint { file, run_yaml, .. } => {
            let text = std::fs::read_to_string(run_yaml).with_context(|| format!("reading {}", run_yaml.display()))?;
            let config = RunConfig::from_resolved_yaml(&text)?;
            let (spec, _) = config.training_sections()?;
            let mut model = spec.build(device)?;
            rosetta_worker::checkpoint::load_checkpoint(file, &mut model, None)
                .with_context(|| format!("loading checkpoint {}", file.display()))?;
            Ok(model)
        }
    }
}

/// Export a checkpoint as a sentence-transformers directory (loads in Python unchanged).
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint directory (`RUN/checkpoints/step-N`) or a run directory (its latest checkpoint).
    #[arg(long)]
    pub model: PathBuf,
    /// The directory to write (replaced only once the new export is complete).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `rosetta export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let source = resolve_model(&args.model)?;
    if matches!(source, ModelSource::Pretrained(_)) {
        bail!("{} is already a model directory; export takes a checkpoint or a run directory", args.model.display());
    }
    let model = load_model(&source, tch::Device::Cpu)?;
    rosetta_worker::export::export_sentence_transformers(&model, &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}

/// Runs `rosetta eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    for dir in evaluate(&args)? {
        println!("{}", dir.display());
    }
    Ok(())
}

/// Evaluates every benchmark of `args`; returns the report directories.
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<Vec<PathBuf>> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let source = resolve_model(&args.model)?;
    let (model_name, step, default_out) = match &source {
        ModelSource::Pretrained(dir) => (dir.display().to_string(), None, PathBuf::from("runs/eval")),
        ModelSource::Checkpoint { file, run_yaml, step } => {
            // RUN/eval/step-N, where in-training evaluation writes too (a checkpoint directory
            // may be pruned later; its reports should not go with it).
            let dir = file.parent().unwrap_or(Path::new("."));
            let run = run_yaml.parent().unwrap_or(Path::new("."));
            let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
            (dir.display().to_string(), *step, run.join("eval").join(name))
        }
    };
    let out = args.out.clone().unwrap_or(default_out);
    let threads = args.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.workers).max(1)
    });
    let mut written = Vec::new();
    for benchmark_dir in &args.benchmark {
        let started = Instant::now();
        let benchmark =
            Benchmark::load(benchmark_dir).with_context(|| format!("benchmark {}", benchmark_dir.display()))?;
        let task = EvalTask::from_benchmark(&benchmark)?;
        if !args.quiet {
            eprintln!(
                "evaluating {} on {} ({} queries, {} candidates) with {} worker(s)",
                model_name,
                task.name,
                task.num_queries(),
                task.num_docs(),
                args.workers
            );
        }
        let depth = args.trec_depth.min(task.num_docs());
        let ranking = run_shards(args, benchmark_dir, &task, threads, depth)?;
        let report = EvalReport::compute(&task, &ranking, &model_name, step);
        let dir = out.join(&task.name);
        write_report(&dir, &report)?;
        if depth > 0 {
            write_trec(&dir.join("trec"), &task, &ranking, depth)?;
        }
        if let Some(address) = &args.coordinator {
            send_report(address, args, &report)?;
        }
        if !args.quiet {
            eprintln!("{}", summary_line(&report));
            eprintln!("evaluated in {:.1}s; report in {}", started.elapsed().as_secs_f64(), dir.display());
        }
        written.push(dir);
    }
    Ok(written)
}

/// Sends a report to a coordinator's `ReportEvaluation`.
fn send_report(address: &str, args: &EvalArgs, report: &EvalReport) -> anyhow::Result<()> {
    let token = crate::cluster::read_token(args.token_file.as_deref())?;
    let tls = crate::cluster::worker::ClientTls::from_args(args.tls_ca.as_deref(), None)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = crate::cluster::worker::connect(address, &token, tls.as_ref()).await?;
        let report_json = serde_json::to_string(report)?;
        client
            .report_evaluation(rosetta_proto::v1::ReportEvaluationRequest { report_json })
            .await
            .map_err(|s| anyhow::anyhow!("sending the report to {address}: {} ({:?})", s.message(), s.code()))?;
        anyhow::Ok(())
    })
}

/// One line with the headline numbers of a report.
pub fn summary_line(report: &EvalReport) -> String {
    let f = |name: &str| rosetta_eval::render::fmt3(report.metric(name));
    match report.protocol {
        rosetta_datasets::benchmark::Protocol::Lareqa => format!(
            "{}: mAP mono {} · cross {} · multi {} · rank distance {}",
            report.benchmark,
            f("monolingual_map"),
            f("cross_lingual_map"),
            f("multilingual_map"),
            rosetta_eval::render::fmt1(report.metric("rank_distance"))
        ),
        rosetta_datasets::benchmark::Protocol::Qrels => {
            format!(
                "{}: nDCG@10 {} · R@100 {} · MAP {}",
                report.benchmark,
                f("ndcg_at_10"),
                f("recall_at_100"),
                f("map")
            )
        }
    }
}

/// Starts the shard processes and drives both rounds over their pipes.
fn run_shards(
    args: &EvalArgs,
    benchmark: &Path,
    task: &EvalTask,
    threads: usize,
    depth: usize,
) -> anyhow::Result<rosetta_eval::rank::Ranking> {
    let exe = std::env::current_exe().context("locating the rosetta binary")?;
    let mut children: Vec<Child> = Vec::with_capacity(args.workers);
    for shard in 0..args.workers {
        let mut command = Command::new(&exe);
        command
            .arg("eval-shard")
            .arg("--model")
            .arg(&args.model)
            .arg("--benchmark")
            .arg(benchmark)
            .args(["--shard", &shard.to_string(), "--shards", &args.workers.to_string()])
            .args(["--batch-size", &args.batch_size.to_string(), "--device", &args.device])
            .args(["--threads", &threads.to_string(), "--depth", &depth.to_string()])
            .args(["--precision", args.precision.name()])
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(dir) = &args.save_embeddings {
            command.arg("--save-embeddings").arg(dir.join(&task.name));
        }
        children.push(command.spawn().with_context(|| format!("starting evaluation worker {shard}"))?);
    }
    let outcome = drive(task, &mut children, depth);
    for (shard, child) in children.iter_mut().enumerate() {
        drop(child.stdin.take());
        if outcome.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().with_context(|| format!("waiting for evaluation worker {shard}"))?;
        if outcome.is_ok() && !status.success() {
            bail!("evaluation worker {shard} exited with {status}");
        }
    }
    outcome
}

type Reader = BufReader<std::process::ChildStdout>;

/// One message from every worker, in rank order.
fn from_each<T>(
    readers: &mut [Reader],
    receive: impl Fn(&mut Reader, &str) -> rosetta_eval::Result<T>,
) -> anyhow::Result<Vec<T>> {
    readers
        .iter_mut()
        .enumerate()
        .map(|(shard, reader)| {
            let peer = format!("evaluation worker {shard}");
            receive(reader, &peer).with_context(|| format!("{peer} ended early (see its error above)"))
        })
        .collect()
}

/// The same message to every worker.
fn to_each(
    children: &mut [Child],
    what: &str,
    send: impl Fn(&mut BufWriter<&mut std::process::ChildStdin>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    for (shard, child) in children.iter_mut().enumerate() {
        let stdin = child.stdin.as_mut().context("worker stdin")?;
        send(&mut BufWriter::new(stdin)).with_context(|| format!("sending {what} to evaluation worker {shard}"))?;
    }
    Ok(())
}

fn drive(task: &EvalTask, children: &mut [Child], depth: usize) -> anyhow::Result<rosetta_eval::rank::Ranking> {
    let mut readers: Vec<Reader> = children
        .iter_mut()
        .map(|c| c.stdout.take().map(BufReader::new).context("worker stdout"))
        .collect::<anyhow::Result<_>>()?;
    // Round 0: each worker encoded its share of the queries; every worker gets them all.
    let queries = from_each(&mut readers, wire::receive_query_vectors)?.concat();
    to_each(children, "query embeddings", |w| wire::send_query_vectors(w, &queries))?;
    // Round 1: scores of the relevant candidates each shard holds.
    let thresholds = from_each(&mut readers, wire::receive_thresholds)?;
    let scores = merge_thresholds(task, &thresholds)?;
    to_each(children, "scores", |w| wire::send_scores(w, &scores))?;
    // Round 2: beaters per relevant candidate and language.
    let counts = from_each(&mut readers, wire::receive_counts)?;
    Ok(merge_counts(task, &counts, depth)?)
}

/// Runs one shard: encode its share of the queries (round 0), its corpus shard, round 1, round 2.
pub fn run_shard(args: EvalShardArgs) -> anyhow::Result<()> {
    tch::set_num_threads(args.threads.max(1) as i32);
    let started = Instant::now();
    let benchmark = Benchmark::load(&args.benchmark)?;
    let task = EvalTask::from_benchmark(&benchmark)?;
    let device = rosetta_worker::device::parse_device(&args.device)?;
    let mut model = load_model(&resolve_model(&args.model)?, device)?;
    if args.precision.bf16_on(device) {
        model.var_store_mut().bfloat16();
    }
    // Shard boundaries on multiples of the batch size: every text is encoded in the same batch
    // whatever the number of workers, so 1 and N workers give the same embeddings.
    let shards = args.shards.max(1);
    let query_range = aligned_range(task.num_queries(), args.shard, shards, args.batch_size);
    let range = aligned_range(task.num_docs(), args.shard, shards, args.batch_size);
    let settings = model.settings().clone();
    let dim = model.embedding_width() as usize;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut input = BufReader::new(std::io::stdin().lock());
    let queries: Vec<&str> = benchmark.queries[query_range].iter().map(|q| q.text.as_str()).collect();
    let own_queries = to_vec(&model.encode(&queries, &settings.query_prefix, args.batch_size)?)?;
    wire::send_query_vectors(&mut out, &own_queries).context("sending query embeddings")?;
    let query_vectors = wire::receive_query_vectors(&mut input, "rosetta eval")?;
    if query_vectors.len() != task.num_queries() * dim {
        bail!("received {} query values, expected {} × {dim}", query_vectors.len(), task.num_queries());
    }
    let docs: Vec<&str> = benchmark.corpus[range.clone()].iter().map(|d| d.text.as_str()).collect();
    let doc_vectors = to_vec(&model.encode(&docs, &settings.passage_prefix, args.batch_size)?)?;
    tracing::info!(
        shard = args.shard,
        queries = queries.len(),
        docs = docs.len(),
        seconds = started.elapsed().as_secs_f64(),
        "encoded"
    );
    if let Some(dir) = &args.save_embeddings {
        if args.shard == 0 {
            let rows = Embeddings {
                ids: task.query_ids.clone(),
                langs: benchmark.queries.iter().map(|q| q.lang.clone()).collect(),
                dim,
                values: query_vectors.clone(),
            };
            write_embeddings(&dir.join("queries.parquet"), &rows)?;
        }
        let rows = Embeddings {
            ids: task.doc_ids[range.clone()].to_vec(),
            langs: benchmark.corpus[range.clone()].iter().map(|d| d.lang.clone()).collect(),
            dim,
            values: doc_vectors.clone(),
        };
        write_embeddings(&dir.join(format!("corpus-{:05}-of-{:05}.parquet", args.shard, shards)), &rows)?;
    }
    let engine = ShardEngine::new(&task, &query_vectors, &doc_vectors, dim, range)?;
    wire::send_thresholds(&mut out, &engine.thresholds()).context("sending thresholds")?;
    let scores = wire::receive_scores(&mut input, "rosetta eval")?;
    let counts = engine.count(&scores, args.depth)?;
    wire::send_counts(&mut out, &counts).context("sending counts")?;
    Ok(())
}

fn to_vec(tensor: &tch::Tensor) -> anyhow::Result<Vec<f32>> {
    let flat = tensor.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous().view([-1]);
    Ok(Vec::<f32>::try_from(&flat)?)
}

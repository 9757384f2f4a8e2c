//! `rosetta demo`: the main job on the embedded default. It runs the data pipeline end to end
//! (synthesise, validate, train a tokenizer, shard, tokenise, report), then trains the small
//! model on it with hybrid batches on a local 2-worker CPU cluster, with checkpoints and metrics.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use rosetta_datasets::shard::{build_shard_index, stream_shard};
use rosetta_datasets::stats::pair_stats;
use rosetta_datasets::synth::{SynthConfig, synthesize};
use rosetta_datasets::table::text_column;
use rosetta_datasets::tokenize::TextTokenizer;
use rosetta_datasets::validate::{validate_benchmark, validate_pairs};

use rosetta_coordinator::command::StartFlags;
use rosetta_coordinator::job::StartMode;
use rosetta_deploy::command::TrainCommand;
use rosetta_deploy::run_config::RawRunConfig;

use crate::data_cmd::{print_stats, train_tokenizer};

/// Arguments of `rosetta demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run directory (data, tokenizer and shard index go here).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Seed of the synthetic corpus.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Workers to shard for and to train with.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Training steps (default: the embedded config's).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after the data pipeline.
    #[arg(long)]
    pub no_train: bool,
}

/// The embedded default run config (`configs/default.yaml`, paths relative to `configs/`).
const DEFAULT_CONFIG: &str = include_str!("../configs/default.yaml");

fn stage(number: usize, name: &str) {
    println!("[{number}/7] {name}");
}

/// Runs the pipeline and prints what it did.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = args.out.join("data");
    stage(1, "synthesising a 6-language parallel corpus (one language in Cyrillic, one in Greek)");
    let summary = synthesize(&data_dir, &SynthConfig { seed: args.seed, ..SynthConfig::default() })?;
    println!(
        "      {} training rows, {} benchmark queries, {} candidates",
        summary.train_rows, summary.benchmark_queries, summary.benchmark_candidates
    );

    stage(2, "validating training pairs and benchmark");
    let pairs_report = validate_pairs(&summary.train_path)?;
    let bench_report = validate_benchmark(&summary.benchmark_dir)?;
    for problem in pairs_report.problems.iter().chain(&bench_report.problems).take(20) {
        println!("      {problem}");
    }
    if !pairs_report.is_valid() || !bench_report.is_valid() {
        bail!("the synthetic data failed validation");
    }
    println!("      {} + {} rows, no problems", pairs_report.rows, bench_report.rows);

    stage(3, "training a WordPiece tokenizer on the training pairs");
    let tokenizer_path = data_dir.join("tokenizer.json");
    let tokenizer = train_tokenizer(&summary.train_path, 4000, &tokenizer_path)?;
    println!("      {} tokens -> {}", tokenizer.vocab_size(), tokenizer_path.display());

    stage(4, &format!("sharding for {} workers", args.workers));
    let index = build_shard_index(&summary.train_path, args.workers)?;
    let index_path = data_dir.join("train.shards.json");
    index.save(&index_path)?;
    for shard in &index.shards {
        println!("      shard {}: {} row groups, {} rows", shard.rank, shard.row_groups.len(), shard.rows);
    }

    stage(5, "streaming each shard and tokenising queries and positives");
    let tokenizer = TextTokenizer::load(&tokenizer_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    for shard in &index.shards {
        let (rows, tokens) = runtime.block_on(tokenise_shard(&summary.train_path, shard, &tokenizer))?;
        println!(
            "      shard {}: {rows} rows, {tokens} tokens ({:.1} per text)",
            shard.rank,
            tokens as f64 / (2 * rows.max(1)) as f64
        );
    }

    stage(6, "statistics");
    print_stats(&summary.train_path, &pair_stats(&summary.train_path)?);
    if args.no_train {
        println!("\ndemo finished in {:.1}s; data in {}", started.elapsed().as_secs_f64(), data_dir.display());
        return Ok(());
    }

    stage(7, &format!("training the small model with hybrid batches on {} local CPU workers", args.workers));
    // The embedded config refers to `../runs/demo/…` from `configs/`; here it lives in the run dir.
    let mut config: RawRunConfig = serde_saphyr::from_str(&DEFAULT_CONFIG.replace("../runs/demo/", ""))?;
    if let (Some(steps), Some(job)) = (args.steps, config.job.as_mut()) {
        job.steps = steps;
        config.training.warmup_steps = config.training.warmup_steps.min(steps);
    }
    let config_path = args.out.join("run.yaml");
    rosetta_common::atomic::write_atomic(&config_path, config.to_yaml().as_bytes())?;
    let mut train = TrainCommand::new(config_path.clone());
    train.workers = Some(args.workers);
    train.start = StartFlags::of(StartMode::Overwrite);
    crate::train_cmd::train(train)?;
    println!(
        "\ndemo finished in {:.1}s; data in {}, run config {}, checkpoints in {}",
        started.elapsed().as_secs_f64(),
        data_dir.display(),
        config_path.display(),
        args.out.join("train/checkpoints").display()
    );
    Ok(())
}

async fn tokenise_shard(
    path: &std::path::Path,
    shard: &rosetta_datasets::shard::Shard,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<(usize, usize)> {
    use futures::StreamExt;
    let mut stream = Box::pin(stream_shard(path, shard, &["query", "positive"], 4096).await?);
    let (mut rows, mut tokens) = (0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let (Some(query), Some(positive)) = (text_column(&batch, "query"), text_column(&batch, "positive")) else {
            bail!("{}: query/positive columns are not text", path.display());
        };
        let texts: Vec<&str> =
            (0..batch.num_rows()).flat_map(|i| [query.get(i).unwrap_or(""), positive.get(i).unwrap_or("")]).collect();
        tokens += tokenizer.encode_batch(texts)?.iter().map(|e| e.get_ids().len()).sum::<usize>();
        rows += batch.num_rows();
    }
    Ok((rows, tokens))
}

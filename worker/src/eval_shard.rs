//! One shard of an evaluation (`rosetta eval` starts one process per shard and speaks the
//! binary protocol of `rosetta_eval::wire` with it over stdin/stdout): encode its share of the
//! queries (round 0), its contiguous shard of the corpus, then answer rounds 1 and 2 of the
//! exact-rank computation. Also: which model a `--model` path names.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rosetta_common::RunDir;
use rosetta_common::run_dir::{MODEL_FILE, MODEL_SETTINGS_FILE, parse_checkpoint_name};
use rosetta_datasets::benchmark::Benchmark;
use rosetta_datasets::embeddings::{Embeddings, write_embeddings};
use rosetta_eval::command::EvalShardCommand;
use rosetta_eval::rank::ShardEngine;
use rosetta_eval::task::{EvalTask, aligned_range};
use rosetta_eval::wire;

use crate::error::{Result, WorkerError};
use rosetta_model::sentence::{SentenceEncoder, SentenceSettings};
use rosetta_worker_config::model::ModelSettings;

/// A model to evaluate or export, as a `--model` path names it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelToLoad {
    /// A sentence-transformers or Hugging Face directory.
    Pretrained(PathBuf),
    /// A training checkpoint: its directory, the settings that rebuild its encoder, its step.
    Checkpoint {
        /// `RUN/checkpoints/step-N`.
        dir: PathBuf,
        /// The model settings it was trained with (its `model.json`).
        settings: ModelSettings,
        /// Its step, when the directory name says it.
        step: Option<u64>,
    },
}

impl ModelToLoad {
    /// Resolves a model directory, a checkpoint directory (`RUN/checkpoints/step-N`) or a run
    /// directory (its latest committed checkpoint).
    pub fn resolve(path: &Path) -> Result<Self> {
        if path.join("modules.json").exists() || path.join("config.json").exists() {
            return Ok(Self::Pretrained(path.to_path_buf()));
        }
        let dir = if path.join(MODEL_FILE).exists() {
            path.to_path_buf()
        } else if let Some(step) = RunDir::new(path).latest_checkpoint()? {
            RunDir::new(path).checkpoint(step)
        } else {
            return Err(WorkerError::model(
                path,
                "not a model (no modules.json or config.json), a checkpoint (no model.safetensors) or a run directory \
                 (no checkpoints/latest)",
            ));
        };
        let settings_path = dir.join(MODEL_SETTINGS_FILE);
        let text = std::fs::read(&settings_path).map_err(|e| WorkerError::io(&settings_path, e))?;
        let settings = serde_json::from_slice(&text).map_err(|e| WorkerError::model(&settings_path, e.to_string()))?;
        let step = dir.file_name().and_then(|n| n.to_str()).and_then(parse_checkpoint_name);
        Ok(Self::Checkpoint { dir, settings, step })
    }

    /// How reports name the model.
    pub fn label(&self) -> String {
        match self {
            Self::Pretrained(dir) | Self::Checkpoint { dir, .. } => dir.display().to_string(),
        }
    }

    /// The checkpoint's step (`None` for a pretrained model).
    pub fn step(&self) -> Option<u64> {
        match self {
            Self::Pretrained(_) => None,
            Self::Checkpoint { step, .. } => *step,
        }
    }

    /// Builds the encoder on `device` (a checkpoint's weights loaded into it).
    pub fn load(&self, device: tch::Device) -> Result<SentenceEncoder> {
        match self {
            Self::Pretrained(dir) => Ok(SentenceEncoder::load(dir, &SentenceSettings::default(), device)?),
            Self::Checkpoint { dir, settings, .. } => {
                let mut model = rosetta_model::from_settings::build_encoder_to_load(settings, device)?;
                rosetta_model::checkpoint::load_checkpoint(&dir.join(MODEL_FILE), &mut model, None)?;
                Ok(model)
            }
        }
    }
}

fn to_vec(tensor: &tch::Tensor) -> Result<Vec<f32>> {
    let flat = tensor.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous().view([-1]);
    Ok(Vec::<f32>::try_from(&flat)?)
}

fn pipe_error(what: &str) -> impl Fn(std::io::Error) -> WorkerError + '_ {
    move |e| WorkerError::io(format!("rosetta eval's pipe ({what})"), e)
}

/// Batches per window of texts that are sorted by length before encoding (a window is also the
/// unit of shard boundaries).
pub const SORT_WINDOW_BATCHES: usize = 32;

/// The pipe to `rosetta eval`: this process's stdout moved to a descriptor of its own, with
/// stdout then pointed at stderr, so that what a library prints (`ONEDNN_VERBOSE=1` writes to
/// stdout) goes to the log instead of into the embeddings' stream. Taken before anything runs.
fn claim_stdout_pipe() -> Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let failed = |what: &str| WorkerError::io(format!("stdout ({what})"), std::io::Error::last_os_error());
    std::io::stdout().flush().map_err(|e| WorkerError::io("stdout (flush)", e))?;
    // SAFETY: descriptor calls on this process's own standard descriptors; the new descriptor
    // (close-on-exec, above the standard three) is owned by the returned file alone.
    let pipe = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if pipe < 0 {
        return Err(failed("dup"));
    }
    let pipe = unsafe { std::fs::File::from_raw_fd(pipe) };
    // SAFETY: as above; stdout is replaced by a copy of stderr, which stays open.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(failed("dup2 onto stderr"));
    }
    Ok(pipe)
}

/// Runs one shard to the end of round 2, talking to `rosetta eval` over stdin/stdout.
pub fn run_eval_shard(config: &EvalShardCommand) -> Result<()> {
    let pipe = claim_stdout_pipe()?;
    crate::memory::keep_freed_memory();
    tch::set_num_threads(config.threads.max(1) as i32);
    let started = Instant::now();
    let benchmark = Benchmark::load(&config.benchmark)?;
    let task = EvalTask::from_benchmark(&benchmark)?;
    let device = rosetta_collective::device::open(config.device)?;
    let mut model = ModelToLoad::resolve(&config.model)?.load(device)?;
    if config.precision.bf16_on(config.device) {
        model.var_store_mut().bfloat16();
    }
    tracing::info!(shard = config.shard, seconds = started.elapsed().as_secs_f64(), "model loaded");
    // Texts are encoded in windows of SORT_WINDOW_BATCHES batches, sorted by length inside each
    // window; shard boundaries fall on window boundaries, so every text is encoded in the same
    // batch whatever the number of workers, and 1 and N workers give the same embeddings.
    let shards = config.shards.max(1);
    let window = config.batch_size.max(1) * SORT_WINDOW_BATCHES;
    let query_range = aligned_range(task.num_queries(), config.shard, shards, window);
    let range = aligned_range(task.num_docs(), config.shard, shards, window);
    let settings = model.settings().clone();
    let dim = model.embedding_width() as usize;
    let mut out = BufWriter::new(pipe);
    let mut input = BufReader::new(std::io::stdin().lock());
    // The tokenizer's fingerprint (a digest of its whole JSON) once per shard, not per window.
    let cache = config
        .token_cache
        .as_ref()
        .map(|dir| rosetta_model::token_cache::TokenCache::for_tokenizer(dir, model.tokenizer()))
        .transpose()?;
    // This process does nothing else while it encodes: on the CPU, one stream per thread.
    let streams = rosetta_model::streams::stream_count(device);
    let encode = |texts: &[&str], prefix: &str| {
        model.encode_by_length_cached(texts, prefix, config.batch_size, window, cache.as_ref(), streams)
    };
    let queries: Vec<&str> = benchmark.queries[query_range].iter().map(|q| q.text.as_str()).collect();
    let own_queries = to_vec(&encode(&queries, &settings.query_prefix)?)?;
    tracing::info!(
        shard = config.shard,
        queries = queries.len(),
        seconds = started.elapsed().as_secs_f64(),
        "queries encoded"
    );
    wire::send_query_vectors(&mut out, &own_queries).map_err(pipe_error("query embeddings"))?;
    let query_vectors = wire::receive_query_vectors(&mut input, "rosetta eval")?;
    if query_vectors.len() != task.num_queries() * dim {
        return Err(WorkerError::invalid(
            "query embeddings from rosetta eval",
            format!("{} values, expected {} × {dim}", query_vectors.len(), task.num_queries()),
        ));
    }
    let docs: Vec<&str> = benchmark.corpus[range.clone()].iter().map(|d| d.text.as_str()).collect();
    let doc_vectors = to_vec(&encode(&docs, &settings.passage_prefix)?)?;
    tracing::info!(
        shard = config.shard,
        queries = queries.len(),
        docs = docs.len(),
        seconds = started.elapsed().as_secs_f64(),
        "encoded"
    );
    if let Some(dir) = &config.save_embeddings {
        if config.shard == 0 {
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
        write_embeddings(&dir.join(format!("corpus-{:05}-of-{:05}.parquet", config.shard, shards)), &rows)?;
    }
    let engine = ShardEngine::new(&task, &query_vectors, &doc_vectors, dim, range)?;
    wire::send_thresholds(&mut out, &engine.thresholds()).map_err(pipe_error("thresholds"))?;
    let scores = wire::receive_scores(&mut input, "rosetta eval")?;
    let counts = engine.count(&scores, config.depth)?;
    wire::send_counts(&mut out, &counts).map_err(pipe_error("counts"))?;
    Ok(())
}

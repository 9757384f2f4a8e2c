//! Everything the coordinator tells Prometheus: the `/metrics` endpoint (axum; histograms
//! with explicit buckets), the series the job state machine records as it goes, and the
//! `rosetta_eval_*` series of evaluation reports.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rosetta_eval::report::EvalReport;

use crate::error::{CoordinatorError, Result};

/// Installs the global recorder (once per process, whichever thread asks first) and returns
/// its handle. Every series carries the label `run="<run>"` of the first run that asked (a
/// coordinator process serves one run), so that one Prometheus can hold many runs.
pub fn install_recorder(run: &str) -> Result<PrometheusHandle> {
    static HANDLE: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
    let handle = PrometheusBuilder::new()
        .add_global_label("run", run)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &buckets)
        .map_err(|e| CoordinatorError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| CoordinatorError::Metrics(e.to_string()))?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Serves `/metrics` on `address` until `stop` turns true; returns the bound address and the
/// server task.
pub async fn serve(
    address: SocketAddr,
    handle: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| CoordinatorError::Metrics(format!("{address}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CoordinatorError::Metrics(e.to_string()))?;
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok((bound, task))
}

/// What a run is, for the series to join on.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Schedule strategy (`hybrid`, `x-x-mono`, …).
    pub strategy: String,
    /// α of a hybrid schedule.
    pub alpha: f64,
    /// The model (preset or directory).
    pub model: String,
    /// Workers of a full generation.
    pub world_size: usize,
    /// Steps of the job.
    pub total_steps: u64,
    /// Checkpoint interval in steps.
    pub checkpoint_every: u64,
}

/// A coordinator started: `rosetta_build_info`, `rosetta_run_info` and the job's constants.
pub fn run_started(info: &RunInfo) {
    metrics::gauge!("rosetta_build_info", "version" => env!("CARGO_PKG_VERSION"),
        "protocol" => rosetta_proto::PROTOCOL_VERSION.to_string())
    .set(1.0);
    metrics::gauge!("rosetta_run_info", "strategy" => info.strategy.clone(), "alpha" => info.alpha.to_string(),
        "model" => info.model.clone(), "world_size" => info.world_size.to_string())
    .set(1.0);
    metrics::gauge!("rosetta_total_steps").set(info.total_steps as f64);
    metrics::gauge!("rosetta_checkpoint_every").set(info.checkpoint_every as f64);
    metrics::gauge!("rosetta_workers_expected").set(info.world_size as f64);
    metrics::gauge!("rosetta_job_failed").set(0.0);
    metrics::counter!("rosetta_restarts_total").absolute(0);
}

/// The totals of a finished step, over every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTotals {
    /// The step (0-based).
    pub step: u64,
    /// Global-batch loss.
    pub loss: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Examples trained by all ranks.
    pub examples: u64,
    /// Tokens encoded by all ranks.
    pub tokens: u64,
    /// Padding positions of all ranks' batches.
    pub padding_tokens: u64,
    /// Seconds of the slowest rank.
    pub seconds: f64,
    /// Collective seconds of the slowest rank.
    pub collective_seconds: f64,
    /// Bytes all ranks handed to the gradient all-reduce.
    pub all_reduce_bytes: u64,
    /// Model FLOPs utilisation (0 when unknown).
    pub mfu: f64,
}

/// A step finished; `batch` is its kind and languages (`None` when its plan is no longer kept).
pub fn step_done(totals: &StepTotals, batch: Option<(&'static str, String)>) {
    metrics::gauge!("rosetta_step").set((totals.step + 1) as f64);
    metrics::gauge!("rosetta_loss").set(totals.loss);
    metrics::gauge!("rosetta_learning_rate").set(totals.learning_rate);
    metrics::gauge!("rosetta_examples_per_second").set(totals.examples as f64 / totals.seconds);
    metrics::gauge!("rosetta_tokens_per_second").set(totals.tokens as f64 / totals.seconds);
    metrics::histogram!("rosetta_step_seconds").record(totals.seconds);
    metrics::histogram!("rosetta_collective_seconds").record(totals.collective_seconds);
    metrics::counter!("rosetta_tokens_total").increment(totals.tokens);
    metrics::counter!("rosetta_padding_tokens_total").increment(totals.padding_tokens);
    metrics::counter!("rosetta_all_reduce_bytes_total").increment(totals.all_reduce_bytes);
    if totals.mfu > 0.0 {
        metrics::gauge!("rosetta_mfu").set(totals.mfu);
    }
    let slots = (totals.tokens + totals.padding_tokens).max(1) as f64;
    metrics::gauge!("rosetta_padding_fraction").set(totals.padding_tokens as f64 / slots);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!("rosetta_last_step_timestamp_seconds").set(now);
    if let Some((kind, languages)) = batch {
        // Monolingual and cross-lingual losses differ by an order of magnitude: one gauge each.
        metrics::gauge!("rosetta_loss_by_kind", "kind" => kind).set(totals.loss);
        let languages = if languages.is_empty() { "mixed".to_string() } else { languages };
        metrics::counter!("rosetta_batches_total", "kind" => kind, "languages" => languages).increment(1);
    }
}

/// A generation ended and generation `generation` is forming.
pub fn generation_restarted(generation: u64) {
    metrics::counter!("rosetta_restarts_total").increment(1);
    generation_forming(generation);
}

/// Generation `generation` is forming (the first one of a coordinator, or after a restart).
pub fn generation_forming(generation: u64) {
    metrics::gauge!("rosetta_generation").set(generation as f64);
}

/// The job failed for good.
pub fn job_failed() {
    metrics::gauge!("rosetta_job_failed").set(1.0);
}

/// A generation started training with `workers` ranks.
pub fn workers_running(workers: usize) {
    metrics::gauge!("rosetta_workers", "state" => "running").set(workers as f64);
}

/// Time since the last heartbeat of `rank`.
pub fn heartbeat_age(rank: usize, age: Duration) {
    metrics::gauge!("rosetta_heartbeat_age_seconds", "rank" => rank.to_string()).set(age.as_secs_f64());
}

/// The checkpoint after `step` is committed.
pub fn checkpoint_committed(step: u64) {
    metrics::gauge!("rosetta_last_checkpoint_step").set(step as f64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!("rosetta_last_checkpoint_timestamp_seconds").set(now);
}

/// Most benchmarks whose series one coordinator exports (every name is a label value).
pub const MAX_EVAL_BENCHMARKS: usize = 32;
/// Most languages of one exported report.
pub const MAX_EVAL_LANGUAGES: usize = 64;

/// Checks that a report's label values are bounded, so that reports from outside cannot make
/// `/metrics` grow without limit: a short plain benchmark name, at most
/// [`MAX_EVAL_LANGUAGES`] short language codes, and at most [`MAX_EVAL_BENCHMARKS`] distinct
/// benchmarks in all. Records the benchmark as exported.
pub fn admit_eval_report(report: &EvalReport) -> std::result::Result<(), String> {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let plain = |text: &str, most: usize| {
        !text.is_empty() && text.len() <= most && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !plain(&report.benchmark, 64) {
        return Err(format!("benchmark name {:?}: 1–64 characters of A–Z a–z 0–9 . _ -", report.benchmark));
    }
    if report.languages.len() > MAX_EVAL_LANGUAGES {
        return Err(format!("{} languages; at most {MAX_EVAL_LANGUAGES} are exported", report.languages.len()));
    }
    if let Some(bad) = report.languages.iter().find(|l| !plain(l, 16)) {
        return Err(format!("language code {bad:?}: 1–16 characters of A–Z a–z 0–9 . _ -"));
    }
    let known = |l: &String| report.languages.contains(l);
    let mut labels: Vec<&String> = Vec::new();
    if let Some(lareqa) = &report.lareqa {
        labels.extend(lareqa.pairs.iter().flat_map(|p| [&p.query_lang, &p.corpus_lang]));
        labels.extend(lareqa.pooled.iter().map(|p| &p.query_lang));
    }
    if let Some(qrels) = &report.qrels {
        labels.extend(qrels.languages.iter().map(|l| &l.lang));
    }
    if let Some(stranger) = labels.into_iter().find(|l| !known(l)) {
        return Err(format!("language {stranger:?} is not among the report's languages"));
    }
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !seen.contains(&report.benchmark) && seen.len() >= MAX_EVAL_BENCHMARKS {
        return Err(format!(
            "already {MAX_EVAL_BENCHMARKS} benchmarks exported; {:?} would be one more",
            report.benchmark
        ));
    }
    seen.insert(report.benchmark.clone());
    Ok(())
}

/// Sets the `rosetta_eval_*` gauges from one report.
pub fn export_eval_report(report: &EvalReport) {
    let benchmark = report.benchmark.clone();
    if let Some(step) = report.step {
        metrics::gauge!("rosetta_eval_step", "benchmark" => benchmark.clone()).set(step as f64);
    }
    if let Some(lareqa) = &report.lareqa {
        for pair in &lareqa.pairs {
            if let Some(map) = pair.map {
                let setting = if pair.query_lang == pair.corpus_lang { "monolingual" } else { "cross-lingual" };
                metrics::gauge!("rosetta_eval_map", "benchmark" => benchmark.clone(), "setting" => setting,
                    "query_lang" => pair.query_lang.clone(), "corpus_lang" => pair.corpus_lang.clone())
                .set(map);
            }
        }
        for pooled in &lareqa.pooled {
            if let Some(map) = pooled.map {
                metrics::gauge!("rosetta_eval_map", "benchmark" => benchmark.clone(), "setting" => "multilingual",
                    "query_lang" => pooled.query_lang.clone(), "corpus_lang" => "all")
                .set(map);
            }
            if let Some(distance) = pooled.rank_distance {
                metrics::gauge!("rosetta_eval_rank_distance", "benchmark" => benchmark.clone(),
                    "query_lang" => pooled.query_lang.clone())
                .set(distance);
            }
        }
        for (setting, average) in [
            ("monolingual", lareqa.monolingual),
            ("cross-lingual", lareqa.cross_lingual),
            ("multilingual", lareqa.multilingual),
        ] {
            if let Some(map) = average.map {
                metrics::gauge!("rosetta_eval_map_macro", "benchmark" => benchmark.clone(), "setting" => setting)
                    .set(map);
            }
        }
        if let Some(distance) = lareqa.rank_distance {
            metrics::gauge!("rosetta_eval_rank_distance_macro", "benchmark" => benchmark.clone()).set(distance);
        }
    }
    if let Some(qrels) = &report.qrels {
        for lang in &qrels.languages {
            for (name, value) in
                [("rosetta_eval_ndcg_at_10", lang.ndcg_at_10), ("rosetta_eval_recall_at_100", lang.recall_at_100)]
            {
                if let Some(value) = value {
                    metrics::gauge!(name, "benchmark" => benchmark.clone(), "lang" => lang.lang.clone()).set(value);
                }
            }
        }
    }
}

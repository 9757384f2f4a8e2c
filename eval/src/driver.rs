//! The evaluation driver: for each benchmark, start one shard process per worker (each encodes
//! its share of the queries and one contiguous shard of the corpus), drive the rounds of the
//! exact-rank computation over their pipes (query vectors, thresholds, beater counts), and write
//! the reports. What a shard process is comes from the caller, so this crate needs no libtorch.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use rosetta_datasets::benchmark::Benchmark;

use crate::error::{EvalError, Result};
use crate::output::{write_report, write_trec};
use crate::rank::{Ranking, merge_counts, merge_thresholds};
use crate::report::EvalReport;
use crate::task::EvalTask;
use crate::wire;

/// What to evaluate and where the reports go.
#[derive(Debug, Clone)]
pub struct EvalRun {
    /// Benchmark directories.
    pub benchmarks: Vec<PathBuf>,
    /// Shard processes per benchmark.
    pub shards: usize,
    /// Report directory (one sub-directory per benchmark).
    pub out: PathBuf,
    /// How reports name the model.
    pub model_label: String,
    /// The checkpoint's step, if it is one.
    pub step: Option<u64>,
    /// Candidates per query and pool in TREC run files; 0 writes none.
    pub trec_depth: usize,
    /// No progress lines.
    pub quiet: bool,
}

/// Which shard process to start.
#[derive(Debug, Clone)]
pub struct ShardRequest<'a> {
    /// The benchmark directory.
    pub benchmark: &'a Path,
    /// The benchmark's name.
    pub task_name: &'a str,
    /// This shard.
    pub shard: usize,
    /// Shards in all.
    pub shards: usize,
    /// Candidates per query it keeps.
    pub depth: usize,
}

/// One benchmark's result.
#[derive(Debug, Clone)]
pub struct EvaluatedBenchmark {
    /// Where its reports are.
    pub dir: PathBuf,
    /// The report.
    pub report: EvalReport,
}

/// Evaluates every benchmark of `run` with shard processes made by `shard_command`.
pub fn evaluate(
    run: &EvalRun,
    shard_command: &dyn Fn(&ShardRequest<'_>) -> Command,
) -> Result<Vec<EvaluatedBenchmark>> {
    if run.shards == 0 {
        return Err(EvalError::Invalid { what: "--workers".into(), message: "must be at least 1".into() });
    }
    let mut evaluated = Vec::new();
    for benchmark_dir in &run.benchmarks {
        let started = Instant::now();
        let benchmark = Benchmark::load(benchmark_dir)?;
        let task = EvalTask::from_benchmark(&benchmark)?;
        if !run.quiet {
            eprintln!(
                "evaluating {} on {} ({} queries, {} candidates) with {} worker(s)",
                run.model_label,
                task.name,
                task.num_queries(),
                task.num_docs(),
                run.shards
            );
        }
        let depth = run.trec_depth.min(task.num_docs());
        let ranking = run_shards(run.shards, &task, depth, &|shard, shards| {
            shard_command(&ShardRequest { benchmark: benchmark_dir, task_name: &task.name, shard, shards, depth })
        })?;
        let report = EvalReport::compute(&task, &ranking, &run.model_label, run.step);
        let dir = run.out.join(&task.name);
        write_report(&dir, &report)?;
        if depth > 0 {
            let (lines, bytes) = crate::output::trec_size(&task, depth);
            if !run.quiet {
                eprintln!(
                    "writing TREC run files of depth {depth}: about {lines} lines, {:.1} MB, into {}",
                    bytes as f64 / 1e6,
                    dir.join("trec").display()
                );
            }
            write_trec(&dir.join("trec"), &task, &ranking, depth)?;
        }
        if !run.quiet {
            eprintln!("{}", crate::render::summary_line(&report));
            eprintln!("evaluated in {:.1}s; report in {}", started.elapsed().as_secs_f64(), dir.display());
        }
        evaluated.push(EvaluatedBenchmark { dir, report });
    }
    Ok(evaluated)
}

/// Starts the shard processes and drives every round over their pipes.
fn run_shards(
    shards: usize,
    task: &EvalTask,
    depth: usize,
    command: &dyn Fn(usize, usize) -> Command,
) -> Result<Ranking> {
    let mut children: Vec<Child> = Vec::with_capacity(shards);
    for shard in 0..shards {
        let child = command(shard, shards)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| EvalError::Shard { shard, message: format!("cannot start: {e}") });
        match child {
            Ok(child) => children.push(child),
            Err(error) => {
                for mut started in children {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                return Err(error);
            }
        }
    }
    let outcome = drive(task, &mut children, depth);
    // A shard that failed writes its error to stderr as it exits: give every shard a moment to
    // end by itself (the others see their stdin close), so that the error is on the screen
    // before this one, and only then stop what is left.
    let grace = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut statuses = Vec::with_capacity(children.len());
    for (shard, child) in children.iter_mut().enumerate() {
        drop(child.stdin.take());
        let waited = |e: std::io::Error| EvalError::Shard { shard, message: format!("waiting for it: {e}") };
        let mut status = child.try_wait().map_err(waited)?;
        while status.is_none() && outcome.is_err() && std::time::Instant::now() < grace {
            std::thread::sleep(std::time::Duration::from_millis(20));
            status = child.try_wait().map_err(waited)?;
        }
        let status = match status {
            Some(status) => status,
            None if outcome.is_err() => {
                let _ = child.kill();
                child.wait().map_err(waited)?
            }
            None => child.wait().map_err(waited)?,
        };
        statuses.push(status);
    }
    match outcome {
        Ok(ranking) => match statuses.iter().position(|s| !s.success()) {
            Some(shard) => Err(EvalError::Shard { shard, message: format!("exited with {}", statuses[shard]) }),
            None => Ok(ranking),
        },
        Err(EvalError::Shard { shard, message }) => {
            let status = statuses.get(shard).map_or_else(String::new, |s| format!("; it exited with {s}"));
            Err(EvalError::Shard { shard, message: format!("{message}{status}") })
        }
        Err(other) => Err(other),
    }
}

type Reader = BufReader<ChildStdout>;

/// One message from every shard, in shard order.
fn from_each<T>(readers: &mut [Reader], receive: impl Fn(&mut Reader, &str) -> Result<T>) -> Result<Vec<T>> {
    readers
        .iter_mut()
        .enumerate()
        .map(|(shard, reader)| {
            receive(reader, &format!("evaluation worker {shard}"))
                .map_err(|e| EvalError::Shard { shard, message: format!("ended early (see its error above): {e}") })
        })
        .collect()
}

/// The same message to every shard.
fn to_each(
    children: &mut [Child],
    what: &str,
    send: impl Fn(&mut BufWriter<&mut ChildStdin>) -> std::io::Result<()>,
) -> Result<()> {
    for (shard, child) in children.iter_mut().enumerate() {
        let stdin = child.stdin.as_mut().ok_or_else(|| EvalError::Shard { shard, message: "no stdin".into() })?;
        send(&mut BufWriter::new(stdin))
            .map_err(|e| EvalError::Shard { shard, message: format!("sending {what}: {e}") })?;
    }
    Ok(())
}

fn drive(task: &EvalTask, children: &mut [Child], depth: usize) -> Result<Ranking> {
    let mut readers = Vec::with_capacity(children.len());
    for (shard, child) in children.iter_mut().enumerate() {
        let stdout = child.stdout.take().ok_or_else(|| EvalError::Shard { shard, message: "no stdout".into() })?;
        readers.push(BufReader::new(stdout));
    }
    // Round 0: each shard encoded its share of the queries; every shard gets them all.
    let queries = from_each(&mut readers, wire::receive_query_vectors)?.concat();
    to_each(children, "query embeddings", |w| wire::send_query_vectors(w, &queries))?;
    // Round 1: scores of the relevant candidates each shard holds.
    let thresholds = from_each(&mut readers, wire::receive_thresholds)?;
    let scores = merge_thresholds(task, &thresholds)?;
    to_each(children, "scores", |w| wire::send_scores(w, &scores))?;
    // Round 2: beaters per relevant candidate and language.
    let counts = from_each(&mut readers, wire::receive_counts)?;
    merge_counts(task, &counts, depth)
}

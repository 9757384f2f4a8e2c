//! `rosetta train` (a local cluster: coordinator in this process, N worker processes) and
//! `rosetta coordinator` (the coordinator alone, for clusters launched elsewhere).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rosetta_coordinator::service::{Phase, Progress};

use crate::cluster::{self, TOKEN_ENV};
use crate::run_config::RunConfig;

/// Arguments of `rosetta train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run config (YAML): data, schedule, model, training, job.
    #[arg(long)]
    pub config: PathBuf,
    /// Worker processes to start (overrides `job.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Continue from the latest committed checkpoint of the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Stop cleanly after this many steps (with a checkpoint there), to `--resume` later.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// No progress bar (one line per checkpoint instead).
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `rosetta coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Run config (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// gRPC address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// File holding the shared token (default: `$ROSETTA_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Continue from the latest committed checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Serve gRPC over TLS with this PEM certificate (chain); needs `--tls-key`. Workers then
    /// connect with `https://` and `--tls-ca`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn render(progress: &Progress, started: Instant, first_step: u64) -> String {
    let done = progress.steps_done;
    let total = progress.total_steps.max(1);
    let width = 30;
    let filled = (done as usize * width / total as usize).min(width);
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (done.saturating_sub(first_step)) as f64 / elapsed.max(1e-9);
    let eta = if rate > 0.0 { format!("{:.0}s", (total - done.min(total)) as f64 / rate) } else { "?".into() };
    format!(
        "[{}{}] step {done}/{total}  loss {:.4}  {:.1} ex/s  eta {eta}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        progress.loss,
        progress.examples_per_second
    )
}

/// Runs a local cluster and returns the job's verdict.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = RunConfig::load(&args.config)?;
    if let (Some(workers), Some(job)) = (args.workers, config.job.as_mut()) {
        job.workers = workers;
    }
    let (_, job_config) = config.training_sections()?;
    let (workers, run_dir) = (job_config.workers, job_config.run_dir.clone());
    let token = cluster::random_token();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let running = runtime.block_on(cluster::coordinator::start(
        &config,
        "127.0.0.1:0".parse()?,
        token.clone(),
        args.resume,
        None,
    ))?;
    println!("coordinator on {}, metrics on http://{}/metrics", running.grpc_address, running.metrics_address);
    println!("run directory {}", run_dir.display());
    let executable = std::env::current_exe().context("locating the rosetta binary")?;
    // Local workers share this machine's cores: oversubscribing them slows every worker.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (cores / workers).max(1).to_string();
    let spawn_workers = || -> anyhow::Result<Vec<Child>> {
        (0..workers)
            .map(|i| {
                Command::new(&executable)
                    .args([
                        "worker",
                        "--coordinator",
                        &format!("http://{}", running.grpc_address),
                        "--threads",
                        &threads,
                    ])
                    .env("OMP_NUM_THREADS", &threads)
                    .env(TOKEN_ENV, &token)
                    .spawn()
                    .with_context(|| format!("starting worker process {i}"))
            })
            .collect()
    };
    if let Some(stop) = args.stop_after {
        running.job.stop_after(stop);
    }
    let mut evaluator =
        crate::train_eval::TrainingEvaluator::new(config.evaluation.as_ref(), &config.data.benchmarks, &run_dir)?;
    let mut children = spawn_workers()?;
    let mut generation = running.job.generation();
    let started = Instant::now();
    let first_step = running.job.progress().steps_done;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_printed = (u64::MAX, Instant::now());
    // Steady-state speed: timed from the moment the first two steps of this launch are done.
    let mut warm: Option<(Instant, u64)> = None;
    let (mut seen_steps, mut last_step_at) = (first_step, Instant::now());
    let verdict = loop {
        runtime.block_on(running.job.wait_change(Duration::from_millis(500)));
        let progress = running.job.progress();
        if progress.steps_done > seen_steps {
            (seen_steps, last_step_at) = (progress.steps_done, Instant::now());
        }
        if warm.is_none() && progress.steps_done >= first_step + 2 {
            warm = Some((Instant::now(), progress.steps_done));
        }
        if !args.quiet && progress.steps_done > first_step {
            if terminal {
                eprint!("\r{}", render(&progress, started, first_step));
                let _ = std::io::stderr().flush();
            } else if progress.steps_done != last_printed.0 && last_printed.1.elapsed() >= Duration::from_secs(5) {
                // Not a terminal (a log file, CI): a line every few seconds instead of a bar.
                eprintln!("{}", render(&progress, started, first_step));
                last_printed = (progress.steps_done, Instant::now());
            }
        }
        if let Some(evaluator) = evaluator.as_mut() {
            evaluator.poll(progress.last_checkpoint);
        }
        match progress.phase {
            Phase::Finished => break Ok(()),
            Phase::Failed(reason) => break Err(anyhow::anyhow!("training failed: {reason}")),
            Phase::Waiting | Phase::Running => {}
        }
        if running.job.generation() != generation {
            // The coordinator ended the generation: replace every worker process; the new
            // generation resumes from the last committed checkpoint.
            generation = running.job.generation();
            eprintln!("workers of the previous generation stopped; starting generation {generation}");
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            children = spawn_workers()?;
            continue;
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()?
                && !status.success()
            {
                let reason = format!("worker process {i} (pid {}) exited with {status}", child.id());
                running.job.fail_generation(generation, reason);
            }
        }
    };
    if !args.quiet && terminal {
        eprintln!();
    }
    let grace = Instant::now() + Duration::from_secs(if verdict.is_ok() { 30 } else { 5 });
    for child in &mut children {
        while child.try_wait()?.is_none() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait()?.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let progress = running.job.progress();
    verdict?;
    if let Some((since, steps)) = warm.filter(|(_, steps)| progress.steps_done > *steps) {
        let per_step = last_step_at.duration_since(since).as_secs_f64() / (progress.steps_done - steps) as f64;
        let batch = config.schedule.global_batch_size as f64;
        println!("steady state: {per_step:.3} s/step, {:.1} examples/s (after the first 2 steps)", batch / per_step);
    }
    let evaluated = match evaluator.as_mut() {
        Some(evaluator) => evaluator.finish(progress.last_checkpoint)?,
        None => None,
    };
    match progress.last_checkpoint {
        Some(step) => println!(
            "trained {} steps; last checkpoint after step {step}: {}",
            progress.steps_done,
            rosetta_coordinator::manifest::checkpoint_dir(&run_dir, step).display()
        ),
        None => println!("trained {} steps; no checkpoint committed", progress.steps_done),
    }
    if let Some(dir) = evaluated {
        println!("evaluation reports in {}", dir.display());
    }
    Ok(())
}

/// Runs the coordinator until the job finishes or fails.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config)?;
    let token = cluster::read_token(args.token_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(cluster::coordinator::server_tls(cert, key)?),
        _ => None,
    };
    let running = runtime.block_on(cluster::coordinator::start(&config, args.listen, token, args.resume, tls))?;
    println!("coordinator on {}, metrics on http://{}/metrics", running.grpc_address, running.metrics_address);
    loop {
        runtime.block_on(running.job.wait_change(Duration::from_secs(5)));
        match running.job.progress().phase {
            Phase::Finished => {
                // Stay until every worker has heard that the job is finished (bounded).
                let deadline = Instant::now() + Duration::from_secs(30);
                while !running.job.workers_released() && Instant::now() < deadline {
                    runtime.block_on(running.job.wait_change(Duration::from_millis(200)));
                }
                std::thread::sleep(Duration::from_millis(200));
                return Ok(());
            }
            Phase::Failed(reason) => bail!("training failed: {reason}"),
            _ => {}
        }
    }
}

//! `rosetta eval` as a library call: the model resolved (a model directory, a checkpoint or a
//! run directory), the report and token-cache directories chosen, one `rosetta eval-shard`
//! process per worker driven through the exact-rank rounds, and each report sent to a
//! coordinator when asked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rosetta_common::RunDir;
use rosetta_eval::command::EvalCommand;
use rosetta_eval::driver::{EvalRun, ShardRequest, evaluate};
use rosetta_eval::report::EvalReport;
use rosetta_worker_config::DeviceSpec;

use crate::error::{Result, WorkerError};
use crate::eval_shard::ModelToLoad;
use crate::process::client::{ClientTls, CoordinatorEndpoint, connect};

/// Runs the evaluation `command` asks for, its shards being processes of `program`; returns
/// the report directories, one per benchmark.
pub fn run_evaluation(command: &EvalCommand, program: &Path) -> Result<Vec<PathBuf>> {
    if command.batch_size == 0 {
        return Err(WorkerError::invalid("--batch-size", "must be at least 1"));
    }
    if let Some(warning) = command.precision.slow_on(command.device).filter(|_| command.device == DeviceSpec::Cpu) {
        eprintln!("warning: --precision {warning}");
    }
    // Here, before any shard starts: a missing GPU is one clear error, not one per shard.
    rosetta_collective::device::open(command.device)?;
    let model = ModelToLoad::resolve(&command.model)?;
    // A checkpoint's reports go to RUN/eval/step-N, where in-training evaluation writes too (a
    // checkpoint directory may be pruned later; its reports should not go with it).
    let (default_out, default_cache) = match &model {
        ModelToLoad::Pretrained(_) => (PathBuf::from("runs/eval"), None),
        ModelToLoad::Checkpoint { dir, .. } => match RunDir::of_checkpoint(dir) {
            Some((run_dir, step)) => (run_dir.eval_step(step), Some(run_dir.token_cache())),
            None => (dir.join("eval"), None),
        },
    };
    let token_cache = command.token_cache.clone().or(default_cache);
    let run = EvalRun {
        benchmarks: command.benchmark.clone(),
        shards: command.workers,
        out: command.out.clone().unwrap_or(default_out),
        model_label: model.label(),
        step: model.step(),
        trec_depth: command.trec_depth,
        quiet: command.quiet,
    };
    let threads = command.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / command.workers.max(1)).max(1)
    });
    let shard_command = |request: &ShardRequest<'_>| {
        let shard = command.shard(request, threads, token_cache.clone());
        let mut process = Command::new(program);
        process.args(shard.to_args().into_vec()).env("OMP_NUM_THREADS", threads.to_string());
        process
    };
    let mut dirs = Vec::new();
    for evaluated in evaluate(&run, &shard_command)? {
        if let Some(address) = &command.coordinator {
            send_report(address, command, &evaluated.report)?;
        }
        dirs.push(evaluated.dir);
    }
    Ok(dirs)
}

/// Sends a report to a coordinator's `ReportEvaluation`.
fn send_report(address: &str, command: &EvalCommand, report: &EvalReport) -> Result<()> {
    let token = rosetta_common::token::read_token(command.token_file.as_deref())
        .map_err(|e| WorkerError::invalid("--token-file", e.0))?;
    let tls = command.tls_ca.as_deref().map(|ca| ClientTls::from_file(ca, None)).transpose()?;
    let endpoint = CoordinatorEndpoint { url: address.to_string(), tls };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WorkerError::invalid("runtime", e.to_string()))?;
    runtime.block_on(async {
        let mut client = connect(&endpoint, &token, Duration::from_secs(10)).await?;
        let report_json =
            serde_json::to_string(report).map_err(|e| WorkerError::invalid("evaluation report", e.to_string()))?;
        client.report_evaluation(rosetta_proto::v1::ReportEvaluationRequest { report_json }).await.map_err(|s| {
            WorkerError::Coordinator {
                call: "report evaluation",
                address: address.to_string(),
                message: format!("{} ({:?})", s.message(), s.code()),
            }
        })?;
        Ok(())
    })
}

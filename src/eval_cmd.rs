//! `rosetta eval` (and its hidden per-shard worker `rosetta eval-shard`) and `rosetta export`:
//! their command lines are types of `rosetta-eval` and `rosetta-worker-config`; the work is
//! `rosetta_worker::evaluation` (the driver of one shard process per worker), the shard of
//! `rosetta_worker::eval_shard`, and the export of `rosetta-model`.

use anyhow::bail;
use rosetta_eval::command::{EvalCommand, EvalShardCommand};
use rosetta_worker::eval_shard::{ModelToLoad, run_eval_shard};
use rosetta_worker_config::ExportCommand;

/// Runs `rosetta export`.
pub fn export(command: ExportCommand) -> anyhow::Result<()> {
    let encoder = match (&command.model, &command.config) {
        (_, Some(config)) => {
            let model = rosetta_deploy::run_config::RunConfig::load(config)?.model;
            rosetta_model::from_settings::build_encoder(&model, tch::Device::Cpu)?
        }
        (Some(path), None) => {
            let model = ModelToLoad::resolve(path)?;
            if matches!(model, ModelToLoad::Pretrained(_)) {
                bail!("{} is already a model directory; export takes a checkpoint or a run directory", path.display());
            }
            model.load(tch::Device::Cpu)?
        }
        (None, None) => bail!("give --model (a checkpoint or run directory) or --config (a run config)"),
    };
    rosetta_model::export::export_sentence_transformers(&encoder, &command.out)?;
    println!("{}", command.out.display());
    Ok(())
}

/// Runs `rosetta eval`: prints the report directories.
pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    let program = rosetta_deploy::coordinator::this_program()?;
    for dir in rosetta_worker::evaluation::run_evaluation(&command, &program)? {
        println!("{}", dir.display());
    }
    Ok(())
}

/// Runs one shard (`rosetta eval-shard`).
pub fn run_shard(command: EvalShardCommand) -> anyhow::Result<()> {
    Ok(run_eval_shard(&command)?)
}

//! `rosetta deploy TARGET --config run.yaml`: the run on this machine (`local`, as `rosetta
//! train`), on hosts over ssh, as a Slurm batch job, or as Kubernetes manifests
//! (`rosetta_deploy::remote`).

use rosetta_deploy::command::{DeployCommand, Target, TrainCommand};

/// Runs `rosetta deploy`.
pub fn run(command: DeployCommand) -> anyhow::Result<()> {
    if command.target == Target::Local {
        let mut train = TrainCommand::new(command.config);
        train.start = command.start;
        return crate::train_cmd::train(train);
    }
    Ok(rosetta_deploy::remote::deploy(&command)?)
}

//! The worker processes of a local cluster: started as `rosetta worker` processes (the token in
//! their environment, never on the command line), replaced whole when a generation ends, and
//! never left behind: dropping the supervisor kills every process it started.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rosetta_common::token::TOKEN_ENV;
use rosetta_worker_config::WorkerProcessConfig;

use crate::error::{DeployError, Result};

/// How to start one worker process.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The `rosetta` binary.
    pub program: PathBuf,
    /// Its command line.
    pub worker: WorkerProcessConfig,
    /// The job's token (handed over in the environment).
    pub token: String,
}

impl WorkerCommand {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(self.worker.to_args().into_vec()).env(TOKEN_ENV, &self.token);
        if let Some(threads) = self.worker.threads {
            command.env("OMP_NUM_THREADS", threads.max(1).to_string());
        }
        command
    }
}

/// The live worker processes of the current generation.
#[derive(Debug)]
pub struct WorkerProcesses {
    command: WorkerCommand,
    count: usize,
    children: Vec<Child>,
}

impl WorkerProcesses {
    /// Starts `count` workers.
    pub fn start(command: WorkerCommand, count: usize) -> Result<Self> {
        let mut processes = Self { command, count, children: Vec::with_capacity(count) };
        processes.spawn_all()?;
        Ok(processes)
    }

    fn spawn_all(&mut self) -> Result<()> {
        for i in 0..self.count {
            let child = self
                .command
                .command()
                .spawn()
                .map_err(|source| DeployError::Process { what: format!("starting worker process {i}"), source })?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Process ids of the running workers.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops every worker and starts a fresh set (a new generation).
    pub fn replace_all(&mut self) -> Result<()> {
        self.kill_all();
        self.spawn_all()
    }

    /// The first worker that exited unsuccessfully, described.
    pub fn first_failure(&mut self) -> Result<Option<String>> {
        for (i, child) in self.children.iter_mut().enumerate() {
            let status = child
                .try_wait()
                .map_err(|source| DeployError::Process { what: format!("checking worker process {i}"), source })?;
            if let Some(status) = status.filter(|s| !s.success()) {
                return Ok(Some(format!("worker process {i} (pid {}) exited with {status}", child.id())));
            }
        }
        Ok(None)
    }

    /// Gives every worker up to `grace` to exit by itself, then kills what is left.
    pub fn wait_or_kill(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill_all();
    }

    /// Kills and reaps every worker.
    pub fn kill_all(&mut self) {
        for mut child in self.children.drain(..) {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        self.kill_all();
    }
}

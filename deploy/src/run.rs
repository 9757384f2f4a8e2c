//! What every remote target starts from: the run's directory and resolved config (with the
//! workers and metrics address the target needs), and the files written there before anything
//! is submitted — `RUN/deploy/run.yaml` and the token, made once and readable by its owner only.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rosetta_common::RunDir;
use rosetta_common::atomic::{FileError, StagedFile};

use crate::error::{DeployError, Result};

/// A run to deploy, built by the caller.
#[derive(Debug, Clone)]
pub struct DeployRun {
    /// Its run directory (on a file system every node sees at the same path).
    pub run_dir: RunDir,
    /// Its name (`job.name`).
    pub run_name: String,
    /// The resolved run config for the target (absolute paths; `job.workers` = the target's
    /// workers; the metrics endpoint on `0.0.0.0:<metrics_port>`).
    pub run_config_yaml: String,
    /// Steps of the job.
    pub steps: u64,
    /// The `rosetta` binary on the nodes.
    pub binary: PathBuf,
    /// Environment of every remote process.
    pub env: BTreeMap<String, String>,
    /// The coordinator's gRPC port (0: any free one, found through `RUN/coordinator.json`).
    pub port: u16,
    /// The coordinator's metrics port (0: any free one).
    pub metrics_port: u16,
    /// The run's TLS files (`None`: plain HTTP/2, `deploy.tls: false`).
    pub tls: Option<crate::tls::RunTls>,
}

/// The files a target submits with.
#[derive(Debug, Clone)]
pub struct DeployFiles {
    /// `RUN/deploy/run.yaml`.
    pub config: PathBuf,
    /// `RUN/deploy/token` (mode 0600; kept across submissions, so requeued and resumed jobs
    /// use the same one).
    pub token: PathBuf,
}

fn io(error: FileError) -> DeployError {
    DeployError::Process { what: format!("writing {}", error.path.display()), source: error.source }
}

impl DeployRun {
    /// `RUN/deploy`.
    pub fn deploy_dir(&self) -> PathBuf {
        self.run_dir.root().join("deploy")
    }

    /// Writes the run config and (once) the token into `RUN/deploy`.
    pub fn write_files(&self) -> Result<DeployFiles> {
        let dir = self.deploy_dir();
        let config = dir.join("run.yaml");
        rosetta_common::atomic::write_atomic(&config, self.run_config_yaml.as_bytes()).map_err(io)?;
        let token = dir.join("token");
        if !token.is_file() {
            let secret = rosetta_common::random::random_hex::<32>().map_err(io)?;
            write_secret(&token, secret.as_bytes())?;
        }
        Ok(DeployFiles { config, token })
    }
}

/// Writes `bytes` to `path` atomically, readable by its owner only (mode 0600 from the start).
pub fn write_secret(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let failed = |source| DeployError::Process { what: format!("writing {}", path.display()), source };
    let staged = StagedFile::new(path).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(staged.temp_path())
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    drop(file);
    staged.commit().map_err(io)
}

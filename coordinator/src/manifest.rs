//! Checkpoint manifests: a checkpoint counts only once every rank reported its part written;
//! the coordinator then verifies the files' SHA-256, writes `manifest.json` atomically and
//! moves the `latest` pointer (also atomically), keeping the newest K checkpoints by step.

use rosetta_common::RunDir;
use rosetta_common::atomic::write_atomic;
use rosetta_common::digest::sha256_file;
use serde::{Deserialize, Serialize};

use crate::error::{CoordinatorError, Result};
use crate::schedule::Cursor;

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the run directory.
    pub path: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What a committed checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Last completed step (0-based): training resumes at `step + 1`.
    pub step: u64,
    /// Schedule cursor after that step.
    pub cursor: Cursor,
    /// Files, with checksums.
    pub files: Vec<ManifestFile>,
    /// SHA-256 of the run config that produced it.
    pub config_sha256: String,
    /// World size when it was written.
    pub world_size: usize,
    /// Generation when it was written.
    pub generation: u64,
}

fn checkpoint_error(error: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Checkpoint(error.to_string())
}

/// Verifies the files and commits the manifest: writes `manifest.json`, then `latest`, then
/// removes the oldest committed checkpoints beyond the newest `keep`.
pub fn commit(run_dir: &RunDir, manifest: &Manifest, keep: usize) -> Result<()> {
    for file in &manifest.files {
        let path = run_dir.root().join(&file.path);
        let actual = sha256_file(&path).map_err(checkpoint_error)?;
        if actual != file.sha256 {
            return Err(CoordinatorError::Checkpoint(format!(
                "{}: SHA-256 {actual} does not match the reported {}",
                path.display(),
                file.sha256
            )));
        }
    }
    let text = serde_json::to_vec_pretty(manifest).map_err(checkpoint_error)?;
    write_atomic(&run_dir.manifest(manifest.step), &text).map_err(checkpoint_error)?;
    run_dir.set_latest_checkpoint(manifest.step).map_err(checkpoint_error)?;
    prune(run_dir, keep)
}

fn prune(run_dir: &RunDir, keep: usize) -> Result<()> {
    let committed = run_dir.committed_steps().map_err(checkpoint_error)?;
    let excess = committed.len().saturating_sub(keep);
    for &step in &committed[..excess] {
        let dir = run_dir.checkpoint(step);
        std::fs::remove_dir_all(&dir).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The latest committed manifest of a run, if any. A checkpoint directory without a manifest
/// (a crash mid-write) is never taken.
pub fn latest(run_dir: &RunDir) -> Result<Option<Manifest>> {
    let Some(step) = run_dir.latest_checkpoint().map_err(checkpoint_error)? else { return Ok(None) };
    let path = run_dir.manifest(step);
    let text = std::fs::read(&path).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", path.display())))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok(Some(manifest))
}

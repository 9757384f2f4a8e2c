//! Checkpoint manifests: a checkpoint counts only once every rank reported its part written;
//! the coordinator then verifies the files' SHA-256, writes `manifest.json` atomically and
//! moves the `latest` pointer (also atomically), keeping the newest K checkpoints of the run by
//! step. Resuming verifies the checksums again and falls back to an older checkpoint when the
//! newest one is damaged.

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

/// Why a checkpoint file cannot be trusted, or `None` when its bytes match the manifest.
fn damage(run_dir: &RunDir, file: &ManifestFile) -> Option<String> {
    let path = run_dir.root().join(&file.path);
    match sha256_file(&path) {
        Err(error) => Some(error.to_string()),
        Ok(actual) if actual != file.sha256 => {
            Some(format!("{}: its SHA-256 does not match the one recorded in the manifest", path.display()))
        }
        Ok(_) => None,
    }
}

/// Verifies the files and commits the manifest: writes `manifest.json`, then `latest`, then
/// removes the oldest checkpoints of the same run (same config hash) beyond the newest `keep`,
/// except those `held` names among them (checkpoints still due for evaluation).
pub fn commit(run_dir: &RunDir, manifest: &Manifest, keep: usize, held: &dyn Fn(&[u64]) -> Vec<u64>) -> Result<()> {
    for file in &manifest.files {
        if let Some(damage) = damage(run_dir, file) {
            return Err(CoordinatorError::Checkpoint(damage));
        }
    }
    let text = serde_json::to_vec_pretty(manifest).map_err(checkpoint_error)?;
    write_atomic(&run_dir.manifest(manifest.step), &text).map_err(checkpoint_error)?;
    run_dir.set_latest_checkpoint(manifest.step).map_err(checkpoint_error)?;
    prune(run_dir, keep, &manifest.config_sha256, held)
}

fn read_manifest(run_dir: &RunDir, step: u64) -> Result<Manifest> {
    let path = run_dir.manifest(step);
    let text = std::fs::read(&path).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", path.display())))
}

fn prune(run_dir: &RunDir, keep: usize, config_sha256: &str, held: &dyn Fn(&[u64]) -> Vec<u64>) -> Result<()> {
    let mut ours = Vec::new();
    for step in run_dir.committed_steps().map_err(checkpoint_error)? {
        // Checkpoints of another run config in the same directory are not ours to remove.
        if read_manifest(run_dir, step).is_ok_and(|m| m.config_sha256 == config_sha256) {
            ours.push(step);
        }
    }
    let excess = ours.len().saturating_sub(keep);
    let held = held(&ours);
    for &step in ours[..excess].iter().filter(|step| !held.contains(step)) {
        let dir = run_dir.checkpoint(step);
        std::fs::remove_dir_all(&dir).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The newest committed checkpoint whose files all match their checksums; a damaged or
/// unreadable newer one is passed over with a warning that names the file.
pub fn latest_verified(run_dir: &RunDir) -> Result<Option<Manifest>> {
    for step in run_dir.committed_steps().map_err(checkpoint_error)?.into_iter().rev() {
        let manifest = match read_manifest(run_dir, step) {
            Ok(manifest) => manifest,
            Err(error) => {
                tracing::warn!(%error, step, "passing over a checkpoint whose manifest is unreadable");
                continue;
            }
        };
        match manifest.files.iter().find_map(|file| damage(run_dir, file)) {
            None => return Ok(Some(manifest)),
            Some(damage) => tracing::warn!(step, %damage, "passing over a damaged checkpoint; trying the one before"),
        }
    }
    Ok(None)
}

/// The latest committed manifest of a run, if any (as `checkpoints/latest` names it, unverified).
pub fn latest(run_dir: &RunDir) -> Result<Option<Manifest>> {
    let Some(step) = run_dir.latest_checkpoint().map_err(checkpoint_error)? else { return Ok(None) };
    read_manifest(run_dir, step).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(run_dir: &RunDir, step: u64, config: &str) -> Manifest {
        let relative = RunDir::model_file_relative(step);
        let path = run_dir.root().join(&relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("weights {step}")).unwrap();
        let sha256 = sha256_file(&path).unwrap();
        let cursor = Cursor { next_step: step + 1, fingerprint: 1, streams: Default::default() };
        Manifest {
            step,
            cursor,
            files: vec![ManifestFile { path: relative, sha256 }],
            config_sha256: config.into(),
            world_size: 1,
            generation: 1,
        }
    }

    /// Nothing held for evaluation.
    fn none(_: &[u64]) -> Vec<u64> {
        Vec::new()
    }

    #[test]
    fn retention_keeps_the_newest_by_step_and_only_prunes_its_own_run() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = RunDir::new(dir.path());
        // Another run config's checkpoint in the same directory (e.g. resumed with other settings).
        commit(&run_dir, &checkpoint(&run_dir, 5, "other"), 10, &none).unwrap();
        // Steps 9 and 10 sort wrongly as text ("step-9" > "step-10" would); by number 10 is newest.
        for step in [8, 9, 10, 100] {
            commit(&run_dir, &checkpoint(&run_dir, step, "ours"), 2, &none).unwrap();
        }
        assert_eq!(run_dir.committed_steps().unwrap(), vec![5, 10, 100]);
        assert_eq!(latest(&run_dir).unwrap().unwrap().step, 100);
    }

    #[test]
    fn retention_keeps_the_checkpoints_an_evaluation_still_wants() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = RunDir::new(dir.path());
        // Evaluation every 10 steps is behind: it still wants the checkpoint after step 9.
        let held = |committed: &[u64]| crate::evaluation::pending(committed, None, 10);
        for step in [4, 9, 14, 19, 24] {
            commit(&run_dir, &checkpoint(&run_dir, step, "ours"), 2, &held).unwrap();
        }
        assert_eq!(run_dir.committed_steps().unwrap(), vec![9, 19, 24], "19 is due too");
    }

    #[test]
    fn the_newest_verified_checkpoint_passes_over_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = RunDir::new(dir.path());
        for step in [1, 3] {
            commit(&run_dir, &checkpoint(&run_dir, step, "ours"), 5, &none).unwrap();
        }
        assert_eq!(latest_verified(&run_dir).unwrap().unwrap().step, 3);
        std::fs::write(run_dir.model_file(3), "torn").unwrap();
        assert_eq!(latest_verified(&run_dir).unwrap().unwrap().step, 1);
        std::fs::remove_file(run_dir.model_file(1)).unwrap();
        assert!(latest_verified(&run_dir).unwrap().is_none());
    }
}

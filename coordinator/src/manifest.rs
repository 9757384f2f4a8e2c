//! Checkpoint manifests: a checkpoint counts only once every rank reported its part written;
//! the coordinator then verifies the files' SHA-256, writes `manifest.json` atomically and
//! moves the `latest` pointer (also atomically), keeping the last K checkpoints.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoordinatorError, Result};
use crate::schedule::Cursor;

/// Name of the pointer file inside `checkpoints/`.
pub const LATEST: &str = "latest";

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

fn io_error(path: &Path, e: std::io::Error) -> CoordinatorError {
    CoordinatorError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| io_error(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` via a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    File::open(parent).and_then(|d| d.sync_all()).map_err(|e| io_error(parent, e))
}

/// The directory of the checkpoint after `step`.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:08}"))
}

/// Verifies the files and commits the manifest: writes `manifest.json`, then `latest`, then
/// removes checkpoints beyond the newest `keep`.
pub fn commit(run_dir: &Path, manifest: &Manifest, keep: usize) -> Result<()> {
    for file in &manifest.files {
        let path = run_dir.join(&file.path);
        let actual = sha256_file(&path)?;
        if actual != file.sha256 {
            return Err(CoordinatorError::Checkpoint(format!(
                "{}: SHA-256 {actual} does not match the reported {}",
                path.display(),
                file.sha256
            )));
        }
    }
    let dir = checkpoint_dir(run_dir, manifest.step);
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| CoordinatorError::Checkpoint(e.to_string()))?;
    write_atomically(&dir.join("manifest.json"), &text)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    write_atomically(&run_dir.join("checkpoints").join(LATEST), name.as_bytes())?;
    prune(run_dir, keep)
}

fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    let root = run_dir.join("checkpoints");
    let mut committed: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| io_error(&root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    committed.sort();
    let excess = committed.len().saturating_sub(keep);
    for old in &committed[..excess] {
        std::fs::remove_dir_all(old).map_err(|e| io_error(old, e))?;
    }
    Ok(())
}

/// The latest committed manifest of a run, if any. A checkpoint directory without a manifest
/// (a crash mid-write) is never taken.
pub fn latest(run_dir: &Path) -> Result<Option<Manifest>> {
    let pointer = run_dir.join("checkpoints").join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| io_error(&pointer, e))?;
    let path = run_dir.join("checkpoints").join(name.trim()).join("manifest.json");
    let text = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| CoordinatorError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok(Some(manifest))
}

//! The layout of a run directory, spelled out once:
//!
//! ```text
//! RUN/run.yaml                          the resolved run config the job was started with
//! RUN/checkpoints/step-NNNNNNNN/        model.safetensors + model.json (rank 0), manifest.json (coordinator)
//! RUN/checkpoints/latest                name of the newest committed checkpoint
//! RUN/eval/step-NNNNNNNN/<benchmark>/   evaluation reports of that checkpoint
//! RUN/eval/latest, RUN/eval/best.json   newest evaluated checkpoint, best one by the chosen metric
//! RUN/training-log.jsonl              one line per completed step (loss, batch kind), see training_log
//! RUN/job-state.json                    the coordinator's generation and used restarts (for --resume)
//! RUN/coordinator.json                  where the running coordinator listens (gRPC, metrics)
//! ```
//!
//! Steps count from 0: `step-00000099` is the checkpoint after the 100th step.

use std::path::{Path, PathBuf};

use crate::atomic::{FileError, FileResult, write_atomic};

/// File name of the resolved run config.
pub const RUN_CONFIG: &str = "run.yaml";
/// File name of a checkpoint's manifest (its presence is what makes a checkpoint committed).
pub const MANIFEST: &str = "manifest.json";
/// File name of the model and optimiser state inside a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// File name of the model settings inside a checkpoint (what rebuilds the encoder).
pub const MODEL_SETTINGS_FILE: &str = "model.json";
/// Name of the pointer files.
pub const LATEST: &str = "latest";

/// A run directory (see the module documentation for its layout).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory a checkpoint directory (`RUN/checkpoints/step-N`) belongs to, and its step.
    pub fn of_checkpoint(checkpoint: &Path) -> Option<(Self, u64)> {
        let step = parse_checkpoint_name(checkpoint.file_name()?.to_str()?)?;
        let checkpoints = checkpoint.parent()?;
        if checkpoints.file_name()? != "checkpoints" {
            return None;
        }
        let root = checkpoints.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some((Self::new(root), step))
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `RUN/run.yaml`.
    pub fn run_config(&self) -> PathBuf {
        self.root.join(RUN_CONFIG)
    }

    /// `RUN/checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `RUN/checkpoints/step-N`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(checkpoint_name(step))
    }

    /// The model file of the checkpoint after `step`, relative to the run directory (as manifests record it).
    pub fn model_file_relative(step: u64) -> String {
        format!("checkpoints/{}/{MODEL_FILE}", checkpoint_name(step))
    }

    /// `RUN/checkpoints/step-N/model.safetensors`.
    pub fn model_file(&self, step: u64) -> PathBuf {
        self.checkpoint(step).join(MODEL_FILE)
    }

    /// The model settings file of the checkpoint after `step`, relative to the run directory.
    pub fn model_settings_file_relative(step: u64) -> String {
        format!("checkpoints/{}/{MODEL_SETTINGS_FILE}", checkpoint_name(step))
    }

    /// `RUN/checkpoints/step-N/model.json`.
    pub fn model_settings_file(&self, step: u64) -> PathBuf {
        self.checkpoint(step).join(MODEL_SETTINGS_FILE)
    }

    /// `RUN/checkpoints/step-N/manifest.json`.
    pub fn manifest(&self, step: u64) -> PathBuf {
        self.checkpoint(step).join(MANIFEST)
    }

    /// `RUN/checkpoints/latest`.
    pub fn latest_pointer(&self) -> PathBuf {
        self.checkpoints().join(LATEST)
    }

    /// The step `checkpoints/latest` names (`None` when there is no pointer yet).
    pub fn latest_checkpoint(&self) -> FileResult<Option<u64>> {
        read_pointer(&self.latest_pointer())
    }

    /// Points `checkpoints/latest` at the checkpoint after `step` (atomically).
    pub fn set_latest_checkpoint(&self, step: u64) -> FileResult<()> {
        write_atomic(&self.latest_pointer(), checkpoint_name(step).as_bytes())
    }

    /// Steps of the committed checkpoints (those with a manifest), ascending.
    pub fn committed_steps(&self) -> FileResult<Vec<u64>> {
        let root = self.checkpoints();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FileError::new(root, e)),
        };
        let mut steps: Vec<u64> = entries
            .flatten()
            .filter_map(|e| parse_checkpoint_name(e.file_name().to_str()?))
            .filter(|&step| self.manifest(step).is_file())
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    /// `RUN/job-state.json`: what a restarted coordinator continues from.
    pub fn job_state(&self) -> PathBuf {
        self.root.join("job-state.json")
    }

    /// `RUN/training-log.jsonl`: one line per completed step.
    pub fn training_log(&self) -> PathBuf {
        self.root.join("training-log.jsonl")
    }

    /// `RUN/coordinator.json`: the addresses of the coordinator serving this run.
    pub fn coordinator_addresses(&self) -> PathBuf {
        self.root.join("coordinator.json")
    }

    /// `RUN/eval`.
    pub fn eval(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// `RUN/eval/token-cache`: tokenised benchmark texts, shared by the evaluations of every
    /// checkpoint (content-addressed; see `rosetta_model::token_cache`).
    pub fn token_cache(&self) -> PathBuf {
        self.eval().join("token-cache")
    }

    /// `RUN/eval/step-N`: the reports of the checkpoint after `step`.
    pub fn eval_step(&self, step: u64) -> PathBuf {
        self.eval().join(checkpoint_name(step))
    }

    /// Points `eval/latest` at the evaluation of the checkpoint after `step` (atomically).
    pub fn set_latest_eval(&self, step: u64) -> FileResult<()> {
        write_atomic(&self.eval().join(LATEST), checkpoint_name(step).as_bytes())
    }

    /// The step `eval/latest` names.
    pub fn latest_eval(&self) -> FileResult<Option<u64>> {
        read_pointer(&self.eval().join(LATEST))
    }

    /// `RUN/eval/best.json`.
    pub fn eval_best(&self) -> PathBuf {
        self.eval().join("best.json")
    }
}

/// `step-NNNNNNNN` (eight digits, zero-padded, so names sort by step).
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a `step-N` name.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    name.strip_prefix("step-")
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

fn read_pointer(path: &Path) -> FileResult<Option<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::new(path, e)),
    };
    parse_checkpoint_name(text.trim()).map(Some).ok_or_else(|| {
        FileError::new(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{:?} is not a step-N name", text.trim())),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.checkpoint(99), dir.path().join("checkpoints/step-00000099"));
        assert_eq!(RunDir::model_file_relative(7), "checkpoints/step-00000007/model.safetensors");
        assert_eq!(run.latest_checkpoint().unwrap(), None);
        run.set_latest_checkpoint(5).unwrap();
        assert_eq!(run.latest_checkpoint().unwrap(), Some(5));
        assert_eq!(std::fs::read_to_string(run.latest_pointer()).unwrap(), "step-00000005");
        for step in [12, 3, 100_000_000] {
            std::fs::create_dir_all(run.checkpoint(step)).unwrap();
            std::fs::write(run.manifest(step), b"{}").unwrap();
        }
        std::fs::create_dir_all(run.checkpoint(4)).unwrap(); // no manifest: not committed
        assert_eq!(run.committed_steps().unwrap(), vec![3, 12, 100_000_000]);
        let (back, step) = RunDir::of_checkpoint(&run.checkpoint(12)).unwrap();
        assert_eq!((back, step), (run.clone(), 12));
        assert_eq!(RunDir::of_checkpoint(Path::new("elsewhere/step-00000001")), None);
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_checkpoint_name("step-00000042"), Some(42));
        for bad in ["step-", "step-x1", "steps-1", "step--1", "step-1.tmp"] {
            assert_eq!(parse_checkpoint_name(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.latest_pointer(), "garbage").unwrap();
        let err = run.latest_checkpoint().unwrap_err();
        assert!(err.to_string().contains("not a step-N name"), "{err}");
    }
}

//! Atomic file writes, the one implementation every Rosetta crate uses: the bytes go to a hidden
//! temporary sibling, which is fsynced, renamed over the target, and the directory fsynced. After
//! a crash at any moment the target holds its old contents or its new ones, never a torn mix. A
//! staged file dropped before it is committed is removed, so a failure (a full disk, a killed
//! writer that unwinds) leaves no temporary file behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O failure on a named file (the OS error is kept as the source).
#[derive(Debug)]
pub struct FileError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// What the operating system said.
    pub source: std::io::Error,
}

impl FileError {
    /// Wraps `source` with the `path` it happened on.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self { path: path.into(), source }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of the file operations here.
pub type FileResult<T> = Result<T, FileError>;

/// Prefix of every temporary name this module makes (`.<name>.rosetta-tmp.<pid>.<n>`).
pub const TEMP_MARKER: &str = ".rosetta-tmp.";

/// A file being written under a temporary name until [`StagedFile::commit`] puts it in place.
#[derive(Debug)]
pub struct StagedFile {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A fresh hidden sibling name of `target`, unique within this process and across processes.
pub fn temp_sibling(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(target).join(format!(".{name}{TEMP_MARKER}{}.{n}", std::process::id()))
}

impl StagedFile {
    /// Prepares to write `target` (creating its directory); nothing exists on disk until
    /// something writes [`StagedFile::temp_path`].
    pub fn new(target: &Path) -> FileResult<Self> {
        let parent = parent_of(target);
        std::fs::create_dir_all(parent).map_err(|e| FileError::new(parent, e))?;
        Ok(Self { target: target.to_path_buf(), temp: temp_sibling(target), committed: false })
    }

    /// Where to write the contents (for writers that want a path, such as safetensors).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file this becomes on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Creates (or truncates) the temporary file for writing.
    pub fn create(&self) -> FileResult<File> {
        File::create(&self.temp).map_err(|e| FileError::new(&self.temp, e))
    }

    /// Makes the contents durable and puts them in place: fsync, rename, fsync of the directory.
    pub fn commit(mut self) -> FileResult<()> {
        File::open(&self.temp).and_then(|f| f.sync_all()).map_err(|e| FileError::new(&self.temp, e))?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| FileError::new(&self.target, e))?;
        self.committed = true;
        sync_dir(parent_of(&self.target))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically (see the module documentation).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> FileResult<()> {
    let staged = StagedFile::new(path)?;
    let mut file = staged.create()?;
    file.write_all(bytes).map_err(|e| FileError::new(staged.temp_path(), e))?;
    drop(file);
    staged.commit()
}

/// Fsyncs a directory, so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> FileResult<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FileError::new(dir, e))
}

/// Puts a fully written directory `staged` in place of `target`: an existing `target` is moved
/// aside first and removed only after the new one is in place.
pub fn replace_dir(staged: &Path, target: &Path) -> FileResult<()> {
    let parent = parent_of(target);
    let aside = temp_sibling(target);
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &aside).map_err(|e| FileError::new(target, e))?;
    }
    if let Err(e) = std::fs::rename(staged, target) {
        if had_old {
            let _ = std::fs::rename(&aside, target);
        }
        return Err(FileError::new(target, e));
    }
    sync_dir(parent)?;
    if had_old {
        std::fs::remove_dir_all(&aside).map_err(|e| FileError::new(&aside, e))?;
    }
    Ok(())
}

/// Whether a temporary's name (`.<target>.rosetta-tmp.<pid>.<n>`) names another process of
/// this machine that is still running: its file may be half-written right now (two runs packing
/// the same store at once), so it is not stale.
fn written_by_another_live_process(name: &str) -> bool {
    let Some((_, rest)) = name.split_once(TEMP_MARKER) else { return false };
    let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { return false };
    pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes temporary files this module left behind in `dir` after a crash (not recursive),
/// except those of other processes of this machine that are still running; returns how many it
/// removed.
pub fn remove_stale_temporaries(dir: &Path) -> FileResult<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(FileError::new(dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.contains(TEMP_MARKER) && !written_by_another_live_process(&name) {
            let path = entry.path();
            let outcome = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            outcome.map_err(|e| FileError::new(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_contents_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.json")]);
    }

    #[test]
    fn an_uncommitted_stage_is_removed_and_the_old_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_atomic(&path, b"old").unwrap();
        {
            let staged = StagedFile::new(&path).unwrap();
            std::fs::write(staged.temp_path(), b"half").unwrap();
            assert!(staged.temp_path().exists());
            // Dropped without commit: an error happened mid-write.
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_are_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staged = StagedFile::new(&dir.path().join("x")).unwrap();
        std::fs::write(staged.temp_path(), b"crashed").unwrap();
        std::mem::forget(staged); // a crash: no drop runs
        std::fs::write(dir.path().join("keep"), b"k").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_of_other_live_processes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        // PID 1 is always running; a PID beyond the kernel's maximum never is.
        std::fs::create_dir(dir.path().join(format!(".store{TEMP_MARKER}1.0"))).unwrap();
        std::fs::create_dir(dir.path().join(format!(".store{TEMP_MARKER}4294967295.0"))).unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        let left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(left, [format!(".store{TEMP_MARKER}1.0")]);
    }

    #[test]
    fn replace_dir_swaps_whole_directories() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("export");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("old"), b"o").unwrap();
        let staged = dir.path().join("export.new");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("new"), b"n").unwrap();
        replace_dir(&staged, &target).unwrap();
        assert!(target.join("new").exists() && !target.join("old").exists() && !staged.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_file() {
        let err = write_atomic(Path::new("/proc/definitely/not/here"), b"x").unwrap_err();
        assert!(err.to_string().starts_with("/proc/definitely"), "{err}");
    }
}

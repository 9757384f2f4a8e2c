//! Where the project's Python is (the venv `scripts/setup.sh` makes): what tests and
//! benchmarks that compare against Python peers run.

use std::path::{Path, PathBuf};

/// `ROSETTA_PYTHON`, else `$ROSETTA_VENV/bin/python`, else `<repo>/.venv/bin/python`.
pub fn project_python(repo: &Path) -> PathBuf {
    if let Ok(python) = std::env::var("ROSETTA_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = std::env::var("ROSETTA_VENV").map(PathBuf::from).unwrap_or_else(|_| repo.join(".venv"));
    venv.join("bin/python")
}

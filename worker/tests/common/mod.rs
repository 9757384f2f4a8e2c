//! Helpers shared by the worker's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's Python (the venv `scripts/setup.sh` made): `ROSETTA_PYTHON`, else
/// `$ROSETTA_VENV/bin/python`, else `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    let python = rosetta_common::python::project_python(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    assert!(
        python.exists(),
        "{} not found: these tests compare against Python transformers; run `make test` (it runs scripts/setup.sh)",
        python.display()
    );
    python
}

/// Runs a Python script of `worker/tests/python/` with arguments; panics with its stderr on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let out = Command::new(python()).arg(&path).args(args).env("HF_HUB_OFFLINE", "1").output().expect("python runs");
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Largest absolute difference between a tensor and nested f64 rows.
pub fn max_abs_diff(tensor: &tch::Tensor, expected: &[Vec<f64>]) -> f64 {
    let rows = expected.len() as i64;
    let cols = expected.first().map_or(0, Vec::len) as i64;
    assert_eq!(tensor.size(), vec![rows, cols], "shape");
    let flat: Vec<f64> = expected.iter().flatten().copied().collect();
    let expected = tch::Tensor::from_slice(&flat).view([rows, cols]);
    let diff = (tensor.to_kind(tch::Kind::Double) - expected).abs().max();
    diff.double_value(&[])
}

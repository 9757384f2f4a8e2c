//! Helpers shared by the end-to-end tests of the `rosetta` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary under test.
pub fn rosetta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosetta")).args(args).output().expect("rosetta runs")
}

/// Writes a small synthetic corpus to `out` (2 benchmark people); panics with stderr on failure.
pub fn synth_small(out: &Path, train_people: usize, mono_people: usize, vocab_size: usize) {
    let (train, mono, vocab) = (train_people.to_string(), mono_people.to_string(), vocab_size.to_string());
    let out = rosetta(&[
        "data",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--train-people",
        &train,
        "--mono-people",
        &mono,
        "--benchmark-people",
        "2",
        "--vocab-size",
        &vocab,
    ]);
    assert!(out.status.success(), "data synth failed: {}", String::from_utf8_lossy(&out.stderr));
}

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

/// Starts `rosetta coordinator` with `args` and `ROSETTA_TOKEN=token`; returns the process, its
/// gRPC address (`host:port`) and its metrics address, read from its first line of output.
pub fn start_coordinator(config: &Path, args: &[&str], token: &str) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["coordinator", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(args)
        .env("ROSETTA_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rosetta coordinator starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    // "coordinator on ADDR, metrics on http://ADDR/metrics"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() >= 6, "unexpected first line of the coordinator: {line:?}");
    let grpc = words[2].trim_end_matches(',').to_string();
    let metrics = words[5].trim_start_matches("http://").trim_end_matches("/metrics").to_string();
    (child, grpc, metrics)
}

//! End-to-end tests of `rosetta schedule preview` on real Parquet data and YAML configs.

mod common;

use std::path::Path;

use common::{rosetta, synth_small};

fn setup(dir: &Path, schedule: &str) -> String {
    let data = dir.join("data");
    synth_small(&data, 60, 30, 0);
    let config = dir.join("run.yaml");
    std::fs::write(&config, format!("version: 1\ndata:\n  train: [data/train.parquet]\nschedule:\n{schedule}"))
        .unwrap();
    config.to_str().unwrap().to_string()
}

#[test]
fn preview_reports_the_realised_mix_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "  strategy: hybrid\n  alpha: 0.5\n  global_batch_size: 16\n  seed: 3\n");
    let out = rosetta(&["schedule", "preview", "--config", &config, "--steps", "1000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mono = report["monolingual_fraction"].as_f64().unwrap();
    assert!((mono - 0.5).abs() < 0.071, "{mono}"); // 4.5 sigma for 1000 steps
    let shares: f64 = report["dataset_share"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert!(report["cross_examples_by_pair"]["qac->qae"].as_u64().unwrap() > 0);
    assert!(report["epoch_progress"]["synth-parallel/cross"].as_f64().unwrap() > 1.0);
    // Same config, same output.
    let again = rosetta(&["schedule", "preview", "--config", &config, "--steps", "1000", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["cross_examples_by_pair"], again["cross_examples_by_pair"]);
    let text = rosetta(&["schedule", "preview", "--config", &config, "--steps", "50"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("dataset share of batches"));
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "  strategy: hybrid\n  alfa: 0.5\n");
    let out = rosetta(&["schedule", "preview", "--config", &config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("alfa") && err.contains("run.yaml"), "{err}");

    let config = setup(dir.path(), "  strategy: x-y\n  languages: [qaa]\n  global_batch_size: 8\n");
    let out = rosetta(&["schedule", "preview", "--config", &config]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cross-lingual batches") && err.contains("synth-mono"), "{err}");

    let missing = dir.path().join("missing.yaml");
    std::fs::write(&missing, "version: 1\ndata:\n  train: [nowhere.parquet]\nschedule:\n  strategy: hybrid\n").unwrap();
    let out = rosetta(&["schedule", "preview", "--config", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("data.train[0]") && err.contains("nowhere.parquet"), "{err}");
}

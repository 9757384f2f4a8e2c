//! End-to-end tests of `rosetta data …` and `rosetta demo`, running the real binary.

mod common;

use std::path::Path;

use common::rosetta;

fn ok(args: &[&str]) -> String {
    let out = rosetta(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = rosetta(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

fn synth(dir: &Path) -> String {
    let out = dir.join("synth");
    let s = out.to_str().unwrap().to_string();
    ok(&[
        "data",
        "synth",
        "--out",
        &s,
        "--train-people",
        "40",
        "--mono-people",
        "10",
        "--benchmark-people",
        "5",
        "--vocab-size",
        "300",
    ]);
    s
}

#[test]
fn synth_validate_stats_and_shard_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path());
    let train = format!("{out}/train.parquet");
    let bench = format!("{out}/benchmark");
    assert!(Path::new(&format!("{out}/tokenizer.json")).exists());
    assert!(ok(&["data", "validate", &train]).contains("0 problems"));
    // The synth directory itself: every training file and benchmark in it is checked.
    let whole = ok(&["data", "validate", &out]);
    assert!(
        whole.contains("train.parquet:")
            && whole.contains("benchmark:")
            && whole.contains("benchmark-ood:")
            && !whole.contains("missing"),
        "{whole}"
    );
    // train.parquet, benchmark/ and the out-of-domain benchmark-ood/.
    let json: serde_json::Value = serde_json::from_str(&ok(&["data", "validate", &out, "--json"])).unwrap();
    assert_eq!((json["valid"].as_bool(), json["targets"].as_array().map(Vec::len)), (Some(true), Some(3)));
    let report = ok(&["data", "validate", &bench, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["queries_without_relevant"], 0);

    let stats: serde_json::Value = serde_json::from_str(&ok(&["data", "stats", &train, "--json"])).unwrap();
    assert_eq!(stats["rows_by_dataset"]["synth-mono"]["qaa"], 60);
    assert_eq!(stats["groups"], 40 * 6 + 10 * 6);
    assert!(stats["coverage"]["qaa-qac"].as_u64().unwrap() > 0);
    let text = ok(&["data", "stats", &train]);
    assert!(text.contains("parallel coverage") && text.contains("p50"), "{text}");

    let index_path = format!("{out}/idx.json");
    ok(&["data", "shard", &train, "--workers", "1", "--out", &index_path]);
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    assert_eq!(index["shards"][0]["rows"], index["total_rows"]);
}

#[test]
fn same_seed_same_bytes_of_data() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (sa, sb) = (synth(a.path()), synth(b.path()));
    for file in [
        "train.parquet",
        "tokenizer.json",
        "benchmark/corpus.parquet",
        "benchmark/queries.parquet",
        "benchmark/qrels.parquet",
    ] {
        let fa = std::fs::read(format!("{sa}/{file}")).unwrap();
        let fb = std::fs::read(format!("{sb}/{file}")).unwrap();
        assert!(fa == fb, "{file} differs between two runs with the same seed");
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.parquet");
    let err = fails(&["data", "validate", missing.to_str().unwrap()]);
    assert!(err.contains("nope.parquet") && err.contains("no such file"), "{err}");
    let err = fails(&["data", "synth", "--out", dir.path().to_str().unwrap(), "--languages", "3"]);
    assert!(err.contains("invalid languages: must be 5 to 8"), "{err}");
    let out = synth(dir.path());
    let err = fails(&["data", "shard", &format!("{out}/train.parquet"), "--workers", "50"]);
    assert!(err.contains("row group(s), fewer than 50 workers"), "{err}");
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"not parquet").unwrap();
    let err = fails(&["data", "stats", junk.to_str().unwrap()]);
    assert!(err.contains("junk.parquet") && err.contains("parquet"), "{err}");
    let err = fails(&["data", "convert", "--from", "lareqa", "--out", "x", "english.json"]);
    assert!(err.contains("LANG=PATH"), "{err}");
}

#[test]
fn demo_runs_the_pipeline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&["demo", "--out", dir.path().to_str().unwrap(), "--no-train"]);
    assert!(out.contains("[6/7] statistics"), "{out}");
    assert!(out.contains("shard 1:"), "{out}");
    assert!(dir.path().join("data/train.shards.json").exists());
}

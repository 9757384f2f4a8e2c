//! Evaluation reports from outside cannot grow `/metrics` without limit: at most
//! `MAX_EVAL_BENCHMARKS` distinct benchmarks are exported by one coordinator process (its own
//! test binary, since the Prometheus recorder and the budget are per process).

use rosetta_coordinator::metrics::{MAX_EVAL_BENCHMARKS, admit_eval_report};
use rosetta_datasets::benchmark::Protocol;
use rosetta_eval::report::EvalReport;

fn report(benchmark: &str, languages: &[&str]) -> EvalReport {
    serde_json::from_value(serde_json::json!({
        "benchmark": benchmark, "protocol": Protocol::Lareqa, "model": "m", "step": null,
        "languages": languages, "queries": 0, "candidates": 0, "ap_variant": "trec_eval",
        "lareqa": null, "qrels": null,
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn benchmarks_beyond_the_budget_and_odd_labels_are_refused() {
    let mut admitted = 0;
    for n in 0..MAX_EVAL_BENCHMARKS + 8 {
        admitted += usize::from(admit_eval_report(&report(&format!("bench-{n}"), &["en"])).is_ok());
    }
    assert_eq!(admitted, MAX_EVAL_BENCHMARKS);
    // A benchmark already exported is still welcome.
    assert!(admit_eval_report(&report("bench-0", &["en", "de"])).is_ok());
    let many: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(admit_eval_report(&report("bench-1", &many)).unwrap_err().contains("languages"));
    assert!(admit_eval_report(&report("bench-1", &["en\"}"])).unwrap_err().contains("language code"));
}

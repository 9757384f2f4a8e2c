//! Evaluation results as Prometheus series (`rosetta_eval_*`), from the reports the
//! evaluation aggregates.

use rosetta_eval::report::EvalReport;

/// Sets the `rosetta_eval_*` gauges from one report.
pub fn export_eval_report(report: &EvalReport) {
    let benchmark = report.benchmark.clone();
    if let Some(step) = report.step {
        metrics::gauge!("rosetta_eval_step", "benchmark" => benchmark.clone()).set(step as f64);
    }
    if let Some(lareqa) = &report.lareqa {
        for pair in &lareqa.pairs {
            if let Some(map) = pair.map {
                let setting = if pair.query_lang == pair.corpus_lang { "monolingual" } else { "cross-lingual" };
                metrics::gauge!("rosetta_eval_map", "benchmark" => benchmark.clone(), "setting" => setting,
                    "query_lang" => pair.query_lang.clone(), "corpus_lang" => pair.corpus_lang.clone())
                .set(map);
            }
        }
        for pooled in &lareqa.pooled {
            if let Some(map) = pooled.map {
                metrics::gauge!("rosetta_eval_map", "benchmark" => benchmark.clone(), "setting" => "multilingual",
                    "query_lang" => pooled.query_lang.clone(), "corpus_lang" => "all")
                .set(map);
            }
            if let Some(distance) = pooled.rank_distance {
                metrics::gauge!("rosetta_eval_rank_distance", "benchmark" => benchmark.clone(),
                    "query_lang" => pooled.query_lang.clone())
                .set(distance);
            }
        }
        for (setting, average) in [
            ("monolingual", lareqa.monolingual),
            ("cross-lingual", lareqa.cross_lingual),
            ("multilingual", lareqa.multilingual),
        ] {
            if let Some(map) = average.map {
                metrics::gauge!("rosetta_eval_map_macro", "benchmark" => benchmark.clone(), "setting" => setting)
                    .set(map);
            }
        }
        if let Some(distance) = lareqa.rank_distance {
            metrics::gauge!("rosetta_eval_rank_distance_macro", "benchmark" => benchmark.clone()).set(distance);
        }
    }
    if let Some(qrels) = &report.qrels {
        for lang in &qrels.languages {
            for (name, value) in
                [("rosetta_eval_ndcg_at_10", lang.ndcg_at_10), ("rosetta_eval_recall_at_100", lang.recall_at_100)]
            {
                if let Some(value) = value {
                    metrics::gauge!(name, "benchmark" => benchmark.clone(), "lang" => lang.lang.clone()).set(value);
                }
            }
        }
    }
}

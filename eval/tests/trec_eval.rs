//! Every metric against pytrec_eval (trec_eval's code) on the same rankings, to 1e-9, with
//! tie-heavy scores, queries with several relevant candidates and queries with none in a pool.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::random_task;
use rosetta_datasets::benchmark::{Pool, Protocol};
use rosetta_eval::output::write_trec;
use rosetta_eval::rank::rank_sharded;
use rosetta_eval::report::EvalReport;
use rosetta_eval::task::EvalTask;
use serde_json::Value;

fn python() -> PathBuf {
    rosetta_common::python::project_python(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Writes full-depth run files and the id → language maps, and scores them with pytrec_eval.
fn pytrec_eval(dir: &Path, task: &EvalTask, ranking: &rosetta_eval::rank::Ranking) -> Value {
    write_trec(dir, task, ranking, task.num_docs()).unwrap();
    let tsv = |ids: &[String], langs: &[u16]| {
        ids.iter().zip(langs).map(|(id, &l)| format!("{id}\t{}\n", task.languages[l as usize])).collect::<String>()
    };
    std::fs::write(dir.join("doc_langs.tsv"), tsv(&task.doc_ids, &task.doc_lang)).unwrap();
    std::fs::write(dir.join("query_langs.tsv"), tsv(&task.query_ids, &task.query_lang)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/trec_check.py");
    let pool = if task.pool == Pool::Corpus { "corpus" } else { "language" };
    let out = Command::new(python())
        .arg(script)
        .arg(dir)
        .arg(pool)
        .output()
        .expect("the project's python (make test sets it up)");
    assert!(out.status.success(), "trec_check.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_close(ours: Option<f64>, theirs: &Value, what: &str) {
    let theirs = theirs.as_f64().unwrap_or_else(|| panic!("{what}: pytrec_eval gave {theirs}"));
    let ours = ours.unwrap_or_else(|| panic!("{what}: we report nothing, pytrec_eval {theirs}"));
    assert!((ours - theirs).abs() < 1e-9, "{what}: ours {ours}, pytrec_eval {theirs}");
}

#[test]
fn lareqa_numbers_match_pytrec_eval() {
    let mut correlations = 0;
    for (seed, ties) in [(11, true), (12, false), (13, true)] {
        let dir = tempfile::tempdir().unwrap();
        let (task, q, d, dim) = random_task(seed, Protocol::Lareqa, 3, 60, 150, ties);
        let ranking = rank_sharded(&task, &q, &d, dim, 2, task.num_docs()).unwrap();
        let report = EvalReport::compute(&task, &ranking, "random", None);
        let theirs = pytrec_eval(dir.path(), &task, &ranking);
        let lareqa = report.lareqa.as_ref().unwrap();
        let mut compared = 0;
        for pair in &lareqa.pairs {
            let key = format!("{}-{}", pair.query_lang, pair.corpus_lang);
            match theirs["pairs"].get(&key) {
                Some(t) => {
                    assert_close(pair.map, &t["map"], &format!("{key} map"));
                    assert_close(pair.recall_at_1, &t["recall_1"], &format!("{key} R@1"));
                    assert_close(pair.ndcg_at_10, &t["ndcg_cut_10"], &format!("{key} nDCG@10"));
                    assert_eq!(t["n"].as_u64().unwrap() as usize, pair.coverage.evaluated, "{key} queries");
                    compared += 1;
                }
                None => assert_eq!(pair.coverage.evaluated, 0, "{key}: pytrec_eval has no query to score"),
            }
        }
        assert_eq!(compared, 9);
        for pooled in &lareqa.pooled {
            let t = &theirs["multilingual"][&pooled.query_lang];
            assert_close(pooled.map, &t["map"], &format!("multilingual {} map", pooled.query_lang));
            assert_close(pooled.recall_at_10, &t["recall_10"], "multilingual R@10");
            assert_close(pooled.ndcg_at_10, &t["ndcg_cut_10"], "multilingual nDCG@10");
            match pooled.rank_distance {
                Some(rd) => assert_close(Some(rd), &t["rank_distance"], "rank distance"),
                None => assert!(t["rank_distance"].is_null()),
            }
            assert_eq!(t["n"].as_u64().unwrap() as usize, pooled.coverage.evaluated);
        }
        match lareqa.parallel_rank_correlation {
            Some(r) => {
                assert_close(Some(r), &theirs["parallel_rank_correlation"], "parallel rank correlation");
                correlations += 1;
            }
            None => assert!(theirs["parallel_rank_correlation"].is_null()),
        }
        // Skipped queries are counted: every query is either evaluated or skipped in each setting.
        for pair in &lareqa.pairs {
            let in_lang = task.query_lang.iter().filter(|&&l| task.languages[l as usize] == pair.query_lang).count();
            assert_eq!(pair.coverage.evaluated + pair.coverage.skipped, in_lang);
        }
    }
    assert_eq!(correlations, 3, "every random task should have parallel groups with three relevant candidates");
}

#[test]
fn qrels_numbers_match_pytrec_eval() {
    // Each query in its language's pool, and (MKQA's protocol) every query in the whole corpus.
    for (seed, ties, pool) in [(21, true, Pool::Language), (22, false, Pool::Language), (23, true, Pool::Corpus)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut task, q, d, dim) = random_task(seed, Protocol::Qrels, 2, 50, 240, ties);
        task.pool = pool;
        let ranking = rank_sharded(&task, &q, &d, dim, 3, task.num_docs()).unwrap();
        let report = EvalReport::compute(&task, &ranking, "random", None);
        let theirs = pytrec_eval(dir.path(), &task, &ranking);
        for lang in &report.qrels.as_ref().unwrap().languages {
            let t = &theirs["qrels"][&lang.lang];
            assert_close(lang.ndcg_at_10, &t["ndcg_cut_10"], &format!("{} nDCG@10", lang.lang));
            assert_close(lang.recall_at_100, &t["recall_100"], "R@100");
            assert_close(lang.map, &t["map"], "map");
            assert_close(lang.success_at_20, &t["success_20"], "success@20");
            assert_close(lang.success_at_100, &t["success_100"], "success@100");
            assert_eq!(t["n"].as_u64().unwrap() as usize, lang.coverage.evaluated);
        }
    }
}

//! The out-of-domain converters end to end: Belebele, MTEB sub-sets (one cross-lingual) and
//! MKQA files written here in each release's layout are converted with `rosetta data convert`,
//! pass `rosetta data validate`, and `rosetta eval` scores a model on all three with the
//! protocol each calls for (LAReQA; a pool per sub-set; every language against one corpus).

mod common;

use std::path::Path;

use common::{rosetta, synth_small, tiny_run, write_config};
use rosetta_eval::report::EvalReport;

fn ok(args: &[&str]) -> String {
    let out = rosetta(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "rosetta {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn jsonl(path: &Path, rows: &[serde_json::Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
}

fn belebele(dir: &Path) {
    let passages = [("p/1", "The river floods in spring."), ("p/2", "Bees make honey from nectar.")];
    for (dialect, prefix) in [("eng_Latn", ""), ("deu_Latn", "DE "), ("ben_Latn", "BN ")] {
        let rows: Vec<serde_json::Value> = passages
            .iter()
            .flat_map(|(link, text)| {
                (1..=2).map(move |n| {
                    serde_json::json!({"link": link, "question_number": n, "flores_passage": format!("{prefix}{text}"),
                        "question": format!("{prefix}question {n} about {link}?"), "mc_answer1": "a",
                        "correct_answer_num": "1", "dialect": dialect, "ds": "2023-05-03"})
                })
            })
            .collect();
        jsonl(&dir.join(format!("belebele/{dialect}.jsonl")), &rows);
    }
}

fn mteb(dir: &Path) {
    for (subset, query) in [("deu-deu", "Wo fließt der Rhein?"), ("eng-deu", "Where does the Rhine flow?")] {
        let root = dir.join("xpqa").join(subset);
        jsonl(
            &root.join("corpus.jsonl"),
            &[
                serde_json::json!({"_id": "d1", "title": "Rhein", "text": "Der Rhein fließt durch Köln."}),
                serde_json::json!({"_id": "d2", "title": "Elbe", "text": "Die Elbe fließt durch Hamburg."}),
            ],
        );
        jsonl(&root.join("queries.jsonl"), &[serde_json::json!({"_id": "q1", "text": query})]);
        std::fs::create_dir_all(root.join("qrels")).unwrap();
        std::fs::write(root.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n").unwrap();
    }
}

fn mkqa(dir: &Path) {
    jsonl(
        &dir.join("mkqa/mkqa.jsonl"),
        &[
            serde_json::json!({"example_id": 1, "queries": {"en": "where is cologne", "de": "wo liegt köln", "ja": "ケルンはどこ"},
                "answers": {"en": [{"type": "entity", "text": "Germany", "aliases": ["Federal Republic of Germany"]}]}}),
            serde_json::json!({"example_id": 2, "queries": {"en": "who wrote faust", "de": "wer schrieb faust", "ja": "ファウスト"},
                "answers": {"en": [{"type": "entity", "text": "Goethe", "aliases": []}]}}),
        ],
    );
    jsonl(
        &dir.join("mkqa/corpus.jsonl"),
        &[
            serde_json::json!({"_id": "w1", "title": "Cologne", "text": "Cologne is a city in Germany."}),
            serde_json::json!({"_id": "w2", "title": "Faust", "text": "Faust is a play by Goethe."}),
            serde_json::json!({"_id": "w3", "title": "Bees", "text": "Bees make honey."}),
        ],
    );
}

fn report(dir: &Path) -> EvalReport {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn converted_benchmarks_validate_and_evaluate_with_their_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |rel: &str| d.join(rel).to_str().unwrap().to_string();
    belebele(d);
    mteb(d);
    mkqa(d);
    let files: Vec<String> =
        ["eng_Latn", "deu_Latn", "ben_Latn"].iter().map(|l| p(&format!("belebele/{l}.jsonl"))).collect();
    let mut args = vec!["data", "convert", "--from", "belebele", "--out"];
    let out = p("bench/belebele");
    args.push(&out);
    args.extend(files.iter().map(String::as_str));
    let stdout = ok(&args);
    assert!(stdout.contains("12 questions, 6 passages, 36 judgements"), "{stdout}");
    let (deu, eng) = (format!("deu-deu={}", p("xpqa/deu-deu")), format!("eng-deu={}", p("xpqa/eng-deu")));
    let stdout = ok(&["data", "convert", "--from", "mteb", "--out", &p("bench/xpqa"), &deu, &eng]);
    assert!(stdout.contains("in sub-sets de en-de"), "{stdout}");
    let stdout = ok(&[
        "data",
        "convert",
        "--from",
        "mkqa",
        "--out",
        &p("bench/mkqa"),
        &p("mkqa/mkqa.jsonl"),
        &p("mkqa/corpus.jsonl"),
    ]);
    assert!(stdout.contains("6 queries in 3 languages, 3 passages, 6 judgements"), "{stdout}");
    for bench in ["belebele", "xpqa", "mkqa"] {
        ok(&["data", "validate", &p(&format!("bench/{bench}"))]);
    }

    synth_small(&d.join("data"), 20, 0, 300);
    write_config(d, "run", &tiny_run("r", 2, 1));
    ok(&["export", "--config", &p("run.yaml"), "--out", &p("model")]);
    let stdout = ok(&[
        "eval",
        "--model",
        &p("model"),
        "--out",
        &p("eval"),
        "--quiet",
        "--benchmark",
        &p("bench/belebele"),
        "--benchmark",
        &p("bench/xpqa"),
        "--benchmark",
        &p("bench/mkqa"),
    ]);
    assert!(!stdout.is_empty());
    let belebele = report(&d.join("eval/belebele"));
    let lareqa = belebele.lareqa.as_ref().expect("belebele is scored by the LAReQA protocol");
    assert_eq!(belebele.languages, ["bn_Latn", "de", "en"]);
    assert_eq!(lareqa.pairs.len(), 9, "every query-corpus language pair");
    assert!(lareqa.rank_distance.is_some() && lareqa.multilingual.map.is_some());
    let xpqa = report(&d.join("eval/xpqa")).qrels.expect("qrels protocol");
    let pools: Vec<&str> = xpqa.languages.iter().map(|l| l.lang.as_str()).collect();
    assert_eq!(pools, ["de", "en-de"], "the cross-lingual sub-set is its own pool");
    assert!(xpqa.languages.iter().all(|l| l.coverage.evaluated == 1 && l.judgements_outside_pool == 0));
    let mkqa = report(&d.join("eval/mkqa")).qrels.expect("qrels protocol");
    let languages: Vec<&str> = mkqa.languages.iter().map(|l| l.lang.as_str()).collect();
    assert_eq!(languages, ["de", "en", "ja"]);
    for language in &mkqa.languages {
        // Three passages: every relevant one is in the top 20, whatever the model.
        assert_eq!((language.coverage.evaluated, language.success_at_20), (2, Some(1.0)), "{}", language.lang);
        assert_eq!(language.judgements_outside_pool, 0, "the whole corpus is every language's pool");
    }
}

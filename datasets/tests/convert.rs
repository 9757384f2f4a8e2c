//! Converters on small hand-written fixtures of each public format.

use std::path::{Path, PathBuf};

use rosetta_datasets::benchmark::{Benchmark, Protocol};
use rosetta_datasets::convert::{
    BeirInputs, LanguageFile, PositiveUnit, convert_beir, convert_jsonl_pairs, convert_lareqa, convert_squad_pairs,
};
use rosetta_datasets::pairs::read_pairs;
use rosetta_datasets::shard::{build_shard_index, stream_shard};
use rosetta_datasets::table::text_column;
use rosetta_datasets::validate::{validate_benchmark, validate_pairs};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Two languages of a LAReQA-style release: q1 has its answer in sentence 1 (en) and 0 (de);
/// q2 only exists in English; q3 has an answer outside every sentence range.
fn lareqa_fixture(dir: &Path) -> Vec<LanguageFile> {
    let en = r#"{"data":[{"title":"T","paragraphs":[{"context":"Ana is tall. She was born in Oslo.",
      "sentences":["Ana is tall.","She was born in Oslo."],"sentence_breaks":[[0,12],[13,34]],
      "qas":[{"id":"q1","question":"Where was Ana born?","answers":[{"answer_start":29,"text":"Oslo"}]},
             {"id":"q2","question":"Is Ana tall?","answers":[{"answer_start":4,"text":"is tall"}]},
             {"id":"q3","question":"Broken?","answers":[{"answer_start":99,"text":"x"}]}]}]}]}"#;
    let de = r#"{"data":[{"paragraphs":[{"context":"Ana wurde in Oslo geboren. Sie ist groß.",
      "sentences":["Ana wurde in Oslo geboren.","Sie ist groß."],"sentence_breaks":[[0,26],[27,40]],
      "qas":[{"id":"q1","question":"Wo wurde Ana geboren?","answers":[{"answer_start":13,"text":"Oslo"}]}]}]}]}"#;
    vec![
        LanguageFile::parse(write(dir, "xquad/en.json", en).to_str().unwrap()).unwrap(),
        LanguageFile::parse(&format!("de={}", write(dir, "xquad/german.json", de).display())).unwrap(),
    ]
}

#[test]
fn lareqa_links_parallel_questions_to_answer_sentences_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = lareqa_fixture(dir.path());
    let out = dir.path().join("bench");
    let summary = convert_lareqa(&inputs, &out, "xquad-r-mini").unwrap();
    assert_eq!((summary.queries, summary.candidates, summary.unanswerable), (3, 4, 1));
    let report = validate_benchmark(&out).unwrap();
    assert!(report.is_valid(), "{:#?}", report.problems);
    let bench = Benchmark::load(&out).unwrap();
    assert_eq!(bench.spec.protocol, Protocol::Lareqa);
    assert_eq!(bench.spec.languages, vec!["de", "en"]);
    let relevant = |qid: &str| {
        let mut docs: Vec<String> =
            bench.qrels.iter().filter(|q| q.query_id == qid).map(|q| q.doc_id.clone()).collect();
        docs.sort();
        docs
    };
    assert_eq!(relevant("q1.en"), vec!["de/p0/s0", "en/p0/s1"]);
    assert_eq!(relevant("q1.de"), vec!["de/p0/s0", "en/p0/s1"]);
    assert_eq!(relevant("q2.en"), vec!["en/p0/s0"]);
    let candidate = bench.corpus.iter().find(|c| c.doc_id == "en/p0/s1").unwrap();
    assert_eq!(candidate.text, "She was born in Oslo.");
    assert_eq!(candidate.context.as_deref(), Some("Ana is tall. She was born in Oslo."));
}

#[test]
fn a_file_without_a_language_name_is_refused() {
    let err = LanguageFile::parse("data/english.json").unwrap_err().to_string();
    assert!(err.contains("LANG=PATH"), "{err}");
}

#[test]
fn squad_pairs_group_translations_and_pick_the_answer_sentence_or_paragraph() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = lareqa_fixture(dir.path());
    let out = dir.path().join("pairs.parquet");
    let summary = convert_squad_pairs(&inputs, &out, "xquad", PositiveUnit::Sentence, 100).unwrap();
    // q3's answer lies in no sentence, so it has no positive and is dropped.
    assert_eq!((summary.rows, summary.groups), (3, 2));
    assert!(validate_pairs(&out).unwrap().is_valid());
    let rows = read_pairs(&out).unwrap();
    let q1: Vec<_> = rows.iter().filter(|r| r.pair_id == "q1").collect();
    assert_eq!(q1.len(), 2);
    assert_eq!(q1.iter().find(|r| r.lang == "de").unwrap().positive, "Ana wurde in Oslo geboren.");
    let out = dir.path().join("para.parquet");
    convert_squad_pairs(&inputs, &out, "xquad", PositiveUnit::Paragraph, 100).unwrap();
    let rows = read_pairs(&out).unwrap();
    assert!(rows.iter().all(|r| r.positive.len() > 30 || r.lang == "de"));
}

#[test]
fn jsonl_pairs_are_grouped_whatever_the_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for lang in ["en", "de", "fr"] {
        for i in 0..300 {
            lines.push_str(&format!(
                "{{\"pair_id\":\"p{i}\",\"lang\":\"{lang}\",\"query\":\"q{i} {lang}\",\"positive\":\"a{i}\",\"negatives\":[\"n\"]}}\n"
            ));
        }
    }
    let input = write(dir.path(), "pairs.jsonl", &lines);
    let out = dir.path().join("out.parquet");
    let summary = convert_jsonl_pairs(&[input], &out, "web", 64).unwrap();
    assert_eq!((summary.rows, summary.groups), (900, 300));
    assert!(summary.row_groups > 5);
    let report = validate_pairs(&out).unwrap();
    assert!(report.is_valid(), "{:#?}", report.problems);
    // Every group lies inside one row group, so the file shards for many workers.
    let index = build_shard_index(&out, 4).unwrap();
    assert_eq!(index.shards.iter().map(|s| s.rows).sum::<usize>(), 900);
    // Streaming each shard (async, projected) yields every row exactly once.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut seen = Vec::new();
    for shard in &index.shards {
        runtime.block_on(async {
            use futures::StreamExt;
            let mut stream = Box::pin(stream_shard(&out, shard, &["pair_id", "lang"], 50).await.unwrap());
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                assert_eq!(batch.num_columns(), 2);
                let ids = text_column(&batch, "pair_id").unwrap();
                let langs = text_column(&batch, "lang").unwrap();
                for i in 0..batch.num_rows() {
                    seen.push((shard.rank, ids.get(i).unwrap().to_string(), langs.get(i).unwrap().to_string()));
                }
            }
        });
    }
    assert_eq!(seen.len(), 900);
    let distinct: std::collections::HashSet<_> = seen.iter().map(|(_, id, lang)| (id, lang)).collect();
    assert_eq!(distinct.len(), 900);
    let shard_of: std::collections::HashMap<&String, usize> = seen.iter().map(|(rank, id, _)| (id, *rank)).collect();
    assert!(seen.iter().all(|(rank, id, _)| shard_of[id] == *rank), "a parallel group spans two shards");
    let rows = read_pairs(&out).unwrap();
    assert!(rows.iter().all(|r| r.dataset == "web" && r.negatives.as_deref() == Some(&["n".to_string()][..])));
}

#[test]
fn jsonl_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let cases: [(&[u8], &str); 5] = [
        (b"{\"pair_id\":\"a\",\"lang\":\"en\",\"query\":\"q\",\"positive\":\"\"}\n", "line 1: field \"positive\" is empty"),
        (b"\n{\"pair_id\":\"a\",\"lang\":\"xx\",\"query\":\"q\",\"positive\":\"p\"}\n", "line 2: unknown language code"),
        (b"{\"pair_id\":\"a\",\"lang\":\"en\",\"query\":\"q\",\"positive\":\"p\",\"extra\":1}\n", "line 1: unknown field"),
        (b"{\"pair_id\":\"a\",\"lang\":\"en\",\"query\":\"q\xff\",\"positive\":\"p\"}\n", "line 1: not valid UTF-8"),
        (
            b"{\"pair_id\":\"a\",\"lang\":\"en\",\"query\":\"q\",\"positive\":\"p\"}\n{\"pair_id\":\"a\",\"lang\":\"en\",\"query\":\"r\",\"positive\":\"p\"}\n",
            "duplicate (pair_id, lang)",
        ),
    ];
    for (i, (bytes, expected)) in cases.iter().enumerate() {
        let input = dir.path().join(format!("case{i}.jsonl"));
        std::fs::write(&input, bytes).unwrap();
        let err = convert_jsonl_pairs(std::slice::from_ref(&input), &out, "d", 10).unwrap_err().to_string();
        assert!(err.contains(expected), "case {i}: {err}");
        assert!(err.contains(&format!("case{i}.jsonl")), "case {i}: {err}");
    }
    assert!(!out.exists(), "a failed conversion must not leave an output file");
}

#[test]
fn beir_with_tsv_and_trec_qrels() {
    let dir = tempfile::tempdir().unwrap();
    let en = dir.path().join("en");
    write(
        &en,
        "corpus.jsonl",
        "{\"_id\":\"d1\",\"title\":\"Oslo\",\"text\":\"capital of Norway\"}\n{\"_id\":\"d2\",\"title\":\"\",\"text\":\"rain\"}\n",
    );
    write(&en, "queries.jsonl", "{\"_id\":\"q1\",\"text\":\"capital?\"}\n{\"_id\":\"q2\",\"text\":\"weather?\"}\n");
    write(&en, "qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td2\t0\n");
    let sw = dir.path().join("sw");
    write(&sw, "corpus.jsonl", "{\"docid\":\"s1\",\"title\":\"\",\"text\":\"mvua\"}\n");
    write(&sw, "topics.tsv", "t1\tmvua?\n");
    write(&sw, "qrels.test.trec", "t1 Q0 s1 1\n");
    let inputs =
        vec![BeirInputs::discover(&en, "test", "en").unwrap(), BeirInputs::discover(&sw, "test", "sw").unwrap()];
    let out = dir.path().join("bench");
    let summary = convert_beir(&inputs, &out, "mini-miracl").unwrap();
    assert_eq!((summary.queries, summary.candidates, summary.qrels), (3, 3, 3));
    let report = validate_benchmark(&out).unwrap();
    assert!(report.is_valid(), "{:#?}", report.problems);
    assert_eq!(report.queries_without_relevant, 1);
    let bench = Benchmark::load(&out).unwrap();
    assert_eq!(bench.corpus[0].text, "Oslo capital of Norway");
    assert_eq!(bench.qrels[0].relevance, 2);
    // Unknown ids in qrels are refused with file and line.
    write(&sw, "qrels.test.trec", "t1 Q0 s1 1\nt1 Q0 nope 1\n");
    let inputs = vec![BeirInputs::discover(&sw, "test", "sw").unwrap()];
    let err = convert_beir(&inputs, &dir.path().join("b2"), "x").unwrap_err().to_string();
    assert!(err.contains("qrels.test.trec: line 2: unknown document id \"nope\""), "{err}");
}

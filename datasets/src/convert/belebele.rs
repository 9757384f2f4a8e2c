//! Belebele → `lareqa` benchmark. Belebele (Bandarkar et al., 2024) gives, per language
//! variant, a JSONL (or JSON array) file of 900 questions over 488 FLORES-200 passages, fully
//! parallel: the same `link` and `question_number` name the same question in every variant.
//! Each line has `link`, `question_number`, `flores_passage`, `question` and `dialect` (the
//! FLORES-200 code, e.g. `deu_Latn`); other fields (the multiple-choice answers) are ignored.
//!
//! Retrieval follows the LAReQA protocol: every distinct passage of every language is a
//! candidate, and a question is relevant to its own passage in every language, so the
//! benchmark gives mono-, cross- and multilingual mAP, rank distance, and per-pair nDCG@10.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BenchmarkSummary, for_each_line};
use crate::benchmark::{BenchmarkSpec, Candidate, CorpusWriter, Protocol, Qrel, QrelWriter, Query, QueryWriter};
use crate::error::{DatasetError, Result};
use crate::lang::{normalise_language, unknown_language_message};

#[derive(Deserialize)]
struct Row {
    link: String,
    question_number: serde_json::Value,
    flores_passage: String,
    question: String,
    dialect: String,
}

/// One language variant's questions and passages, read and checked.
struct Variant {
    lang: String,
    /// link → passage text.
    passages: BTreeMap<String, String>,
    /// (link, question number, question text), in file order.
    questions: Vec<(String, String, String)>,
}

/// Whether the file's first non-blank byte opens a JSON array (else it is read as JSONL).
fn starts_with_json_array(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut head = [0u8; 4096];
    loop {
        let read = file.read(&mut head).map_err(|e| DatasetError::io(path, e))?;
        if read == 0 {
            return Ok(false);
        }
        if let Some(&byte) = head[..read].iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(byte == b'[');
        }
    }
}

fn read_variant(path: &Path) -> Result<Variant> {
    let mut lang: Option<(String, String)> = None;
    let mut passages = BTreeMap::new();
    let mut questions: Vec<(String, String, String)> = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut on_row = |line: usize, row: Row| -> Result<()> {
        let at = |message: String| DatasetError::at_line(path, line, message);
        for (field, value) in
            [("link", &row.link), ("flores_passage", &row.flores_passage), ("question", &row.question)]
        {
            if value.trim().is_empty() {
                return Err(at(format!("field `{field}` is empty")));
            }
        }
        let number = match &row.question_number {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            other => return Err(at(format!("field `question_number`: expected a number, found {other}"))),
        };
        match &lang {
            None => {
                let code = normalise_language(&row.dialect)
                    .ok_or_else(|| at(format!("field `dialect`: {}", unknown_language_message(&row.dialect))))?;
                lang = Some((row.dialect.clone(), code));
            }
            Some((dialect, _)) if *dialect != row.dialect => {
                return Err(at(format!(
                    "field `dialect`: {:?}, but earlier lines are {dialect:?} (one language variant per file)",
                    row.dialect
                )));
            }
            Some(_) => {}
        }
        match passages.get(&row.link) {
            Some(text) if *text != row.flores_passage => {
                return Err(at(format!(
                    "field `flores_passage` differs from an earlier line with link {:?}",
                    row.link
                )));
            }
            Some(_) => {}
            None => {
                passages.insert(row.link.clone(), row.flores_passage);
            }
        }
        if let Some(first) = seen.insert((row.link.clone(), number.clone()), line) {
            return Err(at(format!("question {number} of link {:?} repeats line {first}", row.link)));
        }
        questions.push((row.link, number, row.question));
        Ok(())
    };
    if starts_with_json_array(path)? {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
        let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| DatasetError::format(path, e.to_string()))?;
        for (i, row) in rows.into_iter().enumerate() {
            on_row(i + 1, row)?;
        }
    } else {
        for_each_line(path, |line, text| {
            let row: Row = serde_json::from_str(text).map_err(|e| DatasetError::at_line(path, line, e.to_string()))?;
            on_row(line, row)
        })?;
    }
    let Some((_, lang)) = lang else { return Err(DatasetError::format(path, "no questions")) };
    Ok(Variant { lang, passages, questions })
}

/// Converts Belebele files (one per language variant) into a `lareqa` benchmark named `name`.
pub fn convert_belebele(inputs: &[PathBuf], out_dir: &Path, name: &str) -> Result<BenchmarkSummary> {
    if inputs.is_empty() {
        return Err(DatasetError::invalid("inputs", "give at least one Belebele file (e.g. deu_Latn.jsonl)"));
    }
    let mut variants = Vec::new();
    for path in inputs {
        let variant = read_variant(path)?;
        if let Some((other, _)) = variants.iter().find(|(_, v): &&(PathBuf, Variant)| v.lang == variant.lang) {
            return Err(DatasetError::invalid(
                format!("input {}", path.display()),
                format!("language {} is also the language of {}", variant.lang, other.display()),
            ));
        }
        variants.push((path.clone(), variant));
    }
    let mut languages: Vec<String> = variants.iter().map(|(_, v)| v.lang.clone()).collect();
    languages.sort();
    BenchmarkSpec::new(name, Protocol::Lareqa, languages).save(out_dir)?;
    // Passages are numbered by link in sorted order, the same in every language.
    let mut link_index: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, variant) in &variants {
        for link in variant.passages.keys() {
            link_index.entry(link.as_str()).or_insert(0);
        }
    }
    for (i, index) in link_index.values_mut().enumerate() {
        *index = i;
    }
    let doc_id = |lang: &str, link: &str| format!("{lang}/passage-{}", link_index[link]);
    let mut corpus = CorpusWriter::create(out_dir)?;
    for (_, variant) in &variants {
        for (link, text) in &variant.passages {
            corpus.push(Candidate {
                doc_id: doc_id(&variant.lang, link),
                lang: variant.lang.clone(),
                text: text.clone(),
                context: None,
            })?;
        }
    }
    let candidates = corpus.finish()?;
    let mut queries = QueryWriter::create(out_dir)?;
    let mut judgements = Vec::new();
    for (_, variant) in &variants {
        for (link, number, question) in &variant.questions {
            let query_id = format!("passage-{}-q{number}.{}", link_index[link.as_str()], variant.lang);
            queries.push(Query { query_id: query_id.clone(), lang: variant.lang.clone(), text: question.clone() })?;
            for (_, target) in &variants {
                if target.passages.contains_key(link) {
                    judgements.push(Qrel {
                        query_id: query_id.clone(),
                        doc_id: doc_id(&target.lang, link),
                        relevance: 1,
                    });
                }
            }
        }
    }
    let query_count = queries.finish()?;
    let mut qrels = QrelWriter::create(out_dir)?;
    let qrel_count = judgements.len();
    for qrel in judgements {
        qrels.push(qrel)?;
    }
    qrels.finish()?;
    Ok(BenchmarkSummary { queries: query_count, candidates, qrels: qrel_count, unanswerable: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmark::Benchmark;

    fn line(link: &str, number: u32, passage: &str, question: &str, dialect: &str) -> String {
        serde_json::json!({
            "link": link, "question_number": number, "flores_passage": passage, "question": question,
            "mc_answer1": "a", "mc_answer2": "b", "mc_answer3": "c", "mc_answer4": "d",
            "correct_answer_num": "1", "dialect": dialect, "ds": "2023-05-03"
        })
        .to_string()
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn questions_are_relevant_to_their_passage_in_every_language() {
        let dir = tempfile::tempdir().unwrap();
        let eng = write(
            dir.path(),
            "eng_Latn.jsonl",
            &[
                line("l/b", 1, "Passage B.", "Q1 about B?", "eng_Latn"),
                line("l/a", 1, "Passage A.", "Q1 about A?", "eng_Latn"),
                line("l/a", 2, "Passage A.", "Q2 about A?", "eng_Latn"),
            ],
        );
        let deu = write(
            dir.path(),
            "deu_Latn.jsonl",
            &[line("l/a", 1, "Text A.", "F1 zu A?", "deu_Latn"), line("l/b", 1, "Text B.", "F1 zu B?", "deu_Latn")],
        );
        let out = dir.path().join("bench");
        let summary = convert_belebele(&[eng, deu], &out, "belebele").unwrap();
        assert_eq!((summary.queries, summary.candidates, summary.qrels), (5, 4, 10));
        let bench = Benchmark::load(&out).unwrap();
        assert_eq!(bench.spec.languages, ["de", "en"]);
        assert_eq!(bench.spec.protocol, Protocol::Lareqa);
        let relevant: Vec<&str> =
            bench.qrels.iter().filter(|q| q.query_id == "passage-0-q2.en").map(|q| q.doc_id.as_str()).collect();
        assert_eq!(relevant, ["en/passage-0", "de/passage-0"]);
        let doc = bench.corpus.iter().find(|c| c.doc_id == "de/passage-1").unwrap();
        assert_eq!((doc.text.as_str(), doc.lang.as_str()), ("Text B.", "de"));
        // The same rows as one JSON array (the other layout of the release) give the same benchmark.
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("deu_Latn.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let array = dir.path().join("deu_Latn.json");
        std::fs::write(&array, format!("\n  {}", serde_json::to_string(&rows).unwrap())).unwrap();
        let jsonl = dir.path().join("eng_Latn.jsonl");
        let again = convert_belebele(&[jsonl, array], &dir.path().join("bench2"), "belebele").unwrap();
        assert_eq!(again, summary);
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (vec![line("l/a", 1, "A", "Q?", "eng_Latn"), line("l/b", 1, "B", "Q?", "deu_Latn")], "line 2", "dialect"),
            (
                vec![line("l/a", 1, "A", "Q?", "eng_Latn"), line("l/a", 2, "A2", "Q?", "eng_Latn")],
                "line 2",
                "flores_passage",
            ),
            (vec![line("l/a", 1, "A", "", "eng_Latn")], "line 1", "question"),
            (vec![line("l/a", 1, "A", "Q?", "klingon")], "line 1", "dialect"),
            (
                vec![line("l/a", 1, "A", "Q?", "eng_Latn"), line("l/a", 1, "A", "Q?", "eng_Latn")],
                "line 2",
                "repeats line 1",
            ),
            (vec!["{\"link\": \"x\"}".to_string()], "line 1", "missing field"),
        ];
        for (lines, at, field) in cases {
            let path = write(dir.path(), "bad.jsonl", &lines);
            let err = convert_belebele(&[path], &dir.path().join("out"), "b").unwrap_err().to_string();
            assert!(err.contains("bad.jsonl") && err.contains(at) && err.contains(field), "{err}");
        }
    }
}

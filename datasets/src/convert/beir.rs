//! BEIR / MIRACL layout → `qrels` benchmark: `corpus.jsonl`, `queries.jsonl` (or TSV topics)
//! and qrels as BEIR TSV (`query-id corpus-id score`, with header) or TREC (`qid Q0 docid rel`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BenchmarkSummary, for_each_line};
use crate::benchmark::{BenchmarkSpec, Candidate, CorpusWriter, Protocol, Qrel, QrelWriter, Query, QueryWriter};
use crate::error::{DatasetError, Result};
use crate::lang::{is_pool_label, unknown_language_message};

/// The files of one BEIR-style benchmark language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirInputs {
    /// `corpus.jsonl`.
    pub corpus: PathBuf,
    /// `queries.jsonl`, or a `.tsv` of `id<TAB>text` topics.
    pub queries: PathBuf,
    /// Qrels in BEIR TSV or TREC format.
    pub qrels: PathBuf,
    /// Language of queries and documents, or the pool label `q-c` of a cross-lingual sub-set.
    pub lang: String,
    /// Put before every query and document id (`en-de/`), so that sub-sets sharing ids or a
    /// corpus stay apart; empty for a plain BEIR directory.
    pub id_prefix: String,
}

impl BeirInputs {
    /// Finds the files in a BEIR directory: `corpus.jsonl`, `queries.jsonl` (or `topics.tsv`),
    /// and `qrels/<split>.tsv` (or `qrels.<split>.tsv` / `qrels.<split>.trec`).
    pub fn discover(dir: &Path, split: &str, lang: &str) -> Result<Self> {
        let first = |candidates: &[PathBuf], what: &str| {
            candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
                DatasetError::invalid(
                    what,
                    format!(
                        "none of {} exists",
                        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        };
        Ok(Self {
            corpus: first(&[dir.join("corpus.jsonl")], "corpus")?,
            queries: first(
                &[dir.join("queries.jsonl"), dir.join("topics.tsv"), dir.join(format!("topics.{split}.tsv"))],
                "queries",
            )?,
            qrels: first(
                &[
                    dir.join("qrels").join(format!("{split}.tsv")),
                    dir.join(format!("qrels.{split}.tsv")),
                    dir.join(format!("qrels.{split}.trec")),
                    dir.join(format!("qrels.{split}.txt")),
                ],
                "qrels",
            )?,
            lang: lang.to_string(),
            id_prefix: String::new(),
        })
    }
}

/// An MTEB retrieval sub-set named on the command line as `SUBSET=DIR`: `SUBSET` is one
/// language (`deu`, `de`: queries and corpus in it) or `QUERY-CORPUS` (`eng-deu`: a
/// cross-lingual sub-set), in ISO 639-1, ISO 639-3 or FLORES-200 codes; `DIR` holds the
/// sub-set in BEIR layout (`corpus.jsonl` with `_id`/`title`/`text`, `queries.jsonl` with
/// `_id`/`text`, `qrels/<split>.tsv` with `query-id corpus-id score`). Its pool label is the
/// normalised sub-set name (`de`, `en-de`), and its ids are prefixed with it.
pub fn mteb_subset(spec: &str, split: &str) -> Result<BeirInputs> {
    let Some((subset, dir)) = spec.split_once('=') else {
        return Err(DatasetError::invalid(
            format!("input {spec:?}"),
            "expected SUBSET=DIR (e.g. eng-deu=xpqa/eng-deu)",
        ));
    };
    let normalise = |code: &str| {
        crate::lang::normalise_language(code).ok_or_else(|| {
            DatasetError::invalid(
                format!("input {spec:?}"),
                format!("sub-set {subset:?}: {}", unknown_language_message(code)),
            )
        })
    };
    let label = match subset.split_once('-') {
        Some((query, corpus)) => {
            let (query, corpus) = (normalise(query)?, normalise(corpus)?);
            if query == corpus { query } else { format!("{query}-{corpus}") }
        }
        None => normalise(subset)?,
    };
    let mut inputs = BeirInputs::discover(Path::new(dir), split, &label)?;
    inputs.id_prefix = format!("{label}/");
    Ok(inputs)
}

#[derive(Deserialize)]
struct JsonDoc {
    #[serde(alias = "docid", alias = "doc_id")]
    _id: String,
    #[serde(default)]
    title: Option<String>,
    text: String,
}

#[derive(Deserialize)]
struct JsonQuery {
    #[serde(alias = "query_id", alias = "qid")]
    _id: String,
    text: String,
}

/// Converts one or more BEIR-style language sets (or MTEB sub-sets, [`mteb_subset`]) into one
/// `qrels` benchmark. Document text is
/// `title + " " + text` when a title is given. Ids must be unique across the inputs.
pub fn convert_beir(inputs: &[BeirInputs], out_dir: &Path, name: &str) -> Result<BenchmarkSummary> {
    let mut languages: Vec<String> = inputs.iter().map(|i| i.lang.clone()).collect();
    languages.sort();
    languages.dedup();
    for lang in &languages {
        if !is_pool_label(lang) {
            return Err(DatasetError::invalid("lang", unknown_language_message(lang)));
        }
    }
    BenchmarkSpec::new(name, Protocol::Qrels, languages).save(out_dir)?;
    let mut corpus = CorpusWriter::create(out_dir)?;
    let mut queries = QueryWriter::create(out_dir)?;
    let mut doc_ids = HashSet::new();
    let mut query_ids = HashSet::new();
    for input in inputs {
        for_each_line(&input.corpus, |line, text| {
            let mut doc: JsonDoc =
                serde_json::from_str(text).map_err(|e| DatasetError::at_line(&input.corpus, line, e.to_string()))?;
            doc._id.insert_str(0, &input.id_prefix);
            if !doc_ids.insert(doc._id.clone()) {
                return Err(DatasetError::at_line(&input.corpus, line, format!("duplicate document id {:?}", doc._id)));
            }
            let text = match doc.title.filter(|t| !t.trim().is_empty()) {
                Some(title) => format!("{title} {}", doc.text),
                None => doc.text,
            };
            corpus.push(Candidate { doc_id: doc._id, lang: input.lang.clone(), text, context: None })
        })?;
        let tsv = input.queries.extension().is_some_and(|e| e == "tsv");
        for_each_line(&input.queries, |line, text| {
            let (id, text) = if tsv {
                let (id, text) = text
                    .split_once('\t')
                    .ok_or_else(|| DatasetError::at_line(&input.queries, line, "expected `id<TAB>text`"))?;
                (id.to_string(), text.to_string())
            } else {
                let q: JsonQuery = serde_json::from_str(text)
                    .map_err(|e| DatasetError::at_line(&input.queries, line, e.to_string()))?;
                (q._id, q.text)
            };
            let id = format!("{}{id}", input.id_prefix);
            if !query_ids.insert(id.clone()) {
                return Err(DatasetError::at_line(&input.queries, line, format!("duplicate query id {id:?}")));
            }
            queries.push(Query { query_id: id, lang: input.lang.clone(), text })
        })?;
    }
    let candidates = corpus.finish()?;
    let query_count = queries.finish()?;
    let mut qrels = QrelWriter::create(out_dir)?;
    for input in inputs {
        for_each_line(&input.qrels, |line, text| {
            let Some(mut qrel) = parse_qrel_line(&input.qrels, line, text)? else {
                return Ok(());
            };
            qrel.query_id.insert_str(0, &input.id_prefix);
            qrel.doc_id.insert_str(0, &input.id_prefix);
            if !query_ids.contains(&qrel.query_id) {
                return Err(DatasetError::at_line(&input.qrels, line, format!("unknown query id {:?}", qrel.query_id)));
            }
            if !doc_ids.contains(&qrel.doc_id) {
                return Err(DatasetError::at_line(
                    &input.qrels,
                    line,
                    format!("unknown document id {:?}", qrel.doc_id),
                ));
            }
            qrels.push(qrel)
        })?;
    }
    let qrel_count = qrels.finish()?;
    Ok(BenchmarkSummary { queries: query_count, candidates, qrels: qrel_count, unanswerable: 0 })
}

/// Parses a TREC (`qid iter docid rel`) or BEIR TSV (`qid docid rel`) line; `None` for a header.
fn parse_qrel_line(path: &Path, line: usize, text: &str) -> Result<Option<Qrel>> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (query_id, doc_id, grade) = match fields.as_slice() {
        [q, _iteration, d, g] => (*q, *d, *g),
        [q, d, g] => (*q, *d, *g),
        _ => {
            return Err(DatasetError::at_line(
                path,
                line,
                "expected `qid Q0 docid rel` (TREC) or `qid docid rel` (TSV)",
            ));
        }
    };
    match grade.parse::<i32>() {
        Ok(relevance) => Ok(Some(Qrel { query_id: query_id.to_string(), doc_id: doc_id.to_string(), relevance })),
        Err(_) if line == 1 => Ok(None),
        Err(_) => Err(DatasetError::at_line(path, line, format!("relevance {grade:?} is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmark::Benchmark;

    fn subset(dir: &Path, name: &str, docs: &[(&str, &str)], queries: &[(&str, &str)], qrels: &[(&str, &str)]) {
        let dir = dir.join(name);
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        let lines = |rows: Vec<String>| rows.join("\n") + "\n";
        std::fs::write(
            dir.join("corpus.jsonl"),
            lines(
                docs.iter()
                    .map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string())
                    .collect(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("queries.jsonl"),
            lines(queries.iter().map(|(id, text)| serde_json::json!({"_id": id, "text": text}).to_string()).collect()),
        )
        .unwrap();
        let mut tsv = vec!["query-id\tcorpus-id\tscore".to_string()];
        tsv.extend(qrels.iter().map(|(q, d)| format!("{q}\t{d}\t1")));
        std::fs::write(dir.join("qrels/test.tsv"), lines(tsv)).unwrap();
    }

    #[test]
    fn mteb_subsets_become_pools_with_their_own_ids() {
        let dir = tempfile::tempdir().unwrap();
        // The monolingual and the cross-lingual sub-set share ids (and would share a corpus).
        subset(
            dir.path(),
            "deu-deu",
            &[("d1", "Berlin ist groß.")],
            &[("q1", "Wie groß ist Berlin?")],
            &[("q1", "d1")],
        );
        subset(dir.path(), "eng-deu", &[("d1", "Berlin ist groß.")], &[("q1", "How big is Berlin?")], &[("q1", "d1")]);
        let inputs: Vec<BeirInputs> = ["deu-deu", "eng-deu"]
            .iter()
            .map(|s| mteb_subset(&format!("{s}={}", dir.path().join(s).display()), "test").unwrap())
            .collect();
        assert_eq!(inputs[0].lang, "de");
        assert_eq!(inputs[1].lang, "en-de");
        let out = dir.path().join("bench");
        let summary = convert_beir(&inputs, &out, "xpqa").unwrap();
        assert_eq!((summary.queries, summary.candidates, summary.qrels), (2, 2, 2));
        let bench = Benchmark::load(&out).unwrap();
        assert_eq!(bench.spec.languages, ["de", "en-de"]);
        let query = bench.queries.iter().find(|q| q.lang == "en-de").unwrap();
        assert_eq!((query.query_id.as_str(), query.text.as_str()), ("en-de/q1", "How big is Berlin?"));
        let qrel = bench.qrels.iter().find(|q| q.query_id == "en-de/q1").unwrap();
        assert_eq!(qrel.doc_id, "en-de/d1");
        assert!(bench.corpus.iter().any(|d| d.doc_id == "en-de/d1" && d.lang == "en-de"));
        let report = crate::validate::validate_benchmark(&out).unwrap();
        assert!(report.is_valid(), "{report:?}");
    }

    #[test]
    fn bad_subsets_and_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = mteb_subset("klingon=x", "test").unwrap_err().to_string();
        assert!(err.contains("klingon") && err.contains("unknown language code"), "{err}");
        let err = mteb_subset("eng-deu", "test").unwrap_err().to_string();
        assert!(err.contains("SUBSET=DIR"), "{err}");
        subset(dir.path(), "eng", &[("d1", "x")], &[("q1", "y")], &[("q1", "d9")]);
        let input = mteb_subset(&format!("eng={}", dir.path().join("eng").display()), "test").unwrap();
        let err = convert_beir(&[input], &dir.path().join("out"), "b").unwrap_err().to_string();
        assert!(
            err.contains("test.tsv") && err.contains("line 2") && err.contains("unknown document id \"en/d9\""),
            "{err}"
        );
    }
}

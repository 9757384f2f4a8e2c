//! BEIR / MIRACL layout → `qrels` benchmark: `corpus.jsonl`, `queries.jsonl` (or TSV topics)
//! and qrels as BEIR TSV (`query-id corpus-id score`, with header) or TREC (`qid Q0 docid rel`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BenchmarkSummary, for_each_line};
use crate::benchmark::{BenchmarkSpec, Candidate, CorpusWriter, Protocol, Qrel, QrelWriter, Query, QueryWriter};
use crate::error::{DatasetError, Result};
use crate::lang::{is_known_language, unknown_language_message};

/// The files of one BEIR-style benchmark language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirInputs {
    /// `corpus.jsonl`.
    pub corpus: PathBuf,
    /// `queries.jsonl`, or a `.tsv` of `id<TAB>text` topics.
    pub queries: PathBuf,
    /// Qrels in BEIR TSV or TREC format.
    pub qrels: PathBuf,
    /// Language of queries and documents.
    pub lang: String,
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
        })
    }
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

/// Converts one or more BEIR-style language sets into one `qrels` benchmark. Document text is
/// `title + " " + text` when a title is given. Ids must be unique across the inputs.
pub fn convert_beir(inputs: &[BeirInputs], out_dir: &Path, name: &str) -> Result<BenchmarkSummary> {
    let mut languages: Vec<String> = inputs.iter().map(|i| i.lang.clone()).collect();
    languages.sort();
    languages.dedup();
    for lang in &languages {
        if !is_known_language(lang) {
            return Err(DatasetError::invalid("lang", unknown_language_message(lang)));
        }
    }
    BenchmarkSpec { name: name.to_string(), protocol: Protocol::Qrels, languages, format_version: 1 }.save(out_dir)?;
    let mut corpus = CorpusWriter::create(out_dir)?;
    let mut queries = QueryWriter::create(out_dir)?;
    let mut doc_ids = HashSet::new();
    let mut query_ids = HashSet::new();
    for input in inputs {
        for_each_line(&input.corpus, |line, text| {
            let doc: JsonDoc =
                serde_json::from_str(text).map_err(|e| DatasetError::at_line(&input.corpus, line, e.to_string()))?;
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
            let Some(qrel) = parse_qrel_line(&input.qrels, line, text)? else {
                return Ok(());
            };
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

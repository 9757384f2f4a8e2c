//! Converters from public release formats into Rosetta's Parquet formats. All of them stream
//! their input: memory holds ids and one article or partition at a time, never the whole file.

mod beir;
mod belebele;
mod mkqa;
mod spill;
pub mod squad;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub use beir::{BeirInputs, convert_beir, mteb_subset};
pub use belebele::convert_belebele;
pub use mkqa::{MKQA_CORPUS_LANGUAGE, MkqaSummary, answer_tokens, convert_mkqa};
pub use spill::GroupSpill;

use crate::benchmark::{BenchmarkSpec, Candidate, CorpusWriter, Protocol, Qrel, QrelWriter, Query, QueryWriter};
use crate::error::{DatasetError, Result};
use crate::lang::{is_known_language, unknown_language_message};
use crate::pairs::{PairWriter, TrainingPair, WriteSummary};
use squad::{for_each_paragraph, sentence_containing, sentence_ranges, sentence_texts};

/// Partitions used when grouping rows by `pair_id` (memory ≈ input / this).
const SPILL_PARTITIONS: usize = 64;

/// One input file of a per-language release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageFile {
    /// Language of the file.
    pub lang: String,
    /// The file.
    pub path: PathBuf,
}

impl LanguageFile {
    /// Parses `LANG=PATH`, or a bare `PATH` whose file stem is the language (`xquad/de.json`).
    pub fn parse(spec: &str) -> Result<Self> {
        let (lang, path) = match spec.split_once('=') {
            Some((lang, path)) => (lang.to_string(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(spec);
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let lang = stem.rsplit(['.', '_', '-']).next().unwrap_or(stem).to_string();
                (lang, path)
            }
        };
        if !is_known_language(&lang) {
            return Err(DatasetError::invalid(
                format!("input {spec:?}"),
                format!("{}; name the language as LANG=PATH", unknown_language_message(&lang)),
            ));
        }
        Ok(Self { lang, path })
    }
}

/// What a benchmark conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchmarkSummary {
    /// Queries written.
    pub queries: usize,
    /// Candidates written.
    pub candidates: usize,
    /// Judgements written.
    pub qrels: usize,
    /// Questions dropped because no sentence contains their answer.
    pub unanswerable: usize,
}

/// Converts a LAReQA release (one SQuAD-style JSON per language, with `sentences` and
/// `sentence_breaks`) into a `lareqa` benchmark. Every sentence is a candidate (with its
/// paragraph as context); a question in language L is relevant to the sentence containing its
/// answer in every language where its id occurs.
pub fn convert_lareqa(inputs: &[LanguageFile], out_dir: &Path, name: &str) -> Result<BenchmarkSummary> {
    if inputs.is_empty() {
        return Err(DatasetError::invalid("inputs", "give at least one LANG=PATH file"));
    }
    let mut languages: Vec<String> = inputs.iter().map(|i| i.lang.clone()).collect();
    languages.sort();
    languages.dedup();
    if languages.len() != inputs.len() {
        return Err(DatasetError::invalid("inputs", "a language is given twice"));
    }
    BenchmarkSpec::new(name, Protocol::Lareqa, languages).save(out_dir)?;
    let mut corpus = CorpusWriter::create(out_dir)?;
    let mut queries = QueryWriter::create(out_dir)?;
    // question id → relevant doc ids (all languages); and the queries, in order.
    let mut relevant: HashMap<String, Vec<String>> = HashMap::new();
    let mut query_keys: Vec<(String, String)> = Vec::new();
    let mut unanswerable = 0;
    for input in inputs {
        let mut paragraph_index = 0usize;
        for_each_paragraph(&input.path, |paragraph| {
            let ranges = sentence_ranges(&paragraph);
            let texts = sentence_texts(&paragraph, &ranges);
            if texts.len() != ranges.len() {
                return Err(DatasetError::format(
                    &input.path,
                    format!(
                        "paragraph {paragraph_index}: {} sentences but {} sentence_breaks",
                        texts.len(),
                        ranges.len()
                    ),
                ));
            }
            let doc_ids: Vec<String> =
                (0..texts.len()).map(|s| format!("{}/p{paragraph_index}/s{s}", input.lang)).collect();
            for (doc_id, text) in doc_ids.iter().zip(texts) {
                if text.trim().is_empty() {
                    continue;
                }
                corpus.push(Candidate {
                    doc_id: doc_id.clone(),
                    lang: input.lang.clone(),
                    text,
                    context: Some(paragraph.context.clone()),
                })?;
            }
            for qa in &paragraph.qas {
                let mut hits: Vec<usize> =
                    qa.answers.iter().filter_map(|a| sentence_containing(&ranges, a.answer_start)).collect();
                hits.sort_unstable();
                hits.dedup();
                if hits.is_empty() {
                    unanswerable += 1;
                    continue;
                }
                let query_id = format!("{}.{}", qa.id, input.lang);
                queries.push(Query {
                    query_id: query_id.clone(),
                    lang: input.lang.clone(),
                    text: qa.question.clone(),
                })?;
                query_keys.push((query_id, qa.id.clone()));
                relevant.entry(qa.id.clone()).or_default().extend(hits.into_iter().map(|s| doc_ids[s].clone()));
            }
            paragraph_index += 1;
            Ok(())
        })?;
    }
    let candidates = corpus.finish()?;
    let query_count = queries.finish()?;
    let mut qrels = QrelWriter::create(out_dir)?;
    for (query_id, id) in &query_keys {
        for doc_id in relevant.get(id).into_iter().flatten() {
            qrels.push(Qrel { query_id: query_id.clone(), doc_id: doc_id.clone(), relevance: 1 })?;
        }
    }
    let qrel_count = qrels.finish()?;
    Ok(BenchmarkSummary { queries: query_count, candidates, qrels: qrel_count, unanswerable })
}

/// What the positive passage of a SQuAD-derived training pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositiveUnit {
    /// The sentence holding the answer.
    Sentence,
    /// The whole paragraph.
    Paragraph,
}

/// Converts SQuAD-style parallel QA (one file per language, ids shared) into training pairs.
pub fn convert_squad_pairs(
    inputs: &[LanguageFile],
    output: &Path,
    dataset: &str,
    unit: PositiveUnit,
    rows_per_group: usize,
) -> Result<WriteSummary> {
    let mut spill = GroupSpill::new(output, SPILL_PARTITIONS)?;
    for input in inputs {
        let mut paragraph_index = 0usize;
        for_each_paragraph(&input.path, |paragraph| {
            let ranges = sentence_ranges(&paragraph);
            let texts = sentence_texts(&paragraph, &ranges);
            for qa in &paragraph.qas {
                let positive = match unit {
                    PositiveUnit::Paragraph => Some(paragraph.context.clone()),
                    PositiveUnit::Sentence => qa
                        .answers
                        .first()
                        .and_then(|a| sentence_containing(&ranges, a.answer_start))
                        .and_then(|s| texts.get(s).cloned()),
                };
                let Some(positive) = positive.filter(|p| !p.trim().is_empty()) else {
                    continue;
                };
                if qa.question.trim().is_empty() {
                    continue;
                }
                let origin = format!("{} paragraph {paragraph_index} question {:?}", input.path.display(), qa.id);
                spill.push(
                    origin,
                    TrainingPair {
                        dataset: dataset.to_string(),
                        pair_id: qa.id.clone(),
                        lang: input.lang.clone(),
                        query: qa.question.clone(),
                        positive,
                        negatives: None,
                    },
                )?;
            }
            paragraph_index += 1;
            Ok(())
        })?;
    }
    spill.write_into(PairWriter::create(output, rows_per_group)?)
}

/// Reads a text file line by line as UTF-8, calling `on_line(line_number, text)` (1-based).
pub fn for_each_line(path: &Path, mut on_line: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer).map_err(|e| DatasetError::io(path, e))?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let text = std::str::from_utf8(&buffer)
            .map_err(|e| DatasetError::at_line(path, number, format!("not valid UTF-8 ({e})")))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            on_line(number, text)?;
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlPair {
    pair_id: String,
    lang: String,
    query: String,
    positive: String,
    #[serde(default)]
    negatives: Option<Vec<String>>,
    #[serde(default)]
    dataset: Option<String>,
}

/// Converts JSONL pairs (`{"pair_id","lang","query","positive","negatives"?,"dataset"?}` per
/// line) into a training-pairs file; `dataset` names rows that do not say.
pub fn convert_jsonl_pairs(
    inputs: &[PathBuf],
    output: &Path,
    dataset: &str,
    rows_per_group: usize,
) -> Result<WriteSummary> {
    let mut spill = GroupSpill::new(output, SPILL_PARTITIONS)?;
    for path in inputs {
        for_each_line(path, |line, text| {
            let row: JsonlPair =
                serde_json::from_str(text).map_err(|e| DatasetError::at_line(path, line, e.to_string()))?;
            for (field, value) in
                [("pair_id", &row.pair_id), ("lang", &row.lang), ("query", &row.query), ("positive", &row.positive)]
            {
                if value.trim().is_empty() {
                    return Err(DatasetError::at_line(path, line, format!("field {field:?} is empty")));
                }
            }
            if !is_known_language(&row.lang) {
                return Err(DatasetError::at_line(path, line, unknown_language_message(&row.lang)));
            }
            let pair = TrainingPair {
                dataset: row.dataset.unwrap_or_else(|| dataset.to_string()),
                pair_id: row.pair_id,
                lang: row.lang,
                query: row.query,
                positive: row.positive,
                negatives: row.negatives,
            };
            spill.push(format!("{}:{line}", path.display()), pair)
        })?;
    }
    spill.write_into(PairWriter::create(output, rows_per_group)?)
}

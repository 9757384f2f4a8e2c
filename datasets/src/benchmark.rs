//! Benchmark directories (DESIGN.md §3): `queries.parquet`, `corpus.parquet`,
//! `qrels.parquet` and `benchmark.yaml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};
use crate::table::{AtomicParquetWriter, TableReader, record_batch, string_array, text_column};

/// Schema tag of `queries.parquet`.
pub const QUERIES_SCHEMA_TAG: &str = "rosetta.queries/1";
/// Schema tag of `corpus.parquet`.
pub const CORPUS_SCHEMA_TAG: &str = "rosetta.corpus/1";
/// Schema tag of `qrels.parquet`.
pub const QRELS_SCHEMA_TAG: &str = "rosetta.qrels/1";
/// File names inside a benchmark directory.
pub const QUERIES_FILE: &str = "queries.parquet";
/// Corpus file name.
pub const CORPUS_FILE: &str = "corpus.parquet";
/// Qrels file name.
pub const QRELS_FILE: &str = "qrels.parquet";
/// Descriptor file name.
pub const SPEC_FILE: &str = "benchmark.yaml";

const ROWS_PER_BATCH: usize = 8192;

/// How a benchmark is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// LAReQA: parallel questions, per language-pair and pooled mAP, rank distance.
    Lareqa,
    /// Graded judgements: nDCG@10, Recall@100.
    Qrels,
}

/// Which candidates a query of a `qrels` benchmark is ranked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The candidates of the query's own language (or sub-set label).
    #[default]
    Language,
    /// The whole corpus, whatever the query's language (MKQA: every language asks one corpus).
    Corpus,
}

impl Pool {
    /// True for the default, which `benchmark.yaml` leaves unwritten.
    pub fn is_language(&self) -> bool {
        *self == Self::Language
    }
}

/// The contents of `benchmark.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkSpec {
    /// Display name.
    pub name: String,
    /// Scoring protocol.
    pub protocol: Protocol,
    /// Languages of queries and corpus.
    pub languages: Vec<String>,
    /// Format version of the directory.
    #[serde(default = "default_format_version")]
    pub format_version: u32,
    /// What `qrels` queries are ranked against (default: their language's candidates).
    #[serde(default, skip_serializing_if = "Pool::is_language")]
    pub pool: Pool,
}

fn default_format_version() -> u32 {
    1
}

impl BenchmarkSpec {
    /// A spec of the current format, each query ranked in its language's pool.
    pub fn new(name: &str, protocol: Protocol, languages: Vec<String>) -> Self {
        Self { name: name.to_string(), protocol, languages, format_version: 1, pool: Pool::Language }
    }

    /// Reads and parses `dir/benchmark.yaml`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, e))?;
        serde_saphyr::from_str(&text).map_err(|e| DatasetError::format(&path, e.to_string()))
    }

    /// Writes `dir/benchmark.yaml` (creating `dir`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SPEC_FILE);
        let text = serde_saphyr::to_string(self).map_err(|e| DatasetError::format(&path, e.to_string()))?;
        Ok(rosetta_common::atomic::write_atomic(&path, text.as_bytes())?)
    }
}

/// A query of a benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Unique id.
    pub query_id: String,
    /// Language code.
    pub lang: String,
    /// Text.
    pub text: String,
}

/// A retrieval candidate of a benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Unique id.
    pub doc_id: String,
    /// Language code.
    pub lang: String,
    /// Text.
    pub text: String,
    /// The surrounding paragraph, when the benchmark keeps it.
    pub context: Option<String>,
}

/// A relevance judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qrel {
    /// The judged query.
    pub query_id: String,
    /// The judged document.
    pub doc_id: String,
    /// Graded relevance (> 0 is relevant).
    pub relevance: i32,
}

fn text_schema(columns: &[(&str, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(|(name, nullable)| Field::new(*name, DataType::Utf8, *nullable)).collect::<Vec<_>>(),
    ))
}

/// Schema of `queries.parquet`.
pub fn queries_schema() -> SchemaRef {
    text_schema(&[("query_id", false), ("lang", false), ("text", false)])
}

/// Schema of `corpus.parquet`.
pub fn corpus_schema() -> SchemaRef {
    text_schema(&[("doc_id", false), ("lang", false), ("text", false), ("context", true)])
}

/// Schema of `qrels.parquet`.
pub fn qrels_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("relevance", DataType::Int32, false),
    ]))
}

/// A row type that can be buffered and written as a batch.
trait Row: Sized {
    fn to_batch(path: &Path, rows: &[Self]) -> Result<RecordBatch>;
}

impl Row for Query {
    fn to_batch(path: &Path, rows: &[Self]) -> Result<RecordBatch> {
        let columns = vec![
            string_array(rows.iter().map(|r| r.query_id.as_str())),
            string_array(rows.iter().map(|r| r.lang.as_str())),
            string_array(rows.iter().map(|r| r.text.as_str())),
        ];
        record_batch(path, queries_schema(), columns)
    }
}

impl Row for Candidate {
    fn to_batch(path: &Path, rows: &[Self]) -> Result<RecordBatch> {
        let mut context = StringBuilder::new();
        for row in rows {
            context.append_option(row.context.as_deref());
        }
        let columns: Vec<ArrayRef> = vec![
            string_array(rows.iter().map(|r| r.doc_id.as_str())),
            string_array(rows.iter().map(|r| r.lang.as_str())),
            string_array(rows.iter().map(|r| r.text.as_str())),
            Arc::new(context.finish()),
        ];
        record_batch(path, corpus_schema(), columns)
    }
}

impl Row for Qrel {
    fn to_batch(path: &Path, rows: &[Self]) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            string_array(rows.iter().map(|r| r.query_id.as_str())),
            string_array(rows.iter().map(|r| r.doc_id.as_str())),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.relevance))),
        ];
        record_batch(path, qrels_schema(), columns)
    }
}

/// A streaming writer of one benchmark table: rows are buffered and written in batches.
pub struct TableWriter<T> {
    out: AtomicParquetWriter,
    path: PathBuf,
    buffer: Vec<T>,
    rows: usize,
}

/// Writer of `queries.parquet`.
pub type QueryWriter = TableWriter<Query>;
/// Writer of `corpus.parquet`.
pub type CorpusWriter = TableWriter<Candidate>;
/// Writer of `qrels.parquet`.
pub type QrelWriter = TableWriter<Qrel>;

impl QueryWriter {
    /// Creates `dir/queries.parquet`.
    pub fn create(dir: &Path) -> Result<Self> {
        Self::open(dir.join(QUERIES_FILE), queries_schema(), QUERIES_SCHEMA_TAG)
    }
}

impl CorpusWriter {
    /// Creates `dir/corpus.parquet`.
    pub fn create(dir: &Path) -> Result<Self> {
        Self::open(dir.join(CORPUS_FILE), corpus_schema(), CORPUS_SCHEMA_TAG)
    }
}

impl QrelWriter {
    /// Creates `dir/qrels.parquet`.
    pub fn create(dir: &Path) -> Result<Self> {
        Self::open(dir.join(QRELS_FILE), qrels_schema(), QRELS_SCHEMA_TAG)
    }
}

#[allow(private_bounds)]
impl<T: Row> TableWriter<T> {
    fn open(path: PathBuf, schema: SchemaRef, tag: &str) -> Result<Self> {
        let out = AtomicParquetWriter::create(&path, schema, tag)?;
        Ok(Self { out, path, buffer: Vec::new(), rows: 0 })
    }

    /// Appends one row.
    pub fn push(&mut self, row: T) -> Result<()> {
        self.buffer.push(row);
        self.rows += 1;
        if self.buffer.len() >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let batch = T::to_batch(&self.path, &self.buffer)?;
            self.out.write(&batch)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the footer and moves the file into place; returns the rows written.
    pub fn finish(mut self) -> Result<usize> {
        self.flush()?;
        self.out.finish()?;
        Ok(self.rows)
    }
}

/// A whole benchmark in memory (for evaluation and tests; validate first for precise errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Benchmark {
    /// The descriptor.
    pub spec: BenchmarkSpec,
    /// All queries, in file order.
    pub queries: Vec<Query>,
    /// All candidates, in file order (the tie-breaking order of rankings).
    pub corpus: Vec<Candidate>,
    /// All judgements.
    pub qrels: Vec<Qrel>,
}

impl Benchmark {
    /// Loads a benchmark directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let spec = BenchmarkSpec::load(dir)?;
        let queries = read_rows(&dir.join(QUERIES_FILE), &["query_id", "lang", "text"], |path, batch, row| {
            Ok(Query {
                query_id: cell(path, batch, row, "query_id")?,
                lang: cell(path, batch, row, "lang")?,
                text: cell(path, batch, row, "text")?,
            })
        })?;
        let corpus_path = dir.join(CORPUS_FILE);
        let has_context = TableReader::open(&corpus_path)?.schema().index_of("context").is_ok();
        let corpus_columns: &[&str] =
            if has_context { &["doc_id", "lang", "text", "context"] } else { &["doc_id", "lang", "text"] };
        let corpus = read_rows(&corpus_path, corpus_columns, |path, batch, row| {
            Ok(Candidate {
                doc_id: cell(path, batch, row, "doc_id")?,
                lang: cell(path, batch, row, "lang")?,
                text: cell(path, batch, row, "text")?,
                context: text_column(batch, "context").and_then(|c| c.get(row)).map(str::to_string),
            })
        })?;
        let qrels = read_rows(&dir.join(QRELS_FILE), &["query_id", "doc_id", "relevance"], |path, batch, row| {
            let relevance = batch
                .column_by_name("relevance")
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
                .ok_or_else(|| DatasetError::format(path, "column \"relevance\" must be int32"))?;
            Ok(Qrel {
                query_id: cell(path, batch, row, "query_id")?,
                doc_id: cell(path, batch, row, "doc_id")?,
                relevance: relevance.value(row),
            })
        })?;
        Ok(Self { spec, queries, corpus, qrels })
    }
}

fn cell(path: &Path, batch: &RecordBatch, row: usize, column: &str) -> Result<String> {
    text_column(batch, column)
        .ok_or_else(|| DatasetError::format(path, format!("column {column:?} is missing or not utf8")))?
        .get(row)
        .map(str::to_string)
        .ok_or_else(|| DatasetError::at_cell(path, row, column, "null value"))
}

fn read_rows<T>(
    path: &Path,
    columns: &[&str],
    mut make: impl FnMut(&Path, &RecordBatch, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let reader = TableReader::open(path)?;
    let mut rows = Vec::with_capacity(reader.num_rows());
    reader.scan_strict(columns, ROWS_PER_BATCH, |first, batch| {
        for i in 0..batch.num_rows() {
            rows.push(make(path, batch, i).map_err(|e| match e {
                DatasetError::Format { path, message, .. } => {
                    DatasetError::Format { path, location: format!("row {}: ", first + i), message }
                }
                other => other,
            })?);
        }
        Ok(())
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let spec = BenchmarkSpec {
            name: "tiny".into(),
            protocol: Protocol::Lareqa,
            languages: vec!["en".into(), "de".into()],
            format_version: 1,
            pool: Pool::Language,
        };
        spec.save(dir.path()).unwrap();
        let mut queries = QueryWriter::create(dir.path()).unwrap();
        queries.push(Query { query_id: "q1.en".into(), lang: "en".into(), text: "who?".into() }).unwrap();
        queries.finish().unwrap();
        let mut corpus = CorpusWriter::create(dir.path()).unwrap();
        corpus.push(Candidate { doc_id: "d1".into(), lang: "de".into(), text: "er.".into(), context: None }).unwrap();
        corpus
            .push(Candidate { doc_id: "d2".into(), lang: "en".into(), text: "he.".into(), context: Some("c".into()) })
            .unwrap();
        corpus.finish().unwrap();
        let mut qrels = QrelWriter::create(dir.path()).unwrap();
        qrels.push(Qrel { query_id: "q1.en".into(), doc_id: "d2".into(), relevance: 1 }).unwrap();
        qrels.finish().unwrap();
        let loaded = Benchmark::load(dir.path()).unwrap();
        assert_eq!(loaded.spec, spec);
        assert_eq!(loaded.queries.len(), 1);
        assert_eq!(loaded.corpus[1].context.as_deref(), Some("c"));
        assert_eq!(loaded.corpus[0].context, None);
        assert_eq!(loaded.qrels[0].relevance, 1);
    }
}

//! Validation of training-pairs files and benchmark directories. Unlike the readers, which
//! stop at the first problem, validation lists every problem with its file, row and column.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int32Array, RecordBatch};
use arrow_schema::DataType;

use crate::benchmark::{BenchmarkSpec, CORPUS_FILE, QRELS_FILE, QUERIES_FILE, SPEC_FILE};
use crate::error::Result;
use crate::lang::{is_known_language, is_pool_label, unknown_language_message};
use crate::pairs::{NEGATIVES_COLUMN, PAIR_TEXT_COLUMNS, PairColumns};
use crate::table::{TableReader, TextColumn, is_text_type, text_column};

/// One problem found by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file it is in.
    pub file: PathBuf,
    /// The row (0-based), when it concerns one row.
    pub row: Option<usize>,
    /// The column, when it concerns one column.
    pub column: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(row) = self.row {
            write!(f, ": row {row}")?;
        }
        if let Some(column) = &self.column {
            write!(f, "{} column {column}", if self.row.is_some() { "," } else { ":" })?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of validating a file or a benchmark directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    /// Rows checked, over all files.
    pub rows: usize,
    /// Every problem found (the input is unusable when this is non-empty).
    pub problems: Vec<Problem>,
    /// Queries that have no relevant document (counted, not fatal: evaluation skips them).
    pub queries_without_relevant: usize,
}

impl ValidationReport {
    /// True when no problem was found.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    fn push(&mut self, file: &Path, row: Option<usize>, column: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            row,
            column: column.map(str::to_string),
            message: message.into(),
        });
    }
}

/// The type a column must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Text,
    OptionalText,
    Int32,
    TextList,
}

/// Checks presence and types of columns; returns false if a scan is impossible.
fn check_schema(reader: &TableReader, expected: &[(&str, ColumnKind)], report: &mut ValidationReport) -> bool {
    let schema = reader.schema();
    let mut ok = true;
    for (name, kind) in expected {
        let Ok(field) = schema.field_with_name(name) else {
            if !matches!(kind, ColumnKind::TextList) {
                report.push(reader.path(), None, Some(name), "missing column");
                ok = false;
            }
            continue;
        };
        let type_ok = match kind {
            ColumnKind::Text | ColumnKind::OptionalText => is_text_type(field.data_type()),
            ColumnKind::Int32 => field.data_type() == &DataType::Int32,
            ColumnKind::TextList => {
                matches!(field.data_type(), DataType::List(item) if is_text_type(item.data_type()))
            }
        };
        if !type_ok {
            let want = match kind {
                ColumnKind::Text | ColumnKind::OptionalText => "utf8",
                ColumnKind::Int32 => "int32",
                ColumnKind::TextList => "list<utf8>",
            };
            report.push(reader.path(), None, Some(name), format!("has type {}, expected {want}", field.data_type()));
            ok = false;
        }
    }
    ok
}

/// Scans the named columns, counting rows and turning unreadable cells into problems.
fn scan_rows(
    reader: &TableReader,
    columns: &[&str],
    report: &mut ValidationReport,
    mut on_batch: impl FnMut(usize, &RecordBatch, &mut Vec<Problem>),
) -> Result<()> {
    let mut found = Vec::new();
    let mut bad_cells = Vec::new();
    reader.scan(
        columns,
        8192,
        |first, batch| {
            on_batch(first, batch, &mut found);
            Ok(())
        },
        |row, column, message| bad_cells.push((row, column.to_string(), message)),
    )?;
    report.rows += reader.num_rows();
    for (row, column, message) in bad_cells {
        report.push(reader.path(), Some(row), Some(&column), message);
    }
    report.problems.extend(found);
    Ok(())
}

fn problem(file: &Path, row: usize, column: &str, message: impl Into<String>) -> Problem {
    Problem { file: file.to_path_buf(), row: Some(row), column: Some(column.to_string()), message: message.into() }
}

/// Checks a required, non-empty text cell; returns its value when present.
fn required_text<'a>(
    file: &Path,
    column: &TextColumn<'a>,
    name: &str,
    row: usize,
    first: usize,
    out: &mut Vec<Problem>,
) -> Option<&'a str> {
    match column.get(row) {
        None => {
            out.push(problem(file, first + row, name, "null value; expected non-empty text"));
            None
        }
        Some(value) if value.trim().is_empty() => {
            out.push(problem(file, first + row, name, "empty text"));
            None
        }
        Some(value) => Some(value),
    }
}

/// A benchmark row's language: a pool label (a language, or `q-c` of a cross-lingual sub-set)
/// that its `benchmark.yaml` lists.
fn check_language(file: &Path, row: usize, lang: &str, allowed: Option<&[String]>, out: &mut Vec<Problem>) {
    if !is_pool_label(lang) {
        out.push(problem(file, row, "lang", unknown_language_message(lang)));
    } else if let Some(allowed) = allowed.filter(|a| !a.iter().any(|l| l == lang)) {
        out.push(problem(file, row, "lang", format!("language {lang:?} is not listed in {SPEC_FILE} ({allowed:?})")));
    }
}

/// Validates a training-pairs file.
pub fn validate_pairs(path: &Path) -> Result<ValidationReport> {
    let mut report = ValidationReport::default();
    let reader = TableReader::open(path)?;
    let mut expected: Vec<(&str, ColumnKind)> = PAIR_TEXT_COLUMNS.iter().map(|c| (*c, ColumnKind::Text)).collect();
    expected.push((NEGATIVES_COLUMN, ColumnKind::TextList));
    if !check_schema(&reader, &expected, &mut report) {
        return Ok(report);
    }
    let has_negatives = reader.schema().index_of(NEGATIVES_COLUMN).is_ok();
    let mut columns = PAIR_TEXT_COLUMNS.to_vec();
    if has_negatives {
        columns.push(NEGATIVES_COLUMN);
    }
    let row_group_ends: Vec<usize> = reader
        .row_group_rows()
        .iter()
        .scan(0, |end, rows| {
            *end += rows;
            Some(*end)
        })
        .collect();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut group_of_pair: HashMap<String, (usize, usize)> = HashMap::new();
    scan_rows(&reader, &columns, &mut report, |first, batch, out| {
        let Ok(view) = PairColumns::new(path, batch, first) else {
            return;
        };
        for i in 0..batch.num_rows() {
            let row = first + i;
            required_text(path, &view.dataset, "dataset", i, first, out);
            let pair_id = required_text(path, &view.pair_id, "pair_id", i, first, out);
            let lang = required_text(path, &view.lang, "lang", i, first, out);
            required_text(path, &view.query, "query", i, first, out);
            required_text(path, &view.positive, "positive", i, first, out);
            if let Some(negatives) = view.negatives_of(i)
                && let Some(k) = negatives.iter().position(|n| n.trim().is_empty())
            {
                out.push(problem(path, row, NEGATIVES_COLUMN, format!("negative {k} is empty text")));
            }
            if let Some(lang) = lang
                && !is_known_language(lang)
            {
                out.push(problem(path, row, "lang", unknown_language_message(lang)));
            }
            let (Some(pair_id), Some(lang)) = (pair_id, lang) else {
                continue;
            };
            if let Some(earlier) = seen.insert((pair_id.to_string(), lang.to_string()), row) {
                out.push(problem(
                    path,
                    row,
                    "pair_id",
                    format!("duplicate (pair_id, lang) = ({pair_id:?}, {lang:?}); first seen at row {earlier}"),
                ));
            }
            let row_group = row_group_ends.partition_point(|&end| end <= row);
            let (group, first_row) = *group_of_pair.entry(pair_id.to_string()).or_insert((row_group, row));
            if group != row_group {
                out.push(problem(
                    path,
                    row,
                    "pair_id",
                    format!(
                        "parallel group {pair_id:?} is split across row groups {group} (row {first_row}) and \
                         {row_group}; sharding needs each group inside one row group: rewrite the file with \
                         `rosetta data convert --from jsonl-pairs` or Rosetta's writer"
                    ),
                ));
            }
        }
    })?;
    Ok(report)
}

/// Validates a benchmark directory: descriptor, the three tables, and their cross references.
pub fn validate_benchmark(dir: &Path) -> Result<ValidationReport> {
    let mut report = ValidationReport::default();
    let spec_path = dir.join(SPEC_FILE);
    let languages = match BenchmarkSpec::load(dir) {
        Ok(spec) => {
            for lang in spec.languages.iter().filter(|l| !is_pool_label(l)) {
                report.push(&spec_path, None, Some("languages"), unknown_language_message(lang));
            }
            if spec.languages.is_empty() {
                report.push(&spec_path, None, Some("languages"), "no languages listed");
            }
            Some(spec.languages)
        }
        Err(error) => {
            report.push(&spec_path, None, None, error.to_string());
            None
        }
    };
    let query_ids = validate_id_table(dir, QUERIES_FILE, "query_id", false, languages.as_deref(), &mut report)?;
    let doc_ids = validate_id_table(dir, CORPUS_FILE, "doc_id", true, languages.as_deref(), &mut report)?;
    validate_qrels(dir, query_ids.as_ref(), doc_ids.as_ref(), &mut report)
}

fn validate_id_table(
    dir: &Path,
    file: &str,
    id_column: &str,
    has_context: bool,
    languages: Option<&[String]>,
    report: &mut ValidationReport,
) -> Result<Option<HashSet<String>>> {
    let path = dir.join(file);
    let reader = match TableReader::open(&path) {
        Ok(reader) => reader,
        Err(error) => {
            report.push(&path, None, None, error.to_string());
            return Ok(None);
        }
    };
    let mut expected = vec![(id_column, ColumnKind::Text), ("lang", ColumnKind::Text), ("text", ColumnKind::Text)];
    let with_context = has_context && reader.schema().index_of("context").is_ok();
    if with_context {
        expected.push(("context", ColumnKind::OptionalText));
    }
    if !check_schema(&reader, &expected, report) {
        return Ok(None);
    }
    let columns: Vec<&str> = expected.iter().map(|(c, _)| *c).collect();
    let mut ids: HashMap<String, usize> = HashMap::new();
    scan_rows(&reader, &columns, report, |first, batch, out| {
        let (Some(id), Some(lang), Some(text)) =
            (text_column(batch, id_column), text_column(batch, "lang"), text_column(batch, "text"))
        else {
            return;
        };
        for i in 0..batch.num_rows() {
            let row = first + i;
            if let Some(value) = required_text(&path, &id, id_column, i, first, out)
                && let Some(earlier) = ids.insert(value.to_string(), row)
            {
                out.push(problem(&path, row, id_column, format!("duplicate id {value:?}; first at row {earlier}")));
            }
            if let Some(lang) = required_text(&path, &lang, "lang", i, first, out) {
                check_language(&path, row, lang, languages, out);
            }
            required_text(&path, &text, "text", i, first, out);
        }
    })?;
    Ok(Some(ids.into_keys().collect()))
}

fn validate_qrels(
    dir: &Path,
    query_ids: Option<&HashSet<String>>,
    doc_ids: Option<&HashSet<String>>,
    report: &mut ValidationReport,
) -> Result<ValidationReport> {
    let path = dir.join(QRELS_FILE);
    let reader = match TableReader::open(&path) {
        Ok(reader) => reader,
        Err(error) => {
            report.push(&path, None, None, error.to_string());
            return Ok(std::mem::take(report));
        }
    };
    let expected = [("query_id", ColumnKind::Text), ("doc_id", ColumnKind::Text), ("relevance", ColumnKind::Int32)];
    if !check_schema(&reader, &expected, report) {
        return Ok(std::mem::take(report));
    }
    let mut judged: HashSet<(String, String)> = HashSet::new();
    let mut with_relevant: HashSet<String> = HashSet::new();
    scan_rows(&reader, &["query_id", "doc_id", "relevance"], report, |first, batch, out| {
        let (Some(qid), Some(did), Some(relevance)) = (
            text_column(batch, "query_id"),
            text_column(batch, "doc_id"),
            batch.column_by_name("relevance").and_then(|c| c.as_any().downcast_ref::<Int32Array>()),
        ) else {
            return;
        };
        for i in 0..batch.num_rows() {
            let row = first + i;
            let q = required_text(&path, &qid, "query_id", i, first, out);
            let d = required_text(&path, &did, "doc_id", i, first, out);
            if relevance.is_null(i) {
                out.push(problem(&path, row, "relevance", "null value; expected an int32 grade"));
            }
            if let (Some(q), Some(known)) = (q, query_ids)
                && !known.contains(q)
            {
                out.push(problem(&path, row, "query_id", format!("unknown query id {q:?} (not in {QUERIES_FILE})")));
            }
            if let (Some(d), Some(known)) = (d, doc_ids)
                && !known.contains(d)
            {
                out.push(problem(&path, row, "doc_id", format!("unknown doc id {d:?} (not in {CORPUS_FILE})")));
            }
            let (Some(q), Some(d)) = (q, d) else { continue };
            if !judged.insert((q.to_string(), d.to_string())) {
                out.push(problem(&path, row, "doc_id", format!("({q:?}, {d:?}) is judged twice")));
            }
            if !relevance.is_null(i) && relevance.value(i) > 0 {
                with_relevant.insert(q.to_string());
            }
        }
    })?;
    if let Some(known) = query_ids {
        report.queries_without_relevant = known.iter().filter(|q| !with_relevant.contains(*q)).count();
    }
    Ok(std::mem::take(report))
}

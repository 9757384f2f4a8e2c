//! Validation finds every kind of problem and names file, row and column.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use rosetta_datasets::benchmark::{BenchmarkSpec, Protocol};
use rosetta_datasets::validate::{Problem, validate_benchmark, validate_pairs};

fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn text(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// A string column whose row `bad` holds bytes that are not UTF-8 (as some writers produce).
fn text_with_invalid_utf8(values: &[&str], bad: usize) -> ArrayRef {
    let mut bytes = Vec::new();
    let mut offsets = vec![0i32];
    for (i, v) in values.iter().enumerate() {
        if i == bad {
            bytes.extend_from_slice(&[0xff, 0xfe, b'x']);
        } else {
            bytes.extend_from_slice(v.as_bytes());
        }
        offsets.push(bytes.len() as i32);
    }
    // SAFETY: deliberately invalid UTF-8, to check that validation catches it.
    let array = unsafe {
        StringArray::new_unchecked(
            arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(offsets)),
            arrow_buffer::Buffer::from_vec(bytes),
            None,
        )
    };
    Arc::new(array)
}

fn find<'a>(problems: &'a [Problem], row: Option<usize>, column: &str, needle: &str) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.row == row && p.column.as_deref() == Some(column) && p.message.contains(needle))
        .unwrap_or_else(|| panic!("no problem at row {row:?} column {column} containing {needle:?} in {problems:#?}"))
}

#[test]
fn pairs_problems_are_all_listed_with_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    write_table(
        &path,
        vec![
            ("dataset", text(&[Some("d"), Some("d"), Some("d"), Some("d"), Some("d")])),
            ("pair_id", text(&[Some("a"), Some("a"), Some("b"), Some("c"), Some("a")])),
            ("lang", text(&[Some("en"), Some("de"), Some("xx"), Some("en"), Some("en")])),
            ("query", text(&[Some("q"), Some(""), Some("q"), Some("q"), Some("q")])),
            ("positive", text(&[Some("p"), Some("p"), Some("p"), None, Some("p")])),
        ],
    );
    let report = validate_pairs(&path).unwrap();
    assert_eq!(report.rows, 5);
    find(&report.problems, Some(1), "query", "empty text");
    find(&report.problems, Some(2), "lang", "unknown language code \"xx\"");
    find(&report.problems, Some(3), "positive", "null");
    let dup = find(&report.problems, Some(4), "pair_id", "duplicate (pair_id, lang)");
    assert!(dup.message.contains("row 0"), "{dup}");
    assert!(dup.to_string().starts_with(&format!("{}: row 4, column pair_id", path.display())), "{dup}");
    assert_eq!(report.problems.len(), 4, "{:#?}", report.problems);
}

#[test]
fn missing_and_mistyped_columns_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.parquet");
    write_table(
        &path,
        vec![
            ("dataset", text(&[Some("d")])),
            ("pair_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("lang", text(&[Some("en")])),
            ("query", text(&[Some("q")])),
        ],
    );
    let report = validate_pairs(&path).unwrap();
    find(&report.problems, None, "pair_id", "has type Int64, expected utf8");
    find(&report.problems, None, "positive", "missing column");
}

#[test]
fn non_utf8_text_is_reported_at_its_row_and_the_other_rows_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("utf8.parquet");
    write_table(
        &path,
        vec![
            ("dataset", text(&[Some("d"), Some("d"), Some("d")])),
            ("pair_id", text(&[Some("a"), Some("b"), Some("c")])),
            ("lang", text(&[Some("en"), Some("en"), Some("zz")])),
            ("query", text_with_invalid_utf8(&["q0", "q1", "q2"], 1)),
            ("positive", text(&[Some("p"), Some("p"), Some("p")])),
        ],
    );
    let report = validate_pairs(&path).unwrap();
    find(&report.problems, Some(1), "query", "UTF-8");
    find(&report.problems, Some(2), "lang", "unknown language");
    assert_eq!(report.rows, 3);
}

#[test]
fn benchmark_cross_references_and_unanswered_queries() {
    let dir = tempfile::tempdir().unwrap();
    BenchmarkSpec {
        name: "b".into(),
        protocol: Protocol::Qrels,
        languages: vec!["en".into()],
        format_version: 1,
        pool: Default::default(),
    }
    .save(dir.path())
    .unwrap();
    write_table(
        &dir.path().join("queries.parquet"),
        vec![
            ("query_id", text(&[Some("q1"), Some("q2"), Some("q3"), Some("q3")])),
            ("lang", text(&[Some("en"), Some("en"), Some("de"), Some("en")])),
            ("text", text(&[Some("a"), Some("b"), Some("c"), Some("d")])),
        ],
    );
    write_table(
        &dir.path().join("corpus.parquet"),
        vec![
            ("doc_id", text(&[Some("d1"), Some("d2")])),
            ("lang", text(&[Some("en"), Some("en")])),
            ("text", text(&[Some("x"), Some(" ")])),
        ],
    );
    write_table(
        &dir.path().join("qrels.parquet"),
        vec![
            ("query_id", text(&[Some("q1"), Some("q9"), Some("q2"), Some("q1")])),
            ("doc_id", text(&[Some("d1"), Some("d1"), Some("d7"), Some("d1")])),
            ("relevance", Arc::new(Int32Array::from(vec![1, 1, 0, 2])) as ArrayRef),
        ],
    );
    let report = validate_benchmark(dir.path()).unwrap();
    find(&report.problems, Some(2), "lang", "not listed in benchmark.yaml");
    find(&report.problems, Some(3), "query_id", "duplicate id \"q3\"");
    find(&report.problems, Some(1), "text", "empty text");
    find(&report.problems, Some(1), "query_id", "unknown query id \"q9\"");
    find(&report.problems, Some(2), "doc_id", "unknown doc id \"d7\"");
    find(&report.problems, Some(3), "doc_id", "judged twice");
    // q2 (judged 0) and q3 have no relevant document: counted, not a problem.
    assert_eq!(report.queries_without_relevant, 2);
    assert_eq!(report.problems.len(), 6, "{:#?}", report.problems);
}

#[test]
fn missing_benchmark_files_are_problems_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let report = validate_benchmark(dir.path()).unwrap();
    let files: Vec<String> = report.problems.iter().map(|p| p.file.display().to_string()).collect();
    for name in ["benchmark.yaml", "queries.parquet", "corpus.parquet", "qrels.parquet"] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{files:?}");
    }
}

#[test]
fn wrong_relevance_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_table(
        &dir.path().join("qrels.parquet"),
        vec![("query_id", text(&[Some("q")])), ("doc_id", text(&[Some("d")])), ("relevance", text(&[Some("1")]))],
    );
    let report = validate_benchmark(dir.path()).unwrap();
    find(&report.problems, None, "relevance", "expected int32");
}

//! Training pairs (DESIGN.md §3): one row per (parallel group, language), written so that
//! every parallel group lies inside one row group, which sharding relies on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};
use crate::table::{AtomicParquetWriter, TableReader, TextColumn, record_batch, string_array, text_column};

/// Schema tag stored in every training-pairs file.
pub const PAIRS_SCHEMA_TAG: &str = "rosetta.pairs/1";
/// Default number of rows per row group (a row group always ends on a group boundary).
pub const DEFAULT_ROWS_PER_GROUP: usize = 8192;
/// The text columns every pairs file must have, in order.
pub const PAIR_TEXT_COLUMNS: [&str; 5] = ["dataset", "pair_id", "lang", "query", "positive"];
/// The optional hard-negatives column.
pub const NEGATIVES_COLUMN: &str = "negatives";

/// One training row: a query and its relevant passage in one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingPair {
    /// Source dataset name (sampling weight by size).
    pub dataset: String,
    /// Parallel group: rows sharing it are translations of one QA pair.
    pub pair_id: String,
    /// Language code of query and passage.
    pub lang: String,
    /// The query text.
    pub query: String,
    /// The relevant passage.
    pub positive: String,
    /// Hard negatives in the same language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negatives: Option<Vec<String>>,
}

/// The Arrow schema of a training-pairs file.
pub fn pairs_schema() -> SchemaRef {
    let item = Field::new("item", DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("pair_id", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("query", DataType::Utf8, false),
        Field::new("positive", DataType::Utf8, false),
        Field::new(NEGATIVES_COLUMN, DataType::List(Arc::new(item)), true),
    ]))
}

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The file written.
    pub path: PathBuf,
    /// Rows written.
    pub rows: usize,
    /// Parallel groups written.
    pub groups: usize,
    /// Row groups in the file.
    pub row_groups: usize,
}

/// Writes training pairs group by group, cutting row groups only between groups.
pub struct PairWriter {
    out: AtomicParquetWriter,
    path: PathBuf,
    buffer: Vec<TrainingPair>,
    rows_per_group: usize,
    rows: usize,
    groups: usize,
}

impl PairWriter {
    /// Creates `path` (atomically, on `finish`) with row groups of about `rows_per_group` rows.
    pub fn create(path: &Path, rows_per_group: usize) -> Result<Self> {
        if rows_per_group == 0 {
            return Err(DatasetError::invalid("rows_per_group", "must be at least 1"));
        }
        let out = AtomicParquetWriter::create(path, pairs_schema(), PAIRS_SCHEMA_TAG)?;
        Ok(Self { out, path: path.to_path_buf(), buffer: Vec::new(), rows_per_group, rows: 0, groups: 0 })
    }

    /// Writes one parallel group: every row must share one `pair_id`, with no language twice.
    pub fn write_group(&mut self, group: Vec<TrainingPair>) -> Result<()> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        for (i, row) in group.iter().enumerate() {
            if row.pair_id != first.pair_id {
                return Err(DatasetError::invalid(
                    "group",
                    format!("mixes pair_id {:?} and {:?}", first.pair_id, row.pair_id),
                ));
            }
            if group[..i].iter().any(|earlier| earlier.lang == row.lang) {
                return Err(DatasetError::invalid(
                    "group",
                    format!("pair_id {:?} has language {:?} twice", row.pair_id, row.lang),
                ));
            }
        }
        self.rows += group.len();
        self.groups += 1;
        self.buffer.extend(group);
        if self.buffer.len() >= self.rows_per_group {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = pairs_to_batch(&self.path, &self.buffer)?;
        self.out.write(&batch)?;
        self.out.flush_row_group()?;
        self.buffer.clear();
        Ok(())
    }

    /// Flushes, writes the footer and moves the file into place.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.flush()?;
        let row_groups = self.out.finish()?;
        Ok(WriteSummary { path: self.path, rows: self.rows, groups: self.groups, row_groups })
    }
}

/// Converts rows into one Arrow batch of the pairs schema.
pub fn pairs_to_batch(path: &Path, rows: &[TrainingPair]) -> Result<RecordBatch> {
    let mut negatives =
        ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
    for row in rows {
        match &row.negatives {
            Some(list) => {
                for negative in list {
                    negatives.values().append_value(negative);
                }
                negatives.append(true);
            }
            None => negatives.append(false),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        string_array(rows.iter().map(|r| r.dataset.as_str())),
        string_array(rows.iter().map(|r| r.pair_id.as_str())),
        string_array(rows.iter().map(|r| r.lang.as_str())),
        string_array(rows.iter().map(|r| r.query.as_str())),
        string_array(rows.iter().map(|r| r.positive.as_str())),
        Arc::new(negatives.finish()),
    ];
    record_batch(path, pairs_schema(), columns)
}

/// Typed access to the columns of one batch read from a pairs file.
pub struct PairColumns<'a> {
    /// `dataset`.
    pub dataset: TextColumn<'a>,
    /// `pair_id`.
    pub pair_id: TextColumn<'a>,
    /// `lang`.
    pub lang: TextColumn<'a>,
    /// `query`.
    pub query: TextColumn<'a>,
    /// `positive`.
    pub positive: TextColumn<'a>,
    /// `negatives`, when the file has it.
    pub negatives: Option<&'a ListArray>,
    /// Index in the file of the batch's first row (for error messages).
    pub first_row: usize,
}

impl<'a> PairColumns<'a> {
    /// Views a batch whose first row is row `first_row` of the file; fails naming the first
    /// missing or mistyped column.
    pub fn new(path: &Path, batch: &'a RecordBatch, first_row: usize) -> Result<Self> {
        let text = |name: &str| {
            text_column(batch, name)
                .ok_or_else(|| DatasetError::format(path, format!("column {name:?} is missing or not utf8")))
        };
        let negatives = match batch.column_by_name(NEGATIVES_COLUMN) {
            None => None,
            Some(array) => Some(array.as_any().downcast_ref::<ListArray>().ok_or_else(|| {
                DatasetError::format(path, format!("column {NEGATIVES_COLUMN:?} must be list<utf8>"))
            })?),
        };
        Ok(Self {
            dataset: text("dataset")?,
            pair_id: text("pair_id")?,
            lang: text("lang")?,
            query: text("query")?,
            positive: text("positive")?,
            negatives,
            first_row,
        })
    }

    /// Hard negatives of `row` (`None` when null or absent). Items that are null are skipped.
    pub fn negatives_of(&self, row: usize) -> Option<Vec<String>> {
        let list = self.negatives?;
        if list.is_null(row) {
            return None;
        }
        let values = list.value(row);
        let text = TextColumn::new(&values)?;
        Some((0..text.len()).filter_map(|i| text.get(i).map(str::to_string)).collect())
    }

    /// Materialises `row` (required columns must be non-null, as validation checks).
    pub fn pair(&self, path: &Path, row: usize) -> Result<TrainingPair> {
        let get = |column: &TextColumn<'_>, name: &str| {
            column
                .get(row)
                .map(str::to_string)
                .ok_or_else(|| DatasetError::at_cell(path, self.first_row + row, name, "null value"))
        };
        Ok(TrainingPair {
            dataset: get(&self.dataset, "dataset")?,
            pair_id: get(&self.pair_id, "pair_id")?,
            lang: get(&self.lang, "lang")?,
            query: get(&self.query, "query")?,
            positive: get(&self.positive, "positive")?,
            negatives: self.negatives_of(row),
        })
    }
}

/// The columns to read from a pairs file: the required ones, plus negatives when present.
pub fn pair_columns_of(reader: &TableReader) -> Vec<&'static str> {
    let mut columns = PAIR_TEXT_COLUMNS.to_vec();
    if reader.schema().index_of(NEGATIVES_COLUMN).is_ok() {
        columns.push(NEGATIVES_COLUMN);
    }
    columns
}

/// Streams every row of a pairs file to `on_pair` (stops at the first bad cell, naming its row
/// and column; use `validate` to list all problems).
pub fn for_each_pair(path: &Path, mut on_pair: impl FnMut(TrainingPair)) -> Result<()> {
    let reader = TableReader::open(path)?;
    let columns = pair_columns_of(&reader);
    reader.scan_strict(&columns, 8192, |first, batch| {
        let view = PairColumns::new(path, batch, first)?;
        for i in 0..batch.num_rows() {
            on_pair(view.pair(path, i)?);
        }
        Ok(())
    })
}

/// Reads a whole pairs file into memory (see [`for_each_pair`]).
pub fn read_pairs(path: &Path) -> Result<Vec<TrainingPair>> {
    let mut rows = Vec::new();
    for_each_pair(path, |pair| rows.push(pair))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(pair_id: &str, lang: &str) -> TrainingPair {
        TrainingPair {
            dataset: "d".into(),
            pair_id: pair_id.into(),
            lang: lang.into(),
            query: format!("q {pair_id} {lang}"),
            positive: format!("p {pair_id} {lang}"),
            negatives: (lang == "en").then(|| vec!["n1".to_string(), "n2".to_string()]),
        }
    }

    #[test]
    fn round_trip_keeps_rows_negatives_and_schema_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.parquet");
        let mut writer = PairWriter::create(&path, 3).unwrap();
        let groups: Vec<Vec<TrainingPair>> =
            (0..5).map(|g| vec![pair(&format!("g{g}"), "en"), pair(&format!("g{g}"), "de")]).collect();
        for group in &groups {
            writer.write_group(group.clone()).unwrap();
        }
        let summary = writer.finish().unwrap();
        assert_eq!((summary.rows, summary.groups), (10, 5));
        let back = read_pairs(&path).unwrap();
        assert_eq!(back, groups.concat());
        let reader = TableReader::open(&path).unwrap();
        assert_eq!(reader.key_value(crate::table::SCHEMA_KEY).as_deref(), Some(PAIRS_SCHEMA_TAG));
        // Row groups end on group boundaries: 2 groups (4 rows) fill the first, etc.
        assert_eq!(reader.row_group_rows(), vec![4, 4, 2]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left behind");
    }

    #[test]
    fn a_group_must_share_its_pair_id_and_not_repeat_languages() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PairWriter::create(&dir.path().join("p.parquet"), 10).unwrap();
        let err = writer.write_group(vec![pair("a", "en"), pair("b", "en")]).unwrap_err();
        assert!(err.to_string().contains("mixes pair_id"), "{err}");
        let err = writer.write_group(vec![pair("a", "en"), pair("a", "en")]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}

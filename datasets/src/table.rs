//! Shared Parquet plumbing: typed text-column views, atomic writers, and a batch scan
//! that pinpoints the row and column of cells the Arrow reader rejects (e.g. non-UTF-8).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rosetta_common::atomic::StagedFile;

use crate::error::{DatasetError, Result};

/// Parquet key-value metadata key holding the schema name and version, e.g. `rosetta.pairs/1`.
pub const SCHEMA_KEY: &str = "rosetta.schema";

/// A read-only view of a text column, whatever its Arrow string flavour.
#[derive(Debug, Clone, Copy)]
pub enum TextColumn<'a> {
    /// `Utf8`.
    Utf8(&'a StringArray),
    /// `LargeUtf8`.
    Large(&'a LargeStringArray),
    /// `Utf8View`.
    View(&'a StringViewArray),
}

impl<'a> TextColumn<'a> {
    /// Views `array` as text, or `None` if it is not a string type.
    pub fn new(array: &'a ArrayRef) -> Option<Self> {
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return Some(Self::Utf8(a));
        }
        if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            return Some(Self::Large(a));
        }
        any.downcast_ref::<StringViewArray>().map(Self::View)
    }

    /// The value at `row`, `None` when null.
    pub fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Self::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            Self::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            Self::View(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Utf8(a) => a.len(),
            Self::Large(a) => a.len(),
            Self::View(a) => a.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True for the Arrow types Rosetta accepts as a text column.
pub fn is_text_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The column `name` of `batch` viewed as text (the schema must have been checked).
pub fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<TextColumn<'a>> {
    batch.column_by_name(name).and_then(TextColumn::new)
}

/// Writes a Parquet file atomically (through [`StagedFile`]): rows go to a temporary sibling that
/// is fsynced and renamed into place on `finish`.
/// Dropping it unfinished (an error mid-way) removes the temporary file.
pub struct AtomicParquetWriter {
    path: PathBuf,
    staged: Option<StagedFile>,
    writer: Option<ArrowWriter<BufWriter<File>>>,
}

impl AtomicParquetWriter {
    /// Creates the writer with zstd compression and `schema_tag` stored under [`SCHEMA_KEY`].
    pub fn create(path: &Path, schema: SchemaRef, schema_tag: &str) -> Result<Self> {
        let staged = StagedFile::new(path)?;
        let file = staged.create()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| DatasetError::parquet(path, e))?))
            // Row groups are cut by the caller (`flush_row_group`), never by the library.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_KEY.to_string(), schema_tag.to_string())]))
            .build();
        let writer = ArrowWriter::try_new(BufWriter::new(file), schema, Some(props))
            .map_err(|e| DatasetError::parquet(path, e))?;
        Ok(Self { path: path.to_path_buf(), staged: Some(staged), writer: Some(writer) })
    }

    fn writer(&mut self) -> Result<&mut ArrowWriter<BufWriter<File>>> {
        self.writer.as_mut().ok_or_else(|| DatasetError::format(&self.path, "writer already finished"))
    }

    /// Appends rows to the current row group.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let path = self.path.clone();
        self.writer()?.write(batch).map_err(|e| DatasetError::parquet(path, e))
    }

    /// Closes the current row group (no-op when it is empty).
    pub fn flush_row_group(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.writer()?.flush().map_err(|e| DatasetError::parquet(path, e))
    }

    /// Writes the footer and puts the file in place atomically; returns the row-group count.
    /// Dropping the writer unfinished (an error mid-way) removes the temporary file.
    pub fn finish(mut self) -> Result<usize> {
        let writer = self.writer.take().ok_or_else(|| DatasetError::format(&self.path, "writer already finished"))?;
        let staged = self.staged.take().ok_or_else(|| DatasetError::format(&self.path, "writer already finished"))?;
        let buffered = writer.into_inner().map_err(|e| DatasetError::parquet(&self.path, e))?;
        let file = buffered.into_inner().map_err(|e| DatasetError::io(staged.temp_path(), e.into_error()))?;
        drop(file);
        staged.commit()?;
        let reader = TableReader::open(&self.path)?;
        Ok(reader.metadata.metadata().num_row_groups())
    }
}

/// An opened Parquet file with its parsed footer, for repeated scans.
pub struct TableReader {
    path: PathBuf,
    file: File,
    metadata: ArrowReaderMetadata,
}

impl TableReader {
    /// Opens `path` and parses its footer.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let metadata =
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| DatasetError::parquet(path, e))?;
        Ok(Self { path: path.to_path_buf(), file, metadata })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Arrow schema of the file.
    pub fn schema(&self) -> SchemaRef {
        self.metadata.schema().clone()
    }

    /// Total rows in the file.
    pub fn num_rows(&self) -> usize {
        usize::try_from(self.metadata.metadata().file_metadata().num_rows()).unwrap_or(0)
    }

    /// Rows in each row group, in file order.
    pub fn row_group_rows(&self) -> Vec<usize> {
        self.metadata.metadata().row_groups().iter().map(|rg| usize::try_from(rg.num_rows()).unwrap_or(0)).collect()
    }

    /// The value stored under a key of the file's key-value metadata.
    pub fn key_value(&self, key: &str) -> Option<String> {
        self.metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    }

    fn projection(&self, columns: &[&str]) -> Result<ProjectionMask> {
        let schema = self.metadata.schema();
        let mut roots = Vec::with_capacity(columns.len());
        for name in columns {
            let index = schema
                .index_of(name)
                .map_err(|_| DatasetError::format(&self.path, format!("missing column {name:?}")))?;
            roots.push(index);
        }
        Ok(ProjectionMask::roots(self.metadata.metadata().file_metadata().schema_descr(), roots))
    }

    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>> {
        let file = self.file.try_clone().map_err(|e| DatasetError::io(&self.path, e))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone()))
    }

    /// [`TableReader::scan`] for readers that need every cell: the first bad cell (file, row,
    /// column) is the error, reported once the scan is over.
    pub fn scan_strict(
        &self,
        columns: &[&str],
        batch_size: usize,
        on_batch: impl FnMut(usize, &RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let mut bad = None;
        self.scan(columns, batch_size, on_batch, |row, column, message| {
            bad.get_or_insert_with(|| DatasetError::at_cell(&self.path, row, column, message));
        })?;
        bad.map_or(Ok(()), Err)
    }

    /// Reads `columns` in batches. `on_batch` gets each batch with the index of its first row.
    /// A batch the reader rejects is re-read row by row and cell by cell: every bad cell goes to
    /// `on_bad_cell(row, column, message)`, every good row to `on_batch`.
    pub fn scan(
        &self,
        columns: &[&str],
        batch_size: usize,
        mut on_batch: impl FnMut(usize, &RecordBatch) -> Result<()>,
        mut on_bad_cell: impl FnMut(usize, &str, String),
    ) -> Result<()> {
        let total = self.num_rows();
        let mask = self.projection(columns)?;
        let mut offset = 0;
        'reopen: while offset < total {
            let reader = self
                .builder()?
                .with_projection(mask.clone())
                .with_batch_size(batch_size)
                .with_offset(offset)
                .build()
                .map_err(|e| DatasetError::parquet(&self.path, e))?;
            for batch in reader {
                match batch {
                    Ok(batch) => {
                        on_batch(offset, &batch)?;
                        offset += batch.num_rows();
                    }
                    Err(_) => {
                        let end = (offset + batch_size).min(total);
                        let batch = self.recover_range(columns, offset..end, &mut on_bad_cell)?;
                        if let Some(batch) = batch {
                            on_batch(offset, &batch)?;
                        }
                        offset = end;
                        continue 'reopen;
                    }
                }
            }
            break;
        }
        Ok(())
    }

    /// Re-reads rows `range` column by column after the batch reader failed on them. Flat text
    /// columns that fail are decoded from raw Parquet values: each row with invalid UTF-8 is
    /// reported and its text replaced lossily, so the other checks still see every row.
    /// Returns `None` when a column cannot be recovered (its cells are reported).
    fn recover_range(
        &self,
        columns: &[&str],
        range: std::ops::Range<usize>,
        on_bad_cell: &mut impl FnMut(usize, &str, String),
    ) -> Result<Option<RecordBatch>> {
        let schema = self.metadata.schema();
        let mut arrays = Vec::with_capacity(columns.len());
        let mut fields = Vec::with_capacity(columns.len());
        let mut complete = true;
        for column in columns {
            let mask = self.projection(&[column])?;
            match self.read_rows(&mask, range.start, range.len()) {
                Ok(batch) => {
                    fields.push(batch.schema().field(0).clone());
                    arrays.push(batch.column(0).clone());
                }
                Err(message) => match self.raw_text_rows(column, range.clone()) {
                    Some(raw) => {
                        let mut values: Vec<Option<String>> = Vec::with_capacity(raw.len());
                        for (i, cell) in raw.into_iter().enumerate() {
                            values.push(cell.map(|bytes| match String::from_utf8(bytes) {
                                Ok(text) => text,
                                Err(e) => {
                                    on_bad_cell(range.start + i, column, "not valid UTF-8".to_string());
                                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                                }
                            }));
                        }
                        let nullable = schema.field_with_name(column).map(|f| f.is_nullable()).unwrap_or(true);
                        fields.push(arrow_schema::Field::new(*column, DataType::Utf8, nullable));
                        arrays.push(Arc::new(StringArray::from(values)) as ArrayRef);
                    }
                    None => {
                        on_bad_cell(
                            range.start,
                            column,
                            format!("rows {}..{} unreadable: {message}", range.start, range.end),
                        );
                        complete = false;
                    }
                },
            }
        }
        if !complete {
            return Ok(None);
        }
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        RecordBatch::try_new(schema, arrays).map(Some).map_err(|e| DatasetError::parquet(&self.path, e))
    }

    /// Raw bytes of a flat BYTE_ARRAY column for rows `range` (None for other column shapes).
    fn raw_text_rows(&self, column: &str, range: std::ops::Range<usize>) -> Option<Vec<Option<Vec<u8>>>> {
        use parquet::column::reader::get_typed_column_reader;
        use parquet::data_type::ByteArrayType;
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let reader = SerializedFileReader::new(self.file.try_clone().ok()?).ok()?;
        let descr = reader.metadata().file_metadata().schema_descr_ptr();
        let leaf = (0..descr.num_columns()).find(|&i| {
            let c = descr.column(i);
            c.path().parts().first().map(String::as_str) == Some(column) && c.path().parts().len() == 1
        })?;
        if descr.column(leaf).physical_type() != parquet::basic::Type::BYTE_ARRAY {
            return None;
        }
        let max_def = descr.column(leaf).max_def_level();
        let mut out = Vec::with_capacity(range.len());
        let mut row_base = 0usize;
        for group in 0..reader.num_row_groups() {
            let group_reader = reader.get_row_group(group).ok()?;
            let rows = usize::try_from(group_reader.metadata().num_rows()).ok()?;
            if row_base + rows <= range.start || row_base >= range.end {
                row_base += rows;
                continue;
            }
            let mut typed = get_typed_column_reader::<ByteArrayType>(group_reader.get_column_reader(leaf).ok()?);
            let (mut defs, mut values) = (Vec::new(), Vec::new());
            let mut read = 0;
            while read < rows {
                let (records, _, _) = typed.read_records(rows - read, Some(&mut defs), None, &mut values).ok()?;
                if records == 0 {
                    return None;
                }
                read += records;
            }
            let mut value_index = 0;
            for i in 0..rows {
                let present = max_def == 0 || defs.get(i) == Some(&max_def);
                let cell = if present {
                    value_index += 1;
                    Some(values.get(value_index - 1)?.data().to_vec())
                } else {
                    None
                };
                if (range.start..range.end).contains(&(row_base + i)) {
                    out.push(cell);
                }
            }
            row_base += rows;
        }
        (out.len() == range.len()).then_some(out)
    }

    fn read_rows(
        &self,
        mask: &ProjectionMask,
        offset: usize,
        limit: usize,
    ) -> std::result::Result<RecordBatch, String> {
        let reader = self
            .builder()
            .map_err(|e| e.to_string())?
            .with_projection(mask.clone())
            .with_offset(offset)
            .with_limit(limit)
            .build()
            .map_err(|e| e.to_string())?;
        let mut batches = Vec::new();
        for batch in reader {
            batches.push(batch.map_err(|e| clean_reader_message(&e.to_string()))?);
        }
        match batches.len() {
            1 => Ok(batches.swap_remove(0)),
            n => Err(format!("expected one batch, read {n}")),
        }
    }
}

fn clean_reader_message(message: &str) -> String {
    if message.to_ascii_lowercase().contains("utf") { "not valid UTF-8".to_string() } else { message.to_string() }
}

/// Builds a `RecordBatch`, mapping the Arrow error to this crate's error for `path`.
pub fn record_batch(path: &Path, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| DatasetError::parquet(path, e))
}

/// Convenience for `Arc::new(StringArray::from_iter_values(..))`.
pub fn string_array<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

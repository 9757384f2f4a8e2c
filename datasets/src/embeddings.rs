//! Embeddings with their ids as Parquet (`id`, `lang`, `embedding` fixed-size list of float32),
//! so evaluation numbers can be recomputed by anyone with pyarrow and numpy.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array};
use arrow_schema::{DataType, Field, Schema};

use crate::error::{DatasetError, Result};
use crate::table::{AtomicParquetWriter, TableReader, record_batch, string_array, text_column};

/// Schema tag stored in the file's metadata.
pub const EMBEDDINGS_SCHEMA: &str = "rosetta.embeddings.v1";

/// Rows written per row group.
const ROWS_PER_GROUP: usize = 8192;

/// Embeddings of one table: ids, languages and a row-major `rows × dim` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Query or document ids, one per row.
    pub ids: Vec<String>,
    /// Language of each row.
    pub langs: Vec<String>,
    /// Width of each vector.
    pub dim: usize,
    /// Row-major values.
    pub values: Vec<f32>,
}

fn schema(dim: usize) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim as i32),
            false,
        ),
    ]))
}

/// Writes `embeddings` to `path` atomically.
pub fn write_embeddings(path: &Path, embeddings: &Embeddings) -> Result<usize> {
    let rows = embeddings.ids.len();
    if embeddings.langs.len() != rows || embeddings.values.len() != rows * embeddings.dim || embeddings.dim == 0 {
        return Err(DatasetError::invalid("embeddings", "ids, languages and values disagree in length"));
    }
    let schema = schema(embeddings.dim);
    let mut writer = AtomicParquetWriter::create(path, schema.clone(), EMBEDDINGS_SCHEMA)?;
    for start in (0..rows).step_by(ROWS_PER_GROUP) {
        let end = (start + ROWS_PER_GROUP).min(rows);
        let values = Float32Array::from(embeddings.values[start * embeddings.dim..end * embeddings.dim].to_vec());
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let list = FixedSizeListArray::try_new(item, embeddings.dim as i32, Arc::new(values), None)
            .map_err(|e| DatasetError::parquet(path, e))?;
        let columns: Vec<ArrayRef> = vec![
            string_array(embeddings.ids[start..end].iter().map(String::as_str)),
            string_array(embeddings.langs[start..end].iter().map(String::as_str)),
            Arc::new(list),
        ];
        writer.write(&record_batch(path, schema.clone(), columns)?)?;
        writer.flush_row_group()?;
    }
    writer.finish()?;
    Ok(rows)
}

/// Reads an embeddings file written by [`write_embeddings`].
pub fn read_embeddings(path: &Path) -> Result<Embeddings> {
    let reader = TableReader::open(path)?;
    let mut out = Embeddings { ids: Vec::new(), langs: Vec::new(), dim: 0, values: Vec::new() };
    reader.scan_strict(&["id", "lang", "embedding"], ROWS_PER_GROUP, |first, batch| {
        let ids = text_column(batch, "id").ok_or_else(|| DatasetError::format(path, "column \"id\" must be utf8"))?;
        let langs =
            text_column(batch, "lang").ok_or_else(|| DatasetError::format(path, "column \"lang\" must be utf8"))?;
        let list = batch
            .column_by_name("embedding")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(|| DatasetError::format(path, "column \"embedding\" must be a fixed-size list of float32"))?;
        let values = list
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| DatasetError::format(path, "column \"embedding\" must hold float32"))?;
        out.dim = list.value_length() as usize;
        for row in 0..batch.num_rows() {
            let cell = |column: &str, value: Option<&str>| {
                value.map(str::to_string).ok_or_else(|| DatasetError::at_cell(path, first + row, column, "null value"))
            };
            out.ids.push(cell("id", ids.get(row))?);
            out.langs.push(cell("lang", langs.get(row))?);
        }
        let offset = list.offset() * out.dim;
        out.values.extend_from_slice(&values.values()[offset..offset + batch.num_rows() * out.dim]);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let e = Embeddings {
            ids: vec!["a".into(), "b".into(), "c".into()],
            langs: vec!["qaa".into(), "qab".into(), "qaa".into()],
            dim: 2,
            values: vec![0.5, -1.0, 2.0, 3.0, 0.0, 1e-3],
        };
        assert_eq!(write_embeddings(&path, &e).unwrap(), 3);
        assert_eq!(read_embeddings(&path).unwrap(), e);
    }
}

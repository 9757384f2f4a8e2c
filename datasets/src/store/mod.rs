//! The pair store: the training rows of a run packed once into a directory that any worker reads
//! by row number, so that a worker holds in memory only the rows of its micro-batches, whatever
//! the size of the data set (issue 10). Reads are positional (`pread`), so every worker on a
//! node shares the operating system's page cache and nothing is mapped into the process.
//!
//! ```text
//! STORE/store.json        manifest (format, id, sources, counts, languages, datasets); written last
//! STORE/rows.data, rows.blocks, rows.index   the row records, in zstd blocks (see `blocks`)
//! STORE/groups.ids        pair_id bytes of every parallel group, in index order
//! STORE/groups.id_ends    u64 × groups: end of each pair_id in groups.ids
//! STORE/groups.masks      u64 × groups: the languages each group has (bit i = languages[i])
//! STORE/groups.row_starts u64 × (groups + 1): first slot of each group in groups.rows
//! STORE/groups.rows       u32 × rows: each group's row numbers, in the order of its language bits
//! ```
//!
//! Groups are numbered dataset by dataset (datasets sorted by name), in the order their first
//! row appears in the source files: the order the scheduler's index has always used. Numbers
//! are little-endian. A store is immutable once its manifest exists; [`PairStore::open_or_build`]
//! builds it in a temporary directory and renames it into place, keyed by the identity (path,
//! size, modification time) of its source files, so a changed source gets a new store.

mod blocks;
mod build;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use build::build_store;

use crate::error::{DatasetError, Result};

/// Format tag of the manifest.
pub const STORE_FORMAT: &str = "rosetta.store/2";
/// Most languages a store (and a group's 64-bit language mask) can hold.
pub const MAX_LANGUAGES: usize = 64;
/// Manifest file name.
pub const MANIFEST_FILE: &str = "store.json";
const ROWS_DATA: &str = "rows.data";
const ROWS_BLOCKS: &str = "rows.blocks";
const ROWS_INDEX: &str = "rows.index";
const GROUP_IDS: &str = "groups.ids";
const GROUP_ID_ENDS: &str = "groups.id_ends";
const GROUP_MASKS: &str = "groups.masks";
const GROUP_ROW_STARTS: &str = "groups.row_starts";
const GROUP_ROWS: &str = "groups.rows";

/// Identity of one source file when the store was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSource {
    /// Absolute path of the training-pairs file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
    /// Rows it contributed.
    #[serde(default)]
    pub rows: u64,
}

/// One dataset's groups inside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDataset {
    /// Dataset name (the `dataset` column).
    pub name: String,
    /// Number of its first group.
    pub first_group: u64,
    /// Its parallel groups.
    pub groups: u64,
    /// Its rows (group × language).
    pub rows: u64,
}

/// `store.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreManifest {
    /// Always [`STORE_FORMAT`].
    pub format: String,
    /// Identity of the sources (see [`store_id`]).
    pub id: String,
    /// The files packed, in order.
    pub sources: Vec<StoreSource>,
    /// Rows in the store.
    pub rows: u64,
    /// Parallel groups in the store.
    pub groups: u64,
    /// Language codes; bit i of a group mask is `languages[i]`.
    pub languages: Vec<String>,
    /// Datasets in name order, each a contiguous range of groups.
    pub datasets: Vec<StoreDataset>,
    /// Compressed blocks of row records.
    pub blocks: u64,
    /// Bytes of `rows.data` (compressed).
    pub data_bytes: u64,
    /// Bytes of the row records before compression.
    pub raw_bytes: u64,
}

/// One training row as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Parallel group id.
    pub pair_id: String,
    /// Language code.
    pub lang: String,
    /// The query.
    pub query: String,
    /// The relevant passage.
    pub positive: String,
    /// Hard negatives (empty when the source had none or null).
    pub negatives: Vec<String>,
}

/// The group tables, read whole (for the scheduler's index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupTable {
    /// Every pair_id, concatenated.
    pub ids: Vec<u8>,
    /// End of each pair_id in `ids`.
    pub id_ends: Vec<u64>,
    /// Language mask of each group.
    pub masks: Vec<u64>,
}

/// An opened store; cheap to share between threads (reads are positional).
#[derive(Debug)]
pub struct PairStore {
    dir: PathBuf,
    manifest: StoreManifest,
    rows: blocks::BlockReader,
    row_starts: File,
    group_rows: File,
}

/// What [`PairStore::open_or_build`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOrigin {
    /// An existing store for the same sources was opened.
    Reused,
    /// The store was built now.
    Built,
}

/// The identities of `sources` (absolute path, size, modification time).
pub fn source_identities(sources: &[PathBuf]) -> Result<Vec<StoreSource>> {
    sources
        .iter()
        .map(|path| {
            let absolute = std::path::absolute(path).map_err(|e| DatasetError::io(path, e))?;
            let meta = std::fs::metadata(&absolute).map_err(|e| DatasetError::io(&absolute, e))?;
            let modified = meta.modified().map_err(|e| DatasetError::io(&absolute, e))?;
            let modified_ns = modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            Ok(StoreSource { path: absolute, bytes: meta.len(), modified_ns, rows: 0 })
        })
        .collect()
}

/// The id of a store of `sources`: 16 hex digits of a stable hash of the format and of every
/// source's path, size and modification time.
pub fn store_id(sources: &[StoreSource]) -> String {
    let mut text = String::from(STORE_FORMAT);
    for source in sources {
        text.push_str(&format!("\n{}\t{}\t{}", source.path.display(), source.bytes, source.modified_ns));
    }
    format!("{:016x}", crate::rng::fnv1a(text.as_bytes()))
}

fn open_file(dir: &Path, name: &str, expected_len: Option<u64>) -> Result<File> {
    let path = dir.join(name);
    let file = File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
    if let Some(expected) = expected_len {
        let len = file.metadata().map_err(|e| DatasetError::io(&path, e))?.len();
        if len != expected {
            return Err(DatasetError::format(
                &path,
                format!("{len} bytes, the manifest implies {expected}: the store is damaged; delete it to rebuild"),
            ));
        }
    }
    Ok(file)
}

fn read_u64s(file: &File, path: &Path, first: u64, count: usize) -> Result<Vec<u64>> {
    let mut bytes = vec![0u8; count * 8];
    file.read_exact_at(&mut bytes, first * 8).map_err(|e| DatasetError::io(path, e))?;
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

impl PairStore {
    /// Opens a built store, checking its format and that every file has the size its manifest implies.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&manifest_path).map_err(|e| DatasetError::io(&manifest_path, e))?;
        let manifest: StoreManifest =
            serde_json::from_slice(&text).map_err(|e| DatasetError::format(&manifest_path, e.to_string()))?;
        if manifest.format != STORE_FORMAT {
            return Err(DatasetError::format(
                &manifest_path,
                format!("format {:?}, this Rosetta reads {STORE_FORMAT:?}", manifest.format),
            ));
        }
        let (rows, groups) = (manifest.rows, manifest.groups);
        let row_reader = blocks::BlockReader::open(dir, rows, manifest.blocks, manifest.data_bytes)?;
        open_file(dir, GROUP_ID_ENDS, Some(groups * 8))?;
        open_file(dir, GROUP_MASKS, Some(groups * 8))?;
        let row_starts = open_file(dir, GROUP_ROW_STARTS, Some((groups + 1) * 8))?;
        let group_rows = open_file(dir, GROUP_ROWS, Some(rows * 4))?;
        Ok(Self { dir: dir.to_path_buf(), manifest, rows: row_reader, row_starts, group_rows })
    }

    /// Where the store of `sources` lives under `root` (`root/<id>`), whether or not it is built.
    pub fn location(sources: &[PathBuf], root: &Path) -> Result<PathBuf> {
        Ok(root.join(store_id(&source_identities(sources)?)))
    }

    /// Opens the store of `sources` under `root` (`root/<id>`), building it first when there is none.
    pub fn open_or_build(sources: &[PathBuf], root: &Path) -> Result<(Self, StoreOrigin)> {
        let dir = Self::location(sources, root)?;
        if dir.join(MANIFEST_FILE).is_file() {
            return Ok((Self::open(&dir)?, StoreOrigin::Reused));
        }
        build_store(sources, &dir)?;
        Ok((Self::open(&dir)?, StoreOrigin::Built))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's id (see [`store_id`]).
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// The manifest.
    pub fn manifest(&self) -> &StoreManifest {
        &self.manifest
    }

    /// Reads row `row` (positional reads of its index entry and its block, one decompression
    /// unless the block was the last one read).
    pub fn read_row(&self, row: u64) -> Result<StoredRow> {
        self.rows.read(row)
    }

    /// The row of the `rank`-th language (in bit order) of group `group`.
    pub fn row_of(&self, group: u64, rank: u32) -> Result<u64> {
        let starts_path = self.dir.join(GROUP_ROW_STARTS);
        if group >= self.manifest.groups {
            return Err(DatasetError::format(
                &starts_path,
                format!("group {group} asked for; the store has {}", self.manifest.groups),
            ));
        }
        let span = read_u64s(&self.row_starts, &starts_path, group, 2)?;
        let slot = span[0] + u64::from(rank);
        if slot >= span[1] {
            return Err(DatasetError::format(
                &starts_path,
                format!("group {group} has {} rows, not a {}th", span[1] - span[0], rank + 1),
            ));
        }
        let rows_path = self.dir.join(GROUP_ROWS);
        let mut bytes = [0u8; 4];
        self.group_rows.read_exact_at(&mut bytes, slot * 4).map_err(|e| DatasetError::io(&rows_path, e))?;
        Ok(u64::from(u32::from_le_bytes(bytes)))
    }

    /// Reads the group tables whole (ids, id ends, masks), for building the scheduler's index.
    pub fn read_groups(&self) -> Result<GroupTable> {
        let groups = self.manifest.groups as usize;
        let ids_path = self.dir.join(GROUP_IDS);
        let ids = std::fs::read(&ids_path).map_err(|e| DatasetError::io(&ids_path, e))?;
        let ends_path = self.dir.join(GROUP_ID_ENDS);
        let id_ends = read_u64s(&open_file(&self.dir, GROUP_ID_ENDS, None)?, &ends_path, 0, groups)?;
        let masks_path = self.dir.join(GROUP_MASKS);
        let masks = read_u64s(&open_file(&self.dir, GROUP_MASKS, None)?, &masks_path, 0, groups)?;
        if id_ends.last().copied().unwrap_or(0) != ids.len() as u64 || id_ends.windows(2).any(|w| w[0] > w[1]) {
            return Err(DatasetError::format(&ends_path, "pair_id offsets are damaged; delete the store to rebuild"));
        }
        Ok(GroupTable { ids, id_ends, masks })
    }
}

/// Writes `groups` (each one parallel group's rows) to `dir/pairs.parquet` with the standard
/// writer and packs that file into the store `dir/store`: training data for tests and tools.
pub fn pack_groups(groups: &[Vec<crate::pairs::TrainingPair>], dir: &Path) -> Result<PairStore> {
    let source = dir.join("pairs.parquet");
    let mut writer = crate::pairs::PairWriter::create(&source, crate::pairs::DEFAULT_ROWS_PER_GROUP)?;
    for group in groups {
        writer.write_group(group.clone())?;
    }
    writer.finish()?;
    let store_dir = dir.join("store");
    build_store(&[source], &store_dir)?;
    PairStore::open(&store_dir)
}

#[cfg(test)]
mod tests;

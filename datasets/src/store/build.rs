//! Building a pair store from training-pairs Parquet files in one streaming pass: records and
//! offsets go straight to disk; in memory stay only the group table and two small numbers per
//! row (about 1 GB for 10M groups), which are written out once the pass is over.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rosetta_common::atomic::{remove_stale_temporaries, sync_dir, temp_sibling};

use super::blocks::{BlockWriter, finish_writer};
use super::*;
use crate::pairs::{PairColumns, pair_columns_of};
use crate::table::{TableReader, TextColumn};

/// Passes a precomputed 64-bit hash through unchanged.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Parallel groups in first-seen order, found by a 64-bit hash of (dataset, pair_id); the rare
/// hash collision falls back to a map keyed by the strings themselves.
#[derive(Default)]
struct Groups {
    ids: Vec<u8>,
    id_ends: Vec<u64>,
    masks: Vec<u64>,
    dataset: Vec<u16>,
    by_hash: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    collisions: HashMap<(u16, Box<str>), u32>,
}

impl Groups {
    fn id(&self, g: usize) -> &[u8] {
        let start = if g == 0 { 0 } else { self.id_ends[g - 1] as usize };
        &self.ids[start..self.id_ends[g] as usize]
    }

    fn find_or_insert(&mut self, dataset: u16, pair_id: &str) -> usize {
        let mut key = Vec::with_capacity(pair_id.len() + 2);
        key.extend_from_slice(&dataset.to_le_bytes());
        key.extend_from_slice(pair_id.as_bytes());
        let hash = crate::rng::fnv1a(&key);
        match self.by_hash.get(&hash) {
            Some(&g) if self.dataset[g as usize] == dataset && self.id(g as usize) == pair_id.as_bytes() => g as usize,
            Some(_) => {
                if let Some(&g) = self.collisions.get(&(dataset, pair_id.into())) {
                    return g as usize;
                }
                let g = self.push(dataset, pair_id);
                self.collisions.insert((dataset, pair_id.into()), g as u32);
                g
            }
            None => {
                let g = self.push(dataset, pair_id);
                self.by_hash.insert(hash, g as u32);
                g
            }
        }
    }

    fn push(&mut self, dataset: u16, pair_id: &str) -> usize {
        self.ids.extend_from_slice(pair_id.as_bytes());
        self.id_ends.push(self.ids.len() as u64);
        self.masks.push(0);
        self.dataset.push(dataset);
        self.masks.len() - 1
    }
}

/// Everything the single pass collects.
struct Pass {
    groups: Groups,
    datasets: Vec<String>,
    dataset_of: HashMap<String, u16>,
    languages: Vec<String>,
    language_of: HashMap<String, u8>,
    /// Per row: its provisional group and its language bit.
    row_group: Vec<u32>,
    row_lang: Vec<u8>,
    records: BlockWriter,
}

fn writer(dir: &Path, name: &str) -> Result<BufWriter<File>> {
    let path = dir.join(name);
    File::create(&path).map(|f| BufWriter::with_capacity(1 << 20, f)).map_err(|e| DatasetError::io(&path, e))
}

fn write_u64s(dir: &Path, name: &str, values: impl IntoIterator<Item = u64>) -> Result<()> {
    let path = dir.join(name);
    let mut out = writer(dir, name)?;
    for value in values {
        out.write_all(&value.to_le_bytes()).map_err(|e| DatasetError::io(&path, e))?;
    }
    finish_writer(out, &path)
}

impl Pass {
    fn add_file(&mut self, path: &Path) -> Result<u64> {
        let reader = TableReader::open(path)?;
        let columns = pair_columns_of(&reader);
        let before = self.row_group.len() as u64;
        reader.scan_strict(&columns, 8192, |first, batch| {
            let view = PairColumns::new(path, batch, first)?;
            for i in 0..batch.num_rows() {
                self.add_row(path, &view, first, i)?;
            }
            let rows = self.row_group.len() as u64;
            if rows / 1_000_000 != (rows - batch.num_rows() as u64) / 1_000_000 {
                tracing::info!(rows, file = %path.display(), "packing training rows into the store");
            }
            Ok(())
        })?;
        Ok(self.row_group.len() as u64 - before)
    }

    fn add_row<'a>(&mut self, path: &Path, view: &PairColumns<'a>, first: usize, i: usize) -> Result<()> {
        fn text<'a>(column: &TextColumn<'a>, path: &Path, row: usize, i: usize, name: &str) -> Result<&'a str> {
            column.get(i).ok_or_else(|| DatasetError::at_cell(path, row, name, "null value"))
        }
        let cell = |column: &TextColumn<'a>, name: &str| text(column, path, first + i, i, name);
        let dataset = cell(&view.dataset, "dataset")?;
        let pair_id = cell(&view.pair_id, "pair_id")?;
        let lang = cell(&view.lang, "lang")?;
        let (query, positive) = (cell(&view.query, "query")?, cell(&view.positive, "positive")?);
        let d = match self.dataset_of.get(dataset) {
            Some(&d) => d,
            None => {
                let d = u16::try_from(self.datasets.len())
                    .map_err(|_| DatasetError::at_cell(path, first + i, "dataset", "more than 65,536 datasets"))?;
                self.datasets.push(dataset.to_string());
                self.dataset_of.insert(dataset.to_string(), d);
                d
            }
        };
        let bit = match self.language_of.get(lang) {
            Some(&bit) => bit,
            None => {
                if self.languages.len() >= MAX_LANGUAGES {
                    return Err(DatasetError::at_cell(
                        path,
                        first + i,
                        "lang",
                        format!(
                            "{lang:?} would be language {}; at most {MAX_LANGUAGES} are supported",
                            self.languages.len() + 1
                        ),
                    ));
                }
                self.languages.push(lang.to_string());
                let bit = (self.languages.len() - 1) as u8;
                self.language_of.insert(lang.to_string(), bit);
                bit
            }
        };
        let g = self.groups.find_or_insert(d, pair_id);
        if self.groups.masks[g] & (1 << bit) != 0 {
            return Err(DatasetError::at_cell(
                path,
                first + i,
                "pair_id",
                format!(
                    "({dataset}, {pair_id}, {lang}) appears a second time; a parallel group has one row per language"
                ),
            ));
        }
        self.groups.masks[g] |= 1 << bit;
        if u32::try_from(self.row_group.len()).is_err() {
            return Err(DatasetError::at_cell(path, first + i, "pair_id", "more than 4,294,967,295 rows"));
        }
        self.row_group.push(g as u32);
        self.row_lang.push(bit);
        let negatives = view.negatives_of(i).unwrap_or_default();
        let mut fields = vec![pair_id, lang, query, positive];
        fields.extend(negatives.iter().map(String::as_str));
        self.records.push(&fields)
    }
}

/// Builds the store of `sources` at `dir` (which must not hold a store yet): written into a
/// temporary sibling directory, which is renamed into place once complete. A concurrent build
/// of the same store that finishes first wins; this one is then discarded.
pub fn build_store(sources: &[PathBuf], dir: &Path) -> Result<StoreManifest> {
    if sources.is_empty() {
        return Err(DatasetError::invalid("data.train", "list at least one training-pairs file"));
    }
    let mut identities = source_identities(sources)?;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
    remove_stale_temporaries(parent).map_err(DatasetError::from)?;
    let staging = temp_sibling(dir);
    std::fs::create_dir(&staging).map_err(|e| DatasetError::io(&staging, e))?;
    let outcome = build_into(sources, &mut identities, &staging);
    let manifest = match outcome {
        Ok(manifest) => manifest,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    match std::fs::rename(&staging, dir) {
        Ok(()) => sync_dir(parent).map_err(DatasetError::from)?,
        Err(_) if dir.join(MANIFEST_FILE).is_file() => {
            // Someone else built the same store meanwhile: theirs is as good as ours.
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(DatasetError::io(dir, e));
        }
    }
    Ok(manifest)
}

fn build_into(sources: &[PathBuf], identities: &mut [StoreSource], dir: &Path) -> Result<StoreManifest> {
    let mut pass = Pass {
        groups: Groups::default(),
        datasets: Vec::new(),
        dataset_of: HashMap::new(),
        languages: Vec::new(),
        language_of: HashMap::new(),
        row_group: Vec::new(),
        row_lang: Vec::new(),
        records: BlockWriter::create(dir)?,
    };
    for (source, identity) in sources.iter().zip(identities.iter_mut()) {
        identity.rows = pass.add_file(source)?;
    }
    let Pass { groups, datasets, languages, row_group, row_lang, records, .. } = pass;
    let totals = records.finish()?;

    // Final numbering: datasets by name, each dataset's groups in first-seen order.
    let mut order: Vec<u16> = (0..datasets.len() as u16).collect();
    order.sort_by(|&a, &b| datasets[a as usize].cmp(&datasets[b as usize]));
    let mut per_dataset = vec![0u64; datasets.len()];
    for &d in &groups.dataset {
        per_dataset[d as usize] += 1;
    }
    let mut next_of_dataset = vec![0u64; datasets.len()];
    let mut store_datasets = Vec::with_capacity(datasets.len());
    let mut first = 0u64;
    for &d in &order {
        next_of_dataset[d as usize] = first;
        store_datasets.push(StoreDataset {
            name: datasets[d as usize].clone(),
            first_group: first,
            groups: per_dataset[d as usize],
            rows: 0,
        });
        first += per_dataset[d as usize];
    }
    let group_count = groups.masks.len();
    let mut final_of = vec![0u32; group_count];
    let mut provisional_of = vec![0u32; group_count];
    for (p, &d) in groups.dataset.iter().enumerate() {
        let f = next_of_dataset[d as usize];
        next_of_dataset[d as usize] += 1;
        final_of[p] = f as u32;
        provisional_of[f as usize] = p as u32;
    }
    let position_of: HashMap<u16, usize> = order.iter().enumerate().map(|(i, &d)| (d, i)).collect();
    for (p, &d) in groups.dataset.iter().enumerate() {
        store_datasets[position_of[&d]].rows += u64::from(groups.masks[p].count_ones());
    }

    let ids_path = dir.join(GROUP_IDS);
    let mut ids = writer(dir, GROUP_IDS)?;
    let mut end = 0u64;
    let mut id_ends = Vec::with_capacity(group_count);
    for &p in &provisional_of {
        let id = groups.id(p as usize);
        ids.write_all(id).map_err(|e| DatasetError::io(&ids_path, e))?;
        end += id.len() as u64;
        id_ends.push(end);
    }
    finish_writer(ids, &ids_path)?;
    write_u64s(dir, GROUP_ID_ENDS, id_ends)?;
    write_u64s(dir, GROUP_MASKS, provisional_of.iter().map(|&p| groups.masks[p as usize]))?;
    let mut row_starts = Vec::with_capacity(group_count + 1);
    let mut slot = 0u64;
    for &p in &provisional_of {
        row_starts.push(slot);
        slot += u64::from(groups.masks[p as usize].count_ones());
    }
    row_starts.push(slot);
    let mut group_rows = vec![0u32; row_group.len()];
    for (row, (&p, &bit)) in row_group.iter().zip(&row_lang).enumerate() {
        let f = final_of[p as usize] as usize;
        let below = groups.masks[p as usize] & ((1u64 << bit) - 1);
        group_rows[(row_starts[f] + u64::from(below.count_ones())) as usize] = row as u32;
    }
    write_u64s(dir, GROUP_ROW_STARTS, row_starts)?;
    let rows_path = dir.join(GROUP_ROWS);
    let mut rows_out = writer(dir, GROUP_ROWS)?;
    for row in &group_rows {
        rows_out.write_all(&row.to_le_bytes()).map_err(|e| DatasetError::io(&rows_path, e))?;
    }
    finish_writer(rows_out, &rows_path)?;

    let manifest = StoreManifest {
        format: STORE_FORMAT.to_string(),
        id: store_id(identities),
        sources: identities.to_vec(),
        rows: row_group.len() as u64,
        groups: group_count as u64,
        languages,
        datasets: store_datasets,
        blocks: totals.blocks,
        data_bytes: totals.compressed_bytes,
        raw_bytes: totals.raw_bytes,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| DatasetError::format(dir.join(MANIFEST_FILE), e.to_string()))?;
    rosetta_common::atomic::write_atomic(&dir.join(MANIFEST_FILE), &text).map_err(DatasetError::from)?;
    sync_dir(dir).map_err(DatasetError::from)?;
    Ok(manifest)
}

//! The pair index the scheduler draws from: for each dataset, its parallel groups and the
//! languages each group has. Compact: ids live in one string buffer (≈ 20–30 bytes per group).

use std::collections::HashMap;
use std::path::Path;

use rosetta_datasets::pairs::PAIR_TEXT_COLUMNS;
use rosetta_datasets::table::{TableReader, text_column};

use crate::error::Result;

/// Maximum number of distinct languages (a group's languages are a 64-bit mask).
pub const MAX_LANGUAGES: usize = 64;

/// The groups of one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetGroups {
    /// Dataset name.
    pub name: String,
    ids: String,
    id_ends: Vec<u32>,
    masks: Vec<u64>,
}

impl DatasetGroups {
    /// Number of parallel groups.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// True when the dataset has no group.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The `pair_id` of group `g`.
    pub fn pair_id(&self, g: usize) -> &str {
        let start = if g == 0 { 0 } else { self.id_ends[g - 1] as usize };
        &self.ids[start..self.id_ends[g] as usize]
    }

    /// The language mask of group `g` (bit i = language i of the index).
    pub fn mask(&self, g: usize) -> u64 {
        self.masks[g]
    }

    /// Rows (group × language) in the dataset.
    pub fn rows(&self) -> usize {
        self.masks.iter().map(|m| m.count_ones() as usize).sum()
    }

    fn push(&mut self, pair_id: &str, mask: u64) {
        self.ids.push_str(pair_id);
        self.id_ends.push(self.ids.len() as u32);
        self.masks.push(mask);
    }
}

/// Every dataset's groups, with the language table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairIndex {
    /// Language codes; bit i of a mask is `languages[i]`.
    pub languages: Vec<String>,
    /// Datasets in name order.
    pub datasets: Vec<DatasetGroups>,
}

/// Builds a [`PairIndex`] group by group.
#[derive(Debug, Default)]
pub struct PairIndexBuilder {
    index: PairIndex,
    dataset_of: HashMap<String, usize>,
    language_of: HashMap<String, usize>,
}

impl PairIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bit of `lang`, registering it; `None` past [`MAX_LANGUAGES`].
    pub fn language_bit(&mut self, lang: &str) -> Option<u64> {
        if let Some(&i) = self.language_of.get(lang) {
            return Some(1 << i);
        }
        if self.index.languages.len() >= MAX_LANGUAGES {
            return None;
        }
        self.index.languages.push(lang.to_string());
        self.language_of.insert(lang.to_string(), self.index.languages.len() - 1);
        Some(1 << (self.index.languages.len() - 1))
    }

    /// Adds a group of `dataset` with the given languages.
    pub fn add_group(&mut self, dataset: &str, pair_id: &str, languages: &[&str]) {
        let mask = languages.iter().filter_map(|l| self.language_bit(l)).fold(0, |m, b| m | b);
        self.add_group_mask(dataset, pair_id, mask);
    }

    /// Adds a group by its language mask.
    pub fn add_group_mask(&mut self, dataset: &str, pair_id: &str, mask: u64) {
        let next = self.index.datasets.len();
        let d = *self.dataset_of.entry(dataset.to_string()).or_insert(next);
        if d == next {
            self.index.datasets.push(DatasetGroups { name: dataset.to_string(), ..DatasetGroups::default() });
        }
        self.index.datasets[d].push(pair_id, mask);
    }

    /// The finished index, datasets sorted by name (so file order does not matter).
    pub fn build(mut self) -> PairIndex {
        self.index.datasets.sort_by(|a, b| a.name.cmp(&b.name));
        for dataset in &mut self.index.datasets {
            dataset.ids.shrink_to_fit();
            dataset.id_ends.shrink_to_fit();
            dataset.masks.shrink_to_fit();
        }
        self.index
    }
}

impl PairIndex {
    /// Reads the `dataset`, `pair_id` and `lang` columns of training-pairs files.
    pub fn from_parquet(paths: &[impl AsRef<Path>]) -> Result<Self> {
        let mut builder = PairIndexBuilder::new();
        // (dataset, pair_id) → mask, in first-seen order.
        let mut groups: Vec<(String, String, u64)> = Vec::new();
        let mut position: HashMap<(String, String), usize> = HashMap::new();
        for path in paths {
            let path = path.as_ref();
            let reader = TableReader::open(path)?;
            let mut bad = None;
            reader.scan(
                &PAIR_TEXT_COLUMNS[..3],
                8192,
                |first, batch| {
                    let col = |name: &str| {
                        text_column(batch, name).ok_or_else(|| {
                            rosetta_datasets::DatasetError::format(path, format!("column {name:?} missing or not utf8"))
                        })
                    };
                    let (dataset, pair_id, lang) = (col("dataset")?, col("pair_id")?, col("lang")?);
                    for i in 0..batch.num_rows() {
                        let (Some(d), Some(p), Some(l)) = (dataset.get(i), pair_id.get(i), lang.get(i)) else {
                            return Err(rosetta_datasets::DatasetError::at_cell(
                                path,
                                first + i,
                                "dataset/pair_id/lang",
                                "null value",
                            ));
                        };
                        let bit = builder.language_bit(l).ok_or_else(|| {
                            rosetta_datasets::DatasetError::at_cell(
                                path,
                                first + i,
                                "lang",
                                format!("more than {MAX_LANGUAGES} languages"),
                            )
                        })?;
                        let key = (d.to_string(), p.to_string());
                        let at = *position.entry(key).or_insert_with(|| {
                            groups.push((d.to_string(), p.to_string(), 0));
                            groups.len() - 1
                        });
                        groups[at].2 |= bit;
                    }
                    Ok(())
                },
                |row, column, message| {
                    bad.get_or_insert_with(|| rosetta_datasets::DatasetError::at_cell(path, row, column, message));
                },
            )?;
            if let Some(error) = bad {
                return Err(error.into());
            }
        }
        for (dataset, pair_id, mask) in groups {
            builder.add_group_mask(&dataset, &pair_id, mask);
        }
        Ok(builder.build())
    }

    /// Index of a language code.
    pub fn language_index(&self, code: &str) -> Option<usize> {
        self.languages.iter().position(|l| l == code)
    }

    /// Total groups over all datasets.
    pub fn groups(&self) -> usize {
        self.datasets.iter().map(DatasetGroups::len).sum()
    }

    /// Heap bytes held by the index (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.datasets.iter().map(|d| d.ids.capacity() + d.id_ends.capacity() * 4 + d.masks.capacity() * 8).sum()
    }
}

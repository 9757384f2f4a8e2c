//! The pair index the scheduler draws from: for each dataset, its parallel groups and the
//! languages each group has, read from the pair store (rosetta_datasets::store). Compact: ids
//! live in one string buffer (≈ 20–30 bytes per group).

use std::collections::HashMap;

use rosetta_datasets::DatasetError;
use rosetta_datasets::store::{MAX_LANGUAGES, PairStore};

use crate::error::Result;

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
    /// The index of a pair store: its languages, and each dataset's groups in store order (so
    /// that group `g` of dataset `d` is store group [`PairIndex::first_group`]`(d) + g`).
    pub fn from_store(store: &PairStore) -> Result<Self> {
        let manifest = store.manifest();
        let table = store.read_groups()?;
        let mut datasets = Vec::with_capacity(manifest.datasets.len());
        for dataset in &manifest.datasets {
            let (first, count) = (dataset.first_group as usize, dataset.groups as usize);
            let base = if first == 0 { 0 } else { table.id_ends[first - 1] };
            let end = table.id_ends.get(first + count - 1).copied().unwrap_or(base);
            let ids = std::str::from_utf8(&table.ids[base as usize..end as usize])
                .map_err(|e| {
                    DatasetError::format(store.dir(), format!("dataset {}: pair ids are not UTF-8: {e}", dataset.name))
                })?
                .to_string();
            let id_ends = table.id_ends[first..first + count]
                .iter()
                .map(|&e| u32::try_from(e - base))
                .collect::<std::result::Result<Vec<u32>, _>>()
                .map_err(|_| {
                    DatasetError::format(store.dir(), format!("dataset {}: more than 4 GiB of pair ids", dataset.name))
                })?;
            let masks = table.masks[first..first + count].to_vec();
            datasets.push(DatasetGroups { name: dataset.name.clone(), ids, id_ends, masks });
        }
        Ok(Self { languages: manifest.languages.clone(), datasets })
    }

    /// The store number of dataset `d`'s first group (datasets are contiguous, in index order).
    pub fn first_group(&self, d: usize) -> u64 {
        self.datasets[..d].iter().map(|dataset| dataset.len() as u64).sum()
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

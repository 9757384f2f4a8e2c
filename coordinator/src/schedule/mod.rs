//! The hybrid batch scheduler (DESIGN.md §4): `plan(step, cursor) → (StepPlan, cursor')`, a
//! pure function. The randomness of step s comes from a generator seeded by (seed, s); the
//! cursor holds, per (dataset, stream), an epoch number, an offset into that epoch's seeded
//! permutation, and at most one batch of deferred groups — nothing that grows with the data.

mod config;
mod index;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use config::{CrossPairing, DatasetSampling, ScheduleConfig, Strategy};
pub use index::{DatasetGroups, PairIndex, PairIndexBuilder};
use rosetta_datasets::rng::{SeededRng, mix_seed};
pub use rosetta_datasets::store::MAX_LANGUAGES;
use serde::{Deserialize, Serialize};

use crate::error::{CoordinatorError, Result};

/// What kind of batch a step trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchKind {
    /// Every example in one language (query and passage alike).
    Monolingual,
    /// Every example has query language ≠ passage language.
    CrossLingual,
    /// Every example same-language, languages mixed within the batch (LAReQA X-X).
    MixedMonolingual,
}

/// One example of a global batch: which row pair to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExampleRef {
    /// Index of the parallel group within its dataset (of the [`PairIndex`]).
    pub group: u32,
    /// Parallel group.
    pub pair_id: String,
    /// Language of the query row.
    pub query_lang: String,
    /// Language of the passage row.
    pub passage_lang: String,
}

/// The global batch of one step; identical whatever the number of workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlan {
    /// Step number (0-based).
    pub step: u64,
    /// Batch kind.
    pub kind: BatchKind,
    /// Dataset every example comes from.
    pub dataset: String,
    /// The batch's language (monolingual) or language pair (cross, per batch); empty when examples differ.
    pub languages: Vec<String>,
    /// The examples, in order.
    pub examples: Vec<ExampleRef>,
}

impl StepPlan {
    /// The micro-batch of `rank` among `world` ranks: contiguous cuts whose sizes differ by at most one.
    pub fn micro_batch(&self, rank: usize, world: usize) -> &[ExampleRef] {
        let (start, end) = micro_batch_range(self.examples.len(), rank, world);
        &self.examples[start..end]
    }
}

/// The `[start, end)` of rank's cut of `len` examples among `world` ranks.
pub fn micro_batch_range(len: usize, rank: usize, world: usize) -> (usize, usize) {
    assert!(world > 0 && rank < world, "rank {rank} of world {world}");
    (len * rank / world, len * (rank + 1) / world)
}

/// Where one stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Epoch of the stream (its permutation is seeded by it).
    pub epoch: u64,
    /// Next position in the epoch's permutation.
    pub offset: u64,
    /// Groups drawn across an epoch boundary that were already in that batch; served first next time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<u32>,
}

/// Everything needed to continue a schedule exactly: saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The step the next `plan` call must be for.
    pub next_step: u64,
    /// Fingerprint of the config and index this cursor belongs to.
    pub fingerprint: u64,
    /// Position of every stream drawn from so far, by `dataset/stream` name.
    pub streams: BTreeMap<String, StreamPosition>,
}

/// A stream of groups within a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StreamKey {
    /// Groups having this language.
    Mono(u8),
    /// Groups having at least two training languages.
    Cross,
    /// Groups having both languages.
    Pair(u8, u8),
    /// Groups having any training language.
    Any,
}

/// What one dataset can give, after validation.
#[derive(Debug, Clone)]
struct DatasetPlan {
    weight: f64,
    /// Eligible languages for monolingual batches, with their weights.
    mono: Vec<(u8, f64)>,
    /// Whether per-example cross batches can be filled.
    cross: bool,
    /// Eligible unordered language pairs for per-batch cross batches.
    pairs: Vec<(u8, u8)>,
    /// Whether mixed same-language batches can be filled.
    any: bool,
}

/// The cached permutation of one stream: its epoch and order.
type EpochPermutation = (u64, Arc<Vec<u32>>);

/// A validated, immutable schedule over one index, with caches of streams and permutations.
pub struct Scheduler {
    config: ScheduleConfig,
    index: Arc<PairIndex>,
    allowed: u64,
    mono_probability: f64,
    datasets: Vec<DatasetPlan>,
    fingerprint: u64,
    stream_lengths: HashMap<(usize, StreamKey), usize>,
    permutations: HashMap<(usize, StreamKey), EpochPermutation>,
}

fn language_list(index: &PairIndex, mask: u64) -> Vec<u8> {
    (0..index.languages.len() as u8).filter(|&i| mask & (1 << i) != 0).collect()
}

/// The `n`-th (0-based) language set in `mask`.
fn nth_language(mask: u64, n: u32) -> u8 {
    let mut rest = mask;
    for _ in 0..n {
        rest &= rest - 1;
    }
    rest.trailing_zeros() as u8
}

fn stream_matches(key: StreamKey, mask: u64) -> bool {
    match key {
        StreamKey::Mono(l) => mask & (1 << l) != 0,
        StreamKey::Cross => mask.count_ones() >= 2,
        StreamKey::Pair(a, b) => mask & (1 << a) != 0 && mask & (1 << b) != 0,
        StreamKey::Any => mask != 0,
    }
}

impl Scheduler {
    /// Validates `config` against `index`; lists every problem with its YAML path.
    pub fn new(config: ScheduleConfig, index: Arc<PairIndex>) -> Result<Self> {
        let mut problems = config.static_problems();
        let batch = config.global_batch_size.max(1);
        let mut allowed = 0u64;
        if config.languages.is_empty() {
            allowed = if index.languages.len() == 64 { u64::MAX } else { (1u64 << index.languages.len()) - 1 };
        }
        for lang in &config.languages {
            match index.language_index(lang) {
                Some(i) => allowed |= 1 << i,
                None => problems
                    .push("schedule.languages", format!("{lang:?} is not in the data (it has {:?})", index.languages)),
            }
        }
        for lang in config.language_weights.keys() {
            if index.language_index(lang).is_none() {
                problems.push(format!("schedule.language_weights.{lang}"), "not a language of the data");
            }
        }
        for name in config.dataset_weights.keys() {
            if !index.datasets.iter().any(|d| &d.name == name) {
                problems.push(format!("schedule.dataset_weights.{name}"), "no such dataset");
            }
        }
        let en_en = index.language_index(&config.en_en_language);
        if config.strategy == Strategy::EnEn {
            match en_en {
                None => {
                    problems.push("schedule.en_en_language", format!("{:?} is not in the data", config.en_en_language))
                }
                Some(i) => allowed &= 1 << i,
            }
        }
        let mono_probability = match config.strategy {
            Strategy::Hybrid => config.alpha,
            Strategy::XXMono | Strategy::EnEn => 1.0,
            Strategy::XY => 0.0,
            Strategy::XX => 1.0,
        };
        let mut datasets = Vec::with_capacity(index.datasets.len());
        for dataset in &index.datasets {
            let weight = if !config.dataset_weights.is_empty() {
                config.dataset_weights.get(&dataset.name).copied().unwrap_or(0.0)
            } else if config.dataset_sampling == DatasetSampling::Uniform {
                1.0
            } else {
                dataset.len() as f64
            };
            let n = index.languages.len();
            let mut per_language = vec![0usize; n];
            let mut pair_counts = vec![0usize; n * n];
            let (mut cross, mut any) = (0usize, 0usize);
            let per_batch = config.cross_pairing == CrossPairing::PerBatch;
            for g in 0..dataset.len() {
                let mask = dataset.mask(g) & allowed;
                any += usize::from(mask != 0);
                cross += usize::from(mask.count_ones() >= 2);
                let langs = language_list(&index, mask);
                for &l in &langs {
                    per_language[l as usize] += 1;
                }
                if per_batch {
                    for (i, &a) in langs.iter().enumerate() {
                        for &b in &langs[i + 1..] {
                            pair_counts[a as usize * n + b as usize] += 1;
                        }
                    }
                }
            }
            let language_weight = |l: usize| {
                if config.language_weights.is_empty() {
                    1.0
                } else {
                    config.language_weights.get(&index.languages[l]).copied().unwrap_or(0.0)
                }
            };
            let mono = (0..n)
                .filter(|&l| per_language[l] >= batch && language_weight(l) > 0.0)
                .map(|l| (l as u8, language_weight(l)))
                .collect();
            let pairs = (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .filter(|&(a, b)| pair_counts[a * n + b] >= batch)
                .map(|(a, b)| (a as u8, b as u8))
                .collect();
            datasets.push(DatasetPlan { weight, mono, cross: cross >= batch, pairs, any: any >= batch });
        }
        let describe = |index: &PairIndex| -> String {
            index
                .datasets
                .iter()
                .map(|d| {
                    let mask = (0..d.len()).fold(0u64, |m, g| m | d.mask(g));
                    let langs: Vec<&str> =
                        language_list(index, mask).iter().map(|&l| index.languages[l as usize].as_str()).collect();
                    format!("{} ({} groups; languages {})", d.name, d.len(), langs.join(" "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let usable = |f: &dyn Fn(&DatasetPlan) -> bool| datasets.iter().any(|d| d.weight > 0.0 && f(d));
        let per_batch = config.cross_pairing == CrossPairing::PerBatch;
        if problems.is_empty() {
            if config.strategy == Strategy::XX && !usable(&|d| d.any) {
                problems.push(
                    "schedule.strategy",
                    format!(
                        "x-x needs a dataset with at least {batch} groups in the training languages; have {}",
                        describe(&index)
                    ),
                );
            }
            if config.strategy != Strategy::XX && mono_probability > 0.0 && !usable(&|d| !d.mono.is_empty()) {
                problems.push(
                    "schedule.strategy",
                    format!(
                        "{:?} asks for monolingual batches, but no weighted dataset has a language with at least \
                         {batch} groups (global_batch_size); have {}",
                        config.strategy,
                        describe(&index)
                    ),
                );
            }
            if mono_probability < 1.0
                && !usable(&|d| {
                    if per_batch { !d.pairs.is_empty() } else { d.cross }
                })
            {
                problems.push(
                    "schedule.strategy",
                    format!(
                        "{:?} asks for cross-lingual batches, but no weighted dataset has {batch} groups with {} of the \
                         training languages (single-language datasets give only monolingual batches); have {}",
                        config.strategy,
                        if per_batch { "one language pair" } else { "two or more" },
                        describe(&index)
                    ),
                );
            }
        }
        if !problems.is_empty() {
            return Err(CoordinatorError::InvalidConfig(problems));
        }
        let fingerprint = fingerprint(&config, &index);
        Ok(Self {
            config,
            index,
            allowed,
            mono_probability,
            datasets,
            fingerprint,
            stream_lengths: HashMap::new(),
            permutations: HashMap::new(),
        })
    }

    /// The validated config.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// The index planned over.
    pub fn index(&self) -> &PairIndex {
        &self.index
    }

    /// The cursor of a schedule that has not started.
    pub fn start(&self) -> Cursor {
        Cursor { next_step: 0, fingerprint: self.fingerprint, streams: BTreeMap::new() }
    }

    /// Plans `step` from `cursor` (which must be the cursor after step − 1).
    pub fn plan(&mut self, step: u64, cursor: &Cursor) -> Result<(StepPlan, Cursor)> {
        if cursor.fingerprint != self.fingerprint {
            return Err(CoordinatorError::Cursor(
                "it was made for another schedule config or dataset index (fingerprint differs)".to_string(),
            ));
        }
        if cursor.next_step != step {
            return Err(CoordinatorError::Cursor(format!("it is for step {}, not step {step}", cursor.next_step)));
        }
        let mut next = cursor.clone();
        next.next_step = step + 1;
        let mut rng = SeededRng::from_parts(&[self.config.seed, 0x57E9_57E9, step]);
        let kind = match self.config.strategy {
            Strategy::XX => BatchKind::MixedMonolingual,
            _ if rng.chance(self.mono_probability) => BatchKind::Monolingual,
            _ => BatchKind::CrossLingual,
        };
        let per_batch = self.config.cross_pairing == CrossPairing::PerBatch;
        let weights: Vec<f64> = self
            .datasets
            .iter()
            .map(|d| {
                let capable = match kind {
                    BatchKind::Monolingual => !d.mono.is_empty(),
                    BatchKind::CrossLingual if per_batch => !d.pairs.is_empty(),
                    BatchKind::CrossLingual => d.cross,
                    BatchKind::MixedMonolingual => d.any,
                };
                if capable { d.weight } else { 0.0 }
            })
            .collect();
        let d = rng.weighted_index(&weights);
        let batch = self.config.global_batch_size;
        let (key, languages) = match kind {
            BatchKind::Monolingual => {
                let options = &self.datasets[d].mono;
                let l = options[rng.weighted_index(&options.iter().map(|o| o.1).collect::<Vec<_>>())].0;
                (StreamKey::Mono(l), vec![l])
            }
            BatchKind::CrossLingual if per_batch => {
                let (a, b) = self.datasets[d].pairs[rng.index(self.datasets[d].pairs.len())];
                let (q, p) = if rng.chance(0.5) { (a, b) } else { (b, a) };
                (StreamKey::Pair(a, b), vec![q, p])
            }
            BatchKind::CrossLingual => (StreamKey::Cross, Vec::new()),
            BatchKind::MixedMonolingual => (StreamKey::Any, Vec::new()),
        };
        let groups = self.draw(d, key, batch, &mut next)?;
        let dataset = &self.index.datasets[d];
        let name = |l: u8| self.index.languages[l as usize].clone();
        let examples = groups
            .iter()
            .map(|&g| {
                let g = g as usize;
                let (q, p) = match kind {
                    BatchKind::Monolingual => (languages[0], languages[0]),
                    BatchKind::CrossLingual if per_batch => (languages[0], languages[1]),
                    BatchKind::CrossLingual => {
                        let mask = dataset.mask(g) & self.allowed;
                        let count = u64::from(mask.count_ones());
                        let q = rng.below(count) as u32;
                        let mut p = rng.below(count - 1) as u32;
                        if p >= q {
                            p += 1;
                        }
                        (nth_language(mask, q), nth_language(mask, p))
                    }
                    BatchKind::MixedMonolingual => {
                        let mask = dataset.mask(g) & self.allowed;
                        let l = nth_language(mask, rng.below(u64::from(mask.count_ones())) as u32);
                        (l, l)
                    }
                };
                ExampleRef {
                    group: g as u32,
                    pair_id: dataset.pair_id(g).to_string(),
                    query_lang: name(q),
                    passage_lang: name(p),
                }
            })
            .collect();
        let plan = StepPlan {
            step,
            kind,
            dataset: dataset.name.clone(),
            languages: languages.into_iter().map(name).collect(),
            examples,
        };
        Ok((plan, next))
    }

    /// Progress of every stream a cursor has drawn from: completed epochs plus the fraction of
    /// the current one, by stream name.
    pub fn epoch_progress(&mut self, cursor: &Cursor) -> BTreeMap<String, f64> {
        let languages = self.index.languages.len() as u8;
        let mut keys = vec![StreamKey::Cross, StreamKey::Any];
        for a in 0..languages {
            keys.push(StreamKey::Mono(a));
            keys.extend((a + 1..languages).map(|b| StreamKey::Pair(a, b)));
        }
        let mut progress = BTreeMap::new();
        for d in 0..self.index.datasets.len() {
            for &key in &keys {
                if let Some(position) = cursor.streams.get(&self.stream_name(d, key)) {
                    let len = self.stream_length(d, key).max(1) as f64;
                    progress.insert(self.stream_name(d, key), position.epoch as f64 + position.offset as f64 / len);
                }
            }
        }
        progress
    }

    fn stream_name(&self, d: usize, key: StreamKey) -> String {
        let lang = |l: u8| self.index.languages[l as usize].as_str();
        let dataset = &self.index.datasets[d].name;
        match key {
            StreamKey::Mono(l) => format!("{dataset}/mono:{}", lang(l)),
            StreamKey::Cross => format!("{dataset}/cross"),
            StreamKey::Pair(a, b) => format!("{dataset}/pair:{}-{}", lang(a), lang(b)),
            StreamKey::Any => format!("{dataset}/any"),
        }
    }

    /// Groups of a stream in index order (a scan: done once per epoch of the stream).
    fn members(&self, d: usize, key: StreamKey) -> Vec<u32> {
        let dataset = &self.index.datasets[d];
        (0..dataset.len() as u32).filter(|&g| stream_matches(key, dataset.mask(g as usize) & self.allowed)).collect()
    }

    fn stream_length(&mut self, d: usize, key: StreamKey) -> usize {
        if let Some(&len) = self.stream_lengths.get(&(d, key)) {
            return len;
        }
        let dataset = &self.index.datasets[d];
        let len = (0..dataset.len()).filter(|&g| stream_matches(key, dataset.mask(g) & self.allowed)).count();
        self.stream_lengths.insert((d, key), len);
        len
    }

    fn permutation(&mut self, d: usize, key: StreamKey, epoch: u64) -> Arc<Vec<u32>> {
        if let Some((cached_epoch, perm)) = self.permutations.get(&(d, key))
            && *cached_epoch == epoch
        {
            return perm.clone();
        }
        let mut perm = self.members(d, key);
        let name = self.stream_name(d, key);
        let stream_seed = rosetta_datasets::rng::fnv1a(name.as_bytes());
        SeededRng::from_parts(&[self.config.seed, 0xE90C, stream_seed, epoch]).shuffle(&mut perm);
        let perm = Arc::new(perm);
        self.permutations.insert((d, key), (epoch, perm.clone()));
        perm
    }

    /// Draws `n` distinct groups of a stream, without replacement within each epoch.
    fn draw(&mut self, d: usize, key: StreamKey, n: usize, cursor: &mut Cursor) -> Result<Vec<u32>> {
        let name = self.stream_name(d, key);
        let len = self.stream_length(d, key) as u64;
        if (len as usize) < n {
            return Err(CoordinatorError::Cursor(format!("stream {name} has {len} groups, fewer than a batch of {n}")));
        }
        let mut position = cursor.streams.remove(&name).unwrap_or_default();
        if position.deferred.is_empty() && position.offset + n as u64 <= len {
            // Within one epoch a permutation never repeats: no duplicate check needed.
            let perm = self.permutation(d, key, position.epoch);
            let start = position.offset as usize;
            let out = perm[start..start + n].to_vec();
            position.offset += n as u64;
            cursor.streams.insert(name, position);
            return Ok(out);
        }
        let mut taken: HashSet<u32> = HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        let mut deferred = Vec::new();
        for g in std::mem::take(&mut position.deferred) {
            if out.len() < n && taken.insert(g) {
                out.push(g);
            } else {
                deferred.push(g);
            }
        }
        let mut perm = self.permutation(d, key, position.epoch);
        while out.len() < n {
            if position.offset >= len {
                position.epoch += 1;
                position.offset = 0;
                perm = self.permutation(d, key, position.epoch);
            }
            let g = perm[position.offset as usize];
            position.offset += 1;
            if taken.insert(g) {
                out.push(g);
            } else {
                deferred.push(g);
            }
        }
        position.deferred = deferred;
        cursor.streams.insert(name, position);
        Ok(out)
    }
}

fn fingerprint(config: &ScheduleConfig, index: &PairIndex) -> u64 {
    let config_text = serde_json::to_string(config).unwrap_or_default();
    let mut parts = vec![config_text.len() as u64];
    parts.extend(config_text.bytes().map(u64::from));
    for lang in &index.languages {
        parts.extend(lang.bytes().map(u64::from));
    }
    for dataset in &index.datasets {
        parts.extend(dataset.name.bytes().map(u64::from));
        parts.push(dataset.len() as u64);
        parts.push(dataset.rows() as u64);
    }
    mix_seed(&parts)
}

#[cfg(test)]
mod tests;

//! Statistics of a training-pairs file: rows per dataset and language, parallel coverage
//! (how many groups have each language pair) and text-length percentiles.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::pairs::for_each_pair;

/// Length percentiles of a text column, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LengthPercentiles {
    /// Median.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// 99th percentile.
    pub p99: usize,
    /// Longest.
    pub max: usize,
}

impl LengthPercentiles {
    /// Nearest-rank percentiles of `lengths` (sorted in place).
    pub fn of(lengths: &mut [usize]) -> Self {
        lengths.sort_unstable();
        let at = |p: f64| {
            if lengths.is_empty() {
                return 0;
            }
            let rank = ((p * lengths.len() as f64).ceil() as usize).clamp(1, lengths.len());
            lengths[rank - 1]
        };
        Self { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: lengths.last().copied().unwrap_or(0) }
    }
}

/// Everything `rosetta data stats` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairStats {
    /// Rows in the file.
    pub rows: usize,
    /// Distinct parallel groups.
    pub groups: usize,
    /// Rows per dataset, then per language.
    pub rows_by_dataset: BTreeMap<String, BTreeMap<String, usize>>,
    /// For each unordered language pair `a-b` (a < b), how many groups have both.
    pub coverage: BTreeMap<String, usize>,
    /// How many groups have exactly k languages, by k.
    pub groups_by_language_count: BTreeMap<usize, usize>,
    /// Query lengths in characters.
    pub query_chars: LengthPercentiles,
    /// Positive-passage lengths in characters.
    pub positive_chars: LengthPercentiles,
    /// Rows that carry hard negatives.
    pub rows_with_negatives: usize,
}

/// The languages of a training-pairs file, reading its `lang` column only.
pub fn pair_languages(path: &Path) -> Result<std::collections::BTreeSet<String>> {
    let reader = crate::table::TableReader::open(path)?;
    let mut languages = std::collections::BTreeSet::new();
    reader.scan_strict(&["lang"], 8192, |_, batch| {
        if let Some(column) = crate::table::text_column(batch, "lang") {
            for row in 0..column.len() {
                if let Some(lang) = column.get(row).filter(|l| !languages.contains(*l)) {
                    languages.insert(lang.to_string());
                }
            }
        }
        Ok(())
    })?;
    Ok(languages)
}

/// Computes [`PairStats`] in one streaming pass.
pub fn pair_stats(path: &Path) -> Result<PairStats> {
    let mut languages: Vec<String> = Vec::new();
    let mut group_langs: HashMap<String, u64> = HashMap::new();
    let mut rows_by_dataset: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut query_lengths = Vec::new();
    let mut positive_lengths = Vec::new();
    let mut rows = 0;
    let mut rows_with_negatives = 0;
    for_each_pair(path, |pair| {
        rows += 1;
        *rows_by_dataset.entry(pair.dataset).or_default().entry(pair.lang.clone()).or_default() += 1;
        let index = match languages.iter().position(|l| *l == pair.lang) {
            Some(index) => index,
            None => {
                languages.push(pair.lang.clone());
                languages.len() - 1
            }
        };
        if index < 64 {
            *group_langs.entry(pair.pair_id).or_default() |= 1 << index;
        }
        query_lengths.push(pair.query.chars().count());
        positive_lengths.push(pair.positive.chars().count());
        rows_with_negatives += usize::from(pair.negatives.is_some_and(|n| !n.is_empty()));
    })?;
    let mut coverage = BTreeMap::new();
    let mut groups_by_language_count = BTreeMap::new();
    for mask in group_langs.values() {
        *groups_by_language_count.entry(mask.count_ones() as usize).or_default() += 1;
        for a in 0..languages.len().min(64) {
            for b in 0..languages.len().min(64) {
                let (la, lb) = (&languages[a], &languages[b]);
                if la < lb && mask & (1 << a) != 0 && mask & (1 << b) != 0 {
                    *coverage.entry(format!("{la}-{lb}")).or_default() += 1;
                }
            }
        }
    }
    Ok(PairStats {
        rows,
        groups: group_langs.len(),
        rows_by_dataset,
        coverage,
        groups_by_language_count,
        query_chars: LengthPercentiles::of(&mut query_lengths),
        positive_chars: LengthPercentiles::of(&mut positive_lengths),
        rows_with_negatives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<usize> = (1..=100).collect();
        let p = LengthPercentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50, 90, 99, 100));
        assert_eq!(LengthPercentiles::of(&mut []).max, 0);
    }

    #[test]
    fn coverage_counts_groups_with_both_languages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let mut w = crate::pairs::PairWriter::create(&path, 100).unwrap();
        let row = |id: &str, lang: &str| crate::pairs::TrainingPair {
            dataset: "d".into(),
            pair_id: id.into(),
            lang: lang.into(),
            query: "q".into(),
            positive: "pp".into(),
            negatives: None,
        };
        w.write_group(vec![row("a", "en"), row("a", "de"), row("a", "fr")]).unwrap();
        w.write_group(vec![row("b", "en"), row("b", "de")]).unwrap();
        w.write_group(vec![row("c", "en")]).unwrap();
        w.finish().unwrap();
        let stats = pair_stats(&path).unwrap();
        assert_eq!((stats.rows, stats.groups), (6, 3));
        assert_eq!(stats.coverage["de-en"], 2);
        assert_eq!(stats.coverage["de-fr"], 1);
        assert_eq!(stats.groups_by_language_count[&1], 1);
        assert_eq!(stats.rows_by_dataset["d"]["en"], 3);
        let languages: Vec<String> = pair_languages(&path).unwrap().into_iter().collect();
        assert_eq!(languages, ["de", "en", "fr"]);
    }
}

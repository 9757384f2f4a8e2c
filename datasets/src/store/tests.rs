use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::pairs::{PairWriter, TrainingPair};

fn row(dataset: &str, pair_id: &str, lang: &str, negatives: usize) -> TrainingPair {
    TrainingPair {
        dataset: dataset.into(),
        pair_id: pair_id.into(),
        lang: lang.into(),
        query: format!("query {pair_id} in {lang} ✓"),
        positive: format!("passage {pair_id} in {lang}"),
        negatives: (negatives > 0).then(|| (0..negatives).map(|n| format!("negative {n} of {pair_id}")).collect()),
    }
}

fn write(path: &Path, groups: &[Vec<TrainingPair>]) {
    let mut writer = PairWriter::create(path, 4).unwrap();
    for group in groups {
        writer.write_group(group.clone()).unwrap();
    }
    writer.finish().unwrap();
}

/// (dataset, pair_id) → group number, from the store's own tables.
fn group_numbers(store: &PairStore) -> HashMap<(String, String), u64> {
    let table = store.read_groups().unwrap();
    let mut numbers = HashMap::new();
    for dataset in &store.manifest().datasets {
        for g in dataset.first_group..dataset.first_group + dataset.groups {
            let start = if g == 0 { 0 } else { table.id_ends[g as usize - 1] as usize };
            let id = std::str::from_utf8(&table.ids[start..table.id_ends[g as usize] as usize]).unwrap();
            numbers.insert((dataset.name.clone(), id.to_string()), g);
        }
    }
    numbers
}

/// Every source row read back through the group table equals the row written.
fn assert_round_trip(store: &PairStore, rows: &[TrainingPair]) {
    let numbers = group_numbers(store);
    let masks = store.read_groups().unwrap().masks;
    let languages = &store.manifest().languages;
    for expected in rows {
        let g = numbers[&(expected.dataset.clone(), expected.pair_id.clone())];
        let bit = languages.iter().position(|l| *l == expected.lang).unwrap();
        let rank = (masks[g as usize] & ((1u64 << bit) - 1)).count_ones();
        let got = store.read_row(store.row_of(g, rank).unwrap()).unwrap();
        assert_eq!(
            (&got.pair_id, &got.lang, &got.query, &got.positive),
            (&expected.pair_id, &expected.lang, &expected.query, &expected.positive)
        );
        assert_eq!(got.negatives, expected.negatives.clone().unwrap_or_default());
    }
    assert_eq!(store.manifest().rows, rows.len() as u64);
}

#[test]
fn rows_read_back_through_groups_across_files_with_datasets_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    let one = vec![
        vec![row("zeta", "z1", "en", 2), row("zeta", "z1", "de", 0)],
        vec![row("alpha", "a1", "fr", 1)],
        vec![row("zeta", "z0", "en", 0)],
    ];
    // a1 gets a second language in the second file; a0 is new there.
    let two = vec![vec![row("alpha", "a1", "en", 0)], vec![row("alpha", "a0", "de", 3), row("alpha", "a0", "en", 0)]];
    write(&first, &one);
    write(&second, &two);
    let store_dir = dir.path().join("store");
    let manifest = build_store(&[first.clone(), second.clone()], &store_dir).unwrap();
    let store = PairStore::open(&store_dir).unwrap();
    assert_eq!(store.manifest(), &manifest);
    let names: Vec<&str> = manifest.datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    // First-seen order within a dataset, whatever file the later rows are in.
    let numbers = group_numbers(&store);
    assert_eq!(numbers[&("alpha".into(), "a1".into())], 0);
    assert_eq!(numbers[&("alpha".into(), "a0".into())], 1);
    assert_eq!(numbers[&("zeta".into(), "z1".into())], 2);
    assert_eq!(numbers[&("zeta".into(), "z0".into())], 3);
    assert_eq!((manifest.datasets[0].rows, manifest.datasets[1].rows), (4, 3));
    assert_eq!(manifest.sources.iter().map(|s| s.rows).collect::<Vec<_>>(), vec![4, 3]);
    let all: Vec<TrainingPair> = one.into_iter().chain(two).flatten().collect();
    assert_round_trip(&store, &all);
    // Nothing temporary is left beside the store.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn a_row_twice_is_refused_naming_file_and_row_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    write(&first, &[vec![row("d", "p", "en", 0)]]);
    write(&second, &[vec![row("d", "q", "en", 0)], vec![row("d", "p", "en", 0)]]);
    let err = build_store(&[first, second.clone()], &dir.path().join("store")).unwrap_err().to_string();
    assert!(
        err.contains("b.parquet") && err.contains("row 1") && err.contains("(d, p, en) appears a second time"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the failed build left files behind");
}

#[test]
fn open_or_build_reuses_a_store_and_rebuilds_when_a_source_changes() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("train.parquet");
    write(&source, &[vec![row("d", "p", "en", 0), row("d", "p", "de", 0)]]);
    let root = dir.path().join(".stores");
    let (built, origin) = PairStore::open_or_build(std::slice::from_ref(&source), &root).unwrap();
    assert_eq!(origin, StoreOrigin::Built);
    let (reused, origin) = PairStore::open_or_build(std::slice::from_ref(&source), &root).unwrap();
    assert_eq!((origin, reused.id(), reused.dir()), (StoreOrigin::Reused, built.id(), built.dir()));
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&source, &[vec![row("d", "p", "en", 0)], vec![row("d", "r", "en", 0)]]);
    let (rebuilt, origin) = PairStore::open_or_build(std::slice::from_ref(&source), &root).unwrap();
    assert_eq!(origin, StoreOrigin::Built);
    assert_ne!(rebuilt.id(), built.id());
    assert_eq!(rebuilt.manifest().groups, 2);
}

#[test]
fn damaged_stores_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("train.parquet");
    write(&source, &[vec![row("d", "p", "en", 0), row("d", "p", "de", 0)]]);
    let store_dir = dir.path().join("store");
    build_store(std::slice::from_ref(&source), &store_dir).unwrap();
    let store = PairStore::open(&store_dir).unwrap();
    let err = store.read_row(2).unwrap_err().to_string();
    assert!(err.contains("row 2 asked for; the store has 2"), "{err}");
    let err = store.row_of(0, 2).unwrap_err().to_string();
    assert!(err.contains("group 0 has 2 rows"), "{err}");
    // A damaged block: it no longer decompresses, and the error names the file and the row.
    let data = store_dir.join("rows.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes[middle + 1] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let reopened = PairStore::open(&store_dir).unwrap();
    let err = reopened.read_row(0).unwrap_err().to_string();
    assert!(err.contains("rows.data") && err.contains("row 0"), "{err}");
    // A truncated file is found when the store is opened.
    std::fs::write(&data, &bytes[..bytes.len() - 3]).unwrap();
    let err = PairStore::open(&store_dir).unwrap_err().to_string();
    assert!(err.contains("rows.data") && err.contains("damaged"), "{err}");
    std::fs::write(store_dir.join(MANIFEST_FILE), b"{\"format\": 1}").unwrap();
    assert!(PairStore::open(&store_dir).unwrap_err().to_string().contains("store.json"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_corpus_round_trips(groups in proptest::collection::vec((0usize..3, 1u8..16, 0usize..3), 1..40)) {
        let languages = ["en", "de", "fr", "el"];
        let rows: Vec<Vec<TrainingPair>> = groups
            .iter()
            .enumerate()
            .map(|(g, (dataset, mask, negatives))| {
                (0..4)
                    .filter(|l| mask & (1 << l) != 0)
                    .map(|l| row(&format!("set{dataset}"), &format!("g{g}"), languages[l], *negatives))
                    .collect()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("train.parquet");
        write(&source, &rows);
        let store_dir = dir.path().join("store");
        build_store(&[source], &store_dir).unwrap();
        let store = PairStore::open(&store_dir).unwrap();
        assert_round_trip(&store, &rows.concat());
        prop_assert_eq!(store.manifest().groups as usize, rows.len());
    }
}

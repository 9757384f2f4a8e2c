//! Guarantees of the scheduler (issue 3), most of them as property tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::Strategy;
use super::*;

/// A dataset "multi" of `groups` groups over `langs` languages (each group has a seeded subset
/// of at least one language), plus an English-only dataset "mono" of `mono` groups.
fn index(groups: usize, langs: usize, mono: usize, seed: u64) -> Arc<PairIndex> {
    let codes = ["en", "de", "fr", "ar", "zh", "th", "hi", "tr"];
    let mut builder = PairIndexBuilder::new();
    for code in &codes[..langs] {
        builder.language_bit(code);
    }
    let mut rng = SeededRng::new(seed);
    for g in 0..groups {
        let mut mask = 1u64 << rng.index(langs);
        for l in 0..langs {
            if rng.chance(0.7) {
                mask |= 1 << l;
            }
        }
        builder.add_group_mask("multi", &format!("g{g}"), mask);
    }
    for g in 0..mono {
        builder.add_group("mono", &format!("m{g}"), &["en"]);
    }
    Arc::new(builder.build())
}

fn config(strategy: Strategy, batch: usize) -> ScheduleConfig {
    ScheduleConfig {
        strategy,
        alpha: 0.5,
        global_batch_size: batch,
        seed: 11,
        dataset_sampling: DatasetSampling::Proportional,
        dataset_weights: BTreeMap::new(),
        language_weights: BTreeMap::new(),
        cross_pairing: CrossPairing::PerExample,
        languages: Vec::new(),
        en_en_language: "en".into(),
    }
}

fn run(scheduler: &mut Scheduler, steps: u64) -> (Vec<StepPlan>, Cursor) {
    let mut cursor = scheduler.start();
    let mut plans = Vec::new();
    for step in 0..steps {
        let (plan, next) = scheduler.plan(step, &cursor).unwrap();
        plans.push(plan);
        cursor = next;
    }
    (plans, cursor)
}

fn strategy_of(i: u8) -> Strategy {
    [Strategy::Hybrid, Strategy::XXMono, Strategy::XY, Strategy::XX, Strategy::EnEn][i as usize % 5]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batches_are_well_formed(
        strategy in 0u8..5, batch in 1usize..40, groups in 60usize..300, langs in 2usize..6,
        per_batch in any::<bool>(), seed in 0u64..1000,
    ) {
        let index = index(groups, langs, 50, seed);
        let mut cfg = config(strategy_of(strategy), batch);
        cfg.seed = seed;
        if per_batch { cfg.cross_pairing = CrossPairing::PerBatch; }
        let Ok(mut scheduler) = Scheduler::new(cfg.clone(), index.clone()) else { return Ok(()) };
        let (plans, _) = run(&mut scheduler, 30);
        for plan in plans {
            prop_assert_eq!(plan.examples.len(), batch);
            let ids: HashSet<&str> = plan.examples.iter().map(|e| e.pair_id.as_str()).collect();
            prop_assert_eq!(ids.len(), batch, "a pair_id appears twice in step {}", plan.step);
            let dataset = index.datasets.iter().find(|d| d.name == plan.dataset).unwrap();
            let mask_of: HashMap<&str, u64> = (0..dataset.len()).map(|g| (dataset.pair_id(g), dataset.mask(g))).collect();
            for e in &plan.examples {
                let mask = mask_of[e.pair_id.as_str()];
                for lang in [&e.query_lang, &e.passage_lang] {
                    let bit = index.language_index(lang).unwrap();
                    prop_assert!(mask & (1 << bit) != 0, "{} lacks {}", e.pair_id, lang);
                }
                match plan.kind {
                    BatchKind::CrossLingual => prop_assert_ne!(&e.query_lang, &e.passage_lang),
                    _ => prop_assert_eq!(&e.query_lang, &e.passage_lang),
                }
                if plan.kind == BatchKind::Monolingual {
                    prop_assert_eq!(&e.query_lang, &plan.languages[0]);
                }
                if cfg.strategy == Strategy::EnEn {
                    prop_assert_eq!(e.query_lang.as_str(), "en");
                }
            }
            if plan.dataset == "mono" {
                prop_assert_ne!(plan.kind, BatchKind::CrossLingual);
            }
        }
    }

    #[test]
    fn micro_batches_only_cut_the_global_batch(batch in 1usize..200, world in 1usize..17) {
        let mut scheduler = Scheduler::new(config(Strategy::Hybrid, batch.min(60)), index(400, 4, 0, 3)).unwrap();
        let (plans, _) = run(&mut scheduler, 3);
        for plan in plans {
            let cuts: Vec<&[ExampleRef]> = (0..world).map(|r| plan.micro_batch(r, world)).collect();
            prop_assert_eq!(cuts.concat(), plan.examples.clone());
            let sizes: Vec<usize> = cuts.iter().map(|c| c.len()).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
        }
    }

    #[test]
    fn resuming_from_a_saved_cursor_replays_exactly(k in 0u64..40, seed in 0u64..100, strategy in 0u8..5) {
        let index = index(150, 4, 80, seed);
        let mut cfg = config(strategy_of(strategy), 32);
        cfg.seed = seed;
        let Ok(mut uninterrupted) = Scheduler::new(cfg.clone(), index.clone()) else { return Ok(()) };
        let (all, _) = run(&mut uninterrupted, 40);
        let mut first = Scheduler::new(cfg.clone(), index.clone()).unwrap();
        let (_, cursor) = run(&mut first, k);
        let saved = serde_json::to_string(&cursor).unwrap();
        // A fresh scheduler (a restarted coordinator) continues from the saved cursor.
        let mut resumed = Scheduler::new(cfg, index).unwrap();
        let mut cursor: Cursor = serde_json::from_str(&saved).unwrap();
        for step in k..40 {
            let (plan, next) = resumed.plan(step, &cursor).unwrap();
            prop_assert_eq!(&plan, &all[step as usize]);
            cursor = next;
        }
    }
}

/// Width of a 4.5-sigma binomial interval around `p` for `n` trials.
fn tolerance(p: f64, n: f64) -> f64 {
    4.5 * (p * (1.0 - p) / n).sqrt()
}

#[test]
fn monolingual_fraction_matches_alpha() {
    for alpha in [0.0, 0.3, 0.5, 0.8, 1.0] {
        let mut cfg = config(Strategy::Hybrid, 10);
        cfg.alpha = alpha;
        let mut scheduler = Scheduler::new(cfg, index(500, 5, 0, 1)).unwrap();
        let steps = 4000;
        let (plans, _) = run(&mut scheduler, steps);
        let mono = plans.iter().filter(|p| p.kind == BatchKind::Monolingual).count() as f64 / steps as f64;
        assert!((mono - alpha).abs() <= tolerance(alpha, steps as f64) + 1e-12, "alpha {alpha}: observed {mono}");
    }
}

#[test]
fn dataset_frequencies_match_their_weights() {
    // Monolingual batches: both datasets can give them, proportional to size (600 vs 200).
    let index = index(600, 3, 200, 5);
    let mut scheduler = Scheduler::new(config(Strategy::XXMono, 10), index.clone()).unwrap();
    let steps = 4000;
    let (plans, _) = run(&mut scheduler, steps);
    let share = plans.iter().filter(|p| p.dataset == "mono").count() as f64 / steps as f64;
    assert!((share - 0.25).abs() <= tolerance(0.25, steps as f64), "proportional: {share}");
    // Explicit weights.
    let mut cfg = config(Strategy::XXMono, 10);
    cfg.dataset_weights = BTreeMap::from([("mono".to_string(), 3.0), ("multi".to_string(), 1.0)]);
    let (plans, _) = run(&mut Scheduler::new(cfg, index.clone()).unwrap(), steps);
    let share = plans.iter().filter(|p| p.dataset == "mono").count() as f64 / steps as f64;
    assert!((share - 0.75).abs() <= tolerance(0.75, steps as f64), "explicit: {share}");
    // Uniform.
    let mut cfg = config(Strategy::XXMono, 10);
    cfg.dataset_sampling = DatasetSampling::Uniform;
    let (plans, _) = run(&mut Scheduler::new(cfg, index).unwrap(), steps);
    let share = plans.iter().filter(|p| p.dataset == "mono").count() as f64 / steps as f64;
    assert!((share - 0.5).abs() <= tolerance(0.5, steps as f64), "uniform: {share}");
}

#[test]
fn every_pair_is_used_once_per_epoch_of_its_stream() {
    // One stream (English-only dataset, en-en): 250 groups, batches of 100 → epochs end mid-batch.
    let mut builder = PairIndexBuilder::new();
    for g in 0..250 {
        builder.add_group("only", &format!("p{g}"), &["en"]);
    }
    let mut scheduler = Scheduler::new(config(Strategy::EnEn, 100), Arc::new(builder.build())).unwrap();
    let (plans, cursor) = run(&mut scheduler, 10); // 1000 draws = 4 epochs
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in plans.iter().flat_map(|p| &p.examples) {
        *counts.entry(e.pair_id.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 250);
    assert!(counts.values().all(|&c| c == 4), "{counts:?}");
    // And the first 250 draws are exactly one epoch: every pair once.
    let first: HashSet<&str> = plans.iter().flat_map(|p| &p.examples).take(250).map(|e| e.pair_id.as_str()).collect();
    assert_eq!(first.len(), 250);
    assert_eq!(cursor.streams["only/mono:en"].epoch, 3);
}

#[test]
fn cursor_stays_small_whatever_the_dataset_size() {
    let small = index(200, 4, 100, 1);
    let large = index(50_000, 4, 20_000, 1);
    let sizes: Vec<usize> = [small, large]
        .into_iter()
        .map(|index| {
            let mut scheduler = Scheduler::new(config(Strategy::Hybrid, 64), index).unwrap();
            let (_, cursor) = run(&mut scheduler, 50);
            serde_json::to_string(&cursor).unwrap().len()
        })
        .collect();
    assert!(sizes[1] < 4096, "cursor of a 70k-group index is {} bytes", sizes[1]);
    assert!(sizes[1] <= sizes[0] * 2 + 2048, "{sizes:?}");
}

#[test]
fn same_seed_same_plans_and_other_seed_other_plans() {
    let index = index(300, 4, 100, 2);
    let (a, _) = run(&mut Scheduler::new(config(Strategy::Hybrid, 16), index.clone()).unwrap(), 20);
    let (b, _) = run(&mut Scheduler::new(config(Strategy::Hybrid, 16), index.clone()).unwrap(), 20);
    assert_eq!(a, b);
    let mut other = config(Strategy::Hybrid, 16);
    other.seed = 12;
    let (c, _) = run(&mut Scheduler::new(other, index).unwrap(), 20);
    assert_ne!(a, c);
}

#[test]
fn per_batch_pairing_uses_one_language_pair() {
    let mut cfg = config(Strategy::XY, 20);
    cfg.cross_pairing = CrossPairing::PerBatch;
    let (plans, _) = run(&mut Scheduler::new(cfg, index(400, 4, 0, 9)).unwrap(), 50);
    for plan in plans {
        assert_eq!(plan.languages.len(), 2);
        assert!(
            plan.examples.iter().all(|e| [&e.query_lang, &e.passage_lang] == [&plan.languages[0], &plan.languages[1]])
        );
    }
}

#[test]
fn impossible_configurations_name_the_field_and_the_datasets() {
    let mono_only = {
        let mut builder = PairIndexBuilder::new();
        for g in 0..300 {
            builder.add_group("marco", &format!("m{g}"), &["en"]);
        }
        Arc::new(builder.build())
    };
    let err = Scheduler::new(config(Strategy::XY, 10), mono_only.clone()).err().unwrap().to_string();
    assert!(err.contains("cross-lingual") && err.contains("marco (300 groups; languages en)"), "{err}");
    let err = Scheduler::new(config(Strategy::Hybrid, 500), index(100, 3, 0, 1)).err().unwrap().to_string();
    assert!(err.contains("global_batch_size"), "{err}");
    let mut cfg = config(Strategy::XXMono, 10);
    cfg.alpha = 0.3;
    cfg.languages = vec!["xx".into()];
    cfg.dataset_weights = BTreeMap::from([("nope".to_string(), 1.0)]);
    let err = Scheduler::new(cfg, mono_only.clone()).err().unwrap().to_string();
    for needle in ["schedule.alpha", "schedule.languages: \"xx\"", "schedule.dataset_weights.nope"] {
        assert!(err.contains(needle), "{needle} missing in {err}");
    }
    let mut cfg = config(Strategy::EnEn, 10);
    cfg.en_en_language = "sw".into();
    let err = Scheduler::new(cfg, mono_only).err().unwrap().to_string();
    assert!(err.contains("schedule.en_en_language"), "{err}");
}

#[test]
fn a_cursor_from_another_config_or_step_is_rejected() {
    let index = index(300, 4, 0, 2);
    let mut a = Scheduler::new(config(Strategy::Hybrid, 16), index.clone()).unwrap();
    let (_, cursor) = run(&mut a, 3);
    assert!(a.plan(5, &cursor).unwrap_err().to_string().contains("for step 3"));
    let mut b = Scheduler::new(config(Strategy::XY, 16), index).unwrap();
    assert!(b.plan(3, &cursor).unwrap_err().to_string().contains("fingerprint"));
}

#[test]
fn yaml_config_rejects_unknown_fields() {
    let ok: ScheduleConfig = serde_saphyr::from_str("strategy: hybrid\nalpha: 0.4\nseed: 3\n").unwrap();
    assert_eq!((ok.strategy, ok.alpha, ok.global_batch_size), (Strategy::Hybrid, 0.4, 100));
    let err = serde_saphyr::from_str::<ScheduleConfig>("strategy: hybrid\nalfa: 0.4\n").unwrap_err().to_string();
    assert!(err.contains("alfa"), "{err}");
    let parsed: ScheduleConfig = serde_saphyr::from_str("strategy: x-x-mono\ncross_pairing: per-batch\n").unwrap();
    assert_eq!(parsed.cross_pairing, CrossPairing::PerBatch);
}

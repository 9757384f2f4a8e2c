//! GradCache with dropout on: both passes of a chunk must draw the same dropout masks, so the
//! same seeds give the same losses and gradients, and training still lowers the loss. In a
//! test binary of its own: libtorch's generator is global, and other tests drawing from it in
//! parallel threads would make any seeded comparison flaky.

mod common;

use rosetta_collective::collective::SingleRank;
use rosetta_worker::train::{MicroBatch, StepConfig, Trainer};

fn batch() -> MicroBatch {
    let rows = 0..10;
    MicroBatch {
        queries: rows.clone().map(|i| format!("where was person {i} born ?")).collect(),
        positives: rows.map(|i| format!("person {i} was born in city {} in {}", i * 7 % 5, 1900 + i)).collect(),
        negatives: Vec::new(),
    }
}

fn trainer(dir: &std::path::Path) -> Trainer {
    let b = batch();
    let texts: Vec<&str> = b.queries.iter().chain(&b.positives).map(String::as_str).collect();
    let mut model = common::tiny_encoder(dir, &texts, 100, 16);
    model.var_store_mut().double();
    let step = StepConfig { dropout: true, grad_cache_chunk: 3, ..common::step_config() };
    Trainer::new(model, step).unwrap()
}

#[test]
fn grad_cache_with_dropout_is_reproducible_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let mut trainer = trainer(dir.path());
        (0..8)
            .map(|step| {
                tch::manual_seed(100 + step);
                trainer.step(&batch(), &SingleRank).unwrap().loss
            })
            .collect::<Vec<f64>>()
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second, "same seeds, same losses");
    assert!(first[7] < first[0], "the loss falls: {first:?}");
    let gradients = || {
        let mut t = trainer(dir.path());
        tch::manual_seed(5);
        t.backward(&batch(), &SingleRank).unwrap();
        t.gradients()
    };
    for ((name, a), (_, b)) in gradients().iter().zip(&gradients()) {
        assert!(a.equal(b), "{name}: same seed, different gradient");
    }
}

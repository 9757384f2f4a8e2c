//! CPU dropout replays under `tch::manual_seed`: the per-step and per-chunk seeding of
//! training (and GradCache's second pass) relies on it. In a test binary of its own, as
//! `grad_cache_dropout.rs`: libtorch's generator is global, and other tests drawing from it in
//! parallel threads would land between the seed and the dropout.

use rosetta_model::dropout::dropout;
use tch::{Device, Kind, Tensor};

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("a CPU tensor of doubles")
}

#[test]
fn the_same_generator_state_gives_the_same_mask_and_another_a_different_one() {
    let x = Tensor::ones([64, 96], (Kind::Float, Device::Cpu));
    tch::manual_seed(3);
    let first = values(&dropout(&x, 0.2, true));
    let next = values(&dropout(&x, 0.2, true));
    tch::manual_seed(3);
    let again = values(&dropout(&x, 0.2, true));
    assert_eq!(first, again, "the same generator state, the same mask");
    assert_ne!(first, next, "the generator moved on: a new mask");
    tch::manual_seed(4);
    assert_ne!(values(&dropout(&x, 0.2, true)), first, "another seed, another mask");
    let dropped = first.iter().filter(|&&v| v == 0.0).count();
    assert!((1000..1460).contains(&dropped), "{dropped} of 6144 dropped at p = 0.2");
}

//! Benchmark: the cost of reading training rows out of a pair store the way workers do (by row
//! number, in random order), cold and warm page cache alike as the machine has it.
//!
//! `cargo run --release -p rosetta-datasets --example store_read -- STORE_DIR [ROWS]`

use std::time::Instant;

use rosetta_datasets::rng::SeededRng;
use rosetta_datasets::store::PairStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: store_read STORE_DIR [ROWS]")?;
    let reads: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let store = PairStore::open(std::path::Path::new(&dir))?;
    let rows = store.manifest().rows;
    let mut rng = SeededRng::new(7);
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..reads {
        let row = store.read_row(rng.below(rows))?;
        bytes += row.query.len() + row.positive.len();
    }
    let random = started.elapsed().as_secs_f64();
    // A group's rows in turn (what a batch's query and passage of one example usually are).
    let started = Instant::now();
    let first = rng.below(rows.saturating_sub(reads));
    for row in first..first + reads.min(rows) {
        bytes += store.read_row(row)?.query.len();
    }
    let sequential = started.elapsed().as_secs_f64();
    println!(
        "{rows} rows, {} blocks: random rows {:.1} µs each, neighbouring rows {:.2} µs each ({} bytes of text read)",
        store.manifest().blocks,
        1e6 * random / reads as f64,
        1e6 * sequential / reads as f64,
        bytes
    );
    Ok(())
}

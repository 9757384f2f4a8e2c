//! Preparing a run's data before any process starts: the training files packed once into the
//! pair store every worker reads by row (built on first use, reused afterwards).

use std::sync::Arc;
use std::time::Instant;

use rosetta_datasets::config::DataSettings;
use rosetta_datasets::store::{PairStore, StoreOrigin};

/// Opens the pair store of the run's training files, building it first (with a line on stderr
/// before and after, since it can take minutes on large data) when there is none yet.
pub fn open_store(data: &DataSettings) -> crate::Result<Arc<PairStore>> {
    let location = PairStore::location(&data.train, &data.store_root)?;
    let started = Instant::now();
    if !location.join(rosetta_datasets::store::MANIFEST_FILE).is_file() {
        eprintln!(
            "packing {} training file(s) into the row store {} (once per version of the data)",
            data.train.len(),
            location.display()
        );
    }
    let (store, origin) = PairStore::open_or_build(&data.train, &data.store_root)?;
    if origin == StoreOrigin::Built {
        let manifest = store.manifest();
        eprintln!(
            "packed {} rows of {} parallel groups in {:.1}s",
            manifest.rows,
            manifest.groups,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Arc::new(store))
}

//! The threaded loops over large buffers that the optimiser and dropout share: one pass over
//! memory on every core of libtorch's intra-op pool, in fixed chunks so that the split never
//! changes a result.

/// Elements per chunk of the threaded loops: below two chunks a tensor is done on the calling
/// thread (spawning costs more than the work); the chunking never changes a result.
pub(crate) const CHUNK_ELEMENTS: usize = 1 << 16;

/// libtorch's intra-op thread count (at least 1, at most 64).
pub(crate) fn intra_op_threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1).clamp(1, 64)
}

/// Calls `work` on consecutive ranges covering `0..len`, spread over libtorch's intra-op
/// thread count (one pass over memory on every core, as torch's fused AdamW does).
pub(crate) fn for_chunks(len: usize, work: impl Fn(std::ops::Range<usize>) + Sync) {
    let threads = intra_op_threads();
    if threads == 1 || len < 2 * CHUNK_ELEMENTS {
        work(0..len);
        return;
    }
    let parts = threads.min(len / CHUNK_ELEMENTS);
    std::thread::scope(|scope| {
        let work = &work;
        for part in 1..parts {
            scope.spawn(move || work(len * part / parts..len * (part + 1) / parts));
        }
        work(0..len / parts);
    });
}

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
    for_parts(len, threads.min(len / CHUNK_ELEMENTS), work);
}

/// Calls `work` on `parts` consecutive ranges of nearly equal size covering `0..len`, one per
/// thread (the calling thread takes the first); one part, or none, runs on the calling thread.
pub(crate) fn for_parts(len: usize, parts: usize, work: impl Fn(std::ops::Range<usize>) + Sync) {
    let parts = parts.min(len);
    if parts <= 1 {
        work(0..len);
        return;
    }
    std::thread::scope(|scope| {
        let work = &work;
        for part in 1..parts {
            scope.spawn(move || work(len * part / parts..len * (part + 1) / parts));
        }
        work(0..len / parts);
    });
}

/// A kernel's output pointer, shared by the threads of [`for_parts`] (each writes its own
/// elements).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(pub(crate) *mut T);

// SAFETY: the kernels' threads write disjoint elements and are joined before the output tensor
// is used.
unsafe impl<T> Sync for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The pointer (a method, so that closures capture the wrapper and not its field).
    pub(crate) fn pointer(self) -> *mut T {
        self.0
    }
}

/// Whether the CPU has AVX-512 F, which the CPU inference kernels need (std caches the
/// detection).
pub(crate) fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range_once_in_consecutive_pieces() {
        for (len, parts) in [(0, 3), (1, 3), (2, 3), (10, 3), (10, 1), (7, 7), (5, 9)] {
            let seen = std::sync::Mutex::new(Vec::new());
            for_parts(len, parts, |range| seen.lock().unwrap().push(range));
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|range| range.start);
            assert!(seen.len() <= parts.max(1), "{len} in {parts}: {seen:?}");
            let mut next = 0;
            for range in &seen {
                assert_eq!(range.start, next, "{len} in {parts}: {seen:?}");
                next = range.end;
            }
            assert_eq!(next, len, "{len} in {parts}: {seen:?}");
        }
    }
}

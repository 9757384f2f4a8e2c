//! Inference on the CPU in independent streams: with `n` intra-op threads, `n` batches at a
//! time, each on its own thread with libtorch at one thread, instead of one batch at a time
//! split over `n` threads. Encoding batches are independent, and a batch alone on a core has
//! no fork/join barrier in each of its few-millisecond operators (measured on e5-small's shape,
//! 2 cores: see `SentenceEncoder::encode_by_length_cached`). Every batch is computed with one
//! thread whatever the stream count, so the embeddings do not depend on it. libtorch's thread
//! count is process-wide: while streams run, any other libtorch work in the process also runs
//! on one thread, so they belong in processes that do one thing (evaluation shards).

use std::sync::atomic::{AtomicUsize, Ordering};

use tch::Tensor;

/// A shared reference that may cross threads although `T` holds tensors (which tch marks
/// `Send` only).
struct ReadOnly<'a, T: ?Sized>(&'a T);

// SAFETY: the streams only read `T`'s tensors (forward passes without gradient: libtorch's
// operators do not write their inputs, and the autograd mode is thread-local), which libtorch
// allows from several threads at once; nothing in `T` is written until every stream has joined.
unsafe impl<T: ?Sized> Sync for ReadOnly<'_, T> {}

impl<'a, T: ?Sized> ReadOnly<'a, T> {
    /// The reference (a method, so that closures capture the wrapper and not its field).
    fn get(&self) -> &'a T {
        self.0
    }
}

/// libtorch's intra-op thread count, set for a scope and put back when dropped.
struct IntraOpThreads {
    before: i32,
}

impl IntraOpThreads {
    fn set(threads: i32) -> Self {
        let before = tch::get_num_threads();
        tch::set_num_threads(threads);
        Self { before }
    }
}

impl Drop for IntraOpThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.before);
    }
}

/// Streams to run on `device` now: libtorch's intra-op thread count on the CPU, one elsewhere
/// (a GPU runs a batch's kernels in order on its own stream).
pub fn stream_count(device: tch::Device) -> usize {
    if device == tch::Device::Cpu { crate::kernels::parallel::intra_op_threads() } else { 1 }
}

/// `work(context, i)` for every `i` of `0..n`, on `streams` threads; `dispatch_order`, a
/// permutation of `0..n`, is the order the items are handed out in (each thread takes the next
/// when it is free, so put the costliest first). The results come back by item: `i`'s at
/// position `i`. With one stream, or one item, everything runs on the calling thread with
/// libtorch's threads as they are.
pub fn run_in_streams<C: ?Sized, W>(context: &C, streams: usize, dispatch_order: &[usize], work: W) -> Vec<Tensor>
where
    W: Fn(&C, usize) -> Tensor + Sync,
{
    let count = dispatch_order.len();
    debug_assert!({
        let mut sorted = dispatch_order.to_vec();
        sorted.sort_unstable();
        sorted.into_iter().eq(0..count)
    });
    if streams <= 1 || count <= 1 {
        return (0..count).map(|i| work(context, i)).collect();
    }
    let _one_thread_each = IntraOpThreads::set(1);
    let shared = ReadOnly(context);
    let next = AtomicUsize::new(0);
    let run_stream = || {
        let mut done = Vec::new();
        while let Some(&i) = dispatch_order.get(next.fetch_add(1, Ordering::Relaxed)) {
            done.push((i, work(shared.get(), i)));
        }
        done
    };
    let mut finished: Vec<(usize, Tensor)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..streams.min(count)).map(|_| scope.spawn(run_stream)).collect();
        let mut finished = run_stream();
        for helper in helpers {
            // A panic in a stream is re-raised here, after the scope has joined every stream.
            finished.extend(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        finished
    });
    finished.sort_by_key(|(i, _)| *i);
    finished.into_iter().map(|(_, tensor)| tensor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn results_come_back_in_order_whatever_stream_ran_them() {
        let inputs: Vec<Tensor> = (0..9).map(|i| Tensor::full([3], i as f64, (Kind::Float, Device::Cpu))).collect();
        let order = [4, 8, 0, 3, 7, 1, 2, 6, 5];
        for streams in [1, 2, 3, 16] {
            let results = run_in_streams(&inputs, streams, &order, |inputs, i| &inputs[i] * 2.0);
            let got: Vec<f64> = results.iter().map(|t| t.double_value(&[0])).collect();
            let expected: Vec<f64> = (0..9).map(|i| 2.0 * i as f64).collect();
            assert_eq!(got, expected, "{streams} streams");
        }
    }

    #[test]
    fn a_panic_in_a_stream_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            run_in_streams(&(), 2, &[0, 1, 2, 3], |_, i| {
                assert!(i != 2, "batch 2 fails");
                Tensor::from(i as i64)
            })
        });
        assert!(caught.is_err());
    }
}

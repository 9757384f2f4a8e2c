//! Collective communication between ranks behind one trait, and an in-process implementation
//! (threads in one process) used by tests and single-machine simulation. The network
//! implementations (TCP ring, NCCL) implement the same trait.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tch::{Kind, Tensor};

use crate::error::{CollectiveError, Result};

/// The collective operations training needs. Every rank must call the same operations in the
/// same order; each call blocks until all ranks have joined it (or the timeout passes).
pub trait Collective: Send {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Every rank's tensor, in rank order (first dimensions may differ between ranks).
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>>;
    /// Replaces `tensor` by the element-wise sum over ranks.
    fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<()>;
    /// Replaces `tensor` by `root`'s.
    fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// The single-rank case: every operation is the identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![tensor.shallow_clone()])
    }
    fn all_reduce_sum(&self, _tensor: &mut Tensor) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _tensor: &mut Tensor, _root: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// A tensor in transit: shape, kind and f64 values (exact for f32, f64 and integer ids).
#[derive(Debug, Clone)]
struct Payload {
    shape: Vec<i64>,
    kind: Kind,
    values: Vec<f64>,
}

impl Payload {
    fn of(tensor: &Tensor) -> Result<Self> {
        let flat = tensor.detach().to_device(tch::Device::Cpu).to_kind(Kind::Double).flatten(0, -1);
        let values = Vec::<f64>::try_from(&flat)?;
        Ok(Self { shape: tensor.size(), kind: tensor.kind(), values })
    }

    fn tensor(&self, like: &Tensor) -> Tensor {
        Tensor::from_slice(&self.values).view(self.shape.as_slice()).to_kind(self.kind).to_device(like.device())
    }
}

#[derive(Debug, Default)]
struct Exchange {
    generation: u64,
    operation: Option<&'static str>,
    slots: Vec<Option<Payload>>,
    arrived: usize,
    results: Arc<Vec<Payload>>,
}

/// One rank's handle on an in-process group (see [`local_group`]).
#[derive(Debug, Clone)]
pub struct LocalCollective {
    rank: usize,
    world: usize,
    timeout: Duration,
    shared: Arc<(Mutex<Exchange>, Condvar)>,
}

/// A group of `world` in-process ranks; hand one handle to each thread.
pub fn local_group(world: usize, timeout: Duration) -> Vec<LocalCollective> {
    let exchange = Exchange { slots: vec![None; world], ..Exchange::default() };
    let shared = Arc::new((Mutex::new(exchange), Condvar::new()));
    (0..world).map(|rank| LocalCollective { rank, world, timeout, shared: shared.clone() }).collect()
}

impl LocalCollective {
    /// Contributes `tensor` and returns every rank's contribution.
    fn exchange(&self, operation: &'static str, tensor: &Tensor) -> Result<Arc<Vec<Payload>>> {
        let error = |message: String| CollectiveError::Collective { operation, rank: self.rank, message };
        let payload = Payload::of(tensor)?;
        let (lock, condvar) = &*self.shared;
        let mut state = lock.lock().map_err(|_| error("a rank panicked while holding the group".into()))?;
        if let Some(other) = state.operation.filter(|o| *o != operation) {
            return Err(error(format!("ranks disagree: another rank is in {other}")));
        }
        state.operation = Some(operation);
        let generation = state.generation;
        state.slots[self.rank] = Some(payload);
        state.arrived += 1;
        if state.arrived == self.world {
            let results: Vec<Payload> =
                state.slots.iter_mut().map(|s| s.take().unwrap_or_else(|| unreachable!())).collect();
            state.results = Arc::new(results);
            state.arrived = 0;
            state.operation = None;
            state.generation += 1;
            condvar.notify_all();
        } else {
            let (next, timeout) = condvar
                .wait_timeout_while(state, self.timeout, |s| s.generation == generation)
                .map_err(|_| error("a rank panicked while holding the group".into()))?;
            state = next;
            if timeout.timed_out() {
                return Err(error(format!(
                    "timed out after {:?} waiting for {} of {} ranks",
                    self.timeout,
                    self.world - state.arrived,
                    self.world
                )));
            }
        }
        Ok(state.results.clone())
    }
}

impl Collective for LocalCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        let results = self.exchange("all_gather", tensor)?;
        Ok(results.iter().map(|p| p.tensor(tensor)).collect())
    }
    fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<()> {
        let results = self.exchange("all_reduce", tensor)?;
        if results.iter().any(|p| p.shape != tensor.size()) {
            return Err(CollectiveError::Collective {
                operation: "all_reduce",
                rank: self.rank,
                message: "ranks passed tensors of different shapes".into(),
            });
        }
        let mut sum = vec![0.0f64; results[0].values.len()];
        for payload in results.iter() {
            for (s, v) in sum.iter_mut().zip(&payload.values) {
                *s += v;
            }
        }
        let summed = Payload { shape: tensor.size(), kind: tensor.kind(), values: sum }.tensor(tensor);
        tch::no_grad(|| tensor.copy_(&summed));
        Ok(())
    }
    fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        if root >= self.world {
            return Err(CollectiveError::Collective {
                operation: "broadcast",
                rank: self.rank,
                message: format!("root {root} out of range"),
            });
        }
        let results = self.exchange("broadcast", tensor)?;
        let value = results[root].tensor(tensor);
        tch::no_grad(|| tensor.copy_(&value));
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.exchange("barrier", &Tensor::zeros([0], (Kind::Float, tch::Device::Cpu))).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_reduce_broadcast_across_threads() {
        let handles: Vec<_> = local_group(3, Duration::from_secs(10))
            .into_iter()
            .map(|c| {
                std::thread::spawn(move || {
                    let r = c.rank() as f64;
                    let gathered = c.all_gather(&Tensor::from_slice(&vec![r; c.rank() + 1])).unwrap();
                    let sizes: Vec<i64> = gathered.iter().map(|t| t.size()[0]).collect();
                    assert_eq!(sizes, vec![1, 2, 3]);
                    let mut x = Tensor::from_slice(&[r, 1.0]);
                    c.all_reduce_sum(&mut x).unwrap();
                    assert_eq!(Vec::<f64>::try_from(&x).unwrap(), vec![3.0, 3.0]);
                    let mut y = Tensor::from_slice(&[r]);
                    c.broadcast(&mut y, 2).unwrap();
                    assert_eq!(y.double_value(&[0]), 2.0);
                    c.barrier().unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_missing_rank_times_out_with_a_clear_error() {
        let mut group = local_group(2, Duration::from_millis(100));
        let lonely = group.remove(0);
        let err = lonely.barrier().unwrap_err().to_string();
        assert!(err.contains("barrier") && err.contains("timed out") && err.contains("1 of 2"), "{err}");
    }
}

//! InfoNCE with in-batch negatives over the whole global batch (DESIGN.md §5): each rank
//! all-gathers query, passage and hard-negative embeddings, computes the loss of the global
//! batch, and lets gradients flow only into its own slots, so the all-reduce sum of the ranks'
//! gradients equals the single-process full-batch gradient exactly.

use tch::{Kind, Reduction, Tensor};

use crate::error::{Result, WorkerError};
use rosetta_collective::CollectiveError;
use rosetta_collective::collective::Collective;
pub use rosetta_worker_config::training::LossConfig;

/// Replaces this rank's slot of the gathered (detached) tensors by the local, gradient-carrying one.
fn global(collective: &dyn Collective, local: &Tensor) -> Result<Tensor> {
    let mut parts = collective.all_gather(&local.detach())?;
    let rank = collective.rank();
    let Some(slot) = parts.get_mut(rank) else {
        return Err(
            CollectiveError::Collective { operation: "all_gather", rank, message: "own slot missing".into() }.into()
        );
    };
    *slot = local.shallow_clone();
    Ok(Tensor::cat(&parts, 0))
}

fn normalized(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
}

/// The global-batch InfoNCE loss seen from one rank. `queries` and `positives` are this rank's
/// `[b, d]` embeddings (row i of each forms a pair); `negatives` its `[m, d]` hard negatives
/// (m may be 0). Every query is scored against every positive and every hard negative of the
/// global batch; the loss is the mean over the global batch, identical on every rank.
pub fn distributed_info_nce(
    queries: &Tensor,
    positives: &Tensor,
    negatives: Option<&Tensor>,
    collective: &dyn Collective,
    config: &LossConfig,
) -> Result<Tensor> {
    if queries.size() != positives.size() {
        return Err(WorkerError::invalid(
            "batch",
            format!("queries {:?} and positives {:?} differ in shape", queries.size(), positives.size()),
        ));
    }
    let q = normalized(&global(collective, queries)?);
    let p = normalized(&global(collective, positives)?);
    let candidates = match negatives {
        Some(n) => Tensor::cat(&[p.shallow_clone(), normalized(&global(collective, n)?)], 0),
        None => p.shallow_clone(),
    };
    let batch = q.size()[0];
    let targets = Tensor::arange(batch, (Kind::Int64, q.device()));
    let scale = 1.0 / config.temperature;
    let forward =
        (q.matmul(&candidates.tr()) * scale).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
    if !config.symmetric {
        return Ok(forward);
    }
    let backward = (p.matmul(&q.tr()) * scale).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
    Ok((forward + backward) / 2.0)
}

//! The backward pass layer by layer, with the gradient all-reduce of each finished layer running
//! while the layers below are still being differentiated (what DDP's buckets do with autograd
//! hooks, which tch does not expose).
//!
//! The training forward pass cuts its graph in front of every layer ([`GraphCut`]). The backward
//! pass then runs in stages, top down: the loss back to the last cut (the last layer and the
//! sentence head), then from each cut's output, seeded with the gradient its leaf received, back
//! to the cut below. After each stage the gradients of that stage's parameters are final; they
//! are summed over ranks on the calling thread while a second thread differentiates the next
//! stage. Every rank sums the same buckets in the same order.

use std::sync::mpsc;
use std::time::Instant;

use tch::{Kind, Tensor};

use crate::error::{Result, WorkerError};
use rosetta_collective::collective::Collective;
use rosetta_model::encoder::GraphCut;

/// The model's parameters in all-reduce buckets along the backward stages (0 = embeddings,
/// `i + 1` = layer `i`, the last stage also the pooling head). Consecutive stages share a bucket,
/// top down, until it would pass the byte cap (DDP's default is 25 MiB); a bucket is summed when
/// its lowest stage is finished, so it is filed under that stage.
#[derive(Debug)]
pub struct GradientBuckets {
    stages: Vec<Vec<Tensor>>,
    /// The token-embedding matrix when it is summed by rows ([`GradientBuckets::sparse_rows`]):
    /// only the rows of tokens some rank encoded this step have a gradient.
    table: Option<Tensor>,
}

/// What one step's gradient all-reduce cost this rank.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    /// Seconds spent in all-reduce calls (mostly hidden behind the backward pass on the CPU).
    pub seconds: f64,
    /// Bytes this rank handed to collectives for the gradients (buckets, embedding rows and
    /// their token ids); a ring moves about 2 (W - 1) / W times this over each link.
    pub bytes: u64,
}

/// The name of the token-embedding matrix (BERT and XLM-R: `embeddings.word_embeddings.weight`).
pub fn is_token_embedding(name: &str) -> bool {
    name.ends_with("word_embeddings.weight")
}

/// Bucket size: 8 MiB, about one layer of a 384-wide encoder. DDP's default is 25 MiB; on the
/// 2-core benchmark per-layer buckets gave 0.96× DDP's throughput (rounds 1.07, 0.94, 0.98) and
/// two buckets of ~21 MB 0.97× (1.01, 0.95, 0.85), against 0.90× without overlap: equal within
/// the noise, the smaller ones steadier.
pub const DEFAULT_BUCKET_BYTES: usize = 8 << 20;

impl GradientBuckets {
    /// Groups `parameters` (HF names: `embeddings.…`, `encoder.layer.N.…`) of a model of
    /// `layers` layers into buckets of about `bucket_bytes`. With `sparse_rows` the token
    /// embeddings stay out of the buckets and are summed by rows (see [`GradientBuckets::all_reduce`]).
    pub fn new<'a>(
        parameters: impl Iterator<Item = (&'a str, &'a Tensor)>,
        layers: usize,
        bucket_bytes: usize,
        sparse_rows: bool,
    ) -> Self {
        let mut by_stage: Vec<Vec<Tensor>> = (0..=layers).map(|_| Vec::new()).collect();
        let (table, rest) = take_table(parameters, sparse_rows);
        for (name, parameter) in rest {
            by_stage[stage_of(name, layers)].push(parameter.shallow_clone());
        }
        let bytes =
            |tensors: &[Tensor]| tensors.iter().map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum::<usize>();
        let mut stages: Vec<Vec<Tensor>> = (0..=layers).map(|_| Vec::new()).collect();
        let mut bucket: Vec<Tensor> = Vec::new();
        for stage in (0..=layers).rev() {
            let next = std::mem::take(&mut by_stage[stage]);
            if !bucket.is_empty() && bytes(&bucket) + bytes(&next) > bucket_bytes {
                // The bucket so far ends at the stage above this one.
                stages[stage + 1] = std::mem::take(&mut bucket);
            }
            bucket.extend(next);
        }
        stages[0] = bucket;
        Self { stages, table }
    }

    /// One bucket holding every parameter (no overlap: summed after the whole backward pass),
    /// the token embeddings by rows when `sparse_rows`.
    pub fn single<'a>(parameters: impl Iterator<Item = (&'a str, &'a Tensor)>, sparse_rows: bool) -> Self {
        let (table, rest) = take_table(parameters, sparse_rows);
        Self { stages: vec![rest.into_iter().map(|(_, p)| p.shallow_clone()).collect()], table }
    }

    /// True when the token embeddings are summed by rows.
    pub fn sparse_rows(&self) -> bool {
        self.table.is_some()
    }

    /// Layers of the model the buckets were made for (stages are 0..=layers).
    pub fn layers(&self) -> usize {
        self.stages.len().saturating_sub(1)
    }

    /// Sums every bucket over ranks, one after the other (no overlap). `token_ids`: every id
    /// this rank encoded in the step (any shape; used when the embeddings are summed by rows).
    pub fn sum_over_ranks(&self, collective: &dyn Collective, token_ids: &Tensor) -> Result<Traffic> {
        let started = Instant::now();
        let mut missing = Vec::new();
        let mut bytes = 0;
        for stage in 0..self.stages.len() {
            bytes += self.all_reduce(stage, collective, token_ids, &mut missing)?;
        }
        give_missing(missing);
        Ok(Traffic { seconds: started.elapsed().as_secs_f64(), bytes })
    }

    /// Sums the gradients of `stage`'s parameters over ranks, in one flat buffer (a missing
    /// gradient counts as zeros), and at stage 0 the token-embedding rows. Parameters without
    /// a gradient get theirs later, from [`give_missing`]. Returns the bytes handed over.
    fn all_reduce(
        &self,
        stage: usize,
        collective: &dyn Collective,
        token_ids: &Tensor,
        missing: &mut Vec<(Tensor, Tensor)>,
    ) -> Result<u64> {
        let mut bytes = self.all_reduce_dense(stage, collective, missing)?;
        if stage == 0
            && let Some(table) = &self.table
        {
            bytes += all_reduce_rows(table, collective, token_ids, missing)?;
        }
        Ok(bytes)
    }

    fn all_reduce_dense(
        &self,
        stage: usize,
        collective: &dyn Collective,
        missing: &mut Vec<(Tensor, Tensor)>,
    ) -> Result<u64> {
        let parameters = &self.stages[stage];
        if parameters.is_empty() {
            return Ok(0);
        }
        let parts: Vec<Tensor> = parameters
            .iter()
            .map(|p| if p.grad().defined() { p.grad().flatten(0, -1) } else { p.zeros_like().flatten(0, -1) })
            .collect();
        let mut flat = Tensor::cat(&parts, 0);
        let bytes = (flat.numel() * flat.kind().elt_size_in_bytes()) as u64;
        collective.all_reduce_sum(&mut flat)?;
        let mut offset = 0;
        tch::no_grad(|| {
            for p in parameters {
                let numel = p.numel() as i64;
                let summed = flat.narrow(0, offset, numel).view(p.size().as_slice());
                let mut grad = p.grad();
                if grad.defined() {
                    grad.copy_(&summed);
                } else {
                    missing.push((p.shallow_clone(), summed.copy()));
                }
                offset += numel;
            }
        });
        Ok(bytes)
    }
}

/// Splits the token-embedding matrix off `parameters` when it is to be summed by rows.
fn take_table<'a>(
    parameters: impl Iterator<Item = (&'a str, &'a Tensor)>,
    sparse_rows: bool,
) -> (Option<Tensor>, Vec<(&'a str, &'a Tensor)>) {
    let mut table = None;
    let mut rest = Vec::new();
    for (name, parameter) in parameters {
        if sparse_rows && table.is_none() && is_token_embedding(name) && parameter.dim() == 2 {
            table = Some(parameter.shallow_clone());
        } else {
            rest.push((name, parameter));
        }
    }
    (table, rest)
}

/// Sums the token-embedding gradient over ranks by rows. A row's gradient is non-zero only
/// where its token was encoded, so the ranks gather their sets of token ids, and sum the rows
/// of the union (indices + values) instead of the whole matrix; every other row is zero on
/// every rank. Each summed element is the same sum of the same values as in the dense bucket
/// (bit-identical for two ranks; with more, the collective's summation order may differ by
/// an ulp, as between any two all-reduce algorithms). Returns the bytes handed over.
fn all_reduce_rows(
    table: &Tensor,
    collective: &dyn Collective,
    token_ids: &Tensor,
    missing: &mut Vec<(Tensor, Tensor)>,
) -> Result<u64> {
    let local = token_ids.flatten(0, -1).to_kind(Kind::Int64).to_device(tch::Device::Cpu);
    let (local, _) = local.internal_unique(true, false);
    let gathered = collective.all_gather(&local)?;
    let (union, _) = Tensor::cat(&gathered, 0).internal_unique(true, false);
    let rows = table.size()[0];
    let in_range = union.numel() == 0 || (union.min().int64_value(&[]) >= 0 && union.max().int64_value(&[]) < rows);
    if !in_range {
        return Err(WorkerError::invalid(
            "embedding all-reduce",
            format!("token ids outside the embedding matrix's {rows} rows"),
        ));
    }
    let union = union.to_device(table.device());
    let grad = table.grad();
    let mut values = tch::no_grad(|| {
        if grad.defined() {
            grad.index_select(0, &union)
        } else {
            Tensor::zeros([union.size()[0], table.size()[1]], (table.kind(), table.device()))
        }
    });
    let bytes = (values.numel() * values.kind().elt_size_in_bytes()
        + gathered.iter().map(Tensor::numel).sum::<usize>() * 8) as u64;
    collective.all_reduce_sum(&mut values)?;
    tch::no_grad(|| {
        if grad.defined() {
            let mut grad = grad;
            let _ = grad.index_copy_(0, &union, &values);
        } else {
            let mut full = table.zeros_like();
            let _ = full.index_copy_(0, &union, &values);
            missing.push((table.shallow_clone(), full));
        }
    });
    Ok(bytes)
}

/// Gives each parameter that had no gradient its summed one (on the training thread, after
/// the backward pass).
fn give_missing(missing: Vec<(Tensor, Tensor)>) {
    for (parameter, summed) in missing {
        // A zero-valued backward creates the gradient tensor; then it takes the sum.
        (&parameter * 0.0).sum(Kind::Float).backward();
        tch::no_grad(|| {
            parameter.grad().copy_(&summed);
        });
    }
}

/// The backward stage of a parameter name.
fn stage_of(name: &str, layers: usize) -> usize {
    if let Some(rest) = name.split("encoder.layer.").nth(1)
        && let Some(index) = rest.split('.').next().and_then(|i| i.parse::<usize>().ok())
        && index < layers
    {
        return index + 1;
    }
    if name.starts_with("embeddings.") || name.contains(".embeddings.") { 0 } else { layers }
}

/// Differentiates `loss` stage by stage through `cuts` (`layers` per forward pass, passes in
/// order), calling `finished(stage)` when a stage's parameter gradients are final: `layers`
/// first, 0 last.
pub fn staged_backward(loss: &Tensor, cuts: &[GraphCut], layers: usize, mut finished: impl FnMut(usize)) {
    loss.backward();
    finished(layers);
    if layers == 0 {
        return;
    }
    for cut_index in (0..layers).rev() {
        let mut surrogate: Option<Tensor> = None;
        for cut in cuts.iter().skip(cut_index).step_by(layers) {
            let grad = cut.input.grad();
            if grad.defined() && cut.output.requires_grad() {
                // d/d(output) of sum(output * g) is exactly g: the backward continues from the cut.
                let term = (&cut.output * grad).sum(cut.output.kind());
                surrogate = Some(match surrogate {
                    Some(sum) => sum + term,
                    None => term,
                });
            }
        }
        if let Some(surrogate) = surrogate {
            surrogate.backward();
        }
        finished(cut_index);
    }
}

/// Runs [`staged_backward`] through `cuts` (one per layer of `buckets`' model per forward
/// pass) on a second thread and sums each finished stage's gradients over `collective`'s
/// ranks on this one. `token_ids`: every id this rank encoded in the step. Returns the time
/// spent in all-reduce calls (mostly hidden behind the backward pass) and the bytes.
pub fn backward_overlapped(
    loss: Tensor,
    cuts: Vec<GraphCut>,
    buckets: &GradientBuckets,
    collective: &dyn Collective,
    token_ids: &Tensor,
) -> Result<Traffic> {
    let layers = buckets.layers();
    let mut seconds = 0.0;
    let mut bytes = 0;
    let mut missing = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::channel::<usize>();
        let differentiate = scope.spawn(move || {
            staged_backward(&loss, &cuts, layers, |stage| {
                let _ = sender.send(stage);
            });
        });
        let mut outcome = Ok(());
        // The channel closes when the backward pass ends (or fails); after an all-reduce error
        // the remaining stages are drained, not summed.
        for stage in receiver.iter() {
            if outcome.is_ok() {
                let started = Instant::now();
                match buckets.all_reduce(stage, collective, token_ids, &mut missing) {
                    Ok(moved) => bytes += moved,
                    Err(e) => outcome = Err(e),
                }
                seconds += started.elapsed().as_secs_f64();
            }
        }
        differentiate.join().map_err(|_| {
            WorkerError::invalid("backward pass", "the backward thread panicked (see its message above)")
        })?;
        outcome
    })?;
    give_missing(missing);
    Ok(Traffic { seconds, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_top_down_up_to_the_cap() {
        let layer = |i: usize| {
            (format!("encoder.layer.{i}.output.dense.weight"), Tensor::zeros([256], (Kind::Float, tch::Device::Cpu)))
        };
        let mut named: Vec<(String, Tensor)> = (0..4).map(layer).collect();
        named.push(("embeddings.word_embeddings.weight".into(), Tensor::zeros([512], (Kind::Float, tch::Device::Cpu))));
        named.push(("dense.linear.weight".into(), Tensor::zeros([256], (Kind::Float, tch::Device::Cpu))));
        let buckets = GradientBuckets::new(named.iter().map(|(n, t)| (n.as_str(), t)), 4, 3 * 1024, false);
        // 1 KiB per layer (head + layer 3 = 2 KiB at stage 4), 2 KiB of embeddings; cap 3 KiB:
        // {head, layer 3, layer 2} summed after stage 3, {layer 1, layer 0} after 1, embeddings after 0.
        let sizes: Vec<usize> = buckets.stages.iter().map(|b| b.iter().map(|t| t.numel()).sum()).collect();
        assert_eq!(sizes, vec![512, 512, 0, 768, 0]);
        let everything = GradientBuckets::new(named.iter().map(|(n, t)| (n.as_str(), t)), 4, usize::MAX, false);
        let sizes: Vec<usize> = everything.stages.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![6, 0, 0, 0, 0]);
    }

    #[test]
    fn parameters_go_to_the_stage_of_their_layer() {
        assert_eq!(stage_of("embeddings.word_embeddings.weight", 4), 0);
        assert_eq!(stage_of("0.auto_model.embeddings.LayerNorm.bias", 4), 0);
        assert_eq!(stage_of("encoder.layer.0.attention.self.query.weight", 4), 1);
        assert_eq!(stage_of("encoder.layer.3.output.dense.bias", 4), 4);
        assert_eq!(stage_of("dense.linear.weight", 4), 4);
        assert_eq!(stage_of("encoder.layer.9.output.dense.bias", 4), 4);
    }
}

#[cfg(test)]
mod row_tests {
    use super::*;
    use rosetta_collective::collective::local_group;
    use std::time::Duration;

    #[test]
    fn embedding_rows_sum_to_the_dense_sum_and_fill_a_missing_gradient() {
        // Rank 0 encoded tokens 1 and 3; rank 1 encoded nothing (no gradient at all).
        let handles: Vec<_> = local_group(2, Duration::from_secs(10))
            .into_iter()
            .map(|collective| {
                std::thread::spawn(move || {
                    let table = Tensor::zeros([6, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
                    let ids = if collective.rank() == 0 {
                        let ids = Tensor::from_slice(&[3i64, 1, 3]);
                        table.index_select(0, &ids).sum(Kind::Float).backward();
                        ids
                    } else {
                        Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu))
                    };
                    let named = [("embeddings.word_embeddings.weight".to_string(), table.shallow_clone())];
                    let buckets = GradientBuckets::single(named.iter().map(|(n, t)| (n.as_str(), t)), true);
                    assert!(buckets.sparse_rows());
                    let traffic = buckets.sum_over_ranks(&collective, &ids).unwrap();
                    // Two rows of two f32 values, plus the two distinct ids every rank gathers.
                    assert_eq!(traffic.bytes, 16 + 16);
                    Vec::<f32>::try_from(table.grad().flatten(0, -1)).unwrap()
                })
            })
            .collect();
        for handle in handles {
            let grad = handle.join().unwrap();
            assert_eq!(grad, vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn only_the_token_embedding_matrix_goes_by_rows() {
        assert!(is_token_embedding("embeddings.word_embeddings.weight"));
        assert!(is_token_embedding("0.auto_model.embeddings.word_embeddings.weight"));
        assert!(!is_token_embedding("embeddings.position_embeddings.weight"));
    }
}

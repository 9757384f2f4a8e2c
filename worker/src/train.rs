//! One training step of a rank: encode its micro-batch, compute the global-batch InfoNCE,
//! backpropagate while the gradients of finished layers are summed over ranks (see
//! [`crate::overlap`]), clip, and take an AdamW step.

use tch::{Device, Kind, Tensor};

use crate::error::{Result, WorkerError};
use crate::freeze::{FreezeConfig, ParameterCounts};
use crate::loss::{LossConfig, distributed_info_nce};
use crate::mfu::FlopModel;
use crate::overlap::{DEFAULT_BUCKET_BYTES, GradientBuckets, backward_overlapped, staged_backward};
use rosetta_collective::collective::Collective;
use rosetta_model::optim::{AdamW, AdamWConfig, LinearSchedule, clip_grad_norm};
use rosetta_model::precision::{Precision, PrecisionOnDevice};
use rosetta_model::sentence::SentenceEncoder;
use rosetta_worker_config::training::TrainingSettings;

/// What a worker's step needs: the built `training:` section plus the job's length.
#[derive(Debug, Clone, PartialEq)]
pub struct StepConfig {
    /// Loss settings.
    pub loss: LossConfig,
    /// Optimiser settings.
    pub optimizer: AdamWConfig,
    /// Warm-up steps of the linear schedule.
    pub warmup_steps: u64,
    /// Total optimiser steps (the schedule decays to 0 there).
    pub total_steps: u64,
    /// Global gradient-norm bound (0 disables clipping).
    pub max_grad_norm: f64,
    /// Chunks each micro-batch is split into; each chunk of all ranks forms one contrastive batch.
    pub accumulation_steps: usize,
    /// Apply the model's dropout while training.
    pub dropout: bool,
    /// Parameters kept at their initial values.
    pub freeze: FreezeConfig,
    /// Sum the token-embedding gradient over ranks by the rows of the step's tokens (the same
    /// sums as the dense matrix's; see [`crate::overlap::GradientBuckets::sparse_rows`]).
    pub sparse_embedding_all_reduce: bool,
    /// Texts per forward pass of GradCache-style chunked encoding (0: every batch in one pass;
    /// see [`crate::grad_cache`]).
    pub grad_cache_chunk: usize,
    /// Number format of the forward and backward passes (bf16 autocast or fp32).
    pub precision: Precision,
}

impl StepConfig {
    /// The step settings of `training` for a job of `total_steps`.
    pub fn new(training: &TrainingSettings, total_steps: u64) -> Self {
        Self {
            loss: training.loss.clone(),
            optimizer: training.optimizer.clone(),
            warmup_steps: training.warmup_steps,
            total_steps,
            max_grad_norm: training.max_grad_norm,
            accumulation_steps: training.accumulation_steps,
            dropout: training.dropout,
            freeze: training.freeze.clone(),
            sparse_embedding_all_reduce: training.sparse_embedding_all_reduce,
            grad_cache_chunk: training.grad_cache_chunk,
            precision: training.precision,
        }
    }
}

/// One rank's examples for a step: row i of `queries` pairs with row i of `positives`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicroBatch {
    /// Query texts.
    pub queries: Vec<String>,
    /// Positive passages.
    pub positives: Vec<String>,
    /// Hard negatives (any number, shared as candidates by every query of the global batch).
    pub negatives: Vec<String>,
}

/// What a step did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepOutcome {
    /// Global-batch loss (identical on every rank).
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Tokens encoded by this rank (queries, positives, negatives; padding excluded).
    pub tokens: u64,
    /// Padding positions of this rank's tokenised batches (what padding to the longest text cost).
    pub padding_tokens: u64,
    /// Seconds this rank spent in gradient all-reduce calls (on the CPU mostly overlapped with
    /// the backward pass).
    pub collective_seconds: f64,
    /// Bytes this rank handed to the gradient all-reduce (0 on one rank).
    pub all_reduce_bytes: u64,
    /// Model FLOPs of this rank's step (see [`crate::mfu`]).
    pub model_flops: f64,
    /// Seconds of tokenisation, forward pass and loss (the loss's all-gathers included).
    pub forward_seconds: f64,
    /// Seconds from the end of the forward pass until every gradient is summed over ranks.
    pub backward_seconds: f64,
    /// Seconds of clipping and the optimiser step.
    pub optimizer_seconds: f64,
}

/// A model with its optimiser and schedule.
pub struct Trainer {
    model: SentenceEncoder,
    optimizer: AdamW,
    schedule: LinearSchedule,
    config: StepConfig,
    /// What the last [`Trainer::backward`] measured (loss, norm, rate and optimiser time are
    /// filled in by [`Trainer::step`]).
    last: StepOutcome,
    /// Parameters by backward stage (CPU: all-reduce overlapped with the backward pass).
    staged: GradientBuckets,
    /// Every parameter in one bucket (CUDA: all-reduce after the backward pass).
    whole: GradientBuckets,
    /// Trainable and frozen parameters.
    parameters: ParameterCounts,
    /// The shapes model FLOPs are counted from.
    flop_model: FlopModel,
}

impl Trainer {
    /// Prepares `model` for training with `config`.
    pub fn new(model: SentenceEncoder, config: StepConfig) -> Result<Self> {
        if config.accumulation_steps == 0 {
            return Err(WorkerError::invalid("training.accumulation_steps", "must be at least 1"));
        }
        if config.loss.temperature.is_nan() || config.loss.temperature <= 0.0 {
            return Err(WorkerError::invalid("training.loss.temperature", "must be positive"));
        }
        let layers = model.encoder().config().num_hidden_layers.max(0) as usize;
        // Before the optimiser and the gradient buckets: both take the trainable parameters only.
        let parameters = crate::freeze::apply(&config.freeze, model.var_store(), layers)?;
        tracing::info!(
            trainable = parameters.trainable,
            frozen = parameters.frozen,
            frozen_tensors = parameters.frozen_tensors,
            "trainable parameters"
        );
        let optimizer = AdamW::new(model.var_store(), config.optimizer.clone());
        let flop_model = FlopModel::of(&model);
        let sparse = config.sparse_embedding_all_reduce;
        let staged = GradientBuckets::new(optimizer.parameters(), layers, DEFAULT_BUCKET_BYTES, sparse);
        let whole = GradientBuckets::single(optimizer.parameters(), sparse);
        let schedule = LinearSchedule {
            peak: config.optimizer.lr,
            warmup_steps: config.warmup_steps,
            total_steps: config.total_steps,
        };
        Ok(Self {
            model,
            optimizer,
            schedule,
            config,
            last: StepOutcome::default(),
            staged,
            whole,
            parameters,
            flop_model,
        })
    }

    /// Trainable and frozen parameters.
    pub fn parameter_counts(&self) -> ParameterCounts {
        self.parameters
    }

    /// Whether the forward and backward passes run under bf16 autocast (`training.precision`
    /// on this trainer's device).
    pub fn trains_in_bf16(&self) -> bool {
        self.config.precision.bf16_on_device(self.model.var_store().device())
    }

    /// Why `training.precision` is likely slower than fp32 on this trainer's device, if it is.
    pub fn precision_warning(&self) -> Option<String> {
        self.config.precision.slow_on(rosetta_model::device_spec(self.model.var_store().device()))
    }

    /// The model.
    pub fn model(&self) -> &SentenceEncoder {
        &self.model
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// The optimiser, mutably (to restore a checkpoint).
    pub fn optimizer_mut(&mut self) -> &mut AdamW {
        &mut self.optimizer
    }

    /// Restores model and optimiser from a checkpoint written by [`rosetta_model::checkpoint::save_checkpoint`].
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<()> {
        Ok(rosetta_model::checkpoint::load_checkpoint(path, &mut self.model, Some(&mut self.optimizer))?)
    }

    /// Writes model and optimiser to `path` atomically.
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        Ok(rosetta_model::checkpoint::save_checkpoint(path, &self.model, Some(&self.optimizer))?)
    }

    /// Makes every rank's parameters equal to rank 0's.
    pub fn broadcast_parameters(&mut self, collective: &dyn Collective) -> Result<()> {
        let mut names: Vec<(String, Tensor)> = self.model.var_store().variables().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut flat = flatten(names.iter().map(|(_, t)| t.detach()));
        collective.broadcast(&mut flat, 0)?;
        unflatten_into(&flat, names.iter().map(|(_, t)| t.shallow_clone()));
        Ok(())
    }

    /// One optimiser step on this rank's micro-batch: [`Trainer::backward`] then [`Trainer::apply`].
    pub fn step(&mut self, batch: &MicroBatch, collective: &dyn Collective) -> Result<StepOutcome> {
        let loss = self.backward(batch, collective)?;
        let started = std::time::Instant::now();
        let (grad_norm, lr) = self.apply();
        Ok(StepOutcome { loss, grad_norm, lr, optimizer_seconds: started.elapsed().as_secs_f64(), ..self.last })
    }

    /// Current gradients by parameter name (after [`Trainer::backward`]).
    pub fn gradients(&self) -> Vec<(String, Tensor)> {
        self.optimizer
            .parameters()
            .filter(|(_, t)| t.grad().defined())
            .map(|(n, t)| (n.to_string(), t.grad().detach().copy()))
            .collect()
    }

    /// Forward and backward passes over the micro-batch, then the all-reduce of gradients:
    /// afterwards every rank holds the gradient of the global batch. Returns the loss.
    pub fn backward(&mut self, batch: &MicroBatch, collective: &dyn Collective) -> Result<f64> {
        if batch.queries.len() != batch.positives.len() {
            return Err(WorkerError::invalid("micro-batch", "queries and positives differ in number"));
        }
        let chunks = self.config.accumulation_steps;
        let settings = self.model.settings().clone();
        let device = self.model.var_store().device();
        let autocast = self.config.precision.autocast_on(device);
        // With several ranks on the CPU the backward pass runs layer by layer and the all-reduce
        // of finished buckets overlaps it (see `crate::overlap`; the gradients are the same bits
        // as a plain backward pass); on CUDA, NCCL sums one bucket afterwards.
        let communicate = collective.world_size() > 1;
        let grad_cache = self.config.grad_cache_chunk;
        let staged = device == Device::Cpu && communicate && grad_cache == 0;
        let layers = self.staged.layers();
        let mut measured = StepOutcome::default();
        // Every token id this rank encodes in the step (the embedding rows with a gradient).
        let mut token_ids: Vec<Tensor> = Vec::new();
        let mut total_loss = 0.0;
        for chunk in 0..chunks {
            let started = std::time::Instant::now();
            let cut = |len: usize| (len * chunk / chunks, len * (chunk + 1) / chunks);
            let (qs, qe) = cut(batch.queries.len());
            let (ns, ne) = cut(batch.negatives.len());
            let queries = self.model.tokenize(&texts(&batch.queries[qs..qe]), &settings.query_prefix)?;
            let positives = self.model.tokenize(&texts(&batch.positives[qs..qe]), &settings.passage_prefix)?;
            let negatives = if ne > ns {
                Some(self.model.tokenize(&texts(&batch.negatives[ns..ne]), &settings.passage_prefix)?)
            } else {
                None
            };
            for b in [Some(&queries), Some(&positives), negatives.as_ref()].into_iter().flatten() {
                if self.staged.sparse_rows() {
                    token_ids.push(b.input_ids.flatten(0, -1));
                }
                let lengths = b.attention_mask.sum_dim_intlist(1, false, Kind::Int64).to_device(Device::Cpu);
                measured.model_flops += self.flop_model.training_flops(Vec::<i64>::try_from(&lengths)?);
                let real = b.attention_mask.sum(Kind::Int64).int64_value(&[]) as u64;
                measured.tokens += real;
                measured.padding_tokens += (b.attention_mask.numel() as u64).saturating_sub(real);
            }
            let train = self.config.dropout;
            if grad_cache > 0 {
                let forwarded = std::time::Instant::now();
                let parts: Vec<&rosetta_model::sentence::TokenBatch> =
                    [Some(&queries), Some(&positives), negatives.as_ref()].into_iter().flatten().collect();
                let config = &self.config.loss;
                let local_negatives = negatives.is_some();
                total_loss +=
                    crate::grad_cache::cached_backward(&self.model, &parts, grad_cache, train, autocast, |e| {
                        let has_negatives = collective_any(collective, local_negatives)?;
                        let width = e[0].size()[1];
                        let none = Tensor::zeros([0, width], (e[0].kind(), e[0].device()));
                        let n = has_negatives.then(|| e.get(2).unwrap_or(&none));
                        Ok(distributed_info_nce(&e[0], &e[1], n, collective, config)? / chunks as f64)
                    })?;
                // The passes interleave forward and backward: all of it counts as backward here.
                measured.backward_seconds += forwarded.elapsed().as_secs_f64();
                measured.forward_seconds += (forwarded - started).as_secs_f64();
                continue;
            }
            let width = self.model.embedding_width();
            let kind = if autocast.is_some() { Kind::Float } else { self.model.var_store().kind() };
            // Every non-empty batch of the chunk in one call (merged when that is cheaper);
            // under bf16 autocast the loss is computed in f32.
            let parts: Vec<&rosetta_model::sentence::TokenBatch> =
                [Some(&queries), Some(&positives), negatives.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter(|b| b.input_ids.size()[0] > 0)
                    .collect();
            let mut cuts = Vec::new();
            let mut embed = || self.model.embed_many_cut(&parts, train, staged.then_some(&mut cuts));
            let embedded = match autocast {
                Some(on) => rosetta_model::autocast::with_bf16_autocast(on, embed)
                    .into_iter()
                    .map(|t| t.to_kind(Kind::Float))
                    .collect(),
                None => embed(),
            };
            let mut embedded = embedded.into_iter();
            let mut next = |b: &rosetta_model::sentence::TokenBatch| match b.input_ids.size()[0] {
                0 => Tensor::zeros([0, width], (kind, device)),
                _ => embedded.next().unwrap_or_else(|| Tensor::zeros([0, width], (kind, device))),
            };
            let (q, p) = (next(&queries), next(&positives));
            let n = negatives.as_ref().map(&mut next);
            let has_negatives = collective_any(collective, n.is_some())?;
            let n =
                if has_negatives { Some(n.unwrap_or_else(|| Tensor::zeros([0, width], (kind, device)))) } else { None };
            let loss = distributed_info_nce(&q, &p, n.as_ref(), collective, &self.config.loss)? / chunks as f64;
            total_loss += loss.double_value(&[]);
            let forwarded = std::time::Instant::now();
            measured.forward_seconds += (forwarded - started).as_secs_f64();
            let last_chunk = chunk + 1 == chunks;
            if staged && last_chunk {
                let ids = concat_ids(&token_ids);
                let traffic = backward_overlapped(loss, cuts, &self.staged, collective, &ids)?;
                measured.collective_seconds += traffic.seconds;
                measured.all_reduce_bytes += traffic.bytes;
            } else if staged {
                staged_backward(&loss, &cuts, layers, |_| {});
            } else {
                loss.backward();
            }
            measured.backward_seconds += forwarded.elapsed().as_secs_f64();
        }
        if !staged && communicate {
            let traffic = self.whole.sum_over_ranks(collective, &concat_ids(&token_ids))?;
            measured.collective_seconds += traffic.seconds;
            measured.backward_seconds += traffic.seconds;
            measured.all_reduce_bytes += traffic.bytes;
        }
        self.last = measured;
        Ok(total_loss)
    }

    /// Clips the gradients, takes the AdamW step at the scheduled rate and clears gradients.
    /// Returns the gradient norm before clipping and the learning rate.
    pub fn apply(&mut self) -> (f64, f64) {
        let grad_norm = if self.config.max_grad_norm > 0.0 {
            clip_grad_norm(self.optimizer.parameters().map(|(_, t)| t), self.config.max_grad_norm)
        } else {
            clip_grad_norm(self.optimizer.parameters().map(|(_, t)| t), f64::INFINITY)
        };
        let lr = self.schedule.lr(self.optimizer.steps_taken() as u64);
        self.optimizer.step(lr);
        self.optimizer.zero_grad();
        (grad_norm, lr)
    }
}

/// True when any rank says true (so all ranks take the same code path).
fn collective_any(collective: &dyn Collective, value: bool) -> Result<bool> {
    let mut flag = Tensor::from_slice(&[f32::from(u8::from(value))]);
    collective.all_reduce_sum(&mut flag)?;
    Ok(flag.double_value(&[0]) > 0.0)
}

/// One flat tensor of token ids (empty when there are none).
fn concat_ids(ids: &[Tensor]) -> Tensor {
    if ids.is_empty() { Tensor::zeros([0], (Kind::Int64, Device::Cpu)) } else { Tensor::cat(ids, 0) }
}

fn texts(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// One flat buffer of every tensor (the all-reduce bucket), in the first tensor's kind.
fn flatten(tensors: impl Iterator<Item = Tensor>) -> Tensor {
    let parts: Vec<Tensor> = tensors.map(|t| t.flatten(0, -1)).collect();
    let kind = parts.first().map_or(Kind::Float, Tensor::kind);
    let parts: Vec<Tensor> = parts.into_iter().map(|t| t.to_kind(kind)).collect();
    Tensor::cat(&parts, 0)
}

fn unflatten_into(flat: &Tensor, targets: impl Iterator<Item = Tensor>) {
    let mut offset = 0;
    tch::no_grad(|| {
        for mut t in targets {
            let numel = t.numel() as i64;
            t.copy_(&flat.narrow(0, offset, numel).view(t.size().as_slice()).to_kind(t.kind()));
            offset += numel;
        }
    });
}

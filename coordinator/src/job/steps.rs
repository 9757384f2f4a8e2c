//! The training steps of a generation: plans cut per rank with the store rows of every
//! example, step reports (the step is done once every rank reported), and checkpoint commits
//! (the checkpoint counts once every rank reported its part).

use rosetta_common::training_log::{self, StepRecord};

use super::generation::PlannedStep;
use super::{CheckpointPart, JobError, JobResult, JobState, JobStateMachine, Phase};
use crate::manifest::{self, Manifest};
use crate::metrics;
use crate::schedule::{BatchKind, StepPlan, micro_batch_range};

/// One example of a rank's micro-batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankExample {
    /// Parallel group.
    pub pair_id: String,
    /// Language of the query.
    pub query_lang: String,
    /// Language of the passage.
    pub passage_lang: String,
    /// Store row of the query.
    pub query_row: u64,
    /// Store row of the passage (and its hard negatives).
    pub passage_row: u64,
}

/// A rank's part of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct RankPlan {
    /// Step number (0-based).
    pub step: u64,
    /// Batch kind, the same on every rank.
    pub kind: BatchKind,
    /// Dataset every example comes from.
    pub dataset: String,
    /// The batch's language or language pair (empty when examples differ).
    pub languages: Vec<String>,
    /// This rank's examples.
    pub examples: Vec<RankExample>,
    /// Write a checkpoint after this step.
    pub checkpoint_after: bool,
    /// Examples of the whole global batch.
    pub global_batch_size: usize,
}

/// What a rank is to do at a step.
#[derive(Debug, Clone, PartialEq)]
pub enum RankStep {
    /// Train this.
    Train(RankPlan),
    /// No more steps: the job is finished.
    Finished,
}

/// A rank's report of a finished step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The reporting worker.
    pub worker_id: String,
    /// Its generation.
    pub generation: u64,
    /// The step.
    pub step: u64,
    /// Global-batch loss.
    pub loss: f64,
    /// Examples this rank trained.
    pub examples: u64,
    /// Tokens it encoded.
    pub tokens: u64,
    /// Padding positions of its batches.
    pub padding_tokens: u64,
    /// Seconds the step took on this rank.
    pub step_seconds: f64,
    /// Seconds in collectives.
    pub collective_seconds: f64,
    /// Bytes it handed to the gradient all-reduce.
    pub all_reduce_bytes: u64,
    /// Model FLOPs of its step.
    pub model_flops: f64,
    /// Its device's peak FLOP/s (0: unknown).
    pub peak_flops: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// The cluster's model FLOPs utilisation of a step that took `seconds` (the slowest rank): all
/// ranks' model FLOPs over all their devices' peaks (0 when a peak is unknown).
fn model_flops_utilisation(reports: &[StepReport], seconds: f64) -> f64 {
    let peak: f64 = reports.iter().map(|r| r.peak_flops).sum();
    let flops: f64 = reports.iter().map(|r| r.model_flops).sum();
    if reports.iter().any(|r| r.peak_flops <= 0.0) || seconds <= 0.0 { 0.0 } else { flops / seconds / peak }
}

/// The name of a batch kind in plans and metrics.
pub fn kind_name(kind: BatchKind) -> &'static str {
    match kind {
        BatchKind::Monolingual => "monolingual",
        BatchKind::CrossLingual => "cross-lingual",
        BatchKind::MixedMonolingual => "mixed-monolingual",
    }
}

impl JobStateMachine {
    fn rank_in(state: &JobState, worker_id: &str, generation: u64) -> JobResult<usize> {
        if generation != state.generation.number {
            return Err(JobError::GenerationOver { asked: generation, current: state.generation.number });
        }
        state.generation.rank_of(worker_id).ok_or_else(|| JobError::UnknownWorker(worker_id.to_string()))
    }

    /// The store rows of a plan's examples (query row, passage row).
    fn rows_of(&self, plan: &StepPlan) -> JobResult<Vec<(u64, u64)>> {
        let d = self.index.datasets.iter().position(|dataset| dataset.name == plan.dataset).ok_or_else(|| {
            JobError::Internal(format!("step {}: dataset {:?} is not in the index", plan.step, plan.dataset))
        })?;
        let first = self.index.first_group(d);
        let dataset = &self.index.datasets[d];
        let row = |group: u32, lang: &str| -> JobResult<u64> {
            let bit = self.index.language_index(lang).ok_or_else(|| {
                JobError::Internal(format!("step {}: language {lang:?} is not in the index", plan.step))
            })?;
            let rank = (dataset.mask(group as usize) & ((1u64 << bit) - 1)).count_ones();
            self.store.row_of(first + u64::from(group), rank).map_err(|e| JobError::Internal(e.to_string()))
        };
        plan.examples.iter().map(|e| Ok((row(e.group, &e.query_lang)?, row(e.group, &e.passage_lang)?))).collect()
    }

    /// Plans every step up to `step` that is not planned yet (with its store rows).
    fn plan_until(&self, state: &mut JobState, step: u64) -> JobResult<()> {
        let mut scheduler = self.scheduler.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = &mut state.generation;
        while generation.next_planned <= step {
            let at = generation.next_planned;
            let (plan, cursor) = scheduler
                .plan(at, &generation.cursor)
                .map_err(|e| JobError::Internal(format!("planning step {at}: {e}")))?;
            let rows = self.rows_of(&plan)?;
            generation.cursor = cursor.clone();
            generation.plans.insert(at, PlannedStep { plan, rows, cursor });
            generation.next_planned += 1;
        }
        // Keep plans (and their cursors) back to the last checkpoint only.
        let keep_from = state.last_checkpoint.unwrap_or(0).min(step.saturating_sub(1));
        state.generation.plans.retain(|&s, _| s >= keep_from);
        Ok(())
    }

    /// The micro-batch of `worker_id` at `step`: the global plan cut for its rank. Does blocking
    /// work (planning, store reads): call it off the async threads.
    pub fn plan_for(&self, worker_id: &str, generation: u64, step: u64) -> JobResult<RankStep> {
        let mut state = self.lock();
        if let Phase::Failed(reason) = &state.phase {
            return Err(JobError::Failed(reason.clone()));
        }
        let rank = Self::rank_in(&state, worker_id, generation)?;
        let highest = &mut state.generation.highest_requested;
        *highest = Some(highest.map_or(step, |h| h.max(step)));
        if step >= state.end_step {
            state.generation.released.insert(worker_id.to_string());
            drop(state);
            self.notify();
            return Ok(RankStep::Finished);
        }
        self.plan_until(&mut state, step)?;
        let world = state.generation.workers.len();
        let planned = state.generation.plans.get(&step).ok_or(JobError::StepNotKept(step))?;
        let (start, end) = micro_batch_range(planned.plan.examples.len(), rank, world);
        let examples = planned.plan.examples[start..end]
            .iter()
            .zip(&planned.rows[start..end])
            .map(|(e, &(query_row, passage_row))| RankExample {
                pair_id: e.pair_id.clone(),
                query_lang: e.query_lang.clone(),
                passage_lang: e.passage_lang.clone(),
                query_row,
                passage_row,
            })
            .collect();
        let plan = &planned.plan;
        Ok(RankStep::Train(RankPlan {
            step: plan.step,
            kind: plan.kind,
            dataset: plan.dataset.clone(),
            languages: plan.languages.clone(),
            examples,
            checkpoint_after: self.settings.checkpoint_after(plan.step) || plan.step + 1 == state.end_step,
            global_batch_size: plan.examples.len(),
        }))
    }

    /// Records a rank's report; once every rank of the generation reported the step, the step is
    /// done. A repeated report of the same rank and step is ignored.
    pub fn report_step(&self, report: StepReport) -> JobResult<()> {
        let mut state = self.lock();
        let rank = Self::rank_in(&state, &report.worker_id, report.generation)?;
        let step = report.step;
        let world = state.generation.workers.len();
        let reports = state.generation.reports.entry(step).or_default();
        if reports.iter().any(|(r, _)| *r == rank) {
            return Ok(());
        }
        reports.push((rank, report));
        if reports.len() < world {
            return Ok(());
        }
        let reports: Vec<StepReport> =
            state.generation.reports.remove(&step).unwrap_or_default().into_iter().map(|(_, r)| r).collect();
        if let Some(bad) = reports.iter().map(|r| r.loss).find(|loss| !loss.is_finite()) {
            let batch = state.generation.plans.get(&step).map_or_else(String::new, |p| {
                let languages =
                    if p.plan.languages.is_empty() { "mixed".to_string() } else { p.plan.languages.join("-") };
                format!(" ({} batch, languages {languages})", kind_name(p.plan.kind))
            });
            drop(state);
            let reason = format!(
                "the loss of step {step}{batch} is {bad}: training diverged (lower training.optimizer.lr, raise \
                 training.loss.temperature, or keep training.max_grad_norm)"
            );
            self.fail_job(reason.clone());
            return Err(JobError::Failed(reason));
        }
        let seconds = reports.iter().map(|r| r.step_seconds).fold(0.0, f64::max).max(1e-9);
        let examples: u64 = reports.iter().map(|r| r.examples).sum();
        let tokens: u64 = reports.iter().map(|r| r.tokens).sum();
        let padding_tokens: u64 = reports.iter().map(|r| r.padding_tokens).sum();
        let loss = reports[0].loss;
        state.steps_done = step + 1;
        state.last_loss = loss;
        state.last_progress = std::time::Instant::now();
        state.examples_per_second = examples as f64 / seconds;
        state.all_reduce_bytes = reports.iter().map(|r| r.all_reduce_bytes).sum();
        state.mfu = model_flops_utilisation(&reports, seconds);
        let totals = metrics::StepTotals {
            step,
            loss,
            learning_rate: reports[0].learning_rate,
            examples,
            tokens,
            padding_tokens,
            seconds,
            collective_seconds: reports.iter().map(|r| r.collective_seconds).fold(0.0, f64::max),
            all_reduce_bytes: reports.iter().map(|r| r.all_reduce_bytes).sum(),
            mfu: model_flops_utilisation(&reports, seconds),
        };
        let batch = state.generation.plans.get(&step).map(|p| (kind_name(p.plan.kind), p.plan.languages.join("-")));
        let record = StepRecord {
            step,
            loss,
            kind: batch.as_ref().map_or("unknown", |(kind, _)| kind).to_string(),
            languages: state.generation.plans.get(&step).map(|p| p.plan.languages.clone()).unwrap_or_default(),
            learning_rate: totals.learning_rate,
            examples_per_second: state.examples_per_second,
            generation: state.generation.number,
        };
        state.unlogged.insert(step, record);
        metrics::step_done(&totals, batch);
        if step + 1 >= state.end_step && state.last_checkpoint == Some(step) {
            state.phase = Phase::Finished;
        }
        drop(state);
        self.notify();
        Ok(())
    }

    /// Records a rank's part of the checkpoint after a step; once every rank reported, verifies
    /// the files' checksums and commits the manifest (blocking: call it off the async threads).
    /// Returns whether the checkpoint is now committed.
    pub fn commit_checkpoint(&self, part: CheckpointPart) -> JobResult<bool> {
        let Some(manifest) = self.collect_checkpoint_part(part)? else { return Ok(false) };
        let held = |committed: &[u64]| self.held_for_evaluation(committed);
        if let Err(error) = manifest::commit(&self.settings.run_dir, &manifest, self.settings.keep_checkpoints, &held) {
            let reason = format!("committing the checkpoint of step {}: {error}", manifest.step);
            self.fail_generation(manifest.generation, reason.clone());
            return Err(JobError::Internal(reason));
        }
        self.checkpoint_written(&manifest);
        self.log_steps_until(manifest.step);
        Ok(true)
    }

    /// Adds a rank's part; once every rank of the generation reported, the manifest to write.
    /// A repeated part of the same rank and step is ignored.
    pub(super) fn collect_checkpoint_part(&self, part: CheckpointPart) -> JobResult<Option<Manifest>> {
        let mut state = self.lock();
        let rank = Self::rank_in(&state, &part.worker_id, part.generation)?;
        let world = state.generation.workers.len();
        let step = part.step;
        for file in &part.files {
            self.check_checkpoint_file(step, &file.path)?;
        }
        let parts = state.generation.commits.entry(step).or_default();
        if parts.iter().any(|(r, _)| *r == rank) {
            return Ok(None);
        }
        parts.push((rank, part));
        if parts.len() < world {
            return Ok(None);
        }
        let parts = state.generation.commits.remove(&step).unwrap_or_default();
        let Some(planned) = state.generation.plans.get(&step) else {
            return Err(JobError::StepNotKept(step));
        };
        let mut files: Vec<_> = parts.into_iter().flat_map(|(_, part)| part.files).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Some(Manifest {
            step,
            cursor: planned.cursor.clone(),
            files,
            config_sha256: self.config_sha256.clone(),
            world_size: world,
            generation: state.generation.number,
        }))
    }

    /// A reported checkpoint file must be a regular file inside the directory of the checkpoint
    /// being committed (`checkpoints/step-N/`), named by a relative path without `..`.
    fn check_checkpoint_file(&self, step: u64, path: &str) -> JobResult<()> {
        let invalid = |message: String| JobError::InvalidRequest { field: "files", message };
        let relative = std::path::Path::new(path);
        let dir = rosetta_common::RunDir::new("").checkpoint(step);
        let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || !relative.starts_with(&dir) || relative == dir {
            return Err(invalid(format!(
                "{path:?} is not a relative path inside {} (the checkpoint being committed)",
                dir.display()
            )));
        }
        let full = self.settings.run_dir.root().join(relative);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_file() => Ok(()),
            Ok(_) => Err(invalid(format!("{path:?} is not a regular file"))),
            Err(e) => Err(invalid(format!("{path:?}: {e}"))),
        }
    }

    /// Appends the completed steps up to a committed checkpoint to `RUN/training-log.jsonl` (a
    /// failure costs only the curves: warned, not fatal).
    fn log_steps_until(&self, step: u64) {
        let records: Vec<StepRecord> = {
            let mut state = self.lock();
            let later = state.unlogged.split_off(&(step + 1));
            std::mem::replace(&mut state.unlogged, later).into_values().collect()
        };
        if let Err(error) = training_log::append(&self.settings.run_dir.training_log(), &records) {
            tracing::warn!(%error, "could not append to the training log");
        }
    }

    /// Takes a written manifest as the new restart point — unless its generation ended while it
    /// was being written: then the generation that replaced it keeps its own restart point.
    pub(super) fn checkpoint_written(&self, manifest: &Manifest) {
        let mut state = self.lock();
        if state.generation.number != manifest.generation {
            tracing::warn!(
                step = manifest.step,
                generation = manifest.generation,
                "checkpoint committed after its generation ended; the current generation does not restart from it"
            );
            return;
        }
        state.last_checkpoint = Some(manifest.step);
        state.last_progress = std::time::Instant::now();
        state.restart = super::RestartPoint {
            step: manifest.step + 1,
            cursor: manifest.cursor.clone(),
            checkpoint: Some(self.settings.run_dir.model_file(manifest.step)),
        };
        metrics::checkpoint_committed(manifest.step);
        tracing::info!(step = manifest.step, "checkpoint committed");
        if manifest.step + 1 >= state.end_step && state.steps_done >= state.end_step {
            state.phase = Phase::Finished;
        }
        drop(state);
        self.notify();
    }
}

//! The state machine driven directly (no gRPC), over a real pair store.

use std::net::SocketAddr;
use std::sync::Arc;

use rosetta_datasets::store::pack_groups;
use rosetta_datasets::synth::labelled_groups;
use rosetta_proto::PROTOCOL_VERSION;

use super::*;

fn store(dir: &std::path::Path) -> Arc<PairStore> {
    Arc::new(pack_groups(&labelled_groups("multi", 60, &["en", "de", "fr"]), dir).unwrap())
}

/// What registration hands out (these tests never read it).
pub(crate) fn worker_spec(steps: u64) -> rosetta_worker_config::WorkerSpec {
    use rosetta_worker_config::model::{ModelSettings, ModelSource};
    rosetta_worker_config::WorkerSpec {
        model: ModelSettings { source: ModelSource::Directory("/models/m".into()), sentence: Default::default() },
        training: rosetta_worker_config::training::TrainingSection::default().build().unwrap(),
        total_steps: steps,
        seed: 11,
        collective_timeout: std::time::Duration::from_secs(6),
    }
}

fn job(dir: &std::path::Path, workers: usize, steps: u64) -> Arc<JobStateMachine> {
    let mut settings = JobSettings::with_defaults(steps, workers, &dir.join("run"));
    settings.checkpoint_every = 2;
    settings.max_restarts = 2;
    let spec = JobSpec {
        settings,
        schedule: ScheduleConfig::hybrid(0.5, 8, 11),
        store: store(dir),
        run_config_yaml: "version: 1".into(),
        worker_spec: worker_spec(steps),
        start: StartMode::Fresh,
    };
    JobStateMachine::new(spec).unwrap()
}

fn register(job: &JobStateMachine, port: u16) -> Registered {
    job.register(Registration {
        protocol_version: PROTOCOL_VERSION,
        host: "h".into(),
        device: "cpu".into(),
        ring_address: SocketAddr::from(([127, 0, 0, 1], port)),
    })
    .unwrap()
}

fn report(worker: &Registered, step: u64) -> StepReport {
    StepReport {
        worker_id: worker.worker_id.clone(),
        generation: worker.generation,
        step,
        loss: 1.0,
        examples: 4,
        tokens: 40,
        padding_tokens: 10,
        step_seconds: 0.1,
        collective_seconds: 0.0,
        all_reduce_bytes: 0,
        model_flops: 1e9,
        peak_flops: 1e11,
        learning_rate: 1e-3,
        grad_norm: 1.0,
    }
}

fn plan(job: &JobStateMachine, worker: &Registered, step: u64) -> RankPlan {
    match job.plan_for(&worker.worker_id, worker.generation, step).unwrap() {
        RankStep::Train(plan) => plan,
        RankStep::Finished => panic!("step {step} finished"),
    }
}

#[tokio::test]
async fn every_example_names_the_store_rows_of_its_group_and_languages() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), 2, 4);
    let (a, b) = (register(&job, 1), register(&job, 2));
    assert_eq!(job.rendezvous(&b.worker_id).await.unwrap().rank, 1);
    assert_eq!(b.store_id, job.store().id());
    for step in 0..3 {
        let (first, second) = (plan(&job, &a, step), plan(&job, &b, step));
        assert_eq!(first.examples.len() + second.examples.len(), 8);
        assert_eq!((first.kind, first.global_batch_size), (second.kind, 8));
        for example in first.examples.iter().chain(&second.examples) {
            let query = job.store().read_row(example.query_row).unwrap();
            let passage = job.store().read_row(example.passage_row).unwrap();
            assert_eq!(
                (query.pair_id.as_str(), query.lang.as_str()),
                (example.pair_id.as_str(), example.query_lang.as_str())
            );
            assert_eq!(
                (passage.pair_id.as_str(), passage.lang.as_str()),
                (example.pair_id.as_str(), example.passage_lang.as_str())
            );
        }
    }
}

#[tokio::test]
async fn a_step_is_done_once_every_rank_reported_and_repeats_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), 2, 4);
    let (a, b) = (register(&job, 1), register(&job, 2));
    plan(&job, &a, 0);
    job.report_step(report(&a, 0)).unwrap();
    job.report_step(report(&a, 0)).unwrap();
    assert_eq!(job.progress().steps_done, 0, "a rank's second report must not stand in for the other rank");
    job.report_step(report(&b, 0)).unwrap();
    assert_eq!(job.progress().steps_done, 1);
    let stale = StepReport { generation: 7, ..report(&a, 1) };
    assert_eq!(job.report_step(stale), Err(JobError::GenerationOver { asked: 7, current: 1 }));
}

#[tokio::test]
async fn a_checkpoint_written_after_its_generation_ended_does_not_move_the_restart_point() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), 1, 6);
    let worker = register(&job, 1);
    for step in 0..2 {
        plan(&job, &worker, step);
        job.report_step(report(&worker, step)).unwrap();
    }
    let part = CheckpointPart { worker_id: worker.worker_id.clone(), generation: 1, step: 1, files: Vec::new() };
    let manifest = job.collect_checkpoint_part(part).unwrap().expect("the only rank completes the checkpoint");
    // While the manifest is being written, the generation fails and a new one forms.
    job.fail_generation(1, "worker lost".into());
    assert_eq!(job.generation(), 2);
    manifest::commit(&job.settings().run_dir, &manifest, 3, &|_: &[u64]| Vec::new()).unwrap();
    job.checkpoint_written(&manifest);
    assert_eq!(job.progress().last_checkpoint, None);
    let fresh = register(&job, 2);
    let world = job.rendezvous(&fresh.worker_id).await.unwrap();
    assert_eq!((world.generation, world.start_step), (2, 0), "generation 2 restarts where generation 1 started");
}

#[tokio::test]
async fn workers_told_the_job_is_finished_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), 2, 1);
    let (a, b) = (register(&job, 1), register(&job, 2));
    assert!(!job.workers_released());
    assert_eq!(job.plan_for(&a.worker_id, 1, 1).unwrap(), RankStep::Finished);
    assert!(!job.workers_released(), "one of two workers heard it");
    assert_eq!(job.plan_for(&b.worker_id, 1, 1).unwrap(), RankStep::Finished);
    assert!(job.workers_released());
    let verdict = job.heartbeat("g9-w0-stranger", None);
    assert!(matches!(verdict, HeartbeatVerdict::Abort(reason) if reason.contains("not part of generation 1")));
}

#[tokio::test]
async fn the_training_log_holds_the_steps_of_committed_checkpoints_only() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), 1, 6);
    let worker = register(&job, 1);
    for step in 0..3 {
        let planned = plan(&job, &worker, step);
        assert!(!planned.examples.is_empty());
        job.report_step(StepReport { loss: 3.0 - step as f64, ..report(&worker, step) }).unwrap();
        if step == 1 {
            let part = CheckpointPart { worker_id: worker.worker_id.clone(), generation: 1, step, files: Vec::new() };
            assert!(job.commit_checkpoint(part).unwrap());
        }
    }
    let path = job.settings().run_dir.training_log();
    let (records, skipped) = rosetta_common::training_log::read(&path).unwrap();
    assert_eq!(skipped, 0);
    assert_eq!(records.iter().map(|r| (r.step, r.loss)).collect::<Vec<_>>(), [(0, 3.0), (1, 2.0)]);
    assert!(records.iter().all(|r| r.generation == 1 && (r.learning_rate - 1e-3).abs() < 1e-12));
    assert!(records.iter().all(|r| ["monolingual", "cross-lingual"].contains(&r.kind.as_str())), "{records:?}");
}

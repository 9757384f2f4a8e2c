//! The coordinator process over real gRPC with virtual workers (no libtorch): registration
//! checks, rendezvous, plans cut per rank with their store rows, reports, checkpoint commits and
//! manifests, heartbeat failure, and the Prometheus endpoint scraped over HTTP. Every
//! coordinator is started through `process::start_coordinator`, the function `rosetta
//! coordinator` calls, and its addresses come from the value it returns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rosetta_common::RunDir;
use rosetta_common::digest::sha256_file;
use rosetta_coordinator::job::{JobStateMachine, Phase};
use rosetta_coordinator::manifest;
use rosetta_coordinator::process::{CoordinatorProcessConfig, RunningCoordinator, start_coordinator};
use rosetta_coordinator::schedule::{PairIndex, ScheduleConfig, Scheduler};
use rosetta_coordinator::settings::JobSettings;
use rosetta_datasets::store::{PairStore, pack_groups};
use rosetta_datasets::synth::labelled_groups;
use rosetta_proto::PROTOCOL_VERSION;
use rosetta_proto::v1::coordinator_client::CoordinatorClient;
use rosetta_proto::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Request;
use tonic::transport::Channel;

const TOKEN: &str = "secret";
/// What registration hands every worker (the launcher builds it; the coordinator passes it on).
fn worker_spec() -> rosetta_worker_config::WorkerSpec {
    use rosetta_worker_config::model::{ModelSettings, ModelSource};
    rosetta_worker_config::WorkerSpec {
        model: ModelSettings { source: ModelSource::Directory("/models/m".into()), sentence: Default::default() },
        training: rosetta_worker_config::training::TrainingSection::default().build().unwrap(),
        total_steps: 4,
        seed: 3,
        collective_timeout: Duration::from_secs(6),
    }
}

/// 200 parallel groups in three languages, packed into a store under `dir`.
fn store(dir: &Path) -> Arc<PairStore> {
    Arc::new(pack_groups(&labelled_groups("multi", 200, &["en", "de", "fr"]), &dir.join("data")).unwrap())
}

fn schedule() -> ScheduleConfig {
    ScheduleConfig::hybrid(0.5, 10, 5)
}

fn job_config(run_dir: &Path, heartbeat: f64) -> JobSettings {
    let mut settings = JobSettings::with_defaults(4, 2, run_dir);
    settings.checkpoint_every = 2;
    settings.keep_checkpoints = 1;
    settings.heartbeat_timeout = Duration::from_secs_f64(heartbeat);
    settings.rendezvous_timeout = Duration::from_secs(20);
    settings.max_restarts = 0;
    settings
}

/// Starts a coordinator process over `store`; returns it and a client of its address.
async fn start(store: Arc<PairStore>, settings: JobSettings) -> (RunningCoordinator, CoordinatorClient<Channel>) {
    let running = start_coordinator(CoordinatorProcessConfig {
        job: settings,
        schedule: schedule(),
        store,
        listen: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.to_string(),
        tls: None,
        start: rosetta_coordinator::job::StartMode::Fresh,
        stop_after: None,
        run_config_yaml: "version: 1".into(),
        worker_spec: worker_spec(),
        model_label: "virtual".into(),
        evaluation: None,
        advertise: None,
    })
    .await
    .unwrap();
    let address = format!("http://{}", running.grpc_address);
    let client = CoordinatorClient::new(Channel::from_shared(address).unwrap().connect().await.unwrap());
    (running, client)
}

fn job_of(running: &RunningCoordinator) -> &JobStateMachine {
    &running.job
}

fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

fn register_request(port: u16) -> RegisterRequest {
    RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        host: "127.0.0.1".into(),
        device: "cpu".into(),
        ring_address: format!("127.0.0.1:{port}"),
    }
}

/// A two-language report with known numbers: query q (en) ranks its en answer first and its
/// de answer third in the pool of four candidates.
fn tiny_eval_report() -> rosetta_eval::report::EvalReport {
    use rosetta_eval::task::{EvalTask, Relevant};
    let task = EvalTask {
        name: "tiny".into(),
        protocol: rosetta_datasets::benchmark::Protocol::Lareqa,
        languages: vec!["en".into(), "de".into()],
        query_ids: vec!["q".into()],
        query_lang: vec![0],
        doc_ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        doc_lang: vec![0, 1, 0, 1],
        relevant: vec![vec![Relevant { doc: 0, relevance: 1 }, Relevant { doc: 3, relevance: 1 }]],
        pool: Default::default(),
    };
    // Scores: a 0.9, b 0.8, c 0.1, d 0.7 (1-d embeddings).
    let ranking = rosetta_eval::rank::rank_sharded(&task, &[1.0], &[0.9, 0.8, 0.1, 0.7], 1, 2, 0).unwrap();
    rosetta_eval::report::EvalReport::compute(&task, &ranking, "model", Some(3))
}

async fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_workers_run_a_whole_job_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let run_dir = RunDir::new(dir.path().join("run"));
    let (running, mut c) = start(store.clone(), job_config(run_dir.root(), 30.0)).await;
    let (job, metrics_address) = (job_of(&running), running.metrics_address);
    assert_eq!(std::fs::read_to_string(run_dir.run_config()).unwrap(), "version: 1");

    // No token, wrong token, wrong protocol version: refused with clear statuses.
    let err = c.register(Request::new(register_request(1))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut wrong = Request::new(register_request(1));
    wrong.metadata_mut().insert("authorization", "Bearer nope".parse().unwrap());
    assert!(c.register(wrong).await.unwrap_err().message().contains("wrong token"));
    let mut old = register_request(1);
    old.protocol_version = 99;
    let err = c.register(authed(old)).await.unwrap_err();
    assert!(err.message().contains("protocol version 99 is not supported"), "{err:?}");

    let w0 = c.register(authed(register_request(1001))).await.unwrap().into_inner();
    let w1 = c.register(authed(register_request(1002))).await.unwrap().into_inner();
    assert_eq!(rosetta_worker_config::WorkerSpec::from_json(&w0.worker_spec_json), Ok(worker_spec()));
    assert_eq!((w0.store_dir.as_str(), w0.store_id.as_str()), (store.dir().to_str().unwrap(), store.id()));
    assert_eq!((w0.generation, w1.generation), (1, 1));
    // A third worker finds the world full.
    let err = c.register(authed(register_request(1003))).await.unwrap_err();
    assert!(err.message().contains("already running"), "{err:?}");

    let r0 = c.rendezvous(authed(RendezvousRequest { worker_id: w0.worker_id.clone() })).await.unwrap().into_inner();
    let r1 = c.rendezvous(authed(RendezvousRequest { worker_id: w1.worker_id.clone() })).await.unwrap().into_inner();
    assert_eq!((r0.rank, r1.rank, r0.world_size), (0, 1, 2));
    assert_eq!(r0.ring_peers, vec!["127.0.0.1:1001", "127.0.0.1:1002"]);

    let mut reference = Scheduler::new(schedule(), Arc::new(PairIndex::from_store(&store).unwrap())).unwrap();
    let mut cursor = reference.start();
    for step in 0..4u64 {
        let (plan, next) = reference.plan(step, &cursor).unwrap();
        cursor = next;
        let mut examples = Vec::new();
        let mut checkpoint = false;
        for w in [&w0, &w1] {
            let got = c
                .get_plan(authed(GetPlanRequest { worker_id: w.worker_id.clone(), generation: 1, step }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(got.examples.len(), 5);
            checkpoint = got.checkpoint_after;
            for example in &got.examples {
                // Every example names the store rows of its query and its passage.
                let (query, passage) =
                    (store.read_row(example.query_row).unwrap(), store.read_row(example.passage_row).unwrap());
                assert_eq!((&query.pair_id, &query.lang), (&example.pair_id, &example.query_lang));
                assert_eq!((&passage.pair_id, &passage.lang), (&example.pair_id, &example.passage_lang));
            }
            examples.extend(got.examples.into_iter().map(|e| e.pair_id));
        }
        let want: Vec<String> = plan.examples.iter().map(|e| e.pair_id.clone()).collect();
        assert_eq!(examples, want, "the ranks' cuts concatenate to the global plan");
        for w in [&w0, &w1] {
            let report = ReportStepRequest {
                worker_id: w.worker_id.clone(),
                generation: 1,
                step,
                loss: 2.0 - step as f64 * 0.1,
                examples: 5,
                tokens: 50,
                padding_tokens: 25,
                step_seconds: 0.2,
                collective_seconds: 0.01,
                all_reduce_bytes: 4096,
                model_flops: 1e10,
                peak_flops: 1e11,
                learning_rate: 1e-3,
                grad_norm: 1.0,
            };
            c.report_step(authed(report)).await.unwrap();
        }
        assert_eq!(checkpoint, step == 1 || step == 3);
        if checkpoint {
            let relative = format!("checkpoints/step-{step:08}/model.safetensors");
            let path = run_dir.root().join(&relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("weights after step {step}")).unwrap();
            let sha256 = sha256_file(&path).unwrap();
            let first = c
                .commit_checkpoint(authed(CommitCheckpointRequest {
                    worker_id: w0.worker_id.clone(),
                    generation: 1,
                    step,
                    files: vec![CheckpointFile { path: relative, sha256 }],
                }))
                .await
                .unwrap()
                .into_inner();
            assert!(!first.committed, "a checkpoint counts only once every rank reported");
            assert!(manifest::latest(&run_dir).unwrap().is_none_or(|m| m.step < step));
            let second = c
                .commit_checkpoint(authed(CommitCheckpointRequest {
                    worker_id: w1.worker_id.clone(),
                    generation: 1,
                    step,
                    files: vec![],
                }))
                .await
                .unwrap()
                .into_inner();
            assert!(second.committed);
            let latest = manifest::latest(&run_dir).unwrap().unwrap();
            assert_eq!((latest.step, latest.world_size), (step, 2));
            assert_eq!(latest.cursor, cursor, "the manifest holds the cursor after its step");
        }
    }
    assert_eq!(job.progress().phase, Phase::Finished);
    // keep_checkpoints = 1: only the last one is left.
    assert!(!run_dir.checkpoint(1).exists());
    let finished =
        c.get_plan(authed(GetPlanRequest { worker_id: w0.worker_id.clone(), generation: 1, step: 4 })).await.unwrap();
    assert!(finished.into_inner().finished);
    let err = c.register(authed(register_request(1004))).await.unwrap_err();
    assert!(err.message().contains("finished"), "{err:?}");
    let status = c.job_status(authed(JobStatusRequest {})).await.unwrap().into_inner();
    assert_eq!((status.state.as_str(), status.step, status.last_checkpoint_step), ("finished", 4, 3));

    // Evaluation results reach the same endpoint, over the ReportEvaluation RPC.
    let err = c.report_evaluation(authed(ReportEvaluationRequest { report_json: "{}".into() })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let report_json = serde_json::to_string(&tiny_eval_report()).unwrap();
    let recorded = c.report_evaluation(authed(ReportEvaluationRequest { report_json })).await.unwrap().into_inner();
    assert_eq!(recorded.benchmark, "tiny");
    let metrics = scrape(metrics_address).await;
    // Every series carries the run label (the run directory's name, "run").
    for series in [
        "rosetta_eval_map{run=\"run\",benchmark=\"tiny\",setting=\"monolingual\",query_lang=\"en\",corpus_lang=\"en\"} 1",
        "rosetta_eval_map{run=\"run\",benchmark=\"tiny\",setting=\"cross-lingual\",query_lang=\"en\",corpus_lang=\"de\"} 0.5",
        "rosetta_eval_map{run=\"run\",benchmark=\"tiny\",setting=\"multilingual\",query_lang=\"en\",corpus_lang=\"all\"}",
        "rosetta_eval_rank_distance{run=\"run\",benchmark=\"tiny\",query_lang=\"en\"} 2",
        "rosetta_eval_map_macro{run=\"run\",benchmark=\"tiny\",setting=\"monolingual\"}",
        "rosetta_eval_rank_distance_macro{run=\"run\",benchmark=\"tiny\"}",
        "rosetta_eval_step{run=\"run\",benchmark=\"tiny\"} 3",
        "rosetta_step{run=\"run\"} 4",
        "rosetta_loss{run=\"run\"} 1.7",
        "rosetta_learning_rate{run=\"run\"}",
        "rosetta_examples_per_second{run=\"run\"} 50",
        "rosetta_tokens_per_second{run=\"run\"} 500",
        "rosetta_step_seconds_bucket{run=\"run\",",
        "rosetta_collective_seconds_bucket{run=\"run\",",
        "rosetta_batches_total{run=\"run\",",
        "rosetta_last_checkpoint_step{run=\"run\"} 3",
        "rosetta_workers{run=\"run\",state=\"running\"} 2",
        "rosetta_loss_by_kind{run=\"run\",kind=",
        "rosetta_padding_tokens_total{run=\"run\"}",
        // Two ranks x 4 steps x 4096 bytes.
        "rosetta_all_reduce_bytes_total{run=\"run\"} 32768",
        // 2 x 1e10 FLOPs in 0.2 s on 2 x 1e11 FLOP/s.
        "rosetta_mfu{run=\"run\"} 0.5",
        "rosetta_padding_fraction{run=\"run\"} 0.333",
        "rosetta_last_step_timestamp_seconds{run=\"run\"}",
        "rosetta_run_info{run=\"run\",strategy=\"hybrid\",alpha=\"0.5\",model=\"virtual\",world_size=\"",
        "rosetta_build_info{run=\"run\",version=\"",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics:\n{metrics}");
    }
    // Both workers were told the job is finished (worker 1 hears it now): the process may end.
    c.get_plan(authed(GetPlanRequest { worker_id: w1.worker_id.clone(), generation: 1, step: 4 })).await.unwrap();
    running.wait_for_end(Duration::from_secs(5)).await.unwrap();
    assert!(job.workers_released());
    running.shutdown().await;
    assert!(tokio::net::TcpStream::connect(metrics_address).await.is_err(), "the metrics server still listens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_fails_the_job_and_everyone_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let (running, mut c) = start(store(dir.path()), job_config(&dir.path().join("run"), 0.3)).await;
    let job = job_of(&running);
    let w0 = c.register(authed(register_request(2001))).await.unwrap().into_inner();
    let _w1 = c.register(authed(register_request(2002))).await.unwrap().into_inner();
    // Only worker 0 keeps beating.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.heartbeat(authed(HeartbeatRequest {
            worker_id: w0.worker_id.clone(),
            generation: 1,
            error: String::new(),
            permanent: false,
        }))
        .await
        .unwrap();
        job.check_liveness();
    }
    let Phase::Failed(reason) = job.progress().phase else { panic!("the job should have failed") };
    assert!(reason.contains("rank 1") && reason.contains("missed heartbeats"), "{reason}");
    let beat = c
        .heartbeat(authed(HeartbeatRequest {
            worker_id: w0.worker_id.clone(),
            generation: 1,
            error: String::new(),
            permanent: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(beat.abort && beat.reason.contains("rank 1"));
    let err = c
        .get_plan(authed(GetPlanRequest { worker_id: w0.worker_id.clone(), generation: 1, step: 0 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_file_does_not_match_its_checksum_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = RunDir::new(dir.path().join("run"));
    let mut config = job_config(run_dir.root(), 30.0);
    config.workers = 1;
    config.min_workers = 1;
    let (running, mut c) = start(store(dir.path()), config).await;
    let job = job_of(&running);
    let w = c.register(authed(register_request(3001))).await.unwrap().into_inner();
    c.rendezvous(authed(RendezvousRequest { worker_id: w.worker_id.clone() })).await.unwrap();
    for step in 0..2 {
        c.get_plan(authed(GetPlanRequest { worker_id: w.worker_id.clone(), generation: 1, step })).await.unwrap();
    }
    let relative = "checkpoints/step-00000001/model.safetensors".to_string();
    let path = run_dir.root().join(&relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "torn write").unwrap();
    let err = c
        .commit_checkpoint(authed(CommitCheckpointRequest {
            worker_id: w.worker_id.clone(),
            generation: 1,
            step: 1,
            files: vec![CheckpointFile { path: relative, sha256: "00".repeat(32) }],
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("does not match"), "{err:?}");
    assert!(manifest::latest(&run_dir).unwrap().is_none());
    assert!(matches!(job.progress().phase, Phase::Failed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_generation_restarts_and_stale_workers_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = job_config(&dir.path().join("run"), 0.3);
    config.max_restarts = 1;
    let (running, mut c) = start(store(dir.path()), config).await;
    let job = job_of(&running);
    let old = c.register(authed(register_request(4001))).await.unwrap().into_inner();
    c.register(authed(register_request(4002))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    job.check_liveness();
    assert_eq!(job.progress().phase, Phase::Waiting, "one restart is allowed");
    assert_eq!(job.generation(), 2);
    // The old generation is told to stop and cannot get plans.
    let beat = c
        .heartbeat(authed(HeartbeatRequest {
            worker_id: old.worker_id.clone(),
            generation: 1,
            error: String::new(),
            permanent: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(beat.abort, "{beat:?}");
    let err =
        c.get_plan(authed(GetPlanRequest { worker_id: old.worker_id, generation: 1, step: 0 })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // A new world forms as generation 2, from the start (nothing was committed yet).
    let a = c.register(authed(register_request(4003))).await.unwrap().into_inner();
    c.register(authed(register_request(4004))).await.unwrap();
    let r = c.rendezvous(authed(RendezvousRequest { worker_id: a.worker_id })).await.unwrap().into_inner();
    assert_eq!((r.generation, r.start_step, r.world_size), (2, 0, 2));
    assert!(r.checkpoint_path.is_empty());
    // The second failure exhausts the restarts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    job.check_liveness();
    assert!(matches!(job.progress().phase, Phase::Failed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elastic_job_starts_with_fewer_workers_after_the_rendezvous_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut config = job_config(&dir.path().join("run"), 30.0);
    config.rendezvous_timeout = Duration::from_millis(500);
    config.min_workers = 1;
    let (running, mut c) = start(store.clone(), config).await;
    let job = job_of(&running);
    let w0 = c.register(authed(register_request(1001))).await.unwrap().into_inner();
    // One of two workers came: after the timeout the generation forms with it alone.
    let r0 = c.rendezvous(authed(RendezvousRequest { worker_id: w0.worker_id.clone() })).await.unwrap().into_inner();
    assert_eq!((r0.rank, r0.world_size), (0, 1));
    assert_eq!(job.progress().phase, Phase::Running);
    // The whole global batch goes to the one rank.
    let plan = c
        .get_plan(authed(GetPlanRequest { worker_id: w0.worker_id.clone(), generation: r0.generation, step: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.examples.len(), 10, "{plan:?}");

    // Without elasticity the same situation fails the job, naming what it waited for.
    let dir = tempfile::tempdir().unwrap();
    let mut config = job_config(&dir.path().join("run2"), 30.0);
    config.rendezvous_timeout = Duration::from_millis(500);
    let (_running, mut c) = start(store, config).await;
    let w0 = c.register(authed(register_request(1001))).await.unwrap().into_inner();
    let err = c.rendezvous(authed(RendezvousRequest { worker_id: w0.worker_id })).await.unwrap_err();
    assert!(err.message().contains("for 2 workers; 1 registered"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_requests_are_refused_and_never_learn_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = RunDir::new(dir.path().join("run"));
    let mut config = job_config(run_dir.root(), 30.0);
    (config.workers, config.min_workers) = (1, 1);
    let (running, mut c) = start(store(dir.path()), config).await;
    let w = c.register(authed(register_request(5001))).await.unwrap().into_inner();
    c.rendezvous(authed(RendezvousRequest { worker_id: w.worker_id.clone() })).await.unwrap();
    for step in 0..2 {
        c.get_plan(authed(GetPlanRequest { worker_id: w.worker_id.clone(), generation: 1, step })).await.unwrap();
    }
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "not a checkpoint").unwrap();
    let own = run_dir.checkpoint(1);
    std::fs::create_dir_all(own.join("sub")).unwrap();
    std::fs::write(own.join("model.safetensors"), "weights").unwrap();
    std::os::unix::fs::symlink(&secret, own.join("link")).unwrap();
    std::fs::create_dir_all(run_dir.checkpoint(0)).unwrap();
    std::fs::write(run_dir.checkpoint(0).join("model.safetensors"), "other step").unwrap();
    let commit = |path: &str, sha256: &str| CommitCheckpointRequest {
        worker_id: w.worker_id.clone(),
        generation: 1,
        step: 1,
        files: vec![CheckpointFile { path: path.to_string(), sha256: sha256.to_string() }],
    };
    for (path, why) in [
        ("../secret.txt", "is not a relative path inside"),
        ("checkpoints/step-00000001/../../../secret.txt", "is not a relative path inside"),
        (secret.to_str().unwrap(), "is not a relative path inside"),
        ("checkpoints/step-00000000/model.safetensors", "is not a relative path inside"),
        ("checkpoints/step-00000001/sub", "is not a regular file"),
        ("checkpoints/step-00000001/link", "is not a regular file"),
    ] {
        let err = c.commit_checkpoint(authed(commit(path, &"0".repeat(64)))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{path}: {err:?}");
        assert!(err.message().contains(why), "{path}: {err:?}");
    }
    // A wrong digest for a legitimate file: refused without telling the real one.
    let real = sha256_file(&own.join("model.safetensors")).unwrap();
    let err = c
        .commit_checkpoint(authed(commit("checkpoints/step-00000001/model.safetensors", &"0".repeat(64))))
        .await
        .unwrap_err();
    assert!(err.message().contains("does not match") && !err.message().contains(&real), "{err:?}");
    assert!(manifest::latest(&run_dir).unwrap().is_none());

    // Evaluation reports: label values are bounded, and messages are too.
    let mut report = tiny_eval_report();
    report.benchmark = "{evil=\"x\"}".into();
    let err = c
        .report_evaluation(authed(ReportEvaluationRequest { report_json: serde_json::to_string(&report).unwrap() }))
        .await
        .unwrap_err();
    assert!(err.code() == tonic::Code::InvalidArgument && err.message().contains("benchmark name"), "{err:?}");
    let huge = "x".repeat(20 << 20);
    let err = c.report_evaluation(authed(ReportEvaluationRequest { report_json: huge })).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    drop(running);
}

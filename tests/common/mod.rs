//! Helpers shared by the end-to-end tests of the `rosetta` binary: typed run configs (written
//! to YAML only where a test drives the binary), and a coordinator started in this process
//! through the same function `rosetta coordinator` calls, its addresses taken from the value
//! that function returns.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rosetta::prepare::open_store;
use rosetta::run_config::{CONFIG_VERSION, RawRunConfig, RunConfig};
use rosetta_coordinator::process::{CoordinatorProcessConfig, RunningCoordinator, ServerTls, start_coordinator};
use rosetta_coordinator::schedule::ScheduleConfig;
use rosetta_coordinator::settings::{ElasticSection, JobSection};
use rosetta_datasets::config::DataSection;
use rosetta_worker::sections::{ModelSection, TrainingSection};

/// Runs the binary under test.
pub fn rosetta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosetta")).args(args).output().expect("rosetta runs")
}

/// Writes a small synthetic corpus to `out` (2 benchmark people); panics with stderr on failure.
pub fn synth_small(out: &Path, train_people: usize, mono_people: usize, vocab_size: usize) {
    let (train, mono, vocab) = (train_people.to_string(), mono_people.to_string(), vocab_size.to_string());
    let out = rosetta(&[
        "data",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--train-people",
        &train,
        "--mono-people",
        &mono,
        "--benchmark-people",
        "2",
        "--vocab-size",
        &vocab,
    ]);
    assert!(out.status.success(), "data synth failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A tiny, fast training run over `data/` (as `synth_small` writes it, relative to the config
/// file's directory) into `runs/<run>`: a 2-layer, 32-wide preset, batches of 12.
pub fn tiny_run(run: &str, steps: u64, workers: usize) -> RawRunConfig {
    let model: ModelSection = serde_json::from_value(serde_json::json!({
        "preset": "small", "tokenizer": "data/tokenizer.json", "max_seq_length": 24,
        "layers": 2, "hidden_size": 32, "heads": 4, "intermediate_size": 64,
    }))
    .unwrap();
    let mut training = TrainingSection { hard_negatives: 1, ..TrainingSection::default() };
    training.optimizer.lr = 1e-3;
    RawRunConfig {
        version: Some(CONFIG_VERSION),
        data: DataSection { train: vec![PathBuf::from("data/train.parquet")], benchmarks: Vec::new(), store: None },
        schedule: ScheduleConfig::hybrid(0.5, 12, 3),
        model: Some(model),
        training,
        job: Some(JobSection {
            steps,
            workers,
            checkpoint_every: 2,
            keep_checkpoints: 10,
            heartbeat_timeout_secs: 20.0,
            rendezvous_timeout_secs: 120.0,
            step_timeout_secs: 600.0,
            run_dir: PathBuf::from(format!("runs/{run}")),
            metrics_address: "127.0.0.1:0".into(),
            max_restarts: 3,
            elastic: ElasticSection::default(),
        }),
        evaluation: None,
    }
}

/// Writes `config` as YAML to `dir/<name>.yaml`.
pub fn write_config(dir: &Path, name: &str, config: &RawRunConfig) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config.to_yaml()).unwrap();
    path
}

/// A coordinator serving in this process, with the runtime that drives it.
pub struct InProcessCoordinator {
    /// The runtime its tasks run on.
    pub runtime: tokio::runtime::Runtime,
    /// The coordinator.
    pub running: Option<RunningCoordinator>,
}

impl InProcessCoordinator {
    /// Starts the coordinator of the config at `path` (paths resolved against its directory),
    /// with `token`, optionally over TLS.
    pub fn start(path: &Path, token: &str, tls: Option<(&Path, &Path)>) -> Self {
        let config = RunConfig::load(path).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let process = CoordinatorProcessConfig {
            job: config.job.clone(),
            schedule: config.schedule.clone(),
            store: open_store(&config.data).unwrap(),
            listen: "127.0.0.1:0".parse().unwrap(),
            token: token.to_string(),
            tls: tls.map(|(cert, key)| ServerTls::from_files(cert, key).unwrap()),
            start: rosetta_coordinator::job::StartMode::Fresh,
            stop_after: None,
            run_config_yaml: config.resolved.to_yaml(),
            worker_spec_json: config.worker_spec().to_json(),
        };
        let running = runtime.block_on(start_coordinator(process)).unwrap();
        Self { runtime, running: Some(running) }
    }

    fn running(&self) -> &RunningCoordinator {
        self.running.as_ref().unwrap()
    }

    /// Its gRPC address.
    pub fn grpc(&self) -> SocketAddr {
        self.running().grpc_address
    }

    /// Its Prometheus address.
    pub fn metrics(&self) -> SocketAddr {
        self.running().metrics_address
    }

    /// Waits (at most `timeout`) until the job finished and every worker heard so.
    pub fn wait_finished(&self, timeout: Duration) -> Result<(), String> {
        self.runtime
            .block_on(async {
                tokio::time::timeout(timeout, self.running().wait_for_end(Duration::from_secs(5))).await
            })
            .map_err(|_| format!("the job did not end within {timeout:?}"))?
    }
}

impl Drop for InProcessCoordinator {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
        }
    }
}

//! Helpers shared by the end-to-end tests of the `rosetta` binary: typed run configs (written
//! to YAML only where a test drives the binary), and a coordinator started in this process
//! through the same function `rosetta coordinator` calls, its addresses taken from the value
//! that function returns.
#![allow(dead_code)] // each test binary uses a different subset

pub mod network;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rosetta_coordinator::process::{CoordinatorProcessConfig, RunningCoordinator, ServerTls, start_coordinator};
use rosetta_coordinator::schedule::ScheduleConfig;
use rosetta_coordinator::settings::{ElasticSection, JobSection};
use rosetta_datasets::config::DataSection;
use rosetta_deploy::prepare::open_store;
use rosetta_deploy::run_config::{CONFIG_VERSION, RawRunConfig, RunConfig};
use rosetta_worker_config::model::ModelSection;
use rosetta_worker_config::training::TrainingSection;

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
            name: None,
            metrics_address: "127.0.0.1:0".into(),
            max_restarts: 3,
            elastic: ElasticSection::default(),
        }),
        evaluation: None,
        deploy: None,
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
            worker_spec: config.worker_spec(),
            model_label: config.model_label(),
            evaluation: None,
            advertise: None,
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

/// The model tensors of the checkpoint after `step` of `dir/runs/<run>`.
pub fn model_tensors(dir: &Path, run: &str, step: u64) -> Vec<(String, Vec<f32>)> {
    let path = dir.join(format!("runs/{run}/checkpoints/step-{step:08}/model.safetensors"));
    let mut tensors: Vec<(String, Vec<f32>)> = tch::Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(name, t)| (name, Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The largest difference between two sets of named tensors.
pub fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

/// A process of the binary whose stderr lines are collected, each with the moment it came.
pub struct Logged {
    /// The process.
    pub child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl Logged {
    /// Starts `rosetta ARGS` with `env`; stdout is dropped.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_rosetta"));
        command.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        // Its own process group, so that a test can signal it without its children.
        command.process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("rosetta starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((std::time::Instant::now(), line));
            }
        });
        Self { child, lines }
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// When it first wrote a line containing `text` (waiting at most `timeout`).
    pub fn wait_for_line(&self, text: &str, timeout: Duration) -> Option<std::time::Instant> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self.lines.lock().unwrap().iter().find(|(_, l)| l.contains(text)) {
                return Some(*at);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for it to exit; its status and when it exited.
    pub fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, std::time::Instant) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let at = std::time::Instant::now();
                std::thread::sleep(Duration::from_millis(100)); // the last stderr lines
                return (status, at);
            }
            assert!(std::time::Instant::now() < deadline, "still running after {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        assert!(pid > 1);
        // SAFETY: kill(2) on a child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "{}", std::io::Error::last_os_error());
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (at most `timeout`) until `path` exists.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} did not appear within {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `rosetta coordinator` process for the config at `config` and its gRPC address, read from
/// the `coordinator.json` it writes into its run directory.
pub fn coordinator_process(config: &Path, run_dir: &Path, token_file: &Path, extra: &[&str]) -> (Logged, String) {
    let addresses = run_dir.join("coordinator.json");
    let _ = std::fs::remove_file(&addresses);
    let mut args = vec!["coordinator", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    args.extend(["--token-file", token_file.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let process = Logged::start(&args, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&addresses) {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["pid"].as_u64() == Some(u64::from(process.child.id())) {
                return (process, format!("http://{}", value["grpc"].as_str().unwrap()));
            }
        }
        assert!(std::time::Instant::now() < deadline, "no coordinator.json:\n{}", process.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `rosetta worker` process joining `address`.
pub fn worker_process(address: &str, token_file: &Path, env: &[(&str, &str)]) -> Logged {
    let args = [
        "--log",
        "info",
        "worker",
        "--coordinator",
        address,
        "--token-file",
        token_file.to_str().unwrap(),
        "--threads",
        "1",
    ];
    Logged::start(&args, env)
}

/// Whether a test may use `service` on this machine. Where it is missing, the test is skipped
/// with a line saying so — except under `ROSETTA_REQUIRE_SERVICES=1` (set by `.ci/run`, which
/// installs and starts every service first), where a missing service fails the test.
pub fn service_available(service: &str, present: bool) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var("ROSETTA_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{service} is required here (ROSETTA_REQUIRE_SERVICES=1) but missing: run scripts/ci-services.sh as root"
    );
    eprintln!("SKIPPED: {service} is not available on this machine (scripts/ci-services.sh sets it up as root)");
    false
}

/// Whether the tests may submit to a Slurm whose node takes jobs (see [`service_available`]).
pub fn slurm_available() -> bool {
    let available = have_command("sbatch")
        && Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
            let state = String::from_utf8_lossy(&o.stdout);
            state.contains("idle") || state.contains("mixed") || state.contains("alloc")
        });
    service_available("a running Slurm (sbatch, sinfo)", available)
}

/// Whether `command` runs here.
pub fn have_command(command: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {command}")]).output().is_ok_and(|o| o.status.success())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A free TCP port on loopback (bound and released; good enough for a test's own services).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

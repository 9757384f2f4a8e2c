//! End-to-end tests of `rosetta train` on real local clusters: separate worker processes, the
//! TCP ring, gRPC to the coordinator, checkpoints, resume after SIGKILL, bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{max_diff, model_tensors, rosetta, synth_small};

/// Synthetic data once per test directory, and a tiny, fast config over it.
fn setup(dir: &Path, steps: u64, workers: usize, dropout: bool, run: &str) -> PathBuf {
    setup_with(dir, steps, workers, dropout, run, None)
}

fn setup_with(dir: &Path, steps: u64, workers: usize, dropout: bool, run: &str, eps: Option<f64>) -> PathBuf {
    let data = dir.join("data");
    if !data.join("train.parquet").exists() {
        synth_small(&data, 60, 20, 400);
    }
    let mut config = common::tiny_run(run, steps, workers);
    config.training.dropout = dropout;
    if let Some(eps) = eps {
        config.training.optimizer.eps = eps;
    }
    common::write_config(dir, run, &config)
}

fn train(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--config", config.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = rosetta(&args);
    assert!(
        out.status.success(),
        "train failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn two_workers_train_the_same_model_as_one() {
    let dir = tempfile::tempdir().unwrap();
    // eps 1e-6 keeps AdamW from turning f32 rounding on near-zero gradients into whole steps.
    let eps = Some(1e-6);
    train(&setup_with(dir.path(), 4, 1, false, "one", eps), &[]);
    train(&setup_with(dir.path(), 4, 2, false, "two", eps), &[]);
    let diff = max_diff(&model_tensors(dir.path(), "one", 3), &model_tensors(dir.path(), "two", 3));
    // The gradients agree to f32 rounding (the summation order differs; worker tests check the
    // math to 1e-6 in f64). AdamW divides by sqrt(v), which magnifies rounding on near-zero
    // gradients: after 4 updates of size ~lr = 1e-3, the parameters agree to 1e-4.
    assert!(diff < 1e-4, "1-worker and 2-worker parameters differ by {diff}");
    let moved = max_diff(&model_tensors(dir.path(), "one", 1), &model_tensors(dir.path(), "one", 3));
    assert!(moved > 100.0 * diff, "the runs barely trained (moved {moved}, differ {diff})");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/two/checkpoints/step-00000003/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["world_size"], 2);
    assert_eq!(manifest["step"], 3);
    assert_eq!(std::fs::read_to_string(dir.path().join("runs/two/checkpoints/latest")).unwrap(), "step-00000003");
}

#[test]
fn resume_after_sigkill_replays_the_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // Uninterrupted reference (dropout on: it is seeded per step and rank).
    train(&setup(dir.path(), 6, 2, true, "reference"), &[]);
    // The same run, killed (every process) once the checkpoint after step 1 is committed.
    let config = setup(dir.path(), 6, 2, true, "killed");
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(env!("CARGO_BIN_EXE_rosetta"))
            .args(["train", "--config", config.to_str().unwrap(), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let latest = dir.path().join("runs/killed/checkpoints/latest");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !latest.exists() {
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // kill(2) itself, not the `kill` program: procps-ng 4.0.2 reads `kill -KILL -12345` as
    // process group 1 (every process the user may signal).
    let group = i32::try_from(child.id()).unwrap();
    assert!(group > 1);
    assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0, "{}", std::io::Error::last_os_error());
    let _ = child.wait();
    let committed = std::fs::read_to_string(&latest).unwrap();
    // Resume from whatever was last committed, to the end.
    train(&config, &["--resume"]);
    let diff = max_diff(&model_tensors(dir.path(), "reference", 5), &model_tensors(dir.path(), "killed", 5));
    assert!(diff == 0.0, "resumed run (from {committed}) differs from the uninterrupted one by {diff}");
}

#[test]
fn bad_configs_and_resumes_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2, 1, false, "bad");
    let text = std::fs::read_to_string(&config).unwrap();
    // An unknown field, named with its line.
    std::fs::write(&config, text.replace("job:\n", "job:\n  stepz: 3\n")).unwrap();
    let out = rosetta(&["train", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("stepz"), "{err}");
    // Every problem of every section at once, each with its path.
    let mut bad = common::tiny_run("bad", 0, 1);
    bad.data.train[0] = PathBuf::from("data/missing.parquet");
    bad.training.optimizer.lr = -1.0;
    bad.version = None;
    let bad = common::write_config(dir.path(), "bad", &bad);
    let out = rosetta(&["train", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for expected in [
        "bad.yaml",
        "job.steps: must be at least 1",
        "data.train[0]",
        "missing.parquet",
        "training.optimizer.lr",
        "version: missing",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from {err}");
    }
    std::fs::write(&config, &text).unwrap();
    let out = rosetta(&["train", "--config", config.to_str().unwrap(), "--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no committed checkpoint"), "{err}");
}

#[test]
fn a_worker_with_the_wrong_token_is_refused_and_the_coordinator_survives() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2, 1, false, "auth");
    let coordinator = common::InProcessCoordinator::start(&config, "right-token", None);
    let address = coordinator.grpc();
    let wrong = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["worker", "--coordinator", &format!("http://{address}")])
        .env("ROSETTA_TOKEN", "wrong-token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("wrong token"), "{err}");
    // The coordinator is still up and a worker with the right token trains the job to the end.
    let token = dir.path().join("token");
    std::fs::write(&token, "right-token\n").unwrap();
    let right = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["worker", "--coordinator", &format!("http://{address}"), "--token-file", token.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    coordinator.wait_finished(Duration::from_secs(30)).unwrap();
    // A worker that comes after the job finished gets a clear refusal.
    let late = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["worker", "--coordinator", &format!("http://{address}")])
        .env("ROSETTA_TOKEN", "right-token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&late.stderr);
    assert!(!late.status.success() && err.contains("the job has finished"), "{err}");
}

#[test]
fn killing_one_worker_restarts_the_generation_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    train(&setup(dir.path(), 10, 2, true, "steady"), &[]);
    let config = setup(dir.path(), 10, 2, true, "faulty");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["train", "--config", config.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let latest = dir.path().join("runs/faulty/checkpoints/latest");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !latest.exists() {
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before a worker could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL one worker process (a child of `rosetta train`).
    let workers = Command::new("pgrep").args(["-P", &child.id().to_string()]).output().unwrap();
    let victim: i32 =
        String::from_utf8_lossy(&workers.stdout).lines().next().expect("a worker process").trim().parse().unwrap();
    assert!(victim > 1);
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0, "{}", std::io::Error::last_os_error());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the run did not recover:\n{stderr}");
    assert!(stderr.contains("starting generation 2"), "{stderr}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/faulty/checkpoints/step-00000009/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest["generation"].as_u64().unwrap() >= 2, "{manifest}");
    // Nothing committed was lost, and the replay from the checkpoint is exact.
    let diff = max_diff(&model_tensors(dir.path(), "steady", 9), &model_tensors(dir.path(), "faulty", 9));
    assert!(diff == 0.0, "the restarted run differs from the steady one by {diff}");
}

#[test]
fn a_run_resumes_on_a_different_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let eps = Some(1e-6);
    train(&setup_with(dir.path(), 6, 2, false, "whole", eps), &[]);
    let config = setup_with(dir.path(), 6, 2, false, "shrunk", eps);
    train(&config, &["--stop-after", "2"]);
    // Same global batches, now cut for one worker instead of two.
    train(&config, &["--resume", "--workers", "1"]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/shrunk/checkpoints/step-00000005/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["world_size"], 1);
    let diff = max_diff(&model_tensors(dir.path(), "whole", 5), &model_tensors(dir.path(), "shrunk", 5));
    assert!(diff < 1e-4, "resuming on 1 worker instead of 2 changed the parameters by {diff}");
}

#[test]
fn workers_reach_a_tls_coordinator_only_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2, 1, false, "tls");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let coordinator = common::InProcessCoordinator::start(&config, "t0ken", Some((&cert_path, &key_path)));
    let port = coordinator.grpc().port().to_string();
    let worker = |address: String, ca: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rosetta"));
        command.args(["worker", "--coordinator", &address]).env("ROSETTA_TOKEN", "t0ken");
        if let Some(ca) = ca {
            command.arg("--tls-ca").arg(ca);
        }
        command.output().unwrap()
    };
    // Plain-text gRPC to a TLS server, and TLS without the certificate: refused, with the reason.
    let plain = worker(format!("http://127.0.0.1:{port}"), None);
    assert!(!plain.status.success());
    let no_ca = worker(format!("https://localhost:{port}"), None);
    let err = String::from_utf8_lossy(&no_ca.stderr);
    assert!(!no_ca.status.success() && err.contains("needs --tls-ca"), "{err}");
    // With the certificate the worker trains the job to the end.
    let good = worker(format!("https://localhost:{port}"), Some(&cert_path));
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    coordinator.wait_finished(Duration::from_secs(30)).unwrap();
}

#[test]
fn frozen_parameters_stay_put_across_two_workers_and_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), 4, 2, false, "frozen");
    let mut config = common::tiny_run("frozen", 4, 2);
    config.training.freeze =
        rosetta_worker::freeze::FreezeConfig { embeddings: true, layers: vec![0], ..Default::default() };
    let path = common::write_config(dir.path(), "frozen", &config);
    let out = train(&path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("parameters trainable") && stderr.contains("frozen in"), "{stderr}");
    // `training.precision: auto` trains in fp32 on the CPU, and says so.
    assert!(stderr.contains("%), fp32;"), "{stderr}");
    let (first, last) = (model_tensors(dir.path(), "frozen", 1), model_tensors(dir.path(), "frozen", 3));
    let mut moved = 0;
    for ((name, a), (_, b)) in first.iter().zip(&last) {
        let frozen = name.contains(".embeddings.") || name.contains(".layer.0.");
        if frozen {
            assert_eq!(a, b, "{name} is frozen but changed");
        } else if a != b {
            moved += 1;
        }
    }
    assert!(moved > 0 && first.iter().any(|(n, _)| n.contains("word_embeddings")), "trained tensors moved: {moved}");
}

//! Faults a real cluster produces, injected for real into real processes: a hung or killed
//! coordinator, a slow start, a stuck training thread, a damaged checkpoint, a full disk, a
//! signal to `rosetta train`, a run directory that already holds checkpoints, and failures a
//! restart would meet again. Each test prints what it measured (`MEASURED …`, shown with
//! `--nocapture`): how long detection took, how long until training went on, steps lost.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Logged, coordinator_process, max_diff, model_tensors, rosetta, synth_small, tiny_run, wait_for_file,
    worker_process, write_config,
};
use rosetta_deploy::run_config::RawRunConfig;

/// Synthetic data under `dir/data`, a token file, and the writer of configs over them.
fn data(dir: &Path) -> PathBuf {
    synth_small(&dir.join("data"), 60, 20, 400);
    let token = dir.join("token");
    std::fs::write(&token, "fault-token\n").unwrap();
    token
}

fn run(dir: &Path, name: &str, config: &RawRunConfig) -> PathBuf {
    write_config(dir, name, config)
}

fn train_ok(config: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", "--config", config.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = rosetta(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn latest(dir: &Path, run: &str) -> Option<u64> {
    rosetta_common::RunDir::new(dir.join("runs").join(run)).latest_checkpoint().unwrap()
}

#[test]
fn a_hung_coordinator_ends_its_workers_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let token = data(dir.path());
    let config = run(dir.path(), "hung", &tiny_run("hung", 500, 1));
    let (coordinator, address) = coordinator_process(&config, &dir.path().join("runs/hung"), &token, &[]);
    let mut worker = worker_process(&address, &token, &[]);
    wait_for_file(&dir.path().join("runs/hung/checkpoints/latest"), Duration::from_secs(120));
    let stopped = Instant::now();
    coordinator.signal(libc::SIGSTOP);
    let (status, exited) = worker.wait(Duration::from_secs(60));
    coordinator.signal(libc::SIGCONT);
    let detection = exited.duration_since(stopped);
    let stderr = worker.stderr();
    eprintln!("MEASURED hung coordinator: worker gave up after {:.1} s", detection.as_secs_f64());
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&address), "the error must name the coordinator:\n{stderr}");
    assert!(detection <= Duration::from_secs(30), "the worker waited {detection:?}:\n{stderr}");
}

#[test]
fn a_killed_coordinator_restarted_with_resume_continues_the_job_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let token = data(dir.path());
    let mut reference = tiny_run("reference", 8, 2);
    reference.training.dropout = true;
    train_ok(&run(dir.path(), "reference", &reference), &[]);

    let mut config = tiny_run("restarted", 8, 2);
    config.training.dropout = true;
    let config = run(dir.path(), "restarted", &config);
    let run_dir = dir.path().join("runs/restarted");
    let (mut coordinator, address) = coordinator_process(&config, &run_dir, &token, &[]);
    let mut workers: Vec<Logged> = (0..2).map(|_| worker_process(&address, &token, &[])).collect();
    wait_for_file(&run_dir.join("checkpoints/latest"), Duration::from_secs(120));
    coordinator.child.kill().unwrap();
    let killed = Instant::now();
    let _ = coordinator.child.wait();
    let committed = latest(dir.path(), "restarted").unwrap();
    let detected = workers.iter_mut().map(|w| w.wait(Duration::from_secs(60)).1).max().unwrap();
    // A new coordinator on the same run directory, with --resume, and freshly launched workers.
    let restarted = Instant::now();
    let (mut coordinator, address) = coordinator_process(&config, &run_dir, &token, &["--resume"]);
    let mut workers: Vec<Logged> = (0..2).map(|_| worker_process(&address, &token, &[])).collect();
    let resumed = workers[0].wait_for_line("rendezvous complete", Duration::from_secs(60)).unwrap();
    let mut last_exit = Instant::now();
    for worker in &mut workers {
        let (status, at) = worker.wait(Duration::from_secs(120));
        assert!(status.success(), "{}", worker.stderr());
        last_exit = at;
    }
    let (status, coordinator_exit) = coordinator.wait(Duration::from_secs(30));
    assert!(status.success(), "{}", coordinator.stderr());
    eprintln!(
        "MEASURED killed coordinator: workers gave up {:.1} s after the kill; training resumed {:.1} s after the \
         restart (from the checkpoint after step {committed}); committed steps lost: 0; the coordinator exited {:.2} s \
         after its last worker",
        detected.duration_since(killed).as_secs_f64(),
        resumed.duration_since(restarted).as_secs_f64(),
        coordinator_exit.saturating_duration_since(last_exit).as_secs_f64()
    );
    assert!(coordinator_exit.saturating_duration_since(last_exit) < Duration::from_secs(5));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("job-state.json")).unwrap()).unwrap();
    assert_eq!(state["generation"], 2, "{state}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("checkpoints/step-00000007/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["generation"], 2);
    let diff = max_diff(&model_tensors(dir.path(), "reference", 7), &model_tensors(dir.path(), "restarted", 7));
    assert!(diff == 0.0, "the resumed job differs from the undisturbed one by {diff}");
}

#[test]
fn a_worker_that_starts_slower_than_the_heartbeat_timeout_is_not_declared_dead() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let mut config = tiny_run("slow", 4, 2);
    config.job.as_mut().unwrap().heartbeat_timeout_secs = 1.0;
    let config = run(dir.path(), "slow", &config);
    let mut train = Logged::start(
        &["train", "--config", config.to_str().unwrap(), "--quiet"],
        &[("ROSETTA_FAULT_START_DELAY_SECS", "3")],
    );
    let (status, _) = train.wait(Duration::from_secs(120));
    let stderr = train.stderr();
    assert!(status.success() && !stderr.contains("starting generation 2"), "{stderr}");
    eprintln!("MEASURED slow start: a 3 s start-up delay under a 1 s heartbeat timeout, no restart");
}

#[test]
fn a_stuck_training_thread_ends_the_generation_and_the_run_recovers_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let mut steady = tiny_run("steady", 6, 2);
    steady.training.dropout = true;
    train_ok(&run(dir.path(), "steady", &steady), &[]);
    let mut config = tiny_run("stuck", 6, 2);
    config.training.dropout = true;
    config.job.as_mut().unwrap().step_timeout_secs = 3.0;
    let config = run(dir.path(), "stuck", &config);
    // Both ranks' training threads stop before step 3 of generation 1; their heartbeats go on.
    let mut train = Logged::start(
        &["train", "--config", config.to_str().unwrap(), "--quiet"],
        &[("ROSETTA_FAULT_HANG_AT_STEP", "3@1")],
    );
    let stuck =
        train.wait_for_line("the training thread stops here", Duration::from_secs(120)).expect("the fault fired");
    let restarted =
        train.wait_for_line("starting generation 2", Duration::from_secs(60)).expect("the generation ended");
    let (status, _) = train.wait(Duration::from_secs(120));
    let stderr = train.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("no step completed for more than 3s"), "{stderr}");
    eprintln!(
        "MEASURED stuck training thread: generation ended {:.1} s after the thread stopped (step timeout 3 s); \
         restarted from the checkpoint after step 1 (steps 2 redone, committed steps lost: 0)",
        restarted.duration_since(stuck).as_secs_f64()
    );
    let diff = max_diff(&model_tensors(dir.path(), "steady", 5), &model_tensors(dir.path(), "stuck", 5));
    assert!(diff == 0.0, "the recovered run differs by {diff}");
}

#[test]
fn resume_passes_over_a_damaged_checkpoint_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    train_ok(&run(dir.path(), "whole", &tiny_run("whole", 6, 1)), &[]);
    let config = run(dir.path(), "damaged", &tiny_run("damaged", 6, 1));
    train_ok(&config, &["--stop-after", "4"]);
    assert_eq!(latest(dir.path(), "damaged"), Some(3));
    let damaged = dir.path().join("runs/damaged/checkpoints/step-00000003/model.safetensors");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let stderr = train_ok(&config, &["--resume"]);
    assert!(
        stderr.contains("passing over a damaged checkpoint") && stderr.contains("step-00000003/model.safetensors"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "a log that is not a terminal must carry no colour codes:\n{stderr:?}");
    let diff = max_diff(&model_tensors(dir.path(), "whole", 5), &model_tensors(dir.path(), "damaged", 5));
    assert!(diff == 0.0, "resuming from the checkpoint before the damaged one changed the result by {diff}");
    eprintln!("MEASURED damaged checkpoint: resumed from step 1 instead of 3 (2 steps redone, result bit-exact)");
}

/// A tmpfs of `kib` KiB at `dir` (as root; `None` where mounting is not allowed).
fn small_tmpfs(dir: &Path, kib: u64) -> Option<()> {
    std::fs::create_dir_all(dir).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs", dir.to_str().unwrap()])
        .status()
        .ok()?;
    status.success().then_some(())
}

#[test]
fn a_full_disk_fails_the_job_clearly_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let runs = dir.path().join("runs");
    if small_tmpfs(&runs, 1800).is_none() {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let unmount = scopeguard(runs.clone());
    let mut config = tiny_run("full", 40, 1);
    config.job.as_mut().unwrap().keep_checkpoints = 100;
    let out = rosetta(&["train", "--config", run(dir.path(), "full", &config).to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the disk never filled:\n{stderr}");
    assert!(stderr.contains("No space left on device") || stderr.contains("os error 28"), "{stderr}");
    let run_dir = rosetta_common::RunDir::new(runs.join("full"));
    let newest = rosetta_coordinator::manifest::latest_verified(&run_dir).unwrap().expect("a checkpoint survived");
    assert_eq!(Some(newest.step), run_dir.latest_checkpoint().unwrap(), "latest must name a checkpoint that verifies");
    let leftovers: Vec<PathBuf> =
        walk(&runs).into_iter().filter(|p| p.to_string_lossy().contains(".rosetta-tmp.")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    eprintln!(
        "MEASURED full disk: failed at once with the OS error; newest committed checkpoint (step {}) verifies",
        newest.step
    );
    drop(unmount);
}

/// Unmounts the tmpfs when the test ends, however it ends.
fn scopeguard(dir: PathBuf) -> impl Drop {
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    Unmount(dir)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        }
        files.push(path);
    }
    files
}

#[test]
fn sigterm_stops_rosetta_train_and_every_worker_and_leaves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let config = run(dir.path(), "term", &tiny_run("term", 500, 2));
    let mut train = Logged::start(&["train", "--config", config.to_str().unwrap(), "--quiet"], &[]);
    wait_for_file(&dir.path().join("runs/term/checkpoints/latest"), Duration::from_secs(120));
    let children = std::process::Command::new("pgrep").args(["-P", &train.child.id().to_string()]).output().unwrap();
    let workers: Vec<i32> =
        String::from_utf8_lossy(&children.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let sent = Instant::now();
    train.signal(libc::SIGTERM);
    let (status, exited) = train.wait(Duration::from_secs(30));
    let stderr = train.stderr();
    assert!(!status.success() && stderr.contains("stopped by SIGTERM"), "{stderr}");
    for pid in workers {
        // SAFETY: kill(2) with signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "worker {pid} outlived rosetta train");
    }
    let run_dir = rosetta_common::RunDir::new(dir.path().join("runs/term"));
    let newest = rosetta_coordinator::manifest::latest_verified(&run_dir).unwrap().expect("a checkpoint");
    eprintln!(
        "MEASURED SIGTERM: rosetta train and both workers gone {:.2} s after the signal; newest checkpoint (step {}) verifies",
        exited.duration_since(sent).as_secs_f64(),
        newest.step
    );
}

#[test]
fn a_fresh_run_refuses_a_run_directory_with_checkpoints_and_overwrite_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let config = run(dir.path(), "again", &tiny_run("again", 2, 1));
    train_ok(&config, &[]);
    let out = rosetta(&["train", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--resume") && err.contains("--overwrite"), "{err}");
    let before = std::fs::read(dir.path().join("runs/again/checkpoints/step-00000001/model.safetensors")).unwrap();
    train_ok(&config, &["--overwrite"]);
    let after = std::fs::read(dir.path().join("runs/again/checkpoints/step-00000001/model.safetensors")).unwrap();
    assert_eq!(before, after, "the same config from the start gives the same checkpoint");
}

#[test]
fn failures_a_restart_would_meet_again_fail_the_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    // A model directory that is not a model: the worker cannot load it.
    let broken = dir.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{\"model_type\": \"bert\"}").unwrap();
    let mut config = tiny_run("broken", 4, 1);
    let model = config.model.as_mut().unwrap();
    (model.preset, model.tokenizer, model.path) = (None, None, Some(broken.clone()));
    (model.layers, model.hidden_size, model.heads, model.intermediate_size) = (None, None, None, None);
    let started = Instant::now();
    let out = rosetta(&["train", "--config", run(dir.path(), "broken", &config).to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("config.json") && !err.contains("starting generation"), "{err}");
    eprintln!("MEASURED broken model: the job failed in {:.1} s without a restart", started.elapsed().as_secs_f64());
    // A loss that is not finite stops the job with the step and the batch named.
    let mut config = tiny_run("diverged", 6, 1);
    config.training.optimizer.lr = 1e35;
    let out = rosetta(&["train", "--config", run(dir.path(), "diverged", &config).to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the loss of step") && err.contains("batch") && err.contains("diverged"),
        "{err}"
    );
    assert!(!err.contains("starting generation"), "{err}");
}

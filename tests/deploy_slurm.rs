//! `rosetta deploy slurm` on a real one-node Slurm (scripts/ci-services.sh starts it as root): a
//! 2-worker CPU run of the embedded default model is submitted, told to stop at its next
//! checkpoint mid-run with USR1 (what `--signal=B:USR1@N` sends before a time limit), requeues
//! itself, resumes by itself, and ends with exactly the parameters of an undisturbed run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{have_command, max_diff, model_tensors, rosetta, service_available, synth_small, write_config};
use rosetta_deploy::run_config::RawRunConfig;
use rosetta_deploy::section::{DeploySection, SlurmSection};

/// The embedded default (configs/default.yaml) over this test's data, shortened.
fn default_run(run: &str) -> RawRunConfig {
    let text = include_str!("../configs/default.yaml").replace("../runs/demo/", "");
    let mut config: RawRunConfig = serde_saphyr::from_str(&text).unwrap();
    config.data.benchmarks.clear();
    config.evaluation = None;
    config.training.warmup_steps = 4;
    let job = config.job.as_mut().unwrap();
    (job.steps, job.checkpoint_every, job.run_dir) = (24, 4, format!("runs/{run}").into());
    config
}

fn scontrol_field(job: &str, field: &str) -> String {
    let out = std::process::Command::new("scontrol").args(["show", "job", job]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")).map(str::to_string))
        .unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_slurm_job_stopped_by_its_time_limit_signal_requeues_resumes_and_matches_an_undisturbed_run() {
    let available = have_command("sbatch")
        && std::process::Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
            let state = String::from_utf8_lossy(&o.stdout);
            state.contains("idle") || state.contains("mixed") || state.contains("alloc")
        });
    if !service_available("a running Slurm (sbatch, sinfo)", available) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 60, 20, 400);
    // The undisturbed reference: the same 2 CPU workers, one thread each, on this machine.
    let reference = write_config(dir.path(), "reference", &default_run("reference"));
    let out = rosetta(&["train", "--config", reference.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut config = default_run("slurm");
    config.deploy = Some(DeploySection {
        binary: Some(env!("CARGO_BIN_EXE_rosetta").into()),
        port: Some(common::free_port()),
        metrics_port: Some(common::free_port()),
        slurm: Some(SlurmSection {
            nodes: 1,
            workers_per_node: 2,
            cpus_per_worker: 1,
            signal_before_secs: 60,
            ..SlurmSection::default()
        }),
        ..DeploySection::default()
    });
    let config = write_config(dir.path(), "slurm", &config);
    let run_dir = dir.path().join("runs/slurm");
    let dry = rosetta(&["deploy", "slurm", "--config", config.to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let script = std::fs::read_to_string(run_dir.join("deploy/slurm/rosetta.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --requeue") && script.contains("#SBATCH --signal=B:USR1@60"), "{script}");
    assert!(
        !script.contains(&std::fs::read_to_string(run_dir.join("deploy/token")).unwrap()),
        "the token is in the script"
    );
    assert!(!Path::new(&run_dir.join("deploy/slurm/job-id")).exists(), "a dry run submitted");

    let submitted = rosetta(&["deploy", "slurm", "--config", config.to_str().unwrap()]);
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    let job = std::fs::read_to_string(run_dir.join("deploy/slurm/job-id")).unwrap();
    let started = Instant::now();
    wait_until("the first checkpoint", Duration::from_secs(300), || run_dir.join("checkpoints/latest").exists());
    let signalled = Instant::now();
    let status = std::process::Command::new("scancel").args(["--signal=USR1", "--batch", &job]).status().unwrap();
    assert!(status.success());
    // It stops at its next checkpoint and requeues itself; Slurm holds a requeued job ~2 minutes.
    wait_until("the requeue", Duration::from_secs(120), || {
        scontrol_field(&job, "Restarts") == "1" && scontrol_field(&job, "JobState") == "PENDING"
    });
    let requeued = Instant::now();
    let stopped_at = rosetta_common::RunDir::new(&run_dir).latest_checkpoint().unwrap().unwrap();
    assert!(stopped_at < 23, "the job ran to its end before stopping (step {stopped_at})");
    // Skip the hold (a second try in case Slurm was still settling the requeue). Not at once:
    // a requeued job started within a second of its requeue can find its launch credential
    // still revoked ("Killing non-startable batch job: Job credential revoked", slurmctld),
    // and then ends FAILED; Slurm's own hold keeps real requeues clear of that.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..2 {
        let status = std::process::Command::new("scontrol")
            .args(["update", &format!("jobid={job}"), "StartTime=now"])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_secs(5));
        if scontrol_field(&job, "JobState") != "PENDING" {
            break;
        }
    }
    wait_until("the job's end", Duration::from_secs(600), || {
        let state = scontrol_field(&job, "JobState");
        assert!(!["FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"].contains(&state.as_str()), "the job ended {state}");
        state == "COMPLETED"
    });
    let log = std::fs::read_to_string(run_dir.join(format!("deploy/slurm/slurm-{job}.log"))).unwrap();
    assert!(log.contains("requeueing") && log.contains("resuming after the checkpoint"), "{log}");
    let status_line = rosetta(&["deploy", "slurm", "--config", config.to_str().unwrap(), "--status"]);
    assert!(String::from_utf8_lossy(&status_line.stdout).contains("COMPLETED"));
    eprintln!(
        "MEASURED slurm: first checkpoint {:.1} s after submission; stopped at step {stopped_at} and requeued {:.1} s \
         after USR1; resumed and finished {:.1} s later (after the forced start)",
        signalled.duration_since(started).as_secs_f64(),
        requeued.duration_since(signalled).as_secs_f64(),
        requeued.elapsed().as_secs_f64()
    );
    let diff = max_diff(&model_tensors(dir.path(), "reference", 23), &model_tensors(dir.path(), "slurm", 23));
    assert!(diff == 0.0, "the requeued Slurm run differs from the undisturbed one by {diff}");
}

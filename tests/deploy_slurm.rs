//! `rosetta deploy slurm` on a real one-node Slurm (scripts/ci-services.sh starts it as root): a
//! 2-worker CPU run of the embedded default model is submitted, told to stop at its next
//! checkpoint mid-run with USR1 (what `--signal=B:USR1@N` sends before a time limit), requeues
//! itself, resumes by itself, and ends with exactly the parameters of an undisturbed run; and a
//! job with `evaluation.every` writes the same evaluation reports and `best.json` as the local
//! launcher on the same config (its coordinator evaluates, in the batch step).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{max_diff, model_tensors, rosetta, synth_small, write_config};
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
    if !common::slurm_available() {
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

/// The reports of every evaluated step of `run_dir`, by step and benchmark: the metrics part of
/// each `report.json` (what a model scored, not when or where it was computed).
fn evaluations(run_dir: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut reports = std::collections::BTreeMap::new();
    for step in std::fs::read_dir(run_dir.join("eval")).unwrap().flatten() {
        for benchmark in std::fs::read_dir(step.path()).into_iter().flatten().flatten() {
            let path = benchmark.path().join("report.json");
            if let Ok(bytes) = std::fs::read(&path) {
                let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let key = format!("{}/{}", step.file_name().to_string_lossy(), benchmark.file_name().to_string_lossy());
                reports.insert(key, serde_json::json!({"lareqa": report["lareqa"], "qrels": report["qrels"]}));
            }
        }
    }
    reports
}

#[test]
fn a_slurm_job_evaluates_its_checkpoints_as_the_local_launcher_does() {
    if !common::slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 60, 20, 400);
    let evaluated = |run: &str| {
        let mut config = common::tiny_run(run, 8, 2);
        config.data.benchmarks = vec!["data/benchmark".into()];
        config.evaluation = Some(rosetta_eval::config::EvaluationConfig {
            every: 4,
            batch_size: 16,
            threads: Some(1),
            select_best: Some("multilingual_map".into()),
            ..Default::default()
        });
        config
    };
    let local = write_config(dir.path(), "local", &evaluated("local"));
    let out = rosetta(&["train", "--config", local.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut config = evaluated("slurm-eval");
    config.deploy = Some(DeploySection {
        binary: Some(env!("CARGO_BIN_EXE_rosetta").into()),
        slurm: Some(SlurmSection { nodes: 1, workers_per_node: 2, cpus_per_worker: 1, ..SlurmSection::default() }),
        ..DeploySection::default()
    });
    let config = write_config(dir.path(), "slurm-eval", &config);
    let run_dir = dir.path().join("runs/slurm-eval");
    let submitted = rosetta(&["deploy", "slurm", "--config", config.to_str().unwrap()]);
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    let script = std::fs::read_to_string(run_dir.join("deploy/slurm/rosetta.sbatch")).unwrap();
    // srun is given the CPUs (it no longer inherits them), the coordinator takes a free port,
    // the workers find it through coordinator.json, and everything speaks TLS.
    let srun = script.lines().find(|l| l.starts_with("srun ")).unwrap();
    assert!(srun.contains("--cpus-per-task=1") && srun.contains("--ntasks=2"), "{srun}");
    for expected in ["--listen 0.0.0.0:0", "--auto-resume", "--coordinator-file", "--tls-cert", "--tls-ca"] {
        assert!(script.contains(expected), "{expected:?} missing from\n{script}");
    }
    let job = std::fs::read_to_string(run_dir.join("deploy/slurm/job-id")).unwrap();
    wait_until("the job's end", Duration::from_secs(600), || {
        let state = scontrol_field(&job, "JobState");
        assert!(!["FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"].contains(&state.as_str()), "the job ended {state}");
        state == "COMPLETED"
    });
    let log = std::fs::read_to_string(run_dir.join(format!("deploy/slurm/slurm-{job}.log"))).unwrap();
    let local_reports = evaluations(&dir.path().join("runs/local"));
    let slurm_reports = evaluations(&run_dir);
    let steps: Vec<&String> = slurm_reports.keys().collect();
    assert_eq!(steps, ["step-00000003/synth-lareqa", "step-00000007/synth-lareqa"], "{log}");
    assert_eq!(slurm_reports, local_reports, "the Slurm job's evaluations differ from the local run's");
    let best = |run: &str| -> serde_json::Value {
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("runs/{run}/eval/best.json"))).unwrap())
                .unwrap();
        serde_json::json!({"metric": value["metric"], "value": value["value"], "step": value["step"]})
    };
    assert_eq!(best("slurm-eval"), best("local"));
    for key in slurm_reports.keys() {
        let report = rosetta_eval::output::read_report(&run_dir.join("eval").join(key)).unwrap();
        eprintln!(
            "MEASURED slurm evaluation {key} (= the local run's): {}",
            rosetta_eval::render::summary_line(&report)
        );
    }
    eprintln!("MEASURED slurm best.json {} (= the local run's)", best("slurm-eval"));
}

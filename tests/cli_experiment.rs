//! `rosetta experiment` end to end on a tiny synthetic grid: the whole study runs, a SIGKILL
//! of the experiment in the middle of a cell loses nothing (the next invocation skips the
//! finished cells untouched and resumes the interrupted one), the report rebuilds from the
//! directory alone, bad experiment files are refused naming the field, and the report page
//! loads in headless Chromium with real tables and pictures; with `launch: slurm` every cell
//! trains as a job of a real one-node Slurm.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{rosetta, tiny_run, write_config};
use rosetta_common::RunDir;
use rosetta_deploy::section::{DeploySection, SlurmSection};

fn synth(dir: &Path) {
    let out = rosetta(&[
        "data",
        "synth",
        "--out",
        dir.join("data").to_str().unwrap(),
        "--train-people",
        "30",
        "--mono-people",
        "0",
        "--benchmark-people",
        "4",
        "--ood-people",
        "3",
        "--vocab-size",
        "400",
    ]);
    assert!(out.status.success(), "data synth failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 2 × 2 grid (x-y, hybrid × seeds 1, 2) of `steps`-step runs over the tiny base config.
fn experiment(dir: &Path, steps: u64) -> std::path::PathBuf {
    let mut base = tiny_run("unused", steps, 1);
    base.job.as_mut().unwrap().checkpoint_every = 2;
    write_config(dir, "base", &base);
    let path = dir.join("experiment.yaml");
    std::fs::write(
        &path,
        "version: 1\nbase: base.yaml\nout: study\nstrategies: [x-y, hybrid]\nalphas: [0.5]\nseeds: [1, 2]\n\
         benchmarks:\n  - {path: data/benchmark, domain: in}\n  - {path: data/benchmark-ood, domain: out}\n\
         significance: {resamples: 200}\n",
    )
    .unwrap();
    path
}

fn run_experiment(config: &Path) -> String {
    let out = rosetta(&["experiment", "--config", config.to_str().unwrap(), "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "experiment failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn a_killed_experiment_resumes_without_redoing_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let config = experiment(dir.path(), 40);
    let study = dir.path().join("study");
    let first = study.join("runs/x-y.seed-1");
    let second = study.join("runs/x-y.seed-2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["experiment", "--config", config.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no clean-up) once the second cell has committed a checkpoint.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let committed = RunDir::new(second.join("run")).committed_steps().unwrap_or_default();
        if !committed.is_empty() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the experiment ended before the second cell checkpointed");
        assert!(Instant::now() < deadline, "no checkpoint of the second cell within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(first.join("cell.json").is_file(), "the first cell had finished");
    assert!(!second.join("cell.json").exists(), "the second cell was killed before it finished");
    let record = std::fs::read(first.join("cell.json")).unwrap();
    let report = std::fs::read(first.join("eval/synth-lareqa/report.json")).unwrap();
    // The run's own processes die with it (parent-death signal), so a resume finds no stale run.
    std::thread::sleep(Duration::from_millis(500));

    let stdout = run_experiment(&config);
    assert!(stdout.contains("x-y.seed-1: finished earlier, skipped"), "{stdout}");
    assert!(stdout.contains("x-y.seed-2: training resuming after step"), "{stdout}");
    assert!(stdout.contains("hybrid-a0.5.seed-2: training from the start"), "{stdout}");
    assert_eq!(std::fs::read(first.join("cell.json")).unwrap(), record, "a finished cell was redone");
    assert_eq!(std::fs::read(first.join("eval/synth-lareqa/report.json")).unwrap(), report);
    let resumed: serde_json::Value = serde_json::from_slice(&std::fs::read(second.join("cell.json")).unwrap()).unwrap();
    assert_eq!(resumed["step"], 39, "{resumed}");

    // A third invocation has nothing left to do; the report rebuilds from the directory alone.
    let stdout = run_experiment(&config);
    assert!(stdout.contains("0 cells run now, 5 finished earlier"), "{stdout}");
    std::fs::remove_file(study.join("report.md")).unwrap();
    let out = rosetta(&["experiment", "report", study.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let markdown = std::fs::read_to_string(study.join("report.md")).unwrap();
    for expected in ["## Table 1: mAP", "## Table 2: language bias", "| (a) x-y [2 seeds] |", "zero-shot", "synth-ood"]
    {
        assert!(markdown.contains(expected), "{expected:?} missing from report.md:\n{markdown}");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(study.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["finished"].as_array().unwrap().len(), 5, "{}", json["finished"]);
    assert!(!json["comparisons"].as_array().unwrap().is_empty());
    check_page_in_chromium(&study.join("report.html"));
}

/// Loads the page in headless Chromium and finds its tables and pictures in the DOM it built.
fn check_page_in_chromium(page: &Path) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(chromium) = chromium else {
        assert!(
            std::env::var("ROSETTA_REQUIRE_SERVICES").is_err(),
            "chromium is required (scripts/ci-services.sh installs it)"
        );
        eprintln!("skipping the Chromium check: no chromium on PATH");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && dom.contains("</html>"), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let tables = dom.matches("<table").count();
    let pictures = dom.matches("<svg").count();
    assert!(tables >= 5, "{tables} tables in the page Chromium built");
    assert!(pictures >= 6, "{pictures} pictures in the page Chromium built");
    assert!(dom.contains("<th>strategy</th>") && dom.contains("Table 1a"), "table headers missing");
    assert!(!dom.contains("|---|"), "Markdown table source leaked into the page");
}

#[test]
fn bad_experiment_files_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let config = experiment(dir.path(), 4);
    let text = std::fs::read_to_string(&config).unwrap().replace("[x-y, hybrid]", "[x-y, hybird]");
    std::fs::write(&config, text.replace("seeds: [1, 2]", "seeds: [1, 1]")).unwrap();
    let out = rosetta(&["experiment", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("seeds[1]: 1 is listed twice"), "{stderr}");
    let text = std::fs::read_to_string(&config).unwrap().replace("seeds: [1, 1]", "seeds: [1]");
    std::fs::write(&config, text).unwrap();
    let out = rosetta(&["experiment", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("strategies[1]: unknown strategy \"hybird\""), "{stderr}");
    assert!(!dir.path().join("study").exists(), "nothing is written before every cell checks out");
    let out = rosetta(&["experiment", "report", dir.path().join("data").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an experiment directory"));
}

#[test]
fn cells_train_as_slurm_jobs_two_at_a_time_and_select_their_best_checkpoint() {
    if !common::slurm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let mut base = tiny_run("unused", 6, 1);
    base.job.as_mut().unwrap().checkpoint_every = 3;
    // No ports given: each cell's Slurm job takes free ones, so two cells on one node never collide.
    base.deploy = Some(DeploySection {
        binary: Some(env!("CARGO_BIN_EXE_rosetta").into()),
        slurm: Some(SlurmSection { nodes: 1, workers_per_node: 1, cpus_per_worker: 1, ..SlurmSection::default() }),
        ..DeploySection::default()
    });
    write_config(dir.path(), "base", &base);
    let config = dir.path().join("experiment.yaml");
    std::fs::write(
        &config,
        "version: 1\nbase: base.yaml\nout: study\nstrategies: [x-y]\nseeds: [1, 2]\nzero_shot: false\n\
         benchmarks: [{path: data/benchmark, domain: in}]\nlaunch: slurm\nlaunch_timeout_hours: 0.1\n\
         selection: {checkpoint: best, benchmark: data/benchmark-ood, metric: multilingual_map}\n\
         significance: {resamples: 200}\n",
    )
    .unwrap();
    let out = rosetta(&["experiment", "--config", config.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("submitted to Slurm").count(), 2, "{stdout}");
    for seed in [1, 2] {
        let cell = dir.path().join(format!("study/runs/x-y.seed-{seed}"));
        let job = std::fs::read_to_string(cell.join("run/deploy/slurm/job-id")).expect("the cell went through Slurm");
        let state = Command::new("scontrol").args(["show", "job", job.trim()]).output().unwrap();
        let state = String::from_utf8_lossy(&state.stdout);
        assert!(state.contains("JobState=COMPLETED"), "job {job}: {state}");
        // The coordinator of the Slurm job evaluated every checkpoint on the validation
        // benchmark and kept the best; the cell evaluated that one.
        let best: serde_json::Value = serde_json::from_slice(
            &std::fs::read(cell.join("run/eval/best.json")).expect("the Slurm job wrote best.json"),
        )
        .unwrap();
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cell.join("cell.json")).unwrap()).unwrap();
        assert_eq!(record["step"], best["step"], "{best}");
        assert!([2, 5].contains(&best["step"].as_u64().unwrap()), "{best}");
        for step in [2, 5] {
            assert!(cell.join(format!("run/eval/step-{step:08}/synth-ood/report.json")).is_file(), "step {step}");
        }
    }
    assert!(dir.path().join("study/report.html").is_file());
}

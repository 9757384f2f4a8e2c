//! End-to-end tests of evaluation: `rosetta train` with an `evaluation:` section, `rosetta eval`
//! with 1 and 3 worker processes (identical numbers), reports, TREC files, saved embeddings
//! that reproduce the numbers, `rosetta report compare`, and bad inputs.

mod common;

use std::path::Path;

use common::{rosetta, synth_small};
use rosetta_datasets::benchmark::Benchmark;
use rosetta_datasets::embeddings::read_embeddings;
use rosetta_eval::config::EvaluationConfig;
use rosetta_eval::rank::rank_sharded;
use rosetta_eval::report::EvalReport;
use rosetta_eval::task::EvalTask;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report(dir: &Path) -> EvalReport {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn train_evaluates_and_eval_is_exact_on_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth_small(&root.join("data"), 40, 0, 400);
    let mut typed = common::tiny_run("r", 4, 1);
    typed.data.benchmarks = vec!["data/benchmark".into()];
    typed.training = Default::default();
    typed.model.as_mut().unwrap().layers = Some(1);
    typed.evaluation = Some(EvaluationConfig {
        every: 2,
        batch_size: 16,
        select_best: Some("multilingual_map".into()),
        trec_depth: 5,
        ..EvaluationConfig::default()
    });
    let config = common::write_config(root, "run", &typed);
    // A selection metric that does not exist is refused before anything starts.
    let mut wrong = typed.clone();
    wrong.evaluation.as_mut().unwrap().select_best = Some("accuracy".into());
    let bad = common::write_config(root, "bad", &wrong);
    let refused = rosetta(&["train", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("evaluation.select_best: unknown metric \"accuracy\""), "{err}");
    let out = ok(rosetta(&["train", "--config", config.to_str().unwrap(), "--quiet"]));
    assert!(out.contains("evaluation reports in"), "{out}");
    let run = root.join("runs/r");
    assert_eq!(std::fs::read_to_string(run.join("eval/latest")).unwrap(), "step-00000003");
    let best: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("eval/best.json")).unwrap()).unwrap();
    assert_eq!(best["metric"], "multilingual_map");
    let trained = report(&run.join("eval/step-00000003/synth-lareqa"));
    assert_eq!(trained.step, Some(3));
    for name in ["report.md", "report.html", "heatmap.svg", "bias.svg", "trec/multilingual.run", "trec/qrels.txt"] {
        assert!(run.join("eval/step-00000003/synth-lareqa").join(name).is_file(), "{name}");
    }

    // Offline evaluation of the run's latest checkpoint, with 1 and 3 workers: the same numbers.
    let bench = root.join("data/benchmark");
    let eval = |workers: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["eval", "--model", run.to_str().unwrap(), "--benchmark", bench.to_str().unwrap()];
        // Batches of 16: with 3 workers every query and corpus shard is non-empty.
        args.extend(["--workers", workers, "--out", out, "--quiet", "--threads", "1", "--batch-size", "16"]);
        args.extend_from_slice(extra);
        let out_dir = root.join(out);
        let printed = ok(std::process::Command::new(env!("CARGO_BIN_EXE_rosetta"))
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap());
        assert!(printed.trim().ends_with("synth-lareqa"), "{printed}");
        out_dir.join("synth-lareqa")
    };
    let one = eval("1", "one", &["--save-embeddings", "emb", "--trec-depth", "20"]);
    let three = eval("3", "three", &["--trec-depth", "0"]);
    let (a, b) = (report(&one), report(&three));
    assert_eq!(a.lareqa, b.lareqa, "1 and 3 workers disagree");
    assert_eq!(a.lareqa, trained.lareqa, "offline and in-training evaluation of one checkpoint disagree");
    let lareqa = a.lareqa.as_ref().unwrap();
    assert_eq!(lareqa.pairs.len(), a.languages.len() * a.languages.len());
    assert!(lareqa.monolingual.map.unwrap() > 0.0 && lareqa.rank_distance.is_some());
    assert!(one.join("trec/pairs").read_dir().unwrap().count() == a.languages.len() * a.languages.len());
    assert!(!three.join("trec").exists());

    // bf16 encoding (the default on CUDA) runs on CPU too, close to fp32.
    let bf16 = eval("1", "bf16", &["--trec-depth", "0", "--precision", "bf16"]);
    let (fp32, half) = (a.lareqa.as_ref().unwrap(), report(&bf16).lareqa.unwrap());
    let gap = (fp32.monolingual.map.unwrap() - half.monolingual.map.unwrap()).abs();
    assert!(gap < 0.05, "bf16 monolingual mAP {:?} vs fp32 {:?}", half.monolingual.map, fp32.monolingual.map);

    // The saved embeddings reproduce every number.
    let benchmark = Benchmark::load(&bench).unwrap();
    let task = EvalTask::from_benchmark(&benchmark).unwrap();
    let queries = read_embeddings(&root.join("emb/synth-lareqa/queries.parquet")).unwrap();
    let corpus = read_embeddings(&root.join("emb/synth-lareqa/corpus-00000-of-00001.parquet")).unwrap();
    assert_eq!(queries.ids, task.query_ids);
    assert_eq!(corpus.ids, task.doc_ids);
    let ranking = rank_sharded(&task, &queries.values, &corpus.values, queries.dim, 2, 0).unwrap();
    assert_eq!(EvalReport::compute(&task, &ranking, "x", None).lareqa, a.lareqa);

    // Without --out, a checkpoint's reports go to RUN/eval/step-N (not into the checkpoint, which may be pruned).
    let checkpoint = run.join("checkpoints/step-00000001");
    let printed = ok(rosetta(&[
        "eval",
        "--model",
        checkpoint.to_str().unwrap(),
        "--benchmark",
        bench.to_str().unwrap(),
        "--quiet",
        "--trec-depth",
        "0",
        "--batch-size",
        "16",
    ]));
    assert!(printed.trim().ends_with("runs/r/eval/step-00000001/synth-lareqa"), "{printed}");
    assert!(!checkpoint.join("eval").exists());

    // That evaluation kept the tokenised texts in RUN/eval/token-cache; evaluating again reads
    // them (no file is rewritten), and a damaged file is tokenised again: the same report.
    let cache = run.join("eval/token-cache");
    let files = |dir: &Path| {
        let mut files: Vec<(std::path::PathBuf, std::time::SystemTime)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::metadata(&p).unwrap().modified().unwrap()))
            .collect();
        files.sort();
        files
    };
    let cached = files(&cache);
    assert!(
        cached.len() >= 2 && cached.iter().all(|(p, _)| p.extension().is_some_and(|e| e == "tokens")),
        "{cached:?}"
    );
    let first = report(&run.join("eval/step-00000001/synth-lareqa"));
    let again = |out: &str| {
        let args = ["--out", out, "--quiet", "--trec-depth", "0", "--batch-size", "16"];
        let mut all = vec!["eval", "--model", checkpoint.to_str().unwrap(), "--benchmark", bench.to_str().unwrap()];
        all.extend(args);
        let done = rosetta(&all);
        ok(done.clone());
        (report(&Path::new(out).join("synth-lareqa")), String::from_utf8_lossy(&done.stderr).into_owned())
    };
    let (cached_report, _) = again(root.join("cached").to_str().unwrap());
    assert_eq!(cached_report.lareqa, first.lareqa);
    assert_eq!(files(&cache), cached, "a cached window was tokenised again");
    std::fs::write(&cached[0].0, b"garbage").unwrap();
    let (repaired, warnings) = again(root.join("repaired").to_str().unwrap());
    assert_eq!(repaired.lareqa, first.lareqa);
    assert!(warnings.contains("damaged token cache file"), "{warnings}");
    assert_ne!(std::fs::read(&cached[0].0).unwrap(), b"garbage", "the damaged file was not replaced");

    // What a library prints on stdout goes to the log, not into the pipe that the embeddings
    // come back on: oneDNN's verbose mode writes a line per GELU to stdout.
    let verbose = std::process::Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["eval", "--model", checkpoint.to_str().unwrap(), "--benchmark", bench.to_str().unwrap()])
        .args(["--out", root.join("verbose").to_str().unwrap(), "--quiet", "--trec-depth", "0", "--batch-size", "16"])
        .env("ONEDNN_VERBOSE", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&verbose.stderr).into_owned();
    ok(verbose);
    assert!(log.contains("onednn_verbose,"), "oneDNN printed nothing, so this checks nothing: {log}");
    assert_eq!(report(&root.join("verbose/synth-lareqa")).lareqa, first.lareqa);

    // The exported sentence-transformers directory gives the checkpoint's numbers.
    let exported = root.join("exported");
    ok(rosetta(&["export", "--model", run.to_str().unwrap(), "--out", exported.to_str().unwrap()]));
    assert!(exported.join("modules.json").is_file());
    let printed = ok(rosetta(&[
        "eval",
        "--model",
        exported.to_str().unwrap(),
        "--benchmark",
        bench.to_str().unwrap(),
        "--out",
        root.join("st").to_str().unwrap(),
        "--quiet",
        "--trec-depth",
        "0",
        "--batch-size",
        "16",
    ]));
    assert!(printed.contains("synth-lareqa"), "{printed}");
    assert_eq!(report(&root.join("st/synth-lareqa")).lareqa, a.lareqa, "exported model and checkpoint disagree");

    // A coordinator (of another job, waiting for workers) receives the report and serves it to Prometheus.
    let mut other = typed.clone();
    other.job.as_mut().unwrap().steps = 100;
    other.job.as_mut().unwrap().run_dir = "runs/w".into();
    let waiting = common::write_config(root, "waiting", &other);
    let coordinator = common::InProcessCoordinator::start(&waiting, "tok", None);
    let (grpc, metrics) = (format!("http://{}", coordinator.grpc()), coordinator.metrics());
    // The standard health service answers without a token.
    let serving = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let channel = tonic::transport::Channel::from_shared(grpc.clone()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: "rosetta.v1.Coordinator".into() };
        health.check(request).await.unwrap().into_inner().status
    });
    assert_eq!(serving, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let sent = std::process::Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["eval", "--model", exported.to_str().unwrap(), "--benchmark", bench.to_str().unwrap()])
        .args(["--out", root.join("pushed").to_str().unwrap(), "--quiet", "--trec-depth", "0", "--batch-size", "16"])
        .args(["--coordinator", &grpc])
        .env("ROSETTA_TOKEN", "tok")
        .output()
        .unwrap();
    let scraped = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(metrics).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    };
    drop(coordinator);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(
        scraped.contains("rosetta_eval_map{run=\"w\",benchmark=\"synth-lareqa\",setting=\"monolingual\",query_lang=\"qaa\",corpus_lang=\"qaa\"}"),
        "{scraped}"
    );
    assert!(scraped.contains("rosetta_eval_rank_distance_macro{run=\"w\",benchmark=\"synth-lareqa\"}"), "{scraped}");

    // Side by side.
    let table = ok(rosetta(&[
        "report",
        "compare",
        one.to_str().unwrap(),
        run.to_str().unwrap(),
        "--label",
        "offline",
        "--label",
        "in-training",
    ]));
    assert!(table.contains("Table 1") && table.contains("Table 2") && table.contains("| offline |"), "{table}");
    assert!(table.contains("synth-lareqa mono"), "{table}");
}

#[test]
fn eval_bad_inputs_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    std::fs::create_dir_all(&missing).unwrap();
    let out = rosetta(&["eval", "--model", missing.to_str().unwrap(), "--benchmark", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a model") && err.contains("nothing"), "{err}");
    let out = rosetta(&["report", "compare", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no report.json"), "{err}");
}

#[test]
fn retention_keeps_every_checkpoint_the_evaluation_still_wants() {
    // Checkpoints after every second step, one kept, each one due for evaluation: training
    // outruns the evaluations, and none of them may be pruned before its turn.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth_small(&root.join("data"), 40, 0, 400);
    let mut typed = common::tiny_run("kept", 12, 1);
    typed.data.benchmarks = vec!["data/benchmark".into()];
    typed.job.as_mut().unwrap().keep_checkpoints = 1;
    typed.evaluation =
        Some(EvaluationConfig { every: 2, batch_size: 16, threads: Some(1), ..EvaluationConfig::default() });
    let config = common::write_config(root, "kept", &typed);
    let out = ok(rosetta(&["train", "--config", config.to_str().unwrap(), "--quiet"]));
    assert!(out.contains("evaluation reports in"), "{out}");
    for step in [1, 3, 5, 7, 9, 11] {
        let report = root.join(format!("runs/kept/eval/step-{step:08}/synth-lareqa/report.json"));
        assert!(report.is_file(), "the checkpoint after step {step} was not evaluated");
    }
}

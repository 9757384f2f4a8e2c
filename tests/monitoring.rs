//! Monitoring for real: `promtool` checks the Prometheus configuration and the alert rules and
//! runs the rules' unit tests; then Debian's `prometheus` scrapes a real local run (with
//! evaluations during training) and every expression of the Grafana dashboard and of the alert
//! rules is queried over the HTTP API: each must return data, and every rule must evaluate
//! without error. Grafana itself cannot be installed here; its dashboard is checked this way.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Logged, free_port, have_command, service_available, synth_small, tiny_run, wait_for_file, write_config};

fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(deploy_file("prometheus")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_accepts_the_configuration_and_the_alerts_pass_their_unit_tests() {
    if !service_available("promtool (Debian's prometheus package)", have_command("promtool")) {
        return;
    }
    assert!(promtool(&["check", "config", "prometheus.yml"]).contains("SUCCESS: 8 rules found"));
    promtool(&["check", "rules", "alerts.yml"]);
    assert!(promtool(&["test", "rules", "alerts_test.yml"]).contains("SUCCESS"));
    // The Kubernetes scrape job is YAML of the same shape (Debian's build has no Kubernetes discovery).
    let k8s: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(deploy_file("prometheus/kubernetes-scrape.yml")).unwrap())
            .unwrap();
    assert_eq!(k8s["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"], "pod");
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GET on Prometheus's HTTP API; the JSON answer.
fn api(port: u16, path_and_query: &str) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    // Chunked or not: the JSON object is between the first `{` and the last `}`.
    let (start, end) = (body.find('{').unwrap_or(0), body.rfind('}').map_or(0, |e| e + 1));
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {response}"))
}

fn query(port: u16, expr: &str, at: f64) -> serde_json::Value {
    api(port, &format!("/api/v1/query?query={}&time={at}", percent_encode(expr)))
}

/// The two sides of an alert expression's top-level comparison (the left side alone when there is none).
fn sides(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut depth = 0i32;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                let width = if bytes.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                return vec![expr[..i].trim().to_string(), expr[i + width..].trim().to_string()];
            }
            _ => {}
        }
    }
    vec![expr.trim().to_string()]
}

#[test]
fn prometheus_scrapes_a_real_run_and_every_dashboard_and_alert_expression_returns_data() {
    if !service_available("prometheus (Debian's package)", have_command("prometheus")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 60, 20, 400);
    let mut config = tiny_run("watched", 400, 2);
    config.data.benchmarks = vec!["data/benchmark".into()];
    config.evaluation = Some(rosetta_eval::config::EvaluationConfig { every: 4, batch_size: 16, ..Default::default() });
    let config = write_config(dir.path(), "watched", &config);
    let train = Logged::start(&["train", "--config", config.to_str().unwrap(), "--quiet"], &[]);
    let addresses = dir.path().join("runs/watched/coordinator.json");
    wait_for_file(&addresses, Duration::from_secs(120));
    let addresses: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&addresses).unwrap()).unwrap();
    let metrics = addresses["metrics"].as_str().unwrap().to_string();

    let port = free_port();
    let prometheus_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\n\
             scrape_configs:\n  - job_name: rosetta\n    static_configs: [{{targets: [\"{metrics}\"]}}]\n",
            deploy_file("prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", prometheus_config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stop = scopeguard(&mut prometheus);
    // Wait until an evaluation has been scraped, and rates have a few samples.
    let deadline = Instant::now() + Duration::from_secs(240);
    let ready = loop {
        assert!(Instant::now() < deadline, "no evaluation scraped; rosetta train said:\n{}", train.stderr());
        std::thread::sleep(Duration::from_secs(1));
        let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
        drop(stream);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let evaluated = query(port, "rosetta_eval_step", now);
        let steps = query(port, "rosetta_step", now);
        let results = |v: &serde_json::Value| v["data"]["result"].as_array().map_or(0, Vec::len);
        let step = steps["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if results(&evaluated) > 0 && step >= 12.0 {
            std::thread::sleep(Duration::from_secs(3));
            break now + 3.0;
        }
    };
    // Every series carries the run label.
    let labelled = query(port, "rosetta_step{run=\"watched\"}", ready);
    assert_eq!(labelled["data"]["result"].as_array().map(Vec::len), Some(1), "{labelled}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_file("grafana/rosetta-dashboard.json")).unwrap()).unwrap();
    let mut expressions: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().replace("$run", ".*").replace("$__rate_interval", "15s");
            expressions.push((format!("panel {:?}", panel["title"].as_str().unwrap_or_default()), expr));
        }
    }
    assert!(expressions.len() >= 20, "{}", expressions.len());
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).unwrap()).unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        for side in sides(rule["expr"].as_str().unwrap()) {
            expressions.push((format!("alert {}", rule["alert"].as_str().unwrap()), side));
        }
    }
    let mut empty = Vec::new();
    for (origin, expr) in &expressions {
        let answer = query(port, expr, ready);
        assert_eq!(answer["status"], "success", "{origin}: {expr}: {answer}");
        let data = &answer["data"];
        let has_data = data["resultType"] == "scalar" || data["result"].as_array().is_some_and(|r| !r.is_empty());
        if !has_data {
            empty.push(format!("{origin}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "expressions without data:\n{}", empty.join("\n"));
    // Every alert rule evaluates on the live series without error.
    let loaded = api(port, "/api/v1/rules");
    let rules = loaded["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 8);
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    eprintln!("MEASURED monitoring: {} expressions queried against a live run, all with data", expressions.len());
    drop(stop);
    drop(train);
}

fn scopeguard(child: &mut std::process::Child) -> impl Drop + '_ {
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}

//! `rosetta deploy kubernetes --dry-run`: the manifests it writes validate against the
//! Kubernetes 1.37 schemas (the PyPI `kubernetes-validate` of the project's venv, strict), and
//! their structure is what a cluster needs: one worker pod per node with its GPUs, ranks'
//! devices from the local index, the run config from a ConfigMap, the token only in a Secret,
//! the run directory on a shared volume, Prometheus scraping the coordinator. No cluster runs
//! here: nothing is applied.

mod common;

use std::path::{Path, PathBuf};

use common::{rosetta, synth_small, tiny_run, write_config};
use rosetta_deploy::section::{DeploySection, KubernetesSection};

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var("ROSETTA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.exists(),
        "{} not found: run `make test` (scripts/setup.sh installs kubernetes-validate)",
        path.display()
    );
    path
}

fn yaml(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn kubernetes_manifests_validate_and_describe_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 20, 0, 400);
    let mut config = tiny_run("k8s", 10, 1);
    config.deploy = Some(DeploySection {
        binary: Some("/usr/local/bin/rosetta".into()),
        kubernetes: Some(KubernetesSection {
            namespace: "training".into(),
            image: "registry.example/rosetta:1.0".into(),
            nodes: 3,
            gpus_per_node: 4,
            workers_per_node: 1,
            claim: "rosetta-workspace".into(),
            mount_path: dir.path().to_path_buf(),
            storage_class: Some("nfs".into()),
            volume_size: "50Gi".into(),
        }),
        ..DeploySection::default()
    });
    let config_path = write_config(dir.path(), "k8s", &config);
    let out = rosetta(&["deploy", "kubernetes", "--config", config_path.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifests = dir.path().join("runs/k8s/deploy/kubernetes");
    let core = [
        "namespace.yaml",
        "config.yaml",
        "token.yaml",
        "workspace-claim.yaml",
        "coordinator-service.yaml",
        "coordinator-job.yaml",
        "workers-job.yaml",
    ];
    let validated = std::process::Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "-k", "1.37.0"])
        .args(core.iter().map(|f| manifests.join(f)))
        .output()
        .unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&validated.stdout), String::from_utf8_lossy(&validated.stderr));
    assert!(validated.status.success() && report.matches("passed").count() == core.len(), "{report}");

    let token = std::fs::read_to_string(dir.path().join("runs/k8s/deploy/token")).unwrap();
    let workers = yaml(&manifests.join("workers-job.yaml"));
    let spec = &workers["spec"];
    assert_eq!(
        (spec["completionMode"].as_str(), spec["completions"].as_u64(), spec["parallelism"].as_u64()),
        (Some("Indexed"), Some(3), Some(3))
    );
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 4);
    let command = container["command"][2].as_str().unwrap();
    assert!(
        command.contains("seq 0 3")
            && command.contains("--device cuda:$i")
            && command.contains("--token-file /etc/rosetta/token/token"),
        "{command}"
    );
    assert!(command.contains("rosetta-k8s-coordinator.training.svc:50051"), "{command}");
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["config", "token", "workspace"]);
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "rosetta-k8s-token");
    assert_eq!(pod["volumes"][2]["persistentVolumeClaim"]["claimName"], "rosetta-workspace");

    let coordinator = yaml(&manifests.join("coordinator-job.yaml"));
    let pod = &coordinator["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    assert!(
        pod["spec"]["containers"][0]["command"][2].as_str().unwrap().contains("START=--resume"),
        "a restarted coordinator pod resumes"
    );
    let service = yaml(&manifests.join("coordinator-service.yaml"));
    let monitor = yaml(&manifests.join("servicemonitor.yaml"));
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]);
    assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);

    // The token is in the Secret and nowhere else.
    for entry in std::fs::read_dir(&manifests).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.contains(token.trim()), path.ends_with("token.yaml"), "{}", path.display());
    }
    // The run config the pods read: absolute paths, 3 × 4 workers, metrics reachable.
    let run_yaml = yaml(&manifests.join("config.yaml"))["data"]["run.yaml"].as_str().unwrap().to_string();
    let run: rosetta::run_config::RawRunConfig = serde_saphyr::from_str(&run_yaml).unwrap();
    let job = run.job.unwrap();
    assert_eq!((job.workers, job.metrics_address.as_str()), (12, "0.0.0.0:9464"));
    assert!(run.data.train[0].is_absolute());
    let kustomization = yaml(&manifests.join("kustomization.yaml"));
    assert_eq!(kustomization["resources"].as_array().unwrap().len(), core.len() + 1);

    // Paths the pods could not see are refused before anything is written.
    let mut elsewhere = config.clone();
    elsewhere.deploy.as_mut().unwrap().kubernetes.as_mut().unwrap().mount_path = "/mnt/other".into();
    let out = rosetta(&[
        "deploy",
        "kubernetes",
        "--config",
        write_config(dir.path(), "elsewhere", &elsewhere).to_str().unwrap(),
        "--dry-run",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("deploy.kubernetes.mount_path")
            && err.contains("is not under /mnt/other"),
        "{err}"
    );
}

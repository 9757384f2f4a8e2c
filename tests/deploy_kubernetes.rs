//! `rosetta deploy kubernetes --dry-run`: the manifests it writes validate against the
//! Kubernetes 1.37 schemas (the PyPI `kubernetes-validate` of the project's venv, strict), meet
//! the Pod Security "restricted" profile (its rules checked here one by one, as the Kubernetes
//! documentation lists them), and describe what a cluster needs: one worker pod per node with
//! one container per GPU, the image's binary run as a non-root user, requests for CPU and
//! memory, an in-memory /dev/shm, the run config from a ConfigMap, the token and the TLS files
//! only in Secrets, the run directory on a shared volume, scheduling settings passed through, a
//! headless Service for the rendezvous, Prometheus scraping the coordinator. No cluster runs
//! here: nothing is applied (tests/pod_commands.rs runs the pods' commands from the image tree).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{rosetta, synth_small, tiny_run, write_config};
use rosetta_deploy::section::{DeploySection, KubernetesSection, ResourceSection, TolerationSection};
use serde_json::Value;

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

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Pod Security Standards' "restricted" profile (kubernetes.io/docs/concepts/security/
/// pod-security-standards, the restricted controls for the latest version), checked on a pod
/// spec; every breach, described.
fn restricted_breaches(pod: &Value) -> Vec<String> {
    let mut breaches = Vec::new();
    let allowed_volumes =
        ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
        if !kinds.iter().all(|k| allowed_volumes.contains(&k.as_str())) {
            breaches.push(format!("volume {} of type {kinds:?}", volume["name"]));
        }
    }
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            breaches.push(host.to_string());
        }
    }
    let pod_security = &pod["securityContext"];
    for container in pod["containers"].as_array().unwrap() {
        let name = &container["name"];
        let security = &container["securityContext"];
        let get = |field: &str| if security[field].is_null() { &pod_security[field] } else { &security[field] };
        if get("runAsNonRoot") != true {
            breaches.push(format!("{name}: runAsNonRoot is not true"));
        }
        if get("runAsUser") == 0 {
            breaches.push(format!("{name}: runAsUser 0"));
        }
        if security["privileged"] == true {
            breaches.push(format!("{name}: privileged"));
        }
        if security["allowPrivilegeEscalation"] != false {
            breaches.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let seccomp = get("seccompProfile")["type"].as_str().unwrap_or_default();
        if !["RuntimeDefault", "Localhost"].contains(&seccomp) {
            breaches.push(format!("{name}: seccompProfile {seccomp:?}"));
        }
        let drops = security["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
        if !drops.iter().any(|d| d == "ALL") {
            breaches.push(format!("{name}: capabilities do not drop ALL"));
        }
        for add in security["capabilities"]["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                breaches.push(format!("{name}: adds capability {add}"));
            }
        }
        for port in container["ports"].as_array().into_iter().flatten() {
            if !port["hostPort"].is_null() {
                breaches.push(format!("{name}: hostPort"));
            }
        }
    }
    breaches
}

#[test]
fn kubernetes_manifests_validate_meet_restricted_and_describe_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 20, 0, 400);
    let mut config = tiny_run("k8s", 10, 1);
    config.training.device = "cuda".into();
    config.deploy = Some(DeploySection {
        env: [("RUST_LOG".to_string(), "info".to_string())].into(),
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
            worker_resources: ResourceSection { cpu: "8".into(), memory: "64Gi".into() },
            node_selector: BTreeMap::from([("nvidia.com/gpu.product".into(), "NVIDIA-H100-80GB-HBM3".into())]),
            tolerations: vec![TolerationSection {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                value: None,
                effect: Some("NoSchedule".into()),
                toleration_seconds: None,
            }],
            image_pull_secrets: vec!["registry-credentials".into()],
            priority_class_name: Some("training-high".into()),
            labels: BTreeMap::from([("team".into(), "ir".into())]),
            annotations: BTreeMap::from([("owner".into(), "ir@example.org".into())]),
            service_monitor: true,
            ..KubernetesSection::default()
        }),
        ..DeploySection::default()
    });
    let config_path = write_config(dir.path(), "k8s", &config);
    let out = rosetta(&["deploy", "kubernetes", "--config", config_path.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifests = dir.path().join("runs/k8s/deploy/kubernetes");
    assert!(!manifests.join("namespace.yaml").exists(), "no Namespace unless asked");
    let core = [
        "config.yaml",
        "token.yaml",
        "tls.yaml",
        "volume/workspace-claim.yaml",
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
    let key = std::fs::read_to_string(dir.path().join("runs/k8s/deploy/tls/coordinator-key.pem")).unwrap();
    let workers = yaml(&manifests.join("workers-job.yaml"));
    let spec = &workers["spec"];
    assert_eq!(
        (spec["completionMode"].as_str(), spec["completions"].as_u64(), spec["parallelism"].as_u64()),
        (Some("Indexed"), Some(3), Some(3))
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(restricted_breaches(pod), Vec::<String>::new());
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 4, "one container per GPU");
    for (i, container) in containers.iter().enumerate() {
        assert_eq!(container["name"], format!("worker-{i}"));
        assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 1);
        assert_eq!(container["resources"]["requests"]["cpu"], "8");
        assert_eq!(container["resources"]["requests"]["memory"], "64Gi");
        let command: Vec<&str> = container["command"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(command[..2], ["/usr/local/bin/rosetta", "worker"], "the image's binary, no shell");
        let joined = command.join(" ");
        for expected in [
            "--coordinator https://rosetta-k8s-coordinator.training.svc:50051",
            "--device cuda:0",
            "--token-file /etc/rosetta/token/token",
            "--tls-ca /etc/rosetta/tls/ca.pem",
            "--tls-domain rosetta-coordinator",
            "--threads 8",
        ] {
            assert!(joined.contains(expected), "{expected:?} missing from {joined}");
        }
    }
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-credentials");
    assert_eq!(pod["priorityClassName"], "training-high");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["config", "token", "workspace", "shm", "tls"]);
    assert_eq!(pod["volumes"][3]["emptyDir"]["medium"], "Memory");
    assert_eq!(pod["volumes"][4]["secret"]["items"].as_array().unwrap().len(), 1, "workers see the authority only");
    assert!(containers[0]["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/dev/shm"));
    assert_eq!(workers["spec"]["template"]["metadata"]["labels"]["team"], "ir");
    assert_eq!(workers["metadata"]["annotations"]["owner"], "ir@example.org");

    let coordinator = yaml(&manifests.join("coordinator-job.yaml"));
    let pod = &coordinator["spec"]["template"];
    assert_eq!(restricted_breaches(&pod["spec"]), Vec::<String>::new());
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    let container = &pod["spec"]["containers"][0];
    let command: Vec<&str> = container["command"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(command[..2], ["/usr/local/bin/rosetta", "coordinator"]);
    for expected in ["--auto-resume", "--tls-cert", "--tls-key", "0.0.0.0:50051"] {
        assert!(command.contains(&expected), "{expected:?} missing from {command:?}");
    }
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["readinessProbe"]["tcpSocket"].is_object(), "the kubelet's gRPC probe speaks no TLS");
    let service = yaml(&manifests.join("coordinator-service.yaml"));
    assert_eq!(service["spec"]["clusterIP"], "None", "headless");
    let monitor = yaml(&manifests.join("servicemonitor.yaml"));
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["rosetta/role"], "coordinator");
    assert_eq!(service["spec"]["selector"]["rosetta/role"], pod["metadata"]["labels"]["rosetta/role"]);

    // The token is in its Secret and the private key in the TLS Secret, nowhere else.
    let volume: Vec<PathBuf> =
        std::fs::read_dir(manifests.join("volume")).unwrap().map(|e| e.unwrap().path()).collect();
    for path in std::fs::read_dir(&manifests).unwrap().map(|e| e.unwrap().path()).chain(volume) {
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.contains(token.trim()), path.ends_with("token.yaml"), "{}", path.display());
        assert_eq!(text.contains(key.lines().nth(1).unwrap()), path.ends_with("tls.yaml"), "{}", path.display());
    }
    // The run config the pods read: absolute paths, 3 × 4 workers, metrics reachable.
    let run_yaml = yaml(&manifests.join("config.yaml"))["data"]["run.yaml"].as_str().unwrap().to_string();
    let run: rosetta_deploy::run_config::RawRunConfig = serde_saphyr::from_str(&run_yaml).unwrap();
    let job = run.job.unwrap();
    assert_eq!((job.workers, job.metrics_address.as_str()), (12, "0.0.0.0:9464"));
    assert!(run.data.train[0].is_absolute());
    let kustomization = yaml(&manifests.join("kustomization.yaml"));
    // Everything but the volume (kept apart, so that deleting the run never deletes the data),
    // and the ServiceMonitor asked for.
    let resources: Vec<&str> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(resources.len(), core.len(), "{resources:?}");
    assert!(
        resources.contains(&"servicemonitor.yaml") && !resources.iter().any(|r| r.contains("claim")),
        "{resources:?}"
    );

    // A namespace only when asked.
    let mut with_namespace = config.clone();
    with_namespace.deploy.as_mut().unwrap().kubernetes.as_mut().unwrap().create_namespace = true;
    let path = write_config(dir.path(), "k8s", &with_namespace);
    assert!(rosetta(&["deploy", "kubernetes", "--config", path.to_str().unwrap(), "--dry-run"]).status.success());
    let namespace = yaml(&manifests.join("namespace.yaml"));
    assert_eq!(
        (&namespace["metadata"]["name"], &namespace["metadata"]["labels"]["team"]),
        (&"training".into(), &"ir".into())
    );
}

#[test]
fn paths_the_pods_cannot_see_and_bad_settings_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 20, 0, 400);
    let mut config = tiny_run("elsewhere", 10, 1);
    config.deploy = Some(DeploySection {
        kubernetes: Some(KubernetesSection {
            image: "registry.example/rosetta:1.0".into(),
            mount_path: "/mnt/other".into(),
            ..KubernetesSection::default()
        }),
        ..DeploySection::default()
    });
    let path = write_config(dir.path(), "elsewhere", &config);
    let out = rosetta(&["deploy", "kubernetes", "--config", path.to_str().unwrap(), "--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("elsewhere.yaml: "), "the error names the config file: {err}");
    for field in ["data.train[0]", "data.store", "job.run_dir", "model.tokenizer"] {
        assert!(
            err.contains(&format!("{field}: ")) && err.contains("is not under deploy.kubernetes.mount_path"),
            "{field}: {err}"
        );
    }
    assert!(!dir.path().join("runs/elsewhere/deploy").exists(), "nothing was written");

    let kubernetes = config.deploy.as_mut().unwrap().kubernetes.as_mut().unwrap();
    kubernetes.mount_path = dir.path().to_path_buf();
    kubernetes.worker_resources.memory = "lots".into();
    kubernetes.run_as_user = 0;
    kubernetes.tolerations = vec![TolerationSection {
        key: None,
        operator: Some("Maybe".into()),
        value: None,
        effect: None,
        toleration_seconds: None,
    }];
    let path = write_config(dir.path(), "elsewhere", &config);
    let out = rosetta(&["deploy", "kubernetes", "--config", path.to_str().unwrap(), "--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "deploy.kubernetes.worker_resources.memory: \"lots\" is not a Kubernetes quantity",
        "deploy.kubernetes.run_as_user: 0 is root",
        "deploy.kubernetes.tolerations[0].operator",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from {err}");
    }
}

#[test]
fn a_run_the_pods_cannot_carry_out_is_refused_by_its_field() {
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 20, 0, 400);
    let mut config = tiny_run("gpu", 10, 1);
    config.data.benchmarks = vec!["data/benchmark".into()];
    config.evaluation = Some(rosetta_eval::config::EvaluationConfig::default());
    config.training.device = "cuda".into();
    config.deploy = Some(DeploySection {
        kubernetes: Some(KubernetesSection {
            image: "registry.example/rosetta:1.0".into(),
            gpus_per_node: 2,
            mount_path: dir.path().to_path_buf(),
            ..KubernetesSection::default()
        }),
        ..DeploySection::default()
    });
    let refused = |config: &rosetta_deploy::run_config::RawRunConfig, extra: &[&str]| {
        let path = write_config(dir.path(), "gpu", config);
        let mut args = vec!["deploy", "kubernetes", "--config", path.to_str().unwrap(), "--dry-run"];
        args.extend_from_slice(extra);
        let out = rosetta(&args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // The final evaluation would run on cuda in a coordinator pod without a GPU.
    let err = refused(&config, &[]);
    assert!(err.contains("deploy.kubernetes.coordinator_gpus: 0, but the final evaluation runs"), "{err}");
    // Pods resume by themselves; --overwrite would be silently ignored.
    let mut cpu_evaluation = config.clone();
    cpu_evaluation.evaluation.as_mut().unwrap().device = Some(rosetta_worker_config::DeviceSpec::Cpu);
    let err = refused(&cpu_evaluation, &["--overwrite"]);
    assert!(err.contains("--resume/--overwrite: kubernetes jobs resume by themselves"), "{err}");
    // GPUs for the workers, but training on the CPU.
    cpu_evaluation.training.device = "cpu".into();
    let err = refused(&cpu_evaluation, &[]);
    assert!(err.contains("training.device: cpu, but deploy.kubernetes.gpus_per_node gives each worker a GPU"), "{err}");
    assert!(!dir.path().join("runs/gpu/deploy").exists(), "nothing was written");
}

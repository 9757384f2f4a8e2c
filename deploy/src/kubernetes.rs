//! The Kubernetes target: plain manifests and a `kustomization.yaml` written to
//! `RUN/deploy/kubernetes/` — the run config as a ConfigMap, the token as a Secret, the volume
//! that holds data and run directory, the coordinator as a Job behind a Service (with Prometheus
//! scrape annotations and a ServiceMonitor), and the workers as an Indexed Job of one pod per
//! node (GPU requests, one worker process per GPU). Pods restart on failure, as our own restart
//! of a failed generation expects: the workers of the next generation simply register again.
//! Applied with `kubectl apply -k` (not run here: no cluster; the manifests are validated
//! against the Kubernetes schemas in the tests).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{DeployError, Result};
use crate::run::{DeployFiles, DeployRun};
use crate::section::{KubernetesSection, NodeShape};
use crate::template::shell_line;

/// A DNS label from a run name (lowercase letters, digits and `-`, at most 40 characters).
pub fn dns_label(name: &str) -> String {
    let mut label: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    label.truncate(40);
    let label = label.trim_matches('-').to_string();
    if label.is_empty() { "run".into() } else { label }
}

/// Every manifest, by file name, as JSON values (written as YAML).
pub fn manifests(
    run: &DeployRun,
    kubernetes: &KubernetesSection,
    shape: NodeShape,
    token: &str,
    max_restarts: u32,
) -> Vec<(String, Value)> {
    let name = format!("rosetta-{}", dns_label(&run.run_name));
    let namespace = kubernetes.namespace.as_str();
    let labels = |role: &str| json!({"app.kubernetes.io/name": "rosetta", "rosetta/run": dns_label(&run.run_name), "rosetta/role": role});
    let binary = run.binary.display().to_string();
    let run_dir = run.run_dir.root().display().to_string();
    let config = "/etc/rosetta/config/run.yaml";
    let token_file = "/etc/rosetta/token/token";
    let env: Vec<Value> = run.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let volumes = json!([
        {"name": "config", "configMap": {"name": format!("{name}-config")}},
        {"name": "token", "secret": {"secretName": format!("{name}-token"), "defaultMode": 0o400}},
        {"name": "workspace", "persistentVolumeClaim": {"claimName": kubernetes.claim}},
    ]);
    let mounts = json!([
        {"name": "config", "mountPath": "/etc/rosetta/config", "readOnly": true},
        {"name": "token", "mountPath": "/etc/rosetta/token", "readOnly": true},
        {"name": "workspace", "mountPath": kubernetes.mount_path.display().to_string()},
    ]);
    let coordinator_command = format!(
        "START=; if [ -f {latest} ]; then START=--resume; fi; exec {command} $START",
        latest = shell_line(&[format!("{run_dir}/checkpoints/latest")]),
        command = shell_line(&[
            binary.as_str(),
            "coordinator",
            "--config",
            config,
            "--listen",
            &format!("0.0.0.0:{}", run.port),
            "--token-file",
            token_file,
        ]),
    );
    let service_host = format!("{name}-coordinator.{namespace}.svc");
    let device = if shape.gpus { "cuda:$i" } else { "cpu" };
    let worker = shell_line(&[
        binary.as_str(),
        "worker",
        "--coordinator",
        &format!("http://{service_host}:{}", run.port),
        "--token-file",
        token_file,
        "--ring-listen",
        "0.0.0.0:0",
    ]);
    let workers_command = format!(
        "status=0; pids=; for i in $(seq 0 {last}); do {worker} --device {device} --host \"node-$JOB_COMPLETION_INDEX-$i\" & pids=\"$pids $!\"; done; \
         for pid in $pids; do wait $pid || status=1; done; exit $status",
        last = shape.workers_per_node - 1
    );
    let mut resources = json!({});
    if shape.gpus {
        resources = json!({"limits": {"nvidia.com/gpu": shape.workers_per_node}});
    }
    let metrics_annotations = json!({
        "prometheus.io/scrape": "true", "prometheus.io/port": run.metrics_port.to_string(), "prometheus.io/path": "/metrics",
    });
    let mut objects = vec![
        (
            "namespace.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        ),
        (
            "config.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{name}-config"), "namespace": namespace, "labels": labels("config")},
                "data": {"run.yaml": run.run_config_yaml}}),
        ),
        (
            "token.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": format!("{name}-token"), "namespace": namespace, "labels": labels("token")},
                "stringData": {"token": token}}),
        ),
        (
            "coordinator-service.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("{name}-coordinator"), "namespace": namespace, "labels": labels("coordinator"),
                "annotations": metrics_annotations},
            "spec": {"selector": labels("coordinator"), "ports": [
                {"name": "grpc", "port": run.port, "targetPort": run.port},
                {"name": "metrics", "port": run.metrics_port, "targetPort": run.metrics_port},
            ]}}),
        ),
        (
            "coordinator-job.yaml".to_string(),
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("{name}-coordinator"), "namespace": namespace, "labels": labels("coordinator")},
            "spec": {"backoffLimit": 3, "template": {
                "metadata": {"labels": labels("coordinator"), "annotations": metrics_annotations},
                "spec": {"restartPolicy": "OnFailure", "volumes": volumes, "containers": [{
                    "name": "coordinator", "image": kubernetes.image, "command": ["sh", "-c", coordinator_command],
                    "env": env, "volumeMounts": mounts,
                    "ports": [{"name": "grpc", "containerPort": run.port}, {"name": "metrics", "containerPort": run.metrics_port}],
                    "readinessProbe": {"grpc": {"port": run.port, "service": "rosetta.v1.Coordinator"}, "periodSeconds": 10},
                }]}}}}),
        ),
        (
            "workers-job.yaml".to_string(),
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("{name}-workers"), "namespace": namespace, "labels": labels("worker")},
            "spec": {
                "completionMode": "Indexed", "completions": shape.nodes, "parallelism": shape.nodes,
                // Each failed generation restarts every worker pod once.
                "backoffLimit": (max_restarts as usize + 1) * shape.nodes,
                "template": {"metadata": {"labels": labels("worker")}, "spec": {
                    "restartPolicy": "OnFailure", "volumes": volumes,
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": labels("worker")}, "topologyKey": "kubernetes.io/hostname"}]}},
                    "containers": [{"name": "workers", "image": kubernetes.image, "command": ["sh", "-c", workers_command],
                        "env": env, "volumeMounts": mounts, "resources": resources}],
                }}}}),
        ),
        (
            "servicemonitor.yaml".to_string(),
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": {"name": name, "namespace": namespace, "labels": labels("monitor")},
                "spec": {"selector": {"matchLabels": labels("coordinator")},
                    "endpoints": [{"port": "metrics", "interval": "15s", "path": "/metrics"}]}}),
        ),
    ];
    if let Some(class) = &kubernetes.storage_class {
        objects.push((
            "workspace-claim.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": kubernetes.claim, "namespace": namespace, "labels": labels("workspace")},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": class,
                    "resources": {"requests": {"storage": kubernetes.volume_size}}}}),
        ));
    }
    objects
}

/// Checks that every path the pods use lies on the mounted volume.
pub fn check_paths(kubernetes: &KubernetesSection, paths: &[PathBuf]) -> Result<()> {
    let mut problems = rosetta_common::ConfigProblems::new();
    for path in paths.iter().filter(|p| !p.starts_with(&kubernetes.mount_path)) {
        problems.push(
            "deploy.kubernetes.mount_path",
            format!(
                "{} is not under {}: the pods see only the volume {} mounted there (put data and run directory on it, at the same paths)",
                path.display(),
                kubernetes.mount_path.display(),
                kubernetes.claim
            ),
        );
    }
    problems.check().map_err(DeployError::Invalid)
}

/// Writes the manifests and their `kustomization.yaml` to `RUN/deploy/kubernetes/`.
pub fn write_manifests(
    run: &DeployRun,
    kubernetes: &KubernetesSection,
    shape: NodeShape,
    files: &DeployFiles,
    max_restarts: u32,
) -> Result<PathBuf> {
    let token = std::fs::read_to_string(&files.token)
        .map_err(|source| DeployError::Process { what: format!("reading {}", files.token.display()), source })?;
    let dir = run.deploy_dir().join("kubernetes");
    let objects = manifests(run, kubernetes, shape, token.trim(), max_restarts);
    let write = |name: &str, value: &Value| -> Result<()> {
        let text = serde_saphyr::to_string(value).map_err(|e| DeployError::Template(format!("{name}: {e}")))?;
        let path = dir.join(name);
        rosetta_common::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|e| DeployError::Process { what: format!("writing {}", e.path.display()), source: e.source })?;
        if name == "token.yaml" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| DeployError::Process { what: format!("protecting {}", path.display()), source })?;
        }
        Ok(())
    };
    for (name, value) in &objects {
        write(name, value)?;
    }
    let resources: Vec<&str> = objects.iter().map(|(name, _)| name.as_str()).collect();
    write(
        "kustomization.yaml",
        &json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}),
    )?;
    Ok(dir)
}

/// `kubectl apply -k DIR`.
pub fn apply(dir: &Path) -> Result<()> {
    let status = std::process::Command::new("kubectl").arg("apply").arg("-k").arg(dir).status().map_err(|source| {
        DeployError::Process {
            what: format!(
                "running kubectl (apply {} with `kubectl apply -k` from a machine that reaches the cluster)",
                dir.display()
            ),
            source,
        }
    })?;
    if !status.success() {
        return Err(DeployError::Scheduler(format!("kubectl apply -k {} failed ({status})", dir.display())));
    }
    Ok(())
}

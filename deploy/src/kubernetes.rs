//! The Kubernetes target: plain manifests and a `kustomization.yaml` written to
//! `RUN/deploy/kubernetes/` — the run config as a ConfigMap, the token and the run's TLS files
//! as Secrets, the volume that holds data and run directory, the coordinator as a Job behind a
//! headless Service (with Prometheus scrape annotations and a ServiceMonitor), and the workers
//! as an Indexed Job of one pod per node with one container per worker (a GPU each). Pods run
//! the image's binary as a non-root user under the Pod Security "restricted" profile, with
//! requests for CPU and memory and an in-memory `/dev/shm`. Pods restart on failure, as our own
//! restart of a failed generation expects: the workers of the next generation register again,
//! and a restarted coordinator resumes (`--auto-resume`). Applied with `kubectl apply -k` (no
//! cluster runs here: the manifests are validated against the Kubernetes schemas, and the
//! commands they run are run from the image's file tree, in the tests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rosetta_coordinator::command::CoordinatorCommand;
use rosetta_coordinator::job::StartMode;
use rosetta_worker_config::{CoordinatorAddress, DeviceSpec, WorkerProcessConfig};
use serde_json::{Map, Value, json};

use crate::error::{DeployError, Result};
use crate::run::{DeployFiles, DeployRun};
use crate::section::{KubernetesSection, NodeShape, ResourceSection};

/// Where the pods see the run config (from its ConfigMap).
pub const CONFIG_MOUNT: &str = "/etc/rosetta/config";
/// Where the pods see the token (from its Secret).
pub const TOKEN_MOUNT: &str = "/etc/rosetta/token";
/// Where the pods see the run's TLS files (from their Secret).
pub const TLS_MOUNT: &str = "/etc/rosetta/tls";
/// Where the volume claim's manifest goes, apart from the run's kustomization, so that
/// `kubectl delete -k` of the run never deletes the data.
pub const CLAIM_MANIFEST: &str = "volume/workspace-claim.yaml";
/// How long a worker keeps trying to reach a coordinator that is still packing its data.
const CONNECT_PATIENCE_SECS: u64 = 900;

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

/// The objects' common name: `rosetta-<run>`.
pub fn object_name(run: &DeployRun) -> String {
    format!("rosetta-{}", dns_label(&run.run_name))
}

/// The coordinator's DNS name inside the cluster (its headless Service).
pub fn coordinator_host(run: &DeployRun, kubernetes: &KubernetesSection) -> String {
    format!("{}-coordinator.{}.svc", object_name(run), kubernetes.namespace)
}

/// What the coordinator container runs: the image's binary with the mounted config, token and
/// TLS files, resuming after a restart.
pub fn coordinator_command(run: &DeployRun, kubernetes: &KubernetesSection) -> Vec<String> {
    let listen = SocketAddr::from(([0, 0, 0, 0], run.port));
    let mut command = CoordinatorCommand::new(Path::new(CONFIG_MOUNT).join("run.yaml"), listen, StartMode::Auto);
    command.token_file = Some(Path::new(TOKEN_MOUNT).join("token"));
    command.advertise = Some(coordinator_host(run, kubernetes));
    if run.tls.is_some() {
        command.tls_cert = Some(Path::new(TLS_MOUNT).join("coordinator.pem"));
        command.tls_key = Some(Path::new(TLS_MOUNT).join("coordinator-key.pem"));
    }
    program(kubernetes, command.to_args())
}

/// What worker container `local` of a pod runs (each container has its own GPU, `cuda:0`).
pub fn worker_command(run: &DeployRun, kubernetes: &KubernetesSection, shape: NodeShape) -> Vec<String> {
    let scheme = if run.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}:{}", coordinator_host(run, kubernetes), run.port);
    let mut worker = WorkerProcessConfig::new(CoordinatorAddress::Url(url));
    worker.token_file = Some(Path::new(TOKEN_MOUNT).join("token"));
    worker.ring_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    worker.device = Some(if shape.gpus { DeviceSpec::Cuda(0) } else { DeviceSpec::Cpu });
    worker.threads = whole_cpus(&kubernetes.worker_resources.cpu);
    worker.connect_timeout = std::time::Duration::from_secs(CONNECT_PATIENCE_SECS);
    if run.tls.is_some() {
        worker.tls_ca = Some(Path::new(TLS_MOUNT).join("ca.pem"));
        worker.tls_domain = Some(crate::tls::SERVER_NAME.to_string());
    }
    program(kubernetes, worker.to_args())
}

fn program(kubernetes: &KubernetesSection, argv: rosetta_common::argv::Argv) -> Vec<String> {
    std::iter::once(kubernetes.binary.display().to_string()).chain(argv.into_vec()).collect()
}

/// A CPU request in whole cores (`4`, `4000m`), the worker's libtorch threads.
fn whole_cpus(cpu: &str) -> Option<usize> {
    match cpu.strip_suffix('m') {
        Some(milli) => milli.parse::<usize>().ok().map(|m| (m / 1000).max(1)),
        None => cpu.parse::<f64>().ok().map(|c| (c.floor() as usize).max(1)),
    }
}

/// The container's `resources`: the requests, the memory limit, and GPUs when asked for.
fn resources(resources: &ResourceSection, gpus: usize) -> Value {
    let mut limits = json!({"memory": resources.memory});
    if gpus > 0 {
        limits["nvidia.com/gpu"] = json!(gpus);
    }
    json!({"requests": {"cpu": resources.cpu, "memory": resources.memory}, "limits": limits})
}

/// `metadata` with the run's labels and the section's own labels and annotations.
fn metadata(kubernetes: &KubernetesSection, name: &str, labels: &Value, annotations: Option<&Value>) -> Value {
    let mut all_labels = labels.as_object().cloned().unwrap_or_default();
    for (key, value) in &kubernetes.labels {
        all_labels.insert(key.clone(), json!(value));
    }
    let mut all_annotations: Map<String, Value> = annotations.and_then(Value::as_object).cloned().unwrap_or_default();
    for (key, value) in &kubernetes.annotations {
        all_annotations.insert(key.clone(), json!(value));
    }
    let mut metadata = json!({"name": name, "namespace": kubernetes.namespace, "labels": all_labels});
    if !all_annotations.is_empty() {
        metadata["annotations"] = Value::Object(all_annotations);
    }
    metadata
}

/// Every manifest, by file name, as JSON values (written as YAML); `secrets` are the token and
/// the TLS files' contents.
pub fn manifests(
    run: &DeployRun,
    kubernetes: &KubernetesSection,
    shape: NodeShape,
    secrets: &Secrets,
    max_restarts: u32,
) -> Vec<(String, Value)> {
    let name = object_name(run);
    let namespace = kubernetes.namespace.as_str();
    let labels = |role: &str| json!({"app.kubernetes.io/name": "rosetta", "rosetta/run": dns_label(&run.run_name), "rosetta/role": role});
    let mut env: Vec<Value> = run.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    if let Some(threads) = whole_cpus(&kubernetes.worker_resources.cpu) {
        env.push(json!({"name": "OMP_NUM_THREADS", "value": threads.to_string()}));
    }
    let workspace = kubernetes.mount_path.display().to_string();
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": format!("{name}-config")}}),
        json!({"name": "token", "secret": {"secretName": format!("{name}-token"), "defaultMode": 0o400}}),
        json!({"name": "workspace", "persistentVolumeClaim": {"claimName": kubernetes.claim}}),
        json!({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": kubernetes.shm_size}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": true}),
        json!({"name": "token", "mountPath": TOKEN_MOUNT, "readOnly": true}),
        json!({"name": "workspace", "mountPath": workspace}),
        json!({"name": "shm", "mountPath": "/dev/shm"}),
    ];
    let (mut coordinator_volumes, mut coordinator_mounts) = (volumes.clone(), mounts.clone());
    if secrets.tls.is_some() {
        // Workers see the authority alone; the coordinator its certificate and key too.
        let tls = |items: Value| json!({"name": "tls", "secret": {"secretName": format!("{name}-tls"), "defaultMode": 0o400, "items": items}});
        volumes.push(tls(json!([{"key": "ca.pem", "path": "ca.pem"}])));
        coordinator_volumes.push(tls(json!([
            {"key": "ca.pem", "path": "ca.pem"},
            {"key": "coordinator.pem", "path": "coordinator.pem"},
            {"key": "coordinator-key.pem", "path": "coordinator-key.pem"},
        ])));
        let mount = json!({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": true});
        mounts.push(mount.clone());
        coordinator_mounts.push(mount);
    }
    let pod_security = json!({
        "runAsNonRoot": true, "runAsUser": kubernetes.run_as_user, "runAsGroup": kubernetes.run_as_group,
        "fsGroup": kubernetes.run_as_group, "seccompProfile": {"type": "RuntimeDefault"},
    });
    let mut capabilities = json!({"drop": ["ALL"]});
    if !kubernetes.add_capabilities.is_empty() {
        capabilities["add"] = json!(kubernetes.add_capabilities);
    }
    let container_security = json!({"allowPrivilegeEscalation": false, "capabilities": capabilities});
    // What every pod template shares: scheduling, security, pull secrets.
    let pod_spec = |volumes: Vec<Value>, containers: Vec<Value>| {
        let mut spec = json!({
            "restartPolicy": "OnFailure", "securityContext": pod_security, "volumes": volumes, "containers": containers,
        });
        if !kubernetes.node_selector.is_empty() {
            spec["nodeSelector"] = json!(kubernetes.node_selector);
        }
        if !kubernetes.tolerations.is_empty() {
            spec["tolerations"] = json!(kubernetes.tolerations);
        }
        if !kubernetes.image_pull_secrets.is_empty() {
            spec["imagePullSecrets"] =
                Value::Array(kubernetes.image_pull_secrets.iter().map(|n| json!({"name": n})).collect());
        }
        if let Some(class) = &kubernetes.priority_class_name {
            spec["priorityClassName"] = json!(class);
        }
        spec
    };
    let metrics_annotations = json!({
        "prometheus.io/scrape": "true", "prometheus.io/port": run.metrics_port.to_string(), "prometheus.io/path": "/metrics",
    });
    let coordinator_container = json!({
        "name": "coordinator", "image": kubernetes.image, "command": coordinator_command(run, kubernetes),
        "env": env, "volumeMounts": coordinator_mounts, "securityContext": container_security,
        "resources": resources(&kubernetes.coordinator_resources, kubernetes.coordinator_gpus),
        "ports": [{"name": "grpc", "containerPort": run.port}, {"name": "metrics", "containerPort": run.metrics_port}],
        // A TCP probe: the kubelet's gRPC probe speaks no TLS.
        "readinessProbe": {"tcpSocket": {"port": run.port}, "periodSeconds": 10},
    });
    let per_worker_gpus = usize::from(shape.gpus);
    let worker_containers: Vec<Value> = (0..shape.workers_per_node)
        .map(|local| {
            json!({
                "name": format!("worker-{local}"), "image": kubernetes.image,
                "command": worker_command(run, kubernetes, shape), "env": env, "volumeMounts": mounts,
                "securityContext": container_security,
                "resources": resources(&kubernetes.worker_resources, per_worker_gpus),
            })
        })
        .collect();
    let mut worker_pod = pod_spec(volumes, worker_containers);
    worker_pod["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": labels("worker")}, "topologyKey": "kubernetes.io/hostname"}]}});
    let mut tls_data = Map::new();
    if let Some(tls) = &secrets.tls {
        for (key, text) in [("ca.pem", &tls.ca), ("coordinator.pem", &tls.cert), ("coordinator-key.pem", &tls.key)] {
            tls_data.insert(key.to_string(), json!(text));
        }
    }
    let mut objects = Vec::new();
    if kubernetes.create_namespace {
        objects.push((
            "namespace.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": namespace,
                "labels": metadata(kubernetes, namespace, &labels("namespace"), None)["labels"],
            }}),
        ));
    }
    objects.push((
        "config.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(kubernetes, &format!("{name}-config"), &labels("config"), None),
            "data": {"run.yaml": run.run_config_yaml}}),
    ));
    objects.push((
        "token.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(kubernetes, &format!("{name}-token"), &labels("token"), None),
            "stringData": {"token": secrets.token}}),
    ));
    if !tls_data.is_empty() {
        objects.push((
            "tls.yaml".to_string(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": metadata(kubernetes, &format!("{name}-tls"), &labels("tls"), None), "stringData": tls_data}),
        ));
    }
    objects.push((
        "coordinator-service.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": metadata(kubernetes, &format!("{name}-coordinator"), &labels("coordinator"), Some(&metrics_annotations)),
        // Headless: the name resolves to the coordinator pod itself, also before it is ready
        // (workers retry until it serves).
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": labels("coordinator"), "ports": [
            {"name": "grpc", "port": run.port, "targetPort": run.port},
            {"name": "metrics", "port": run.metrics_port, "targetPort": run.metrics_port},
        ]}}),
    ));
    let mut pod_metadata = metadata(kubernetes, &name, &labels("coordinator"), Some(&metrics_annotations));
    if let Some(object) = pod_metadata.as_object_mut() {
        object.remove("name");
        object.remove("namespace");
    }
    objects.push((
        "coordinator-job.yaml".to_string(),
        json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(kubernetes, &format!("{name}-coordinator"), &labels("coordinator"), None),
        "spec": {"backoffLimit": 3, "template": {"metadata": pod_metadata,
            "spec": pod_spec(coordinator_volumes, vec![coordinator_container])}}}),
    ));
    let mut worker_metadata = metadata(kubernetes, &name, &labels("worker"), None);
    if let Some(object) = worker_metadata.as_object_mut() {
        object.remove("name");
        object.remove("namespace");
    }
    objects.push((
        "workers-job.yaml".to_string(),
        json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(kubernetes, &format!("{name}-workers"), &labels("worker"), None),
        "spec": {
            "completionMode": "Indexed", "completions": shape.nodes, "parallelism": shape.nodes,
            // Each failed generation restarts every worker pod once.
            "backoffLimit": (max_restarts as usize + 1) * shape.nodes,
            "template": {"metadata": worker_metadata, "spec": worker_pod}}}),
    ));
    if kubernetes.service_monitor {
        objects.push((
            "servicemonitor.yaml".to_string(),
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": metadata(kubernetes, &name, &labels("monitor"), None),
            "spec": {"selector": {"matchLabels": labels("coordinator")},
                "endpoints": [{"port": "metrics", "interval": "15s", "path": "/metrics"}]}}),
        ));
    }
    if let Some(class) = &kubernetes.storage_class {
        objects.push((
            CLAIM_MANIFEST.to_string(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": metadata(kubernetes, &kubernetes.claim, &labels("workspace"), None),
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": class,
                    "resources": {"requests": {"storage": kubernetes.volume_size}}}}),
        ));
    }
    objects
}

/// The secrets the manifests carry.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The job's token.
    pub token: String,
    /// The run's TLS files (PEM), unless TLS is off.
    pub tls: Option<TlsPem>,
}

/// The run's TLS files, as text.
#[derive(Debug, Clone)]
pub struct TlsPem {
    /// The authority's certificate.
    pub ca: String,
    /// The coordinator's certificate.
    pub cert: String,
    /// The coordinator's private key.
    pub key: String,
}

/// Checks that every path the pods read or write lies on the mounted volume; each problem
/// names the config field the path came from.
pub fn check_paths(kubernetes: &KubernetesSection, paths: &[(String, PathBuf)]) -> Result<()> {
    let mut problems = rosetta_common::ConfigProblems::new();
    for (field, path) in paths.iter().filter(|(_, p)| !p.starts_with(&kubernetes.mount_path)) {
        problems.push(
            field.as_str(),
            format!(
                "{} is not under deploy.kubernetes.mount_path {}: the pods see only the volume {} mounted there (put it on the volume, at the same path)",
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
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|source| DeployError::Process { what: format!("reading {}", path.display()), source })
    };
    let tls = match &run.tls {
        Some(tls) => Some(TlsPem { ca: read(&tls.ca)?, cert: read(&tls.cert)?, key: read(&tls.key)? }),
        None => None,
    };
    let secrets = Secrets { token: read(&files.token)?.trim().to_string(), tls };
    let dir = run.deploy_dir().join("kubernetes");
    let objects = manifests(run, kubernetes, shape, &secrets, max_restarts);
    let write = |name: &str, value: &Value| -> Result<()> {
        let text = serde_saphyr::to_string(value).map_err(|e| DeployError::Template(format!("{name}: {e}")))?;
        let path = dir.join(name);
        if ["token.yaml", "tls.yaml"].contains(&name) {
            return crate::run::write_secret(&path, text.as_bytes());
        }
        rosetta_common::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|e| DeployError::Process { what: format!("writing {}", e.path.display()), source: e.source })
    };
    for (name, value) in &objects {
        write(name, value)?;
    }
    let resources: Vec<&str> =
        objects.iter().map(|(name, _)| name.as_str()).filter(|name| *name != CLAIM_MANIFEST).collect();
    write(
        "kustomization.yaml",
        &json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}),
    )?;
    Ok(dir)
}

/// `kubectl apply -f` of the volume claim when there is one (it stays when the run is deleted),
/// then `kubectl apply -k DIR`.
pub fn apply(dir: &Path) -> Result<()> {
    let claim = dir.join(CLAIM_MANIFEST);
    if claim.is_file() {
        kubectl(&["apply", "-f"], &claim)?;
    }
    kubectl(&["apply", "-k"], dir)
}

fn kubectl(args: &[&str], path: &Path) -> Result<()> {
    let status =
        std::process::Command::new("kubectl").args(args).arg(path).status().map_err(|source| DeployError::Process {
            what: format!(
                "running kubectl (run `kubectl {} {}` from a machine that reaches the cluster)",
                args.join(" "),
                path.display()
            ),
            source,
        })?;
    if !status.success() {
        return Err(DeployError::Scheduler(format!("kubectl {} {} failed ({status})", args.join(" "), path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_requests_give_whole_threads() {
        assert_eq!(whole_cpus("4"), Some(4));
        assert_eq!(whole_cpus("2.5"), Some(2));
        assert_eq!(whole_cpus("500m"), Some(1));
        assert_eq!(whole_cpus("8000m"), Some(8));
        assert_eq!(whole_cpus("lots"), None);
    }
}

//! The `deploy:` section of a run config: what belongs to a site (where the `rosetta` binary
//! is on the nodes, partition, account, time limit, hosts, image, namespace, pod resources and
//! scheduling), as written ([`DeploySection`]) and checked per target. Every key is described
//! in docs/deploy.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

/// The coordinator's gRPC port where a target needs a fixed one (ssh, Kubernetes).
pub const DEFAULT_PORT: u16 = 50051;
/// The coordinator's metrics port where a target needs a fixed one (ssh, Kubernetes).
pub const DEFAULT_METRICS_PORT: u16 = 9464;

fn default_signal() -> u64 {
    300
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// `deploy:` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySection {
    /// The `rosetta` binary on the nodes (default: the path of the one running `deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Environment variables for every remote process (e.g. `LD_LIBRARY_PATH` of torch's `lib/`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Port of the coordinator's gRPC service [default: 50051 on ssh and Kubernetes; any free
    /// port on Slurm, where workers find it in `RUN/coordinator.json`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Port of the coordinator's Prometheus endpoint [default: 9464 on ssh and Kubernetes; any
    /// free port on Slurm, written into its Prometheus target file].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    /// TLS between the processes of the run (a certificate authority of the run's own, made
    /// into `RUN/deploy/tls/`); `false` sends the token and the ring secret in clear.
    #[serde(default = "yes")]
    pub tls: bool,
    /// `deploy.slurm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSection>,
    /// `deploy.ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSection>,
    /// `deploy.kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSection>,
}

/// `deploy.slurm`: one batch job; the coordinator in the batch script on the first node, one
/// worker task per GPU (or `workers_per_node` CPU workers) with `srun`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--time` (e.g. `24:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    /// Nodes of the job.
    #[serde(default = "one")]
    pub nodes: usize,
    /// GPUs per node, one worker each (0: CPU workers).
    #[serde(default)]
    pub gpus_per_node: usize,
    /// Workers per node on CPU nodes (`gpus_per_node: 0`).
    #[serde(default = "one")]
    pub workers_per_node: usize,
    /// `--cpus-per-task` of every worker (also its libtorch threads).
    #[serde(default = "one")]
    pub cpus_per_worker: usize,
    /// Seconds before the time limit at which Slurm sends USR1: the job stops at its next
    /// checkpoint and requeues itself, and the requeued job resumes.
    #[serde(default = "default_signal")]
    pub signal_before_secs: u64,
    /// More `#SBATCH` options, verbatim (e.g. `--qos=high`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// Shell lines run before anything else (e.g. `module load cuda`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
}

/// `deploy.ssh`: hosts reached over ssh; the coordinator on the first one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// Host names or addresses (`user@host` works); the coordinator runs on the first.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// GPUs per host, one worker each (0: CPU workers).
    #[serde(default)]
    pub gpus_per_host: usize,
    /// Workers per host on CPU hosts.
    #[serde(default = "one")]
    pub workers_per_host: usize,
    /// libtorch threads of each worker (default: libtorch's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Options given to `ssh` (e.g. `["-i", "~/.ssh/cluster"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `deploy.kubernetes`: manifests for a coordinator Job behind a headless Service and an
/// Indexed Job of worker pods (one per node, one container per worker), the run config as a
/// ConfigMap, the token and the TLS files as Secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    /// Namespace of every object.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Also write a Namespace object (most clusters give users a namespace instead).
    #[serde(default)]
    pub create_namespace: bool,
    /// The worker and coordinator image (bring your own registry; see deploy/docker/Dockerfile).
    #[serde(default)]
    pub image: String,
    /// The `rosetta` binary inside the image.
    #[serde(default = "default_image_binary")]
    pub binary: PathBuf,
    /// Worker pods (one per node).
    #[serde(default = "one")]
    pub nodes: usize,
    /// GPUs per pod, one worker container each (0: CPU workers).
    #[serde(default)]
    pub gpus_per_node: usize,
    /// Worker containers per pod on CPU nodes.
    #[serde(default = "one")]
    pub workers_per_node: usize,
    /// The PersistentVolumeClaim that holds the data and the run directory, mounted at
    /// `mount_path` in every pod (created with `volume_size` when `storage_class` is given).
    #[serde(default = "default_claim")]
    pub claim: String,
    /// Where the claim is mounted; the run config's paths must lie under it.
    #[serde(default = "default_mount")]
    pub mount_path: PathBuf,
    /// Create the claim with this storage class (ReadWriteMany).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Size of a created claim.
    #[serde(default = "default_size")]
    pub volume_size: String,
    /// CPU and memory of each worker container.
    #[serde(default = "default_worker_resources")]
    pub worker_resources: ResourceSection,
    /// CPU and memory of the coordinator (which also runs the evaluations).
    #[serde(default = "default_coordinator_resources")]
    pub coordinator_resources: ResourceSection,
    /// GPUs of the coordinator pod, for evaluations with `evaluation.device: cuda:N`.
    #[serde(default)]
    pub coordinator_gpus: usize,
    /// Size of the in-memory `/dev/shm` of every pod (NCCL's shared-memory transport).
    #[serde(default = "default_shm")]
    pub shm_size: String,
    /// User and group the containers run as (the image's `rosetta` user; never root).
    #[serde(default = "default_uid")]
    pub run_as_user: u32,
    /// Group of the processes and of the volume's files.
    #[serde(default = "default_uid")]
    pub run_as_group: u32,
    /// Capabilities added to the containers (e.g. `IPC_LOCK` for NCCL over InfiniBand): any
    /// takes the pods out of the Pod Security "restricted" profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_capabilities: Vec<String>,
    /// `nodeSelector` of every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// `tolerations` of every pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<TolerationSection>,
    /// Names of the Secrets that pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// `priorityClassName` of every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Also write a ServiceMonitor (needs the Prometheus Operator's CRD; without it the pods'
    /// `prometheus.io/*` annotations serve a plain Prometheus).
    #[serde(default)]
    pub service_monitor: bool,
    /// Labels added to every object and pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every object and pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// CPU and memory of a container: requests, and the memory limit (CPU is not limited, so that
/// a busy step is never throttled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    /// CPU request (`4`, `500m`).
    pub cpu: String,
    /// Memory request and limit (`16Gi`).
    pub memory: String,
}

/// A pod toleration, as Kubernetes writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TolerationSection {
    /// The taint key (empty with `operator: Exists` tolerates every taint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The taint value (with `Equal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Seconds a `NoExecute` taint is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

fn default_image_binary() -> PathBuf {
    PathBuf::from("/usr/local/bin/rosetta")
}
fn default_worker_resources() -> ResourceSection {
    ResourceSection { cpu: "4".into(), memory: "16Gi".into() }
}
fn default_coordinator_resources() -> ResourceSection {
    ResourceSection { cpu: "2".into(), memory: "8Gi".into() }
}
fn default_shm() -> String {
    "8Gi".into()
}
fn default_uid() -> u32 {
    1000
}
fn default_namespace() -> String {
    "rosetta".into()
}
fn default_claim() -> String {
    "rosetta-workspace".into()
}
fn default_mount() -> PathBuf {
    PathBuf::from("/workspace")
}
fn default_size() -> String {
    "100Gi".into()
}

/// The defaults a run config gets for an empty section.
macro_rules! default_from_serde {
    ($($section:ty),*) => {$(
        impl Default for $section {
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({}))
                    .unwrap_or_else(|e| unreachable!("every field of {} has a default: {e}", stringify!($section)))
            }
        }
    )*};
}
default_from_serde!(DeploySection, SlurmSection, SshSection, KubernetesSection);

impl DeploySection {
    /// Checks what every target shares: distinct ports, environment variable names.
    pub fn check(&self) -> Result<(), ConfigProblems> {
        let mut problems = ConfigProblems::new();
        if let (Some(port), Some(metrics)) = (self.port, self.metrics_port)
            && port == metrics
            && port != 0
        {
            problems.push("deploy.metrics_port", format!("{metrics} is also deploy.port: give them different ports"));
        }
        for key in self.env.keys() {
            let mut chars = key.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                problems.push(
                    format!("deploy.env.{key}"),
                    "not an environment variable name (letters, digits and _, not starting with a digit)",
                );
            }
        }
        problems.check()
    }
}

/// How many workers a node runs and on which devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeShape {
    /// Nodes (hosts, pods).
    pub nodes: usize,
    /// Workers per node.
    pub workers_per_node: usize,
    /// Whether each worker has a GPU (`cuda:<local index>`).
    pub gpus: bool,
}

impl NodeShape {
    /// Workers in all.
    pub fn workers(&self) -> usize {
        self.nodes * self.workers_per_node
    }

    fn of(nodes: usize, gpus: usize, cpu_workers: usize) -> Self {
        if gpus > 0 {
            Self { nodes, workers_per_node: gpus, gpus: true }
        } else {
            Self { nodes, workers_per_node: cpu_workers, gpus: false }
        }
    }
}

fn positive(problems: &mut ConfigProblems, path: &str, value: usize) {
    if value == 0 {
        problems.push(path, "must be at least 1");
    }
}

impl SlurmSection {
    /// The shape, checked.
    pub fn shape(&self) -> Result<NodeShape, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        positive(&mut problems, "deploy.slurm.nodes", self.nodes);
        positive(&mut problems, "deploy.slurm.workers_per_node", self.workers_per_node);
        positive(&mut problems, "deploy.slurm.cpus_per_worker", self.cpus_per_worker);
        if let Some(limit) = &self.time_limit {
            match slurm_seconds(limit) {
                None => problems.push(
                    "deploy.slurm.time_limit",
                    format!("{limit:?} is not a Slurm time (e.g. 24:00:00 or 2-00:00:00)"),
                ),
                Some(seconds) if self.signal_before_secs >= seconds => problems.push(
                    "deploy.slurm.signal_before_secs",
                    format!(
                        "{} s is not before the time limit {limit} ({seconds} s): the job would stop and requeue \
                         itself at every start",
                        self.signal_before_secs
                    ),
                ),
                Some(_) => {}
            }
        }
        for (i, line) in self.extra.iter().enumerate() {
            if line.trim_start().starts_with('#') {
                problems.push(
                    format!("deploy.slurm.extra[{i}]"),
                    format!("{line:?}: give the option alone (e.g. --qos=high); #SBATCH is added"),
                );
            } else if !line.trim_start().starts_with('-') {
                problems.push(
                    format!("deploy.slurm.extra[{i}]"),
                    format!("{line:?} is not an sbatch option (--name=value)"),
                );
            }
        }
        for (name, value) in [("partition", &self.partition), ("account", &self.account)] {
            if let Some(value) = value.as_ref().filter(|v| v.is_empty() || v.chars().any(|c| c.is_whitespace())) {
                problems.push(format!("deploy.slurm.{name}"), format!("{value:?} is not a name"));
            }
        }
        problems.into_result(NodeShape::of(self.nodes, self.gpus_per_node, self.workers_per_node))
    }
}

impl SshSection {
    /// The shape, checked.
    pub fn shape(&self) -> Result<NodeShape, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        if self.hosts.is_empty() {
            problems.push("deploy.ssh.hosts", "list at least one host");
        }
        positive(&mut problems, "deploy.ssh.workers_per_host", self.workers_per_host);
        if let Some(bad) =
            self.hosts.iter().find(|h| h.is_empty() || h.starts_with('-') || h.chars().any(char::is_whitespace))
        {
            problems.push("deploy.ssh.hosts", format!("{bad:?} is not a host"));
        }
        problems.into_result(NodeShape::of(self.hosts.len(), self.gpus_per_host, self.workers_per_host))
    }
}

/// The value of a Kubernetes resource quantity: a decimal number with an optional SI or binary
/// suffix (`500m`, `16Gi`) or decimal exponent (`4e3`); `None` when `text` is not one.
fn quantity_value(text: &str) -> Option<f64> {
    let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let power = exponent.strip_prefix(['e', 'E'])?;
            let digits = power.strip_prefix(['+', '-']).unwrap_or(power);
            if !all_digits(digits) {
                return None;
            }
            10f64.powi(power.parse::<i32>().ok()?)
        }
    };
    Some(value * scale)
}

/// Seconds of a Slurm time limit (`minutes`, `minutes:seconds`, `hours:minutes:seconds`,
/// `days-hours`, `days-hours:minutes`, `days-hours:minutes:seconds`); `None` when it is not one.
fn slurm_seconds(limit: &str) -> Option<u64> {
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<u64>().ok()).flatten()
    };
    let (days, rest) = match limit.split_once('-') {
        Some((days, rest)) => (Some(number(days)?), rest),
        None => (None, limit),
    };
    let parts: Vec<u64> = rest.split(':').map(number).collect::<Option<_>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [minutes]) => minutes * 60,
        (None, [minutes, seconds]) => minutes * 60 + seconds,
        (None, [hours, minutes, seconds]) => hours * 3600 + minutes * 60 + seconds,
        (Some(days), [hours]) => days * 86_400 + hours * 3600,
        (Some(days), [hours, minutes]) => days * 86_400 + hours * 3600 + minutes * 60,
        (Some(days), [hours, minutes, seconds]) => days * 86_400 + hours * 3600 + minutes * 60 + seconds,
        _ => return None,
    };
    Some(seconds)
}

/// Whether `text` is a DNS subdomain (a Kubernetes object name).
fn dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !text.starts_with(['-', '.'])
        && !text.ends_with(['-', '.'])
}

impl KubernetesSection {
    /// The shape, checked.
    pub fn shape(&self) -> Result<NodeShape, ConfigProblems> {
        let mut problems = ConfigProblems::new();
        positive(&mut problems, "deploy.kubernetes.nodes", self.nodes);
        positive(&mut problems, "deploy.kubernetes.workers_per_node", self.workers_per_node);
        if self.image.is_empty() {
            problems.push("deploy.kubernetes.image", "give the image that holds the rosetta binary");
        }
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !dns(&self.namespace) {
            problems.push("deploy.kubernetes.namespace", format!("{:?} is not a DNS label", self.namespace));
        }
        if !dns(&self.claim) {
            problems.push("deploy.kubernetes.claim", format!("{:?} is not a DNS label", self.claim));
        }
        if !self.mount_path.is_absolute() {
            problems.push("deploy.kubernetes.mount_path", "must be absolute");
        }
        if !self.binary.is_absolute() {
            problems.push("deploy.kubernetes.binary", "must be the absolute path of rosetta in the image");
        }
        for (path, quantity) in [
            ("worker_resources.cpu", &self.worker_resources.cpu),
            ("worker_resources.memory", &self.worker_resources.memory),
            ("coordinator_resources.cpu", &self.coordinator_resources.cpu),
            ("coordinator_resources.memory", &self.coordinator_resources.memory),
            ("shm_size", &self.shm_size),
            ("volume_size", &self.volume_size),
        ] {
            match quantity_value(quantity) {
                None => problems.push(
                    format!("deploy.kubernetes.{path}"),
                    format!("{quantity:?} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)"),
                ),
                Some(value) if value <= 0.0 => {
                    problems.push(format!("deploy.kubernetes.{path}"), format!("{quantity:?} must be more than 0"))
                }
                Some(_) => {}
            }
        }
        if self.run_as_user == 0 {
            problems.push("deploy.kubernetes.run_as_user", "0 is root, which Pod Security \"restricted\" refuses");
        }
        for (i, name) in self.image_pull_secrets.iter().enumerate() {
            if !dns_subdomain(name) {
                problems.push(format!("deploy.kubernetes.image_pull_secrets[{i}]"), format!("{name:?} is not a name"));
            }
        }
        for (i, toleration) in self.tolerations.iter().enumerate() {
            if let Some(operator) = toleration.operator.as_deref().filter(|o| !["Equal", "Exists"].contains(o)) {
                problems.push(
                    format!("deploy.kubernetes.tolerations[{i}].operator"),
                    format!("{operator:?}: Equal or Exists"),
                );
            }
            if let Some(effect) =
                toleration.effect.as_deref().filter(|e| !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(e))
            {
                problems.push(
                    format!("deploy.kubernetes.tolerations[{i}].effect"),
                    format!("{effect:?}: NoSchedule, PreferNoSchedule or NoExecute"),
                );
            }
        }
        problems.into_result(NodeShape::of(self.nodes, self.gpus_per_node, self.workers_per_node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(quantity_value("4"), Some(4.0));
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("16Gi"), Some(16.0 * 1024f64.powi(3)));
        assert_eq!(quantity_value("1.5k"), Some(1500.0));
        assert_eq!(quantity_value("4e3"), Some(4000.0));
        assert_eq!(quantity_value("1E-3"), Some(0.001));
        for bad in ["", "lots", "16GB", "-1", ".5", "1.", "4e", "Gi"] {
            assert_eq!(quantity_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn slurm_times_read_in_every_form_sbatch_takes() {
        assert_eq!(slurm_seconds("30"), Some(1800));
        assert_eq!(slurm_seconds("30:15"), Some(1815));
        assert_eq!(slurm_seconds("24:00:00"), Some(86_400));
        assert_eq!(slurm_seconds("2-00"), Some(172_800));
        assert_eq!(slurm_seconds("1-02:03"), Some(93_780));
        assert_eq!(slurm_seconds("1-00:00:01"), Some(86_401));
        for bad in ["", "24h", "1:2:3:4", "-1", "1-", "a:b"] {
            assert_eq!(slurm_seconds(bad), None, "{bad:?}");
        }
        let section = SlurmSection {
            time_limit: Some("00:20:00".into()),
            signal_before_secs: 3600,
            extra: vec!["#SBATCH --qos=high".into()],
            ..SlurmSection::default()
        };
        let err = section.shape().unwrap_err().to_string();
        assert!(err.contains("deploy.slurm.signal_before_secs: 3600 s is not before the time limit"), "{err}");
        assert!(err.contains("deploy.slurm.extra[0]"), "{err}");
    }

    #[test]
    fn shared_settings_are_checked() {
        let section = DeploySection {
            port: Some(9000),
            metrics_port: Some(9000),
            env: [("BAD-KEY".to_string(), "y".to_string()), ("GOOD_KEY".to_string(), "y".to_string())].into(),
            ..DeploySection::default()
        };
        let err = section.check().unwrap_err().to_string();
        assert!(err.contains("deploy.metrics_port: 9000 is also deploy.port"), "{err}");
        assert!(err.contains("deploy.env.BAD-KEY") && !err.contains("GOOD_KEY"), "{err}");
    }
}

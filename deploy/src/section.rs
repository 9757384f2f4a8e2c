//! The `deploy:` section of a run config: what belongs to a site (where the `rosetta` binary
//! is on the nodes, partition, account, time limit, hosts, image, namespace), as written
//! ([`DeploySection`]) and checked per target.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rosetta_common::ConfigProblems;
use serde::{Deserialize, Serialize};

fn default_port() -> u16 {
    50051
}
fn default_metrics_port() -> u16 {
    9464
}
fn default_signal() -> u64 {
    300
}
fn one() -> usize {
    1
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
    /// Port of the coordinator's gRPC service.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Port of the coordinator's Prometheus endpoint.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
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

/// `deploy.kubernetes`: manifests for a coordinator Job + Service and an Indexed Job of worker
/// pods (one per node), the run config as a ConfigMap, the token as a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    /// Namespace of every object.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The worker and coordinator image (bring your own registry; see deploy/docker/Dockerfile).
    #[serde(default)]
    pub image: String,
    /// Worker pods (one per node).
    #[serde(default = "one")]
    pub nodes: usize,
    /// GPUs per pod, one worker each (0: CPU workers).
    #[serde(default)]
    pub gpus_per_node: usize,
    /// Workers per pod on CPU nodes.
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
        if let Some(limit) = &self.time_limit
            && (limit.is_empty() || !limit.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-'))
        {
            problems.push(
                "deploy.slurm.time_limit",
                format!("{limit:?} is not a Slurm time (e.g. 24:00:00 or 2-00:00:00)"),
            );
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
        problems.into_result(NodeShape::of(self.nodes, self.gpus_per_node, self.workers_per_node))
    }
}

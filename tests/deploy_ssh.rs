//! `rosetta deploy ssh` across real network addresses: two "hosts" are network namespaces joined
//! by veth pairs to a bridge, each running Debian's sshd (as root; scripts/ci-services.sh installs
//! it). The coordinator and worker 0 run in one namespace, worker 1 in the other, reached over
//! ssh; the run matches a run of the same two workers on one host, bit for bit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::network::Network;
use common::{
    have_command, is_root, max_diff, model_tensors, rosetta, service_available, synth_small, tiny_run, write_config,
};
use rosetta_deploy::run_config::RawRunConfig;
use rosetta_deploy::section::{DeploySection, SshSection};
use rosetta_eval::config::EvaluationConfig;

/// Two hosts (network namespaces) running sshd, stopped again when dropped.
struct Hosts {
    network: Network,
    key: PathBuf,
    pids: Vec<PathBuf>,
}

impl Hosts {
    fn start(dir: &Path) -> Self {
        let network = Network::start(2);
        for key in [dir.join("key"), dir.join("hostkey")] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(&key)
                .status()
                .unwrap();
            assert!(status.success());
        }
        std::fs::copy(dir.join("key.pub"), dir.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut pids = Vec::new();
        for (n, address) in network.addresses.iter().enumerate() {
            let ns = network.namespace(n);
            let pid = dir.join(format!("sshd{n}.pid"));
            let config = dir.join(format!("sshd{n}.conf"));
            std::fs::write(
                &config,
                format!(
                    "ListenAddress {address}\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n",
                    dir.join("hostkey").display(),
                    dir.join("authorized_keys").display(),
                    pid.display()
                ),
            )
            .unwrap();
            let status =
                Command::new("ip").args(["netns", "exec", &ns, "/usr/sbin/sshd", "-f"]).arg(&config).status().unwrap();
            assert!(status.success(), "sshd in {ns}");
            pids.push(pid);
        }
        Self { network, key: dir.join("key"), pids }
    }

    fn addresses(&self) -> &[String] {
        &self.network.addresses
    }

    fn ssh_options(&self) -> Vec<String> {
        let mut options = vec!["-i".to_string(), self.key.display().to_string()];
        for option in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
        ] {
            options.extend(["-o".to_string(), option.to_string()]);
        }
        options
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for pid in &self.pids {
            if let Ok(pid) = std::fs::read_to_string(pid) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

#[test]
fn a_run_over_ssh_on_two_network_namespaces_matches_a_run_on_one_host() {
    let available = is_root() && have_command("sshd") && have_command("ip") && have_command("ssh");
    if !service_available("root with sshd and iproute2 (for hosts in network namespaces)", available) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 60, 20, 400);
    // Both runs evaluate their checkpoints: locally, and on the ssh coordinator's host.
    let evaluated = |mut config: RawRunConfig| {
        config.training.dropout = true;
        config.data.benchmarks = vec!["data/benchmark".into()];
        config.evaluation = Some(EvaluationConfig { every: 4, batch_size: 16, ..EvaluationConfig::default() });
        config
    };
    let one_host = evaluated(tiny_run("one-host", 6, 2));
    let out =
        rosetta(&["train", "--config", write_config(dir.path(), "one-host", &one_host).to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let hosts = Hosts::start(dir.path());
    let mut config = evaluated(tiny_run("ssh", 6, 2));
    config.deploy = Some(DeploySection {
        binary: Some(env!("CARGO_BIN_EXE_rosetta").into()),
        env: [("RUST_LOG".to_string(), "info".to_string())].into(),
        port: Some(common::free_port()),
        metrics_port: Some(common::free_port()),
        ssh: Some(SshSection {
            hosts: hosts.addresses().iter().map(|a| format!("root@{a}")).collect(),
            workers_per_host: 1,
            threads: Some(1),
            options: hosts.ssh_options(),
            ..SshSection::default()
        }),
        ..DeploySection::default()
    });
    let config = write_config(dir.path(), "ssh", &config);
    let out = rosetta(&["deploy", "ssh", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    // Each worker registered from its own host's address, and the ring formed across them.
    for (rank, address) in hosts.addresses().iter().enumerate() {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("[{} worker {rank}]", address)) && l.contains("rendezvous complete")),
            "worker {rank} on {address}:\n{stderr}"
        );
        assert!(stderr.contains(&format!("host={address}")), "no worker registered from {address}:\n{stderr}");
    }
    let commands = std::fs::read_to_string(dir.path().join("runs/ssh/deploy/ssh/commands.sh")).unwrap();
    for expected in ["ssh -i", "--tls-cert", "--tls-ca", "https://"] {
        assert!(commands.contains(expected), "{expected:?} missing from {commands}");
    }
    // Evaluated on the coordinator's host, as the local run evaluated on this one: the same reports.
    for step in [3, 5] {
        let report = |run: &str| {
            let path = dir.path().join(format!("runs/{run}/eval/step-{step:08}/synth-lareqa/report.json"));
            let report: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", path.display())),
            )
            .unwrap();
            report["lareqa"].clone()
        };
        assert_eq!(report("ssh"), report("one-host"), "step {step}");
    }
    let diff = max_diff(&model_tensors(dir.path(), "one-host", 5), &model_tensors(dir.path(), "ssh", 5));
    assert!(diff == 0.0, "the ssh run differs from the one-host run by {diff}");
}

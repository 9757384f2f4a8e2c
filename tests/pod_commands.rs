//! What the Kubernetes pods really execute: the manifests of `rosetta deploy kubernetes` are
//! run as a cluster would run them, without a cluster. The image's file tree is built from
//! `deploy/docker/Dockerfile`'s layout (the binary where it COPYs it, libtorch where pip puts
//! it, the system libraries the binary loads, the `rosetta` user), and every pod — the
//! coordinator and one per worker node — runs its container's command, environment, user and
//! volume mounts as the manifests give them, in that tree as its root (`chroot`) and in a
//! network namespace of its own, with the headless Service's name resolving to the coordinator
//! pod. A path that exists only on the submitting machine fails here. The coordinator pod is
//! killed mid-run and every pod restarted (what `restartPolicy: OnFailure` does): the run
//! resumes, finishes, evaluates its last checkpoint inside the coordinator pod, and ends with
//! the parameters of an undisturbed run. No Kubernetes API server runs here.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::network::Network;
use common::{
    have_command, is_root, max_diff, model_tensors, rosetta, service_available, synth_small, tiny_run, write_config,
};
use rosetta_deploy::section::{DeploySection, KubernetesSection, ResourceSection};
use rosetta_eval::config::EvaluationConfig;
use serde_json::Value;

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What `deploy/docker/Dockerfile` says the image holds.
struct ImageLayout {
    /// `ENV` lines.
    env: Vec<(String, String)>,
    /// Where `COPY target/release/rosetta` puts the binary.
    binary: String,
    /// The `site-packages` directory pip installs torch into (from `LD_LIBRARY_PATH`).
    site_packages: String,
}

fn image_layout() -> ImageLayout {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker/Dockerfile")).unwrap();
    let mut env = Vec::new();
    let mut binary = None;
    for line in dockerfile.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (key, value) = rest.split_once('=').expect("ENV KEY=VALUE");
            env.push((key.to_string(), value.to_string()));
        }
        if let Some(rest) = line.strip_prefix("COPY target/release/rosetta ") {
            binary = Some(rest.trim().to_string());
        }
    }
    let library_path = env.iter().find(|(k, _)| k == "LD_LIBRARY_PATH").expect("the Dockerfile sets LD_LIBRARY_PATH");
    let torch_lib =
        library_path.1.split(':').find(|p| p.ends_with("/torch/lib")).expect("torch/lib on LD_LIBRARY_PATH");
    let site_packages = torch_lib.trim_end_matches("/torch/lib").to_string();
    ImageLayout { env, binary: binary.expect("the Dockerfile COPYs the binary"), site_packages }
}

/// The venv's `site-packages` (where the test's libtorch comes from).
fn venv_site_packages() -> PathBuf {
    let python = rosetta_common::python::project_python(Path::new(env!("CARGO_MANIFEST_DIR")));
    let out = Command::new(python)
        .args(["-c", "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Builds the image's file tree at `root`: the system libraries the binary loads (copied at
/// their paths), the directories the Dockerfile and the pods' mounts need, the `rosetta` user.
fn build_image(root: &Path, layout: &ImageLayout, site_packages: &Path, hosts: &str) {
    let torch_lib = site_packages.join("torch/lib");
    let ldd =
        Command::new("ldd").arg(env!("CARGO_BIN_EXE_rosetta")).env("LD_LIBRARY_PATH", &torch_lib).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    for path in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        if path.starts_with(site_packages.to_str().unwrap()) {
            continue; // in the bind-mounted site-packages
        }
        let target = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(path, &target).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for dir in ["proc", "dev", "tmp", "etc/rosetta/config", "etc/rosetta/token", "etc/rosetta/tls"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    for package in ["torch", "nvidia"] {
        std::fs::create_dir_all(root.join(layout.site_packages.trim_start_matches('/')).join(package)).unwrap();
    }
    let binary = root.join(layout.binary.trim_start_matches('/'));
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::write(&binary, b"").unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nrosetta:x:1000:1000::/nonexistent:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nrosetta:x:1000:\n").unwrap();
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: files\n").unwrap();
    std::fs::write(root.join("etc/hosts"), hosts).unwrap();
    // The loader's cache of the system's libraries, as the image has one of its own.
    if Path::new("/etc/ld.so.cache").is_file() {
        std::fs::copy("/etc/ld.so.cache", root.join("etc/ld.so.cache")).unwrap();
    }
}

/// One pod as a cluster would run it.
struct Pod {
    name: String,
    namespace: String,
    script: String,
    log: PathBuf,
}

/// Everything the pods of one run share: the manifests, the image tree and where it came from,
/// the volume, and where the pods' volumes and logs go.
struct Cluster<'a> {
    manifests: &'a Path,
    state: &'a Path,
    root: &'a Path,
    layout: &'a ImageLayout,
    site_packages: &'a Path,
    workspace: &'a Path,
}

impl Cluster<'_> {
    /// The pod of `container` in `pod_spec`: its volumes materialised under `state` (ConfigMap
    /// and Secret keys as files, group-readable by the pod's fsGroup as the kubelet leaves them),
    /// its mounts made in a mount namespace of its own, its command run as its user.
    fn pod(&self, name: &str, namespace: String, pod_spec: &Value, container: &Value) -> Pod {
        let Cluster { manifests, state, root, layout, site_packages, workspace } = *self;
        let security = &pod_spec["securityContext"];
        let (uid, gid) = (security["runAsUser"].as_u64().unwrap(), security["runAsGroup"].as_u64().unwrap());
        let fs_group = security["fsGroup"].as_u64().unwrap();
        let mut mounts = vec![format!(
            "mount --bind {} {}",
            shell_quote(env!("CARGO_BIN_EXE_rosetta")),
            shell_quote(&root.join(layout.binary.trim_start_matches('/')).display().to_string())
        )];
        for package in ["torch", "nvidia"] {
            let target = root.join(layout.site_packages.trim_start_matches('/')).join(package);
            mounts.push(format!(
                "mount --bind -o ro {} {}",
                shell_quote(&site_packages.join(package).display().to_string()),
                shell_quote(&target.display().to_string())
            ));
        }
        mounts.push(format!("mount --rbind /dev {}", shell_quote(&root.join("dev").display().to_string())));
        mounts.push(format!("mount -t proc proc {}", shell_quote(&root.join("proc").display().to_string())));
        let volumes = pod_spec["volumes"].as_array().unwrap();
        for mount in container["volumeMounts"].as_array().unwrap() {
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("every mount names a volume");
            let target = root.join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
            std::fs::create_dir_all(&target).unwrap();
            let target = shell_quote(&target.display().to_string());
            let source = state.join(name).join(volume["name"].as_str().unwrap());
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                let object = find_object(manifests, "ConfigMap", config_map);
                write_keys(&source, &object["data"], None, fs_group);
            } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                let object = find_object(manifests, "Secret", secret);
                write_keys(&source, &object["stringData"], volume["secret"]["items"].as_array(), fs_group);
            } else if volume["persistentVolumeClaim"].is_object() {
                mounts.push(format!("mount --bind {} {target}", shell_quote(&workspace.display().to_string())));
                continue;
            } else if volume["emptyDir"]["medium"] == "Memory" {
                let size =
                    volume["emptyDir"]["sizeLimit"].as_str().unwrap_or("64Mi").replace("Gi", "g").replace("Mi", "m");
                mounts.push(format!("mount -t tmpfs -o size={size} tmpfs {target}"));
                continue;
            } else {
                panic!("volume {volume} of a kind this test does not run");
            }
            let read_only = if mount["readOnly"] == true { "-o ro " } else { "" };
            mounts.push(format!("mount --bind {read_only}{} {target}", shell_quote(&source.display().to_string())));
        }
        let mut env = layout.env.clone();
        for var in container["env"].as_array().into_iter().flatten() {
            env.push((var["name"].as_str().unwrap().to_string(), var["value"].as_str().unwrap().to_string()));
        }
        env.push(("HOSTNAME".into(), name.to_string()));
        let command: Vec<String> =
            container["command"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect();
        let script = format!(
            "set -e\nhostname {name}\n{}\nexec env -i {} \"$(command -v chroot)\" --userspec={uid}:{gid} --groups={fs_group} {} {}\n",
            mounts.join("\n"),
            env.iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))).collect::<Vec<_>>().join(" "),
            shell_quote(&root.display().to_string()),
            command.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" "),
        );
        Pod { name: name.to_string(), namespace, script, log: state.join(format!("{name}.log")) }
    }
}

impl Pod {
    /// Starts the pod's container; its output goes to its log.
    fn start(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "bash",
                "-c",
                &self.script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn find_object(manifests: &Path, kind: &str, name: &str) -> Value {
    for path in std::fs::read_dir(manifests).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()) {
        let object = yaml(&path);
        if object["kind"] == kind && object["metadata"]["name"] == name {
            return object;
        }
    }
    panic!("no {kind} {name} among the manifests");
}

/// A ConfigMap's or Secret's keys as files in `dir` (only `items` when given), owned by root and
/// group-readable by `fs_group`, as the kubelet leaves a volume of a pod with an `fsGroup`.
fn write_keys(dir: &Path, data: &Value, items: Option<&Vec<Value>>, fs_group: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let keys: Vec<(String, String)> = match items {
        Some(items) => {
            items.iter().map(|i| (i["key"].as_str().unwrap().into(), i["path"].as_str().unwrap().into())).collect()
        }
        None => data.as_object().unwrap().keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in keys {
        let file = dir.join(path);
        std::fs::write(&file, data[&key].as_str().unwrap()).unwrap();
        std::os::unix::fs::chown(&file, Some(0), Some(fs_group as u32)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration, what: &str, log: &dyn Fn() -> String) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} still running after {timeout:?}:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_manifests_commands_run_from_the_image_tree_in_pods_of_their_own_and_resume() {
    let available =
        is_root() && have_command("ip") && have_command("unshare") && have_command("chroot") && have_command("ldd");
    if !service_available("root with iproute2, unshare and chroot (pods as namespaces)", available) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    synth_small(&dir.path().join("data"), 60, 20, 400);
    let evaluated = |mut config: rosetta_deploy::run_config::RawRunConfig| {
        config.data.benchmarks = vec!["data/benchmark".into()];
        config.evaluation = Some(EvaluationConfig { every: 0, batch_size: 16, ..EvaluationConfig::default() });
        config.job.as_mut().unwrap().heartbeat_timeout_secs = 5.0;
        config
    };
    let reference = write_config(dir.path(), "reference", &evaluated(tiny_run("reference", 8, 2)));
    let out = rosetta(&["train", "--config", reference.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::rename(dir.path().join("data"), workspace.join("data")).unwrap();
    let mut config = evaluated(tiny_run("pods", 8, 2));
    config.deploy = Some(DeploySection {
        // The first generation's workers stop before step 4 (test-only fault injection), so that
        // the node is lost at a known point: after the checkpoint of step 3.
        env: [("ROSETTA_FAULT_HANG_AT_STEP".to_string(), "4@1".to_string())].into(),
        kubernetes: Some(KubernetesSection {
            image: "registry.example/rosetta:test".into(),
            nodes: 2,
            workers_per_node: 1,
            mount_path: workspace.clone(),
            worker_resources: ResourceSection { cpu: "1".into(), memory: "4Gi".into() },
            shm_size: "64Mi".into(),
            ..KubernetesSection::default()
        }),
        ..DeploySection::default()
    });
    let config_path = write_config(&workspace, "pods", &config);
    let out = rosetta(&["deploy", "kubernetes", "--config", config_path.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_dir = workspace.join("runs/pods");
    let manifests = run_dir.join("deploy/kubernetes");
    // The pods' user owns nothing on the volume but what fsGroup gives it: group-writable.
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "chgrp -R 1000 {w} && chmod -R g+rwX {w} && find {w} -type d -exec chmod g+s {{}} +",
                w = shell_quote(&workspace.display().to_string())
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let network = Network::start(3);
    let coordinator_job = yaml(&manifests.join("coordinator-job.yaml"));
    let workers_job = yaml(&manifests.join("workers-job.yaml"));
    let service = yaml(&manifests.join("coordinator-service.yaml"));
    let service_host = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    let layout = image_layout();
    let site_packages = venv_site_packages();
    let root = dir.path().join("image");
    build_image(
        &root,
        &layout,
        &site_packages,
        &format!("127.0.0.1 localhost\n{} {service_host}\n", network.addresses[0]),
    );
    let state = dir.path().join("pods");
    let coordinator_spec = &coordinator_job["spec"]["template"]["spec"];
    let worker_spec = &workers_job["spec"]["template"]["spec"];
    let cluster = Cluster {
        manifests: &manifests,
        state: &state,
        root: &root,
        layout: &layout,
        site_packages: &site_packages,
        workspace: &workspace,
    };
    let mut pods =
        vec![cluster.pod("coordinator", network.namespace(0), coordinator_spec, &coordinator_spec["containers"][0])];
    for index in 0..workers_job["spec"]["completions"].as_u64().unwrap() as usize {
        for container in worker_spec["containers"].as_array().unwrap() {
            let name = format!("workers-{index}-{}", container["name"].as_str().unwrap());
            pods.push(cluster.pod(&name, network.namespace(1 + index), worker_spec, container));
        }
    }
    for pod in &pods {
        eprintln!("POD {} (netns {}):\n{}", pod.name, pod.namespace, pod.script);
    }
    let logs = || pods.iter().map(|p| format!("== {}\n{}", p.name, p.log())).collect::<String>();

    // First launch: every pod killed once the checkpoint of step 3 is committed (a lost node).
    let started = Instant::now();
    let mut children: Vec<Child> = pods.iter().map(Pod::start).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let latest = || rosetta_common::RunDir::new(&run_dir).latest_checkpoint().ok().flatten();
    while latest() != Some(3) {
        for (pod, child) in pods.iter().zip(children.iter_mut()) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{} exited before the first checkpoint:\n{}",
                pod.name,
                logs()
            );
        }
        assert!(Instant::now() < deadline, "no checkpoint within 300 s:\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_checkpoint = started.elapsed();
    for child in &mut children {
        // SAFETY: kill(2) of a process this test started.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        let _ = child.wait();
    }
    let stopped = latest().unwrap();

    // restartPolicy: OnFailure — every pod again, with the same command.
    let restarted = Instant::now();
    let mut children: Vec<Child> = pods.iter().map(Pod::start).collect();
    for (pod, child) in pods.iter().zip(children.iter_mut()) {
        let status = wait_exit(child, Duration::from_secs(600), &pod.name, &logs);
        assert!(status.success(), "{} failed:\n{}", pod.name, logs());
    }
    let coordinator_log = pods[0].log();
    assert!(coordinator_log.contains(&format!("resuming after the checkpoint of step {stopped}")), "{coordinator_log}");
    assert!(coordinator_log.contains("evaluation reports in"), "{coordinator_log}");
    let report = run_dir.join("eval/step-00000007/synth-lareqa/report.json");
    assert!(report.is_file(), "the coordinator pod evaluated nothing:\n{coordinator_log}");
    eprintln!(
        "MEASURED pods: checkpoint of step 3 {:.1} s after start, every pod killed there; resumed and finished (with the final evaluation) {:.1} s after the restart",
        first_checkpoint.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );
    eprintln!("POD LOGS:\n{}", logs());
    let diff = max_diff(&model_tensors(dir.path(), "reference", 7), &model_tensors(&workspace, "pods", 7));
    assert!(diff == 0.0, "the pods' run differs from the undisturbed one by {diff}");
}

//! The ssh target: the coordinator on the first host, one worker per GPU (or CPU worker) on
//! every host, each started over `ssh` (the hosts share the run directory's file system and
//! have the `rosetta` binary at `deploy.binary`). Their output is streamed here with a
//! `[host role]` prefix; Ctrl-C, SIGTERM or the failure of any process stops every one of them
//! (a remote process ends when its ssh connection closes). The commands are written to
//! `RUN/deploy/ssh/commands.sh` first, so that a user can read them (and run them by hand).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use rosetta_common::argv::Argv;
use rosetta_coordinator::command::CoordinatorCommand;
use rosetta_coordinator::job::StartMode;
use rosetta_worker_config::{CoordinatorAddress, DeviceSpec, WorkerProcessConfig};

use crate::error::{DeployError, Result};
use crate::run::{DeployFiles, DeployRun};
use crate::section::{NodeShape, SshSection};
use crate::template::shell_line;

/// One process to start on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProcess {
    /// The host (as ssh takes it).
    pub host: String,
    /// What the log prefix calls it (`coordinator`, `worker 3`).
    pub role: String,
    /// The command line run there (by the login shell).
    pub command: String,
}

/// The host part of `user@host`.
fn address(host: &str) -> &str {
    host.rsplit('@').next().unwrap_or(host)
}

/// Runs `command` so that it stops when the ssh connection closes: the remote shell keeps the
/// connection's stdin on fd 3, starts the command in the background, and kills it once fd 3
/// reaches end of file.
fn tied_to_connection(command: &str) -> String {
    format!(
        "exec 3<&0 0</dev/null; {command} & pid=$!; ( read -r _ <&3; kill -TERM $pid ) >/dev/null 2>&1 & \
         watcher=$!; wait $pid; status=$?; kill $watcher 2>/dev/null; exit $status"
    )
}

fn env_prefix(run: &DeployRun) -> Vec<String> {
    if run.env.is_empty() {
        return Vec::new();
    }
    let mut words = vec!["env".to_string()];
    words.extend(run.env.iter().map(|(k, v)| format!("{k}={v}")));
    words
}

/// The shell line that runs `rosetta` with `argv` on a host, with the run's environment.
fn remote_line(run: &DeployRun, argv: Argv) -> String {
    let mut words = env_prefix(run);
    words.push(run.binary.display().to_string());
    words.extend(argv.into_vec());
    tied_to_connection(&shell_line(&words))
}

/// The coordinator and worker processes of `run` on the hosts of `ssh`: the coordinator on the
/// first host, listening on every interface (TLS unless `deploy.tls: false`), the workers
/// dialling the first host's address.
pub fn plan(
    run: &DeployRun,
    ssh: &SshSection,
    shape: NodeShape,
    files: &DeployFiles,
    start: StartMode,
) -> Vec<RemoteProcess> {
    let first = &ssh.hosts[0];
    let mut coordinator =
        CoordinatorCommand::new(files.config.clone(), SocketAddr::from(([0, 0, 0, 0], run.port)), start);
    coordinator.advertise = Some(address(first).to_string());
    coordinator.token_file = Some(files.token.clone());
    if let Some(tls) = &run.tls {
        (coordinator.tls_cert, coordinator.tls_key) = (Some(tls.cert.clone()), Some(tls.key.clone()));
    }
    let mut processes = vec![RemoteProcess {
        host: first.clone(),
        role: "coordinator".into(),
        command: remote_line(run, coordinator.to_args()),
    }];
    let scheme = if run.tls.is_some() { "https" } else { "http" };
    let mut rank = 0;
    for host in &ssh.hosts {
        for local in 0..shape.workers_per_node {
            let url = format!("{scheme}://{}:{}", address(first), run.port);
            let mut worker = WorkerProcessConfig::new(CoordinatorAddress::Url(url));
            worker.token_file = Some(files.token.clone());
            worker.ring_listen = SocketAddr::from(([0, 0, 0, 0], 0));
            worker.device = Some(if shape.gpus { DeviceSpec::Cuda(local) } else { DeviceSpec::Cpu });
            worker.threads = ssh.threads;
            if let Some(tls) = &run.tls {
                worker.tls_ca = Some(tls.ca.clone());
                worker.tls_domain = Some(crate::tls::SERVER_NAME.to_string());
            }
            processes.push(RemoteProcess {
                host: host.clone(),
                role: format!("worker {rank}"),
                command: remote_line(run, worker.to_args()),
            });
            rank += 1;
        }
    }
    processes
}

/// Writes the ssh command lines to `RUN/deploy/ssh/commands.sh`.
pub fn write_commands(run: &DeployRun, ssh: &SshSection, processes: &[RemoteProcess]) -> Result<std::path::PathBuf> {
    let mut text = String::from("#!/bin/sh\n# What `rosetta deploy ssh` runs (each line in its own ssh connection).\n");
    for process in processes {
        let mut words = vec!["ssh".to_string()];
        words.extend(ssh.options.iter().cloned());
        words.extend([process.host.clone(), process.command.clone()]);
        text.push_str(&format!("# {}\n{} &\n", process.role, shell_line(&words)));
    }
    text.push_str("wait\n");
    let path = run.deploy_dir().join("ssh").join("commands.sh");
    rosetta_common::atomic::write_atomic(&path, text.as_bytes())
        .map_err(|e| DeployError::Process { what: format!("writing {}", e.path.display()), source: e.source })?;
    Ok(path)
}

struct Remote {
    role: String,
    host: String,
    child: Child,
}

fn stream(prefix: String, input: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(input).lines().map_while(std::result::Result::ok) {
            eprintln!("[{prefix}] {line}");
        }
    });
}

fn spawn(ssh: &SshSection, process: &RemoteProcess) -> Result<Remote> {
    let mut command = Command::new("ssh");
    command.args(&ssh.options).arg(&process.host).arg(&process.command);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| DeployError::Process {
        what: format!("running ssh {} for the {}", process.host, process.role),
        source,
    })?;
    let prefix = format!("{} {}", address(&process.host), process.role);
    if let Some(out) = child.stdout.take() {
        stream(prefix.clone(), out);
    }
    if let Some(err) = child.stderr.take() {
        stream(prefix, err);
    }
    Ok(Remote { role: process.role.clone(), host: process.host.clone(), child })
}

fn stop_all(remotes: &mut [Remote]) {
    for remote in remotes.iter_mut() {
        // Closing stdin ends the remote process (see `tied_to_connection`); killing ssh closes it.
        drop(remote.child.stdin.take());
        let _ = remote.child.kill();
    }
    for remote in remotes.iter_mut() {
        let _ = remote.child.wait();
    }
}

/// Starts every process over ssh and supervises them until the coordinator exits. Fails (after
/// stopping everything) when any process fails, on SIGINT or SIGTERM, or when the coordinator
/// does not serve within `startup`.
pub fn run(run: &DeployRun, ssh: &SshSection, processes: &[RemoteProcess], startup: Duration) -> Result<()> {
    let stop = stop_on_signals();
    let addresses = run.run_dir.coordinator_addresses();
    let _ = std::fs::remove_file(&addresses);
    let mut remotes = vec![spawn(ssh, &processes[0])?];
    let deadline = Instant::now() + startup;
    // The coordinator writes coordinator.json on the shared file system once it serves.
    while !addresses.is_file() {
        if let Some(status) =
            remotes[0].child.try_wait().map_err(|source| DeployError::Process { what: "ssh".into(), source })?
        {
            stop_all(&mut remotes);
            return Err(DeployError::Scheduler(format!(
                "the coordinator on {} exited with {status} before serving",
                remotes[0].host
            )));
        }
        if Instant::now() > deadline || stop.load(std::sync::atomic::Ordering::SeqCst) {
            stop_all(&mut remotes);
            return Err(DeployError::Scheduler(format!(
                "the coordinator did not serve within {startup:?} ({} never appeared)",
                addresses.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for process in &processes[1..] {
        match spawn(ssh, process) {
            Ok(remote) => remotes.push(remote),
            Err(error) => {
                stop_all(&mut remotes);
                return Err(error);
            }
        }
    }
    let outcome = supervise(&mut remotes, stop);
    stop_all(&mut remotes);
    outcome
}

fn supervise(remotes: &mut [Remote], stop: &std::sync::atomic::AtomicBool) -> Result<()> {
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DeployError::Interrupted("a signal"));
        }
        for (i, remote) in remotes.iter_mut().enumerate() {
            let status =
                remote.child.try_wait().map_err(|source| DeployError::Process { what: "ssh".into(), source })?;
            match status {
                Some(status) if i == 0 && status.success() => return wait_workers(&mut remotes[1..]),
                Some(status) if i == 0 && status.code() == Some(rosetta_coordinator::process::STOPPED_EARLY_EXIT) => {
                    return wait_workers(&mut remotes[1..]);
                }
                Some(status) if !status.success() => {
                    return Err(DeployError::JobFailed(format!(
                        "the {} on {} exited with {status}",
                        remote.role, remote.host
                    )));
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After the coordinator finished: the workers exit by themselves (bounded).
fn wait_workers(workers: &mut [Remote]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for worker in workers {
        while worker.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Raised by SIGINT or SIGTERM once [`stop_on_signals`] ran.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn raise_stop(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM raise [`STOP`] instead of ending this process.
fn stop_on_signals() -> &'static std::sync::atomic::AtomicBool {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, raise_stop as *const () as libc::sighandler_t) };
    }
    &STOP
}

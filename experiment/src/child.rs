//! Child processes of an experiment (`rosetta train`, `rosetta eval`, `rosetta export`): output
//! into the cell's log file, progress lines relayed with the cell's name, SIGINT/SIGTERM of the
//! experiment passed on, and never left behind (each child dies with its parent).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{ExperimentError, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM stop the experiment at once: running children are told to stop
/// (they keep their last checkpoint), no new cell starts.
pub fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether the experiment was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How long a child told to stop may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// One child process to run to its end.
#[derive(Debug)]
pub struct ChildRun<'a> {
    /// The cell it belongs to (prefixes relayed lines and errors).
    pub cell: &'a str,
    /// What it does, for messages (`training`, `evaluation`).
    pub what: &'a str,
    /// The log file its output is appended to.
    pub log: PathBuf,
    /// Relay progress lines (those starting with `[`) to stdout.
    pub relay_progress: bool,
}

impl ChildRun<'_> {
    /// Runs `command`; `Ok` when it exits 0.
    pub fn run(&self, mut command: Command) -> Result<()> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| ExperimentError::io(&self.log, e))?;
        let _ = writeln!(log, "== {} {:?}", self.what, command);
        let stdout = log.try_clone().map_err(|e| ExperimentError::io(&self.log, e))?;
        command.stdin(Stdio::null()).stdout(Stdio::from(stdout)).stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it asks the kernel to SIGTERM the child when this
        // process dies, so a killed experiment leaves no training behind.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| self.failed(format!("could not start: {e}")))?;
        let stderr = child.stderr.take();
        let relay = self.relay_progress.then(|| self.cell.to_string());
        let log_path = self.log.clone();
        let reader = std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(cell) = &relay
                    && line.starts_with('[')
                {
                    println!("  {cell} {line}");
                }
            }
            let _ = log.flush();
            drop(log_path);
        });
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| self.failed(format!("waiting: {e}")))? {
                break status;
            }
            if interrupted() {
                // SAFETY: the pid is our own live child's.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = Instant::now() + STOP_GRACE;
                while child.try_wait().ok().flatten().is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = reader.join();
                return Err(ExperimentError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = reader.join();
        if status.success() { Ok(()) } else { Err(self.failed(status.to_string())) }
    }

    fn failed(&self, status: String) -> ExperimentError {
        ExperimentError::Step {
            cell: self.cell.to_string(),
            what: self.what.to_string(),
            status,
            log: self.log.clone(),
        }
    }
}

/// The last lines of a log (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

//! Fault injection for the end-to-end fault tests, read from the environment once; unset (as in
//! every real run) it does nothing:
//!
//! * `ROSETTA_FAULT_START_DELAY_SECS=S`: after registering (heartbeats already running), wait S
//!   seconds before building the model, as loading a large model or data set would.
//! * `ROSETTA_FAULT_HANG_AT_STEP=N[@G]`: in generation G (default 1), stop the training thread
//!   for good before step N while the heartbeat task keeps beating, as a stuck thread would.

use std::time::Duration;

/// The faults this worker was asked to inject.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    start_delay: Option<Duration>,
    hang_at: Option<(u64, u64)>,
}

impl Faults {
    /// The faults named by the environment (none when the variables are unset or malformed).
    pub fn from_env() -> Self {
        let start_delay = std::env::var("ROSETTA_FAULT_START_DELAY_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let hang_at = std::env::var("ROSETTA_FAULT_HANG_AT_STEP").ok().and_then(|v| {
            let (step, generation) = v.split_once('@').unwrap_or((&v, "1"));
            Some((step.parse().ok()?, generation.parse().ok()?))
        });
        let faults = Self { start_delay, hang_at };
        if faults != Self::default() {
            tracing::warn!(?faults, "fault injection is on (ROSETTA_FAULT_*)");
        }
        faults
    }

    /// The start-up delay, if asked for.
    pub fn delay_start(&self) {
        if let Some(delay) = self.start_delay {
            std::thread::sleep(delay);
        }
    }

    /// Hangs the calling thread for good before `step` of `generation`, if asked for.
    pub fn before_step(&self, step: u64, generation: u64) {
        if self.hang_at == Some((step, generation)) {
            tracing::warn!(step, generation, "fault injection: the training thread stops here");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

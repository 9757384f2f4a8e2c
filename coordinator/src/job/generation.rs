//! One generation of a job: the workers that formed it and everything that happened in it.
//! When a generation ends, its value is replaced whole by a fresh one that starts from the
//! last committed checkpoint ([`RestartPoint`]); nothing of the old one leaks into the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use super::{CheckpointPart, StepReport};
use crate::schedule::{Cursor, StepPlan};

/// A registered worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEntry {
    pub id: String,
    pub host: String,
    pub ring_address: SocketAddr,
    pub rank: usize,
    pub last_heartbeat: Instant,
}

/// Where a new generation starts: the step after the last committed checkpoint, the schedule
/// cursor there, and the checkpoint's model file (the job's start when nothing was committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartPoint {
    pub step: u64,
    pub cursor: Cursor,
    pub checkpoint: Option<PathBuf>,
}

/// The live state of one generation.
#[derive(Debug)]
pub(crate) struct Generation {
    pub number: u64,
    /// What every ring connection of this generation must present.
    pub ring_secret: [u8; 16],
    pub workers: Vec<WorkerEntry>,
    pub start: RestartPoint,
    /// Cursor after the last planned step.
    pub cursor: Cursor,
    pub next_planned: u64,
    /// The highest step any rank asked a plan for.
    pub highest_requested: Option<u64>,
    /// Plans (with the row numbers of every example and the cursor after the step), back to
    /// the last checkpoint.
    pub plans: BTreeMap<u64, PlannedStep>,
    /// Reports of unfinished steps, by rank.
    pub reports: BTreeMap<u64, Vec<(usize, StepReport)>>,
    /// Checkpoint parts of uncommitted checkpoints, by rank.
    pub commits: BTreeMap<u64, Vec<(usize, CheckpointPart)>>,
    /// Workers told that the job is finished.
    pub released: BTreeSet<String>,
}

/// A planned step: the global batch, each example's (query row, passage row), the cursor after it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedStep {
    pub plan: StepPlan,
    pub rows: Vec<(u64, u64)>,
    pub cursor: Cursor,
}

impl Generation {
    /// Generation `number`, waiting for workers, starting at `start`.
    pub fn starting_at(number: u64, start: RestartPoint) -> Self {
        Self {
            number,
            ring_secret: fresh_secret(),
            workers: Vec::new(),
            cursor: start.cursor.clone(),
            next_planned: start.step,
            highest_requested: None,
            start,
            plans: BTreeMap::new(),
            reports: BTreeMap::new(),
            commits: BTreeMap::new(),
            released: BTreeSet::new(),
        }
    }

    /// The rank of `worker_id`, if it belongs to this generation.
    pub fn rank_of(&self, worker_id: &str) -> Option<usize> {
        self.workers.iter().find(|w| w.id == worker_id).map(|w| w.rank)
    }
}

/// 16 random bytes; should the system's source fail, a value no outsider can guess in time
/// (clock and process id), with a warning.
fn fresh_secret() -> [u8; 16] {
    rosetta_common::random::random_bytes::<16>().unwrap_or_else(|error| {
        tracing::warn!(%error, "no random source for the ring secret; deriving one from the clock");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes()
    })
}

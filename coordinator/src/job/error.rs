//! What the job state machine refuses, and why; the gRPC layer maps each kind to a status code.

/// A request the job cannot serve, or a failure of its own work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The worker speaks another protocol version.
    #[error("protocol version {got} is not supported: this coordinator speaks version {supported}")]
    ProtocolVersion {
        /// The version the worker sent.
        got: u32,
        /// The version this coordinator speaks.
        supported: u32,
    },
    /// A request field is malformed.
    #[error("{field}: {message}")]
    InvalidRequest {
        /// The field.
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// Registration is closed: the world of this generation is complete.
    #[error("the job is already running with a full world")]
    WorldComplete,
    /// The job has finished.
    #[error("the job has finished")]
    Finished,
    /// The job failed (the reason names the worker and what it said).
    #[error("the job failed: {0}")]
    Failed(String),
    /// The request belongs to a generation that has ended.
    #[error("generation {asked} is over (current {current})")]
    GenerationOver {
        /// The generation the request named.
        asked: u64,
        /// The current generation.
        current: u64,
    },
    /// No worker of this generation has that id.
    #[error("unknown worker {0:?}: register first")]
    UnknownWorker(String),
    /// The generation did not form in time.
    #[error("{0}")]
    RendezvousTimeout(String),
    /// A plan was asked for a step whose plan is no longer kept.
    #[error("step {0} is older than the last checkpoint")]
    StepNotKept(u64),
    /// Planning, reading the row store or committing a checkpoint failed.
    #[error("{0}")]
    Internal(String),
}

/// Result alias of the job state machine.
pub type JobResult<T> = Result<T, JobError>;

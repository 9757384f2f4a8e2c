//! The one error type of `rosetta-collective`.

/// Failures of devices and collectives.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// A collective operation failed or timed out.
    #[error("collective {operation} (rank {rank}): {message}")]
    Collective {
        /// all_gather, all_reduce, broadcast, barrier or connect.
        operation: &'static str,
        /// This process's rank.
        rank: usize,
        /// What happened.
        message: String,
    },
    /// A value given to a device or collective is unusable (a device that is not there, a
    /// rank beyond the world, a tensor kind the ring cannot carry, an NCCL library that does
    /// not load).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Result alias of this crate.
pub type Result<T, E = CollectiveError> = std::result::Result<T, E>;

impl CollectiveError {
    /// Whether a restart would meet this failure again (a missing device or library, a bad
    /// value) rather than a lost peer or a timeout.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }

    /// An invalid value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

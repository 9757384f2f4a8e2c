//! How Rosetta's workers reach their devices and each other: libtorch's CUDA backend and
//! device selection ([`device`]), the collective operations a training step needs
//! ([`collective::Collective`]: all-gather, all-reduce, broadcast, barrier), the TCP ring that
//! carries them on CPU and bootstraps NCCL ([`ring`]), NCCL on CUDA ([`nccl`]), and the check of a machine for all of them (`rosetta doctor`, [`doctor`]).

pub mod collective;
pub mod device;
pub mod doctor;
pub mod error;
pub mod nccl;
pub mod ring;

pub use collective::Collective;
pub use error::{CollectiveError, Result};

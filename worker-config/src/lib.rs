//! The worker's configuration, with no libtorch: the `model:` and `training:` sections of a
//! run config as written and as built ([`model`], [`training`]), the device grammar
//! ([`device`]), number formats ([`precision`]), the spec every worker receives from the
//! coordinator ([`spec`]), and the command lines of the worker's processes ([`command`]), so
//! that the run config, the coordinator, the launchers and the experiment build typed values
//! and argv without linking libtorch.

pub mod command;
pub mod device;
pub mod model;
pub mod precision;
pub mod spec;
pub mod training;

pub use command::{CoordinatorAddress, ExportCommand, WorkerProcessConfig};
pub use device::DeviceSpec;
pub use spec::WorkerSpec;

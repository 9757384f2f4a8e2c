//! Rosetta's wire protocol: the `rosetta.v1` gRPC package, generated at build time.

/// Version a worker must announce in `Register`; bump on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Generated messages and the `Coordinator` client and server.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("rosetta.v1");
}

//! Rosetta's wire protocol: the `rosetta.v1` gRPC package, generated at build time.

/// Version a worker must announce in `Register`; bump on incompatible changes.
/// 2: workers receive their settings (not the YAML run config) and read rows from the pair store.
pub const PROTOCOL_VERSION: u32 = 2;

/// Generated messages and the `Coordinator` client and server.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("rosetta.v1");
}

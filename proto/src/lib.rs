//! The wire contract between community nodes and the district hub.
//!
//! Everything that crosses the network is defined in `proto/fivestar/v1/*.proto`
//! and generated here. These types stop at the edges: the node's sync client and
//! the hub's service module convert them to domain types from `fivestar-core`.
//!
//! The contract is versioned by package (`fivestar.v1`): fields are only added;
//! a breaking change goes into a new package beside the old one.

/// Generated types and services of package `fivestar.v1`.
pub mod v1 {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("fivestar.v1");
}

/// The encoded `FileDescriptorSet` of every `.proto` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fivestar_descriptor.bin"));

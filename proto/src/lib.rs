//! Protocol buffers for Custos (`custos.v1`) and the tonic code generated from them.
//!
//! The `.proto` sources live in `proto/custos/v1/`; this crate is the one place
//! generated code lives, so the daemon and the client crate share one definition.
#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `custos.v1`: key administration and signing services.
pub mod v1 {
    tonic::include_proto!("custos.v1");
}

/// The encoded `FileDescriptorSet` of `custos.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("custos_descriptor");

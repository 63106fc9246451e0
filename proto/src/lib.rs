//! Protocol buffers for Custos (`custos.v1`) and the tonic code generated from them.
//!
//! The `.proto` sources live in `proto/custos/v1/`; this crate is the one place
//! generated code lives, so the daemon and the client crate share one definition.
#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Benchmark reports (`custosd bench`, `custos bench`).
pub mod bench;

/// `custos.v1`: key administration and signing services.
pub mod v1 {
    tonic::include_proto!("custos.v1");
}

/// The keyset algorithms custosd accepts (`CreateKeysetRequest.alg`); the
/// daemon's `alg::Algorithm` is tested to name exactly these.
pub const ALGORITHMS: &[&str] = &["ES256", "PS256", "EdDSA", "RS256", "RSA-OAEP-256"];

/// The keyset purposes (`CreateKeysetRequest.purposes`); the daemon's
/// `Purpose::ALL` is tested to name exactly these.
pub const PURPOSES: &[&str] = &[
    "id_token",
    "jarm",
    "access_token",
    "userinfo",
    "request_object",
    "client_assertion",
    "generic",
    "request_object_decryption",
    "introspection",
    "http_message",
    "tls_client",
    "tls_server",
    "audit",
];

/// The FAPI profiles (`CreateKeysetRequest.profile`).
pub const PROFILES: &[&str] = &["fapi2", "fapi1-advanced", "oidc"];

/// The encoded `FileDescriptorSet` of `custos.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("custos_descriptor");

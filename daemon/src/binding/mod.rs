//! Sender-constraint checks: certificate-bound (RFC 8705) and DPoP-bound
//! (RFC 9449) tokens. `cert.rs` turns the certificate a TLS terminator
//! forwards into its `x5t#S256` thumbprint.

pub mod cert;

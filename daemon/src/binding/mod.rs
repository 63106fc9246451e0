//! Sender-constraint checks: certificate-bound (RFC 8705, `cert.rs`) and
//! DPoP-bound (RFC 9449, `dpop.rs`) tokens, and the replay cache
//! (`replay.rs`) for one-time identifiers.

pub(crate) mod cert;
pub(crate) mod dpop;
pub(crate) mod replay;

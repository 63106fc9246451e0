//! HTTP message signatures (RFC 9421) with `Content-Digest` (RFC 9530), as
//! FAPI 2.0 Message Signing uses them on resource requests and responses.
//!
//! Everything here is pure: the server hands in a [`message::Message`], gets
//! back a signature base to sign on the device, and turns the device's
//! signature into the `Signature-Input` / `Signature` field values.
//!
//! - `message.rs`: the message as given, and its derived components;
//! - `component.rs`: component identifiers (`"@method"`, `"signature";req;key="sig1"`)
//!   and their values;
//! - `base.rs`: the signature base and the two signature fields;
//! - `digest.rs`: `Content-Digest`;
//! - `check.rs`: reading a received signature and what a verifier demands of it;
//! - `keys.rs`: algorithms, and verifying with a public JWK.

pub(crate) mod base;
pub(crate) mod check;
pub(crate) mod component;
pub(crate) mod digest;
pub(crate) mod keys;
pub(crate) mod message;

pub(crate) use keys::HttpAlg;
pub(crate) use message::Message;

/// The `tag` FAPI 2.0 gives signatures on resource requests.
pub(crate) const TAG_REQUEST: &str = "fapi-2-request";
/// The `tag` FAPI 2.0 gives signatures on resource responses.
pub(crate) const TAG_RESPONSE: &str = "fapi-2-response";

#[cfg(test)]
mod rfc9421_tests;

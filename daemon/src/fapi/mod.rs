//! What a token must contain under the FAPI profiles: one module per token
//! kind. Each `build` is a pure function from the caller's facts (and an
//! injected clock, issuer and random `jti`) to a `typ` and claims, or a
//! refusal naming the claim at fault; the server signs what it returns.

pub(crate) mod access_token;
pub(crate) mod ciba;
pub(crate) mod claims;
pub(crate) mod client_assertion;
pub(crate) mod generic;
pub(crate) mod hash;
pub(crate) mod id_token;
pub(crate) mod introspection;
pub(crate) mod jarm;
pub(crate) mod jws_input;
pub(crate) mod profile;
pub(crate) mod rar;
pub(crate) mod request_object;
pub(crate) mod tls;

//! What a token must contain under the FAPI profiles: one module per token
//! kind. Each `build` is a pure function from the caller's facts (and an
//! injected clock, issuer and random `jti`) to a `typ` and claims, or a
//! refusal naming the claim at fault; the server signs what it returns.

pub mod access_token;
pub mod ciba;
pub mod claims;
pub mod client_assertion;
pub mod generic;
pub mod hash;
pub mod id_token;
pub mod introspection;
pub mod jarm;
pub mod jws_input;
pub mod profile;
pub mod rar;
pub mod request_object;
pub mod tls;

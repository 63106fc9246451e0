//! JOSE: JWK/JWKS and RFC 7638 thumbprints (`jwk.rs`), compact JWS signing
//! with device keys (`jws.rs`), and the JWK Set the daemon publishes.

pub(crate) mod jwe;
pub(crate) mod jwk;
pub(crate) mod jws;
pub mod verify;

use crate::keyring::keyset::Keyset;
use serde_json::{json, Value};

/// The RFC 7517 JWK Set of the published versions of `keysets`:
/// public members only, active versions first.
pub(crate) fn jwks<'a>(keysets: impl IntoIterator<Item = &'a Keyset>) -> Value {
    use crate::keyring::keyset::VersionState::{Active, Pending, Retired};
    let mut keys = Vec::new();
    let keysets: Vec<&Keyset> = keysets.into_iter().collect();
    for state in [Active, Pending, Retired] {
        for ks in &keysets {
            for v in ks.versions.iter().filter(|v| v.state == state) {
                keys.push(jwk::public_jwk(&v.public, &v.kid, ks.alg));
            }
        }
    }
    json!({ "keys": keys })
}

//! Compact JWS signing with a device-held key, through josekit.
//!
//! [`DeviceSigner`] implements `josekit::jws::JwsSigner` over a keyring
//! [`ActiveKey`], so josekit builds the header and payload encoding and the
//! device makes the signature. The device's own error is kept aside and
//! returned as is, so an unreachable HSM stays `Unavailable` rather than
//! becoming a generic JOSE error.

use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::keyring::ActiveKey;
use josekit::jws::{JwsAlgorithm, JwsHeader, JwsSigner};
use josekit::jwt::JwtPayload;
use josekit::JoseError;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Largest accepted claims document, in bytes.
pub const MAX_CLAIMS_BYTES: usize = 64 * 1024;
/// Deepest accepted nesting of arrays and objects in claims.
pub const MAX_DEPTH: usize = 16;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[derive(Debug, Clone)]
struct DeviceSigner {
    key: ActiveKey,
    failure: Arc<Mutex<Option<Error>>>,
}

fn josekit_alg(alg: Algorithm) -> Option<&'static dyn JwsAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&josekit::jws::ES256),
        Algorithm::PS256 => Some(&josekit::jws::PS256),
        Algorithm::RS256 => Some(&josekit::jws::RS256),
        Algorithm::EdDSA => Some(&josekit::jws::EdDSA),
        Algorithm::RsaOaep256 => None,
    }
}

impl JwsSigner for DeviceSigner {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        // `sign_jwt` builds a DeviceSigner only for signing algorithms.
        josekit_alg(self.key.alg).unwrap_or(&josekit::jws::ES256)
    }

    fn key_id(&self) -> Option<&str> {
        Some(&self.key.kid)
    }

    fn signature_len(&self) -> usize {
        match self.key.alg {
            Algorithm::ES256 | Algorithm::EdDSA => 64,
            Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256 => 512,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        self.key.sign(message).map_err(|e| {
            let text = e.to_string();
            if let Ok(mut slot) = self.failure.lock() {
                *slot = Some(e);
            }
            JoseError::InvalidSignature(anyhow_msg(text))
        })
    }

    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

fn anyhow_msg(text: String) -> anyhow::Error {
    anyhow::Error::msg(text)
}

/// Parses a claims document: a JSON object of at most [`MAX_CLAIMS_BYTES`].
///
/// # Errors
/// `InvalidArgument` saying what is wrong.
pub fn parse_claims(json: &str) -> Result<Map<String, Value>> {
    if json.len() > MAX_CLAIMS_BYTES {
        return Err(Error::InvalidArgument(format!(
            "claims are {} bytes; the limit is {MAX_CLAIMS_BYTES} bytes (64 KiB)",
            json.len()
        )));
    }
    match serde_json::from_str::<Value>(json) {
        Ok(v) if depth(&v) > MAX_DEPTH => Err(Error::InvalidArgument(format!(
            "claims are nested deeper than {MAX_DEPTH} levels"
        ))),
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Error::InvalidArgument(format!(
            "claims must be a JSON object, not {}",
            kind_of(&other)
        ))),
        Err(e) => Err(Error::InvalidArgument(format!(
            "claims are not valid JSON: {e}"
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Hex SHA-256 of a compact JWS's signing input (`header.payload`), for the
/// audit log: it identifies what was signed without recording the claims.
pub fn signing_input_sha256(jws: &str) -> String {
    use sha2::{Digest, Sha256};
    let input = jws.rsplit_once('.').map_or(jws, |(i, _)| i);
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// Signs `claims` as a compact JWS with `alg` and `kid` headers, and `typ` when given.
/// Blocking (it calls the device).
///
/// # Errors
/// `InvalidArgument` for claims josekit refuses (e.g. a non-numeric `exp`),
/// or the device's failure.
pub fn sign_jwt(key: &ActiveKey, typ: Option<&str>, claims: Map<String, Value>) -> Result<String> {
    if josekit_alg(key.alg).is_none() {
        return Err(Error::FailedPrecondition(format!(
            "{} is not a signature algorithm",
            key.alg
        )));
    }
    let payload = JwtPayload::from_map(claims)
        .map_err(|e| Error::InvalidArgument(format!("claims rejected: {e}")))?;
    let mut header = JwsHeader::new();
    header.set_key_id(key.kid.clone());
    if let Some(t) = typ.filter(|t| !t.is_empty()) {
        header.set_token_type(t);
    }
    let signer = DeviceSigner {
        key: key.clone(),
        failure: Arc::new(Mutex::new(None)),
    };
    josekit::jwt::encode_with_signer(&payload, &header, &signer).map_err(|e| {
        signer
            .failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_else(|| Error::Internal(format!("building the JWS: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::software::SoftwareBackend;
    use crate::backend::{KeyBackend, KeyRef};
    use crate::keyring::keyset::Profile;

    #[test]
    fn claims_must_be_a_small_object() {
        assert!(parse_claims("{\"a\":1}").is_ok());
        for bad in ["[]", "1", "\"x\"", "{", "null"] {
            assert!(
                matches!(parse_claims(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert!(parse_claims(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_CLAIMS_BYTES));
        assert!(parse_claims(&big)
            .unwrap_err()
            .to_string()
            .contains("64 KiB"));
    }

    #[test]
    fn signs_es256_with_kid_and_typ_and_verifies_with_josekit() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SoftwareBackend::new(dir.path().into()).unwrap());
        let key_ref = KeyRef::generate("t".into());
        let public = backend.generate(&key_ref, Algorithm::ES256).unwrap();
        let kid = crate::jose::jwk::thumbprint(&public);
        let key = ActiveKey {
            kid: kid.clone(),
            alg: Algorithm::ES256,
            profile: Profile::Fapi2,
            guard: crate::backend::guard::DeviceGuard::new("dev", backend.clone()),
            issuer: None,
            max_token_lifetime: 3600,
            purposes: vec![crate::keyring::keyset::Purpose::Generic],
            key_ref,
            backend,
        };
        let jws = sign_jwt(
            &key,
            Some("at+jwt"),
            parse_claims("{\"sub\":\"x\"}").unwrap(),
        )
        .unwrap();
        let jwk = crate::jose::jwk::public_jwk(&public, &kid, Algorithm::ES256);
        let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
        let (payload, header) = josekit::jwt::decode_with_verifier(&jws, &verifier).unwrap();
        assert_eq!(payload.subject(), Some("x"));
        assert_eq!(header.token_type(), Some("at+jwt"));
        assert_eq!(header.key_id(), Some(kid.as_str()));
    }
}

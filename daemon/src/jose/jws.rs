//! Compact JWS signing with a device-held key.
//!
//! The compact form is assembled here, once, into one buffer: the protected
//! header (`alg`, `kid`, `typ`), the payload, the device's signature, each
//! base64url. josekit did this before through its `JwsSigner` seam, which
//! costs two JSON maps and a copy per token and carries the device's error
//! as a string (it was parked aside and fished out again); this path
//! returns the device's own [`Error`], so an unreachable HSM stays
//! `Unavailable`. josekit still *verifies* (`jose::verify`) and checks this
//! output in the tests. The registered claims josekit's `JwtPayload` checks
//! are checked the same way ([`check_registered`]).

use crate::error::{Error, Result};
use crate::keyring::ActiveKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest accepted claims document, in bytes.
pub(crate) const MAX_CLAIMS_BYTES: usize = 64 * 1024;
/// Deepest accepted nesting of arrays and objects in claims.
pub(crate) const MAX_DEPTH: usize = 16;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A signed compact JWS and the SHA-256 (hex) of its signing input, for the
/// audit line (it identifies what was signed without recording the claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedJws {
    /// `header.payload.signature`.
    pub token: String,
    /// Hex SHA-256 of `header.payload`.
    pub input_sha256: String,
}

/// Refuses registered claims of the wrong JSON type (RFC 7519 section 4.1):
/// `iss`, `sub` and `jti` strings; `aud` a string or an array of strings;
/// `exp`, `nbf` and `iat` non-negative numbers.
///
/// # Errors
/// `InvalidArgument` naming the claim.
pub(crate) fn check_registered(claims: &Map<String, Value>) -> Result<()> {
    for (name, value) in claims {
        let ok = match name.as_str() {
            "iss" | "sub" | "jti" => value.is_string(),
            "aud" => match value {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            },
            "exp" | "nbf" | "iat" => value.as_f64().is_some_and(|n| n >= 0.0),
            _ => true,
        };
        if !ok {
            let want = match name.as_str() {
                "aud" => "a string or an array of strings",
                "exp" | "nbf" | "iat" => "a non-negative number (seconds since the epoch)",
                _ => "a string",
            };
            return Err(Error::invalid(format!(
                "claims rejected: the JWT {name} claim must be {want}"
            )));
        }
    }
    Ok(())
}

/// Parses a claims document: a JSON object of at most [`MAX_CLAIMS_BYTES`].
///
/// # Errors
/// `InvalidArgument` saying what is wrong.
pub(crate) fn parse_claims(json: &str) -> Result<Map<String, Value>> {
    if json.len() > MAX_CLAIMS_BYTES {
        return Err(Error::invalid(format!(
            "claims are {} bytes; the limit is {MAX_CLAIMS_BYTES} bytes (64 KiB)",
            json.len()
        )));
    }
    match serde_json::from_str::<Value>(json) {
        Ok(v) if depth(&v) > MAX_DEPTH => Err(Error::invalid(format!(
            "claims are nested deeper than {MAX_DEPTH} levels"
        ))),
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Error::invalid(format!(
            "claims must be a JSON object, not {}",
            kind_of(&other)
        ))),
        Err(e) => Err(Error::invalid(format!("claims are not valid JSON: {e}"))),
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

/// Appends `s` to `out` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Signs `claims` as a compact JWS with `alg` and `kid` headers, and `typ`
/// when given. Blocking (it calls the device).
///
/// # Errors
/// `InvalidArgument` for registered claims of the wrong type (e.g. a
/// non-numeric `exp`); `FailedPrecondition` for a key that does not sign;
/// the device's failure as it is.
pub(crate) fn sign_jwt(
    key: &ActiveKey,
    typ: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<SignedJws> {
    if !key.alg.is_signing() {
        return Err(Error::FailedPrecondition(format!(
            "{} is not a signature algorithm",
            key.alg
        )));
    }
    check_registered(claims)?;
    let alg = key.alg.as_str();
    let signature_len = if key.alg.is_rsa() { 512 } else { 64 };
    let mut json = Vec::with_capacity(512);
    json.extend_from_slice(b"{\"alg\":\"");
    json.extend_from_slice(alg.as_bytes());
    json.extend_from_slice(b"\",\"kid\":");
    json_string(&mut json, &key.kid);
    if let Some(t) = typ.filter(|t| !t.is_empty()) {
        json.extend_from_slice(b",\"typ\":");
        json_string(&mut json, t);
    }
    json.push(b'}');
    let header_len = json.len();
    serde_json::to_writer(&mut json, claims)
        .map_err(|e| Error::invalid(format!("claims rejected: {e}")))?;
    let (header, payload) = json.split_at(header_len);
    let mut token = String::with_capacity((json.len() + signature_len) * 4 / 3 + 8);
    B64.encode_string(header, &mut token);
    token.push('.');
    B64.encode_string(payload, &mut token);
    let input_sha256 = hex::encode(Sha256::digest(token.as_bytes()));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    B64.encode_string(&signature, &mut token);
    Ok(SignedJws {
        token,
        input_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;
    use crate::backend::software::SoftwareBackend;
    use crate::backend::{KeyBackend, KeyRef};
    use crate::keyring::keyset::Profile;
    use std::sync::Arc;

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
        let signed = sign_jwt(
            &key,
            Some("at+jwt"),
            &parse_claims("{\"sub\":\"x\",\"aud\":[\"a\",\"b\"],\"exp\":1.5}").unwrap(),
        )
        .unwrap();
        let jws = signed.token;
        let (input, _) = jws.rsplit_once('.').unwrap();
        assert_eq!(
            signed.input_sha256,
            hex::encode(Sha256::digest(input.as_bytes()))
        );
        let jwk = crate::jose::jwk::public_jwk(&public, &kid, Algorithm::ES256);
        let jwk = josekit::jwk::Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
        let (payload, header) = josekit::jwt::decode_with_verifier(&jws, &verifier).unwrap();
        assert_eq!(payload.subject(), Some("x"));
        assert_eq!(header.token_type(), Some("at+jwt"));
        assert_eq!(header.key_id(), Some(kid.as_str()));
        assert_eq!(header.algorithm(), Some("ES256"));
        for bad in [
            "{\"exp\":\"soon\"}",
            "{\"iat\":-1}",
            "{\"aud\":[\"a\",1]}",
            "{\"aud\":{}}",
            "{\"sub\":5}",
            "{\"jti\":null}",
        ] {
            let e = sign_jwt(&key, None, &parse_claims(bad).unwrap()).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidArgument(m) if m.detail.starts_with("claims rejected")),
                "{bad}: {e}"
            );
        }
    }
}

//! JWS verification: strict header rules, signature checks with public keys
//! already in memory (never a device call), and time and audience checks.
//!
//! The outcome of checking a token is a verdict, not an error: a token that
//! fails is [`Invalid`] with one [`Reason`] from a documented set.

use crate::alg::Algorithm;
use crate::keyring::keyset::VersionState;
use crate::keyring::manifest::Manifest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Largest token accepted for verification.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

pub use crate::verdict::{invalid, Invalid, Reason};

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The header's `alg`, already restricted to Custos's asymmetric algorithms.
    pub alg: Algorithm,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    pub signing_input: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl Parsed {
    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The header's `typ`, if any.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, Invalid> {
    let bytes = B64
        .decode(part)
        .map_err(|_| invalid(Reason::Malformed, format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid(
            Reason::Malformed,
            format!("{what} is not a JSON object"),
        )),
    }
}

/// Parses a compact JWS and applies the header rules every verification
/// shares: `alg` one of ES256, PS256, EdDSA, RS256 (never `none` or HMAC),
/// and no `crit`.
///
/// # Errors
/// [`Invalid`] with `malformed`, `alg_not_allowed` or `crit_unsupported`.
pub fn parse(token: &str) -> Result<Parsed, Invalid> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid(Reason::Malformed, "token larger than 64 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            Reason::Malformed,
            "a compact JWS has exactly 3 parts",
        ));
    };
    let header = decode_json(h, "header")?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(Reason::Malformed, "header has no alg"))?;
    let alg: Algorithm = match alg_name.parse() {
        Ok(a) if Algorithm::is_signing(a) => a,
        _ => {
            return Err(invalid(
                Reason::AlgNotAllowed,
                format!(
                    "alg \"{alg_name}\" is not accepted (only {})",
                    Algorithm::ALL
                        .iter()
                        .filter(|a| Algorithm::is_signing(**a))
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    if header.contains_key("crit") {
        return Err(invalid(
            Reason::CritUnsupported,
            "the header has crit members Custos does not understand",
        ));
    }
    let claims = decode_json(p, "payload")?;
    let signature = B64
        .decode(s)
        .map_err(|_| invalid(Reason::Malformed, "signature is not base64url"))?;
    Ok(Parsed {
        header,
        alg,
        claims,
        signing_input: format!("{h}.{p}"),
        signature,
    })
}

/// A JWK as josekit should see it for verification: refused when it has
/// private members; `alg` and `key_ops` dropped, because the algorithm is
/// chosen by the caller's rules, not by the JWK's optional members.
///
/// # Errors
/// A message naming the private member, or why it is not a JWK.
pub fn public_jwk(jwk: &Map<String, Value>) -> Result<Jwk, String> {
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        if jwk.contains_key(private) {
            return Err(format!("the JWK has the private member {private:?}"));
        }
    }
    let mut public = jwk.clone();
    public.remove("alg");
    public.remove("key_ops");
    Jwk::from_map(public).map_err(|e| format!("not a JWK: {e}"))
}

/// A public key ready to verify one algorithm.
#[derive(Debug)]
pub struct VerifyKey {
    /// The algorithm the key verifies.
    pub alg: Algorithm,
    verifier: Box<dyn JwsVerifier>,
}

impl VerifyKey {
    /// Builds a verifier from a public JWK for `alg`.
    ///
    /// # Errors
    /// A message when the JWK is not a public key usable with `alg`.
    pub fn from_jwk(jwk: &Map<String, Value>, alg: Algorithm) -> Result<Self, String> {
        let jwk = public_jwk(jwk)?;
        let verifier: Box<dyn JwsVerifier> = match alg {
            Algorithm::ES256 => Box::new(
                josekit::jws::ES256
                    .verifier_from_jwk(&jwk)
                    .map_err(|e| e.to_string())?,
            ),
            Algorithm::PS256 => Box::new(
                josekit::jws::PS256
                    .verifier_from_jwk(&jwk)
                    .map_err(|e| e.to_string())?,
            ),
            Algorithm::RS256 => Box::new(
                josekit::jws::RS256
                    .verifier_from_jwk(&jwk)
                    .map_err(|e| e.to_string())?,
            ),
            Algorithm::EdDSA => Box::new(
                josekit::jws::EdDSA
                    .verifier_from_jwk(&jwk)
                    .map_err(|e| e.to_string())?,
            ),
            Algorithm::RsaOaep256 => {
                return Err("RSA-OAEP-256 keys do not verify signatures".into())
            }
        };
        Ok(Self { alg, verifier })
    }

    /// Checks a signature over arbitrary bytes (no JOSE framing).
    ///
    /// # Errors
    /// [`Invalid`] with `bad_signature`.
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), Invalid> {
        self.verifier
            .verify(message, signature)
            .map_err(|_| invalid(Reason::BadSignature, "the signature does not verify"))
    }

    /// Checks `parsed`'s algorithm and signature against this key.
    ///
    /// # Errors
    /// [`Invalid`] with `alg_mismatch` or `bad_signature`.
    pub fn verify(&self, parsed: &Parsed) -> Result<(), Invalid> {
        if parsed.alg != self.alg {
            return Err(invalid(
                Reason::AlgMismatch,
                format!("alg {} but the key is {}", parsed.alg, self.alg),
            ));
        }
        self.verifier
            .verify(parsed.signing_input.as_bytes(), &parsed.signature)
            .map_err(|_| invalid(Reason::BadSignature, "the signature does not verify"))
    }
}

/// Which keyring versions verify, with their verifiers, rebuilt only when the
/// manifest generation changes.
#[derive(Debug, Default)]
pub struct KeyCache {
    inner: RwLock<(u64, HashMap<String, Arc<CachedKey>>)>,
}

/// One keyring version as the verifier sees it.
#[derive(Debug)]
pub struct CachedKey {
    /// The keyset it belongs to.
    pub keyset: String,
    /// The version's state.
    pub state: VersionState,
    /// The verifier (absent for versions that may not verify).
    pub key: Option<VerifyKey>,
}

impl KeyCache {
    /// Looks up a kid in the keyring snapshot `m`.
    pub fn get(&self, m: &Manifest, kid: &str) -> Option<Arc<CachedKey>> {
        {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            if guard.0 == m.generation && !guard.1.is_empty() {
                return guard.1.get(kid).cloned();
            }
        }
        let mut map = HashMap::new();
        for ks in m.keysets.values() {
            for v in &ks.versions {
                let verifies = v.state.verifies();
                let key = if verifies && ks.alg.is_signing() {
                    let jwk = crate::jose::jwk::public_jwk(&v.public, &v.kid, ks.alg);
                    jwk.as_object()
                        .and_then(|j| VerifyKey::from_jwk(j, ks.alg).ok())
                } else {
                    None
                };
                map.insert(
                    v.kid.clone(),
                    Arc::new(CachedKey {
                        keyset: ks.name.clone(),
                        state: v.state,
                        key,
                    }),
                );
            }
        }
        let found = map.get(kid).cloned();
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = (m.generation, map);
        found
    }
}

/// Time rules: `exp` (required when `require_exp`) not passed, `nbf` not in
/// the future, `iat` not in the future, each with `skew` seconds of leeway.
///
/// # Errors
/// [`Invalid`] with `missing_claim`, `expired` or `not_yet_valid`.
pub fn check_times(
    claims: &Map<String, Value>,
    now: i64,
    skew: i64,
    require_exp: bool,
) -> Result<(), Invalid> {
    let time = |name: &str| -> Result<Option<i64>, Invalid> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => crate::numeric_date::parse(name, v)
                .map(Some)
                .map_err(|e| invalid(Reason::MissingClaim, e)),
        }
    };
    match time("exp")? {
        Some(exp) if now > exp + skew => {
            return Err(invalid(
                Reason::Expired,
                format!("expired at {exp}, now {now}"),
            ))
        }
        None if require_exp => return Err(invalid(Reason::MissingClaim, "exp is required")),
        _ => {}
    }
    if let Some(nbf) = time("nbf")? {
        if nbf > now + skew {
            return Err(invalid(
                Reason::NotYetValid,
                format!("not before {nbf}, now {now}"),
            ));
        }
    }
    if let Some(iat) = time("iat")? {
        if iat > now + skew {
            return Err(invalid(
                Reason::NotYetValid,
                format!("issued in the future ({iat}), now {now}"),
            ));
        }
    }
    Ok(())
}

/// Whether `aud` (a string or an array of strings) contains `expected`.
pub fn audience_contains(claims: &Map<String, Value>, expected: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// Finds a signing key in a client's JWKS (as registered with the AS) for
/// `parsed`: by `kid` when the token names one, else the only key that fits
/// its `alg`.
///
/// # Errors
/// `Err(String)` for a JWKS that is not a JWK Set (a request error);
/// `Ok(Err(Invalid))` when no key fits the token.
pub fn key_from_jwks(jwks: &Value, parsed: &Parsed) -> Result<Result<VerifyKey, Invalid>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" array")?;
    let fits = |k: &&Value| {
        let use_ok = k
            .get("use")
            .and_then(Value::as_str)
            .is_none_or(|u| u == "sig");
        let alg_ok = k
            .get("alg")
            .and_then(Value::as_str)
            .is_none_or(|a| a == parsed.alg.as_str());
        use_ok && alg_ok
    };
    let candidates: Vec<&Value> = match parsed.kid() {
        Some(kid) => keys
            .iter()
            .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .collect(),
        None => keys.iter().filter(fits).collect(),
    };
    let [jwk] = candidates.as_slice() else {
        return Ok(Err(invalid(
            Reason::UnknownKid,
            match parsed.kid() {
                Some(kid) => format!("kid {kid} is not in the JWKS (or is there twice)"),
                None => "no kid, and the JWKS has no single key for this alg".into(),
            },
        )));
    };
    if let Some(a) = jwk.get("alg").and_then(Value::as_str) {
        if a != parsed.alg.as_str() {
            return Ok(Err(invalid(
                Reason::AlgMismatch,
                format!("alg {} but the JWK says {a}", parsed.alg),
            )));
        }
    }
    let obj = jwk.as_object().ok_or("a JWKS entry is not an object")?;
    Ok(VerifyKey::from_jwk(obj, parsed.alg).map_err(|e| {
        invalid(
            Reason::AlgMismatch,
            format!("the JWK does not fit {}: {e}", parsed.alg),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        B64.encode(v.to_string())
    }

    #[test]
    fn alg_none_hmac_and_crit_are_refused() {
        let claims = b64(&serde_json::json!({"sub": "x"}));
        for (header, reason) in [
            (serde_json::json!({"alg": "none"}), Reason::AlgNotAllowed),
            (
                serde_json::json!({"alg": "HS256", "kid": "k"}),
                Reason::AlgNotAllowed,
            ),
            (
                serde_json::json!({"alg": "RSA-OAEP-256"}),
                Reason::AlgNotAllowed,
            ),
            (serde_json::json!({"kid": "k"}), Reason::Malformed),
            (
                serde_json::json!({"alg": "ES256", "crit": ["exp"], "exp": 1}),
                Reason::CritUnsupported,
            ),
        ] {
            let t = format!("{}.{claims}.AAAA", b64(&header));
            assert_eq!(parse(&t).unwrap_err().reason, reason, "{header}");
        }
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_with_skew() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert!(check_times(&c(serde_json::json!({"exp": 100})), 150, 60, true).is_ok());
        assert_eq!(
            check_times(&c(serde_json::json!({"exp": 100})), 161, 60, true)
                .unwrap_err()
                .reason,
            Reason::Expired
        );
        assert_eq!(
            check_times(&c(serde_json::json!({})), 0, 60, true)
                .unwrap_err()
                .reason,
            Reason::MissingClaim
        );
        assert_eq!(
            check_times(
                &c(serde_json::json!({"exp": 1000, "nbf": 200})),
                100,
                60,
                true
            )
            .unwrap_err()
            .reason,
            Reason::NotYetValid
        );
        assert_eq!(
            check_times(
                &c(serde_json::json!({"exp": 1000, "iat": 200})),
                100,
                60,
                true
            )
            .unwrap_err()
            .reason,
            Reason::NotYetValid
        );
        assert_eq!(
            check_times(&c(serde_json::json!({"exp": "x"})), 100, 60, true)
                .unwrap_err()
                .reason,
            Reason::MissingClaim
        );
    }
}

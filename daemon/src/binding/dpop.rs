//! DPoP proof checks (RFC 9449 section 4.3) and the token binding
//! (`cnf.jkt`, section 6).

use super::replay::{Refusal, ReplayCache};
use crate::alg::Algorithm;
use crate::jose::jwk;
use crate::jose::verify::{self, VerifyKey};
use crate::verdict::{invalid, Invalid, Reason};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The HTTP request a DPoP proof must match.
#[derive(Debug, Clone)]
pub struct DpopRequest<'a> {
    /// The `DPoP` header value.
    pub proof: &'a str,
    /// The request method.
    pub htm: &'a str,
    /// The request URL.
    pub htu: &'a str,
    /// The access token presented with it (for `ath`), if any.
    pub access_token: Option<&'a str>,
}

/// Tunables for proof checks.
#[derive(Debug, Clone, Copy)]
pub struct DpopRules {
    /// How old (seconds) a proof's `iat` may be.
    pub window: i64,
    /// How far in the future `iat` may be.
    pub skew: i64,
}

fn bad(detail: impl Into<String>) -> Invalid {
    invalid(Reason::DpopInvalid, detail)
}

/// Normalizes an HTTP URI for comparison (RFC 9449 4.3 item 9): scheme and
/// host lower-cased, default port dropped, query and fragment removed.
pub fn normalize_htu(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{host}{port}{}", url.scheme(), url.path()))
}

/// base64url(SHA-256(access token)): the `ath` claim.
pub(crate) fn ath(access_token: &str) -> String {
    B64.encode(Sha256::digest(access_token.as_bytes()))
}

/// A DPoP proof that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the proof key (to compare with `cnf.jkt`).
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// Until when the `jti` must be remembered: `iat` + window + skew.
    pub expires_at: i64,
}

/// Checks a DPoP proof against the request. Its `jti` is not recorded
/// yet: call [`record`] once everything else about the request (the token's
/// binding to this key) has passed, so a proof that fails for another reason
/// takes no room in the replay cache.
///
/// # Errors
/// [`Invalid`] with `dpop_invalid` and a detail.
pub fn check_proof(
    req: &DpopRequest<'_>,
    now: i64,
    rules: DpopRules,
) -> Result<CheckedProof, Invalid> {
    let proof = verify::parse(req.proof).map_err(|e| {
        if e.reason == crate::verdict::Reason::AlgNotAllowed {
            bad("proof alg is not allowed for DPoP (only ES256, PS256, EdDSA)")
        } else {
            bad(format!("proof: {}", e.detail))
        }
    })?;
    if !matches!(
        proof.alg,
        Algorithm::ES256 | Algorithm::PS256 | Algorithm::EdDSA
    ) {
        return Err(bad(format!("proof alg {} is not allowed", proof.alg)));
    }
    if proof.typ() != Some("dpop+jwt") {
        return Err(bad("proof typ must be dpop+jwt"));
    }
    let Some(Value::Object(key)) = proof.header.get("jwk") else {
        return Err(bad("proof header has no jwk"));
    };
    let verifier =
        VerifyKey::from_jwk(key, proof.alg).map_err(|e| bad(format!("proof jwk: {e}")))?;
    verifier
        .verify(&proof)
        .map_err(|e| bad(format!("proof signature: {}", e.detail)))?;
    let c = &proof.claims;
    let text = |name: &str| c.get(name).and_then(Value::as_str);
    let Some(jti) = text("jti").filter(|j| !j.is_empty()) else {
        return Err(bad("proof has no jti"));
    };
    match text("htm") {
        Some(htm) if htm == req.htm => {}
        Some(htm) => {
            return Err(bad(format!(
                "proof htm \"{htm}\" is not the request method \"{}\"",
                req.htm
            )))
        }
        None => return Err(bad("proof has no htm (the HTTP method it was made for)")),
    }
    let want =
        normalize_htu(req.htu).ok_or_else(|| bad("the request URL is not an http(s) URL"))?;
    if text("htu").and_then(normalize_htu).as_deref() != Some(want.as_str()) {
        return Err(bad(format!("htu {:?} is not the request URL", text("htu"))));
    }
    let Some(iat) = c.get("iat").and_then(Value::as_i64) else {
        return Err(bad("proof has no integer iat"));
    };
    if iat < now - rules.window || iat > now + rules.skew {
        return Err(bad(format!(
            "proof iat {iat} is outside the accepted window (now {now})"
        )));
    }
    if let Some(token) = req.access_token {
        if text("ath") != Some(ath(token).as_str()) {
            return Err(bad("ath does not match the access token"));
        }
    }
    let jkt = thumbprint_of_jwk(key).map_err(bad)?;
    Ok(CheckedProof {
        jkt,
        jti: jti.to_string(),
        // iat is within [now - window, now + skew]: no overflow.
        expires_at: iat + rules.window + rules.skew,
    })
}

/// Records a checked proof's `jti` in `caller`'s partition for its key.
///
/// # Errors
/// [`Invalid`] with `dpop_replay` for a `jti` seen before, `dpop_invalid`
/// when this caller's partition for the key is full.
pub fn record(
    replay: &ReplayCache,
    caller: &str,
    proof: &CheckedProof,
    now: i64,
) -> Result<(), Invalid> {
    match replay.check_and_insert(
        caller,
        &format!("dpop:{}", proof.jkt),
        &proof.jti,
        proof.expires_at,
        now,
    ) {
        Ok(()) => Ok(()),
        Err(Refusal::Replayed) => Err(invalid(
            Reason::DpopReplay,
            format!("jti {} was used before", proof.jti),
        )),
        Err(Refusal::Full) => Err(bad(
            "this caller's replay cache for the DPoP key is full; try again shortly",
        )),
    }
}

/// RFC 7638 thumbprint of a public JWK given as JSON members.
///
/// # Errors
/// A message when the JWK lacks its required members.
pub(crate) fn thumbprint_of_jwk(key: &Map<String, Value>) -> Result<String, String> {
    let kty = key
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("jwk has no kty")?;
    let names: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => return Err(format!("jwk kty {other} is not supported")),
    };
    let mut m = Map::new();
    for n in names {
        let v = key
            .get(*n)
            .filter(|v| v.is_string())
            .ok_or(format!("jwk has no {n}"))?;
        m.insert((*n).to_string(), v.clone());
    }
    Ok(jwk::thumbprint_of_members(&m))
}

/// Checks the token's `cnf.jkt` against the proof key's thumbprint.
///
/// # Errors
/// `cnf_missing` or `cnf_mismatch`.
pub(crate) fn check_binding(claims: &Map<String, Value>, jkt: &str) -> Result<(), Invalid> {
    match claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
    {
        None => Err(invalid(Reason::CnfMissing, "the token has no cnf.jkt")),
        Some(t) if t == jkt => Ok(()),
        Some(_) => Err(invalid(
            Reason::CnfMismatch,
            "the DPoP key is not the one the token is bound to",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 9449 section 4.1 / 6.1: the example proof key and its jkt.
    #[test]
    fn rfc9449_example_jkt() {
        let key = json!({"kty": "EC", "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
        assert_eq!(
            thumbprint_of_jwk(key.as_object().unwrap()).unwrap(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    /// RFC 9449 section 7.1: the example access token's ath.
    #[test]
    fn rfc9449_example_ath() {
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn htu_normalization() {
        assert_eq!(
            normalize_htu("HTTPS://Server.Example.com:443/token?x=1#f").as_deref(),
            Some("https://server.example.com/token")
        );
        assert_ne!(normalize_htu("https://a/x"), normalize_htu("https://a/y"));
        assert_eq!(normalize_htu("ftp://a/x"), None);
        assert_eq!(normalize_htu("not a url"), None);
    }
}

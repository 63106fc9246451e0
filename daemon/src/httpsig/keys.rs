//! The RFC 9421 algorithms Custos signs and verifies with, chosen from the
//! key (never from the message): `ecdsa-p256-sha256` (`r || s`),
//! `rsa-pss-sha512` and `ed25519`. HMAC and RSA PKCS#1 v1.5 are refused.

use crate::alg::Algorithm;
use crate::verdict::{invalid, Invalid, Reason};
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};
use std::fmt;

/// An HTTP message signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpAlg {
    /// ECDSA P-256 with SHA-256; the signature is `r || s` (64 bytes).
    EcdsaP256Sha256,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512 and a 64-byte salt.
    RsaPssSha512,
    /// Ed25519.
    Ed25519,
}

impl HttpAlg {
    /// The registered name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::RsaPssSha512 => "rsa-pss-sha512",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The algorithm a keyring key signs HTTP messages with.
    pub(crate) fn for_key(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::ES256 => Some(Self::EcdsaP256Sha256),
            Algorithm::EdDSA => Some(Self::Ed25519),
            // A PSS key signs PSS; PKCS#1 v1.5 (RS256) keys and decryption
            // keys do not sign HTTP messages.
            Algorithm::PS256 => Some(Self::RsaPssSha512),
            Algorithm::RS256 | Algorithm::RsaOaep256 => None,
        }
    }

    /// The algorithm a public JWK verifies with.
    ///
    /// # Errors
    /// A message for a key type that has no supported algorithm.
    pub(crate) fn for_jwk(jwk: &Map<String, Value>) -> Result<Self, String> {
        let s = |k: &str| jwk.get(k).and_then(Value::as_str);
        match (s("kty"), s("crv")) {
            (Some("EC"), Some("P-256")) => Ok(Self::EcdsaP256Sha256),
            (Some("OKP"), Some("Ed25519")) => Ok(Self::Ed25519),
            (Some("RSA"), _) => Ok(Self::RsaPssSha512),
            (kty, crv) => Err(format!(
                "a key with kty {kty:?} crv {crv:?} has no HTTP signature algorithm \
                 (EC P-256, OKP Ed25519 or RSA)"
            )),
        }
    }
}

impl fmt::Display for HttpAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Verifies `signature` over `base` with the public `jwk`.
///
/// `claimed` is the `alg` parameter of the signature, if it had one: it
/// must name the key's algorithm (no algorithm confusion).
///
/// # Errors
/// [`Invalid`]: `alg_not_allowed`, `alg_mismatch`, `unknown_kid` (a JWK
/// that is not a public key) or `bad_signature`.
pub(crate) fn verify(
    jwk: &Map<String, Value>,
    claimed: Option<&str>,
    base: &[u8],
    signature: &[u8],
) -> Result<HttpAlg, Invalid> {
    let alg = HttpAlg::for_jwk(jwk).map_err(|e| invalid(Reason::UnknownKid, e))?;
    if let Some(c) = claimed {
        if !["ecdsa-p256-sha256", "rsa-pss-sha512", "ed25519"].contains(&c) {
            return Err(invalid(
                Reason::AlgNotAllowed,
                format!("alg {c:?} is not accepted (ecdsa-p256-sha256, rsa-pss-sha512, ed25519)"),
            ));
        }
        if c != alg.as_str() {
            return Err(invalid(
                Reason::AlgMismatch,
                format!("alg {c} but the key verifies {alg}"),
            ));
        }
    }
    let public =
        crate::jose::verify::public_jwk(jwk).map_err(|e| invalid(Reason::UnknownKid, e))?;
    if let Some(u) = jwk
        .get("use")
        .and_then(Value::as_str)
        .filter(|u| *u != "sig")
    {
        return Err(invalid(
            Reason::UnknownKid,
            format!("the JWK is registered for use {u:?}, not signatures"),
        ));
    }
    // A JWK that names its JOSE algorithm must name one of the same family
    // as the HTTP algorithm (an RS256 key does not verify PSS).
    if let Some(a) = jwk.get("alg").and_then(Value::as_str) {
        let fits = match alg {
            HttpAlg::EcdsaP256Sha256 => a == "ES256",
            HttpAlg::Ed25519 => a == "EdDSA" || a == "Ed25519",
            HttpAlg::RsaPssSha512 => matches!(a, "PS256" | "PS384" | "PS512"),
        };
        if !fits {
            return Err(invalid(
                Reason::AlgMismatch,
                format!("the JWK is for alg {a}, not {alg}"),
            ));
        }
    }
    let bad = |e: josekit::JoseError| invalid(Reason::UnknownKid, format!("not a usable key: {e}"));
    let verifier: Box<dyn JwsVerifier> = match alg {
        HttpAlg::EcdsaP256Sha256 => Box::new(
            josekit::jws::ES256
                .verifier_from_jwk(&public)
                .map_err(bad)?,
        ),
        HttpAlg::Ed25519 => Box::new(
            josekit::jws::EdDSA
                .verifier_from_jwk(&public)
                .map_err(bad)?,
        ),
        HttpAlg::RsaPssSha512 => Box::new(
            josekit::jws::PS512
                .verifier_from_jwk(&public)
                .map_err(bad)?,
        ),
    };
    verifier
        .verify(base, signature)
        .map_err(|_| invalid(Reason::BadSignature, "the signature does not verify"))?;
    Ok(alg)
}

//! Independent token making for tests (RustCrypto `p256`, by hand): DPoP
//! proofs, client-signed JWTs, and forged tokens (alg none, HS256 with a
//! public key) that Custos must refuse.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A P-256 key held by the test (a client's DPoP or signing key).
pub struct EcKey(p256::ecdsa::SigningKey);

impl EcKey {
    /// A fresh key.
    pub fn new() -> Self {
        Self(p256::ecdsa::SigningKey::random(&mut rand::thread_rng()))
    }

    /// The public JWK (no private members).
    pub fn public_jwk(&self) -> Value {
        let p = self.0.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(p.x().expect("x")), "y": B64.encode(p.y().expect("y"))})
    }

    /// The JWK with the private scalar `d` (what a careless client might send).
    pub fn private_jwk(&self) -> Value {
        let mut j = self.public_jwk();
        j["d"] = json!(B64.encode(self.0.to_bytes()));
        j
    }

    /// RFC 7638 thumbprint, computed here by hand.
    pub fn jkt(&self) -> String {
        let j = self.public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().expect("x"),
            j["y"].as_str().expect("y")
        );
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Signs `header` and `claims` as a compact ES256 JWS.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig: p256::ecdsa::Signature = self.0.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    /// A DPoP proof (RFC 9449) for `htm` `htu` at `iat`, with `ath` of `access_token`.
    pub fn dpop(&self, htm: &str, htu: &str, iat: i64, access_token: Option<&str>) -> String {
        self.dpop_with(htm, htu, iat, access_token, &rand_jti(), self.public_jwk())
    }

    /// A DPoP proof with every part chosen by the caller.
    pub fn dpop_with(
        &self,
        htm: &str,
        htu: &str,
        iat: i64,
        access_token: Option<&str>,
        jti: &str,
        jwk: Value,
    ) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let mut claims = json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat});
        if let Some(t) = access_token {
            claims["ath"] = json!(B64.encode(Sha256::digest(t.as_bytes())));
        }
        self.sign(&header, &claims)
    }
}

impl Default for EcKey {
    fn default() -> Self {
        Self::new()
    }
}

/// A random jti.
pub fn rand_jti() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

/// Re-encodes `token` with `alg: none` and no signature.
pub fn alg_none(token: &str) -> String {
    let mut parts = token.split('.');
    let header: Value =
        serde_json::from_slice(&B64.decode(parts.next().expect("h")).expect("b64")).expect("json");
    let payload = parts.next().expect("p");
    let mut h = header;
    h["alg"] = json!("none");
    format!("{}.{payload}.", B64.encode(h.to_string()))
}

/// Re-signs `token`'s payload with HS256, using `key_bytes` (e.g. the
/// public key's JWK text) as the HMAC secret: the classic confusion attack.
pub fn hs256_with(token: &str, key_bytes: &[u8]) -> String {
    use hmac::Mac;
    let mut parts = token.split('.');
    let header: Value =
        serde_json::from_slice(&B64.decode(parts.next().expect("h")).expect("b64")).expect("json");
    let payload = parts.next().expect("p");
    let mut h = header;
    h["alg"] = json!("HS256");
    let input = format!("{}.{payload}", B64.encode(h.to_string()));
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key_bytes).expect("hmac key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

//! JWKs (RFC 7517) of Custos public keys and their RFC 7638 thumbprints.
//!
//! This file is pure data conversion over [`PublicKey`]; it is the one part of
//! `jose/` that `keyring/` uses (a version's kid is its thumbprint), so it
//! must not depend on anything above `backend/`.

use crate::alg::Algorithm;
use crate::backend::PublicKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

fn b64_hex(hex_str: &str) -> String {
    // The hex was produced by Custos itself; an odd string is impossible, but
    // encode nothing rather than panic if the manifest was edited by hand.
    B64.encode(hex::decode(hex_str).unwrap_or_default())
}

/// The required members of the public JWK (RFC 7638 section 3.2), in
/// lexicographic order: exactly what the thumbprint hashes.
pub(crate) fn required_members(key: &PublicKey) -> Map<String, Value> {
    let v = match key {
        PublicKey::P256 { x, y } => {
            json!({"crv": "P-256", "kty": "EC", "x": b64_hex(x), "y": b64_hex(y)})
        }
        PublicKey::Rsa { n, e } => json!({"e": b64_hex(e), "kty": "RSA", "n": b64_hex(n)}),
        PublicKey::Ed25519 { x } => json!({"crv": "Ed25519", "kty": "OKP", "x": b64_hex(x)}),
    };
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// RFC 7638 thumbprint (SHA-256, base64url) of a JWK given as its required members.
pub(crate) fn thumbprint_of_members(members: &Map<String, Value>) -> String {
    // serde_json with `preserve_order` keeps insertion order; sort explicitly
    // so the hash input is canonical whatever order the members came in.
    let mut keys: Vec<&String> = members.keys().collect();
    keys.sort();
    let mut canonical = String::from("{");
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::String((*k).clone()).to_string());
        canonical.push(':');
        canonical.push_str(&members[*k].to_string());
    }
    canonical.push('}');
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// RFC 7638 thumbprint of a Custos public key: its kid.
pub(crate) fn thumbprint(key: &PublicKey) -> String {
    thumbprint_of_members(&required_members(key))
}

/// The published JWK of a key: required members plus `kid`, `alg` and `use`
/// (`sig`, or `enc` for RSA-OAEP-256 decryption keys).
pub(crate) fn public_jwk(key: &PublicKey, kid: &str, alg: Algorithm) -> Value {
    let mut m = required_members(key);
    m.insert("kid".into(), Value::String(kid.into()));
    m.insert("alg".into(), Value::String(alg.as_str().into()));
    let use_ = if alg.is_signing() { "sig" } else { "enc" };
    m.insert("use".into(), Value::String(use_.into()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 section 3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let mut m = Map::new();
        m.insert("e".into(), json!("AQAB"));
        m.insert("kty".into(), json!("RSA"));
        m.insert("n".into(), json!(n));
        assert_eq!(
            thumbprint_of_members(&m),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // The same key through the PublicKey path.
        let key = PublicKey::rsa(&B64.decode(n).unwrap(), &[1, 0, 1]);
        assert_eq!(
            thumbprint(&key),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// RFC 8037 appendix A.3: the Ed25519 example key's thumbprint.
    #[test]
    fn rfc8037_okp_thumbprint() {
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&PublicKey::ed25519(&x)),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn member_order_does_not_change_the_thumbprint() {
        let mut a = Map::new();
        a.insert("kty".into(), json!("EC"));
        a.insert("y".into(), json!("b"));
        a.insert("crv".into(), json!("P-256"));
        a.insert("x".into(), json!("a"));
        let mut b = Map::new();
        for k in ["crv", "kty", "x", "y"] {
            b.insert(k.into(), a[k].clone());
        }
        assert_eq!(thumbprint_of_members(&a), thumbprint_of_members(&b));
    }
}

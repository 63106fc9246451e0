//! Independent verification of Custos signatures: RustCrypto (`p256`, `rsa`,
//! `ed25519-dalek`) and the `openssl` command line. None of this shares code
//! with the daemon, which signs through PKCS#11 and josekit.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::Value;
use std::process::Command;

/// A verified token's parts.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The protected header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
    /// The raw signature bytes.
    pub signature: Vec<u8>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    B64.decode(s).map_err(|e| format!("base64url: {e}"))
}

fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    b64(jwk[name].as_str().ok_or(format!("JWK has no {name}"))?)
}

/// Splits a compact JWS and decodes header and claims without checking anything.
pub fn decode(jws: &str) -> Result<(Value, Value, Vec<u8>, String), String> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(format!("{} parts, expected 3", parts.len()));
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64(p)?).map_err(|e| e.to_string())?;
    Ok((header, claims, b64(s)?, format!("{h}.{p}")))
}

/// Finds the JWK named by the token's `kid` in `jwks` and verifies the
/// signature with an implementation chosen by `alg`.
pub fn verify_with_jwks(jws: &str, jwks: &Value) -> Result<Verified, String> {
    let (header, claims, signature, input) = decode(jws)?;
    let kid = header["kid"].as_str().ok_or("no kid in header")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("JWKS has no keys array")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or(format!("kid {kid} is not in the JWKS"))?;
    let alg = header["alg"].as_str().ok_or("no alg")?;
    if jwk["alg"] != alg {
        return Err(format!("header alg {alg} but JWK alg {}", jwk["alg"]));
    }
    verify_raw(alg, jwk, input.as_bytes(), &signature)?;
    Ok(Verified {
        header,
        claims,
        signature,
    })
}

/// Verifies `signature` over `message` with a public JWK.
pub fn verify_raw(alg: &str, jwk: &Value, message: &[u8], signature: &[u8]) -> Result<(), String> {
    match alg {
        "ES256" => {
            use p256::ecdsa::signature::Verifier;
            if signature.len() != 64 {
                return Err(format!(
                    "ES256 signature is {} bytes, not 64",
                    signature.len()
                ));
            }
            let mut sec1 = vec![0x04];
            sec1.extend(member(jwk, "x")?);
            sec1.extend(member(jwk, "y")?);
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|e| e.to_string())?;
            let sig = p256::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
            key.verify(message, &sig).map_err(|e| format!("ES256: {e}"))
        }
        "PS256" | "RS256" => {
            use rsa::signature::Verifier;
            let n = rsa::BigUint::from_bytes_be(&member(jwk, "n")?);
            let e = rsa::BigUint::from_bytes_be(&member(jwk, "e")?);
            let key = rsa::RsaPublicKey::new(n, e).map_err(|e| e.to_string())?;
            if alg == "PS256" {
                // `new` demands a salt exactly as long as the hash: 32 bytes.
                let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(key);
                let sig = rsa::pss::Signature::try_from(signature).map_err(|e| e.to_string())?;
                vk.verify(message, &sig).map_err(|e| format!("PS256: {e}"))
            } else {
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| e.to_string())?;
                vk.verify(message, &sig).map_err(|e| format!("RS256: {e}"))
            }
        }
        "EdDSA" => {
            let x: [u8; 32] = member(jwk, "x")?
                .try_into()
                .map_err(|_| "Ed25519 x is not 32 bytes")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
            let sig: [u8; 64] = signature
                .try_into()
                .map_err(|_| "Ed25519 signature is not 64 bytes")?;
            key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|e| format!("EdDSA: {e}"))
        }
        other => Err(format!("refusing to verify alg {other}")),
    }
}

/// Verifies a PS256 JWS with the `openssl` command line, demanding the given
/// PSS salt length. Returns whether openssl accepted it.
pub fn openssl_pss_verify(jws: &str, jwk: &Value, salt_len: usize) -> Result<bool, String> {
    let (_, _, signature, input) = decode(jws)?;
    openssl_pss(jwk, input.as_bytes(), &signature, "sha256", salt_len)
}

/// Verifies an RFC 9421 `rsa-pss-sha512` signature over `message` with the
/// `openssl` command line: SHA-512, MGF1-SHA-512 and exactly `salt_len`
/// bytes of salt. Returns whether openssl accepted it.
pub fn openssl_pss_sha512_verify(
    jwk: &Value,
    message: &[u8],
    signature: &[u8],
    salt_len: usize,
) -> Result<bool, String> {
    openssl_pss(jwk, message, signature, "sha512", salt_len)
}

/// `openssl dgst -DIGEST` PSS verification (MGF1 with the same digest).
fn openssl_pss(
    jwk: &Value,
    message: &[u8],
    signature: &[u8],
    digest: &str,
    salt_len: usize,
) -> Result<bool, String> {
    use rsa::pkcs8::EncodePublicKey;
    let n = rsa::BigUint::from_bytes_be(&member(jwk, "n")?);
    let e = rsa::BigUint::from_bytes_be(&member(jwk, "e")?);
    let key = rsa::RsaPublicKey::new(n, e).map_err(|e| e.to_string())?;
    let pem = key
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (pub_path, sig_path, msg_path) = (
        dir.path().join("pub.pem"),
        dir.path().join("sig.bin"),
        dir.path().join("msg.bin"),
    );
    std::fs::write(&pub_path, pem).map_err(|e| e.to_string())?;
    std::fs::write(&sig_path, signature).map_err(|e| e.to_string())?;
    std::fs::write(&msg_path, message).map_err(|e| e.to_string())?;
    let out = Command::new("openssl")
        .args([
            "dgst",
            &format!("-{digest}"),
            "-sigopt",
            "rsa_padding_mode:pss",
        ])
        .arg("-sigopt")
        .arg(format!("rsa_pss_saltlen:{salt_len}"))
        .arg("-sigopt")
        .arg(format!("rsa_mgf1_md:{digest}"))
        .arg("-verify")
        .arg(&pub_path)
        .arg("-signature")
        .arg(&sig_path)
        .arg(&msg_path)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"))
}

/// The OpenID Connect token hash, computed here independently: base64url of
/// the left half of SHA-256 (ES256, PS256, RS256) or SHA-512 (EdDSA).
pub fn oidc_hash(alg: &str, value: &str) -> String {
    use sha2::Digest;
    let full: Vec<u8> = if alg == "EdDSA" {
        sha2::Sha512::digest(value.as_bytes()).to_vec()
    } else {
        sha2::Sha256::digest(value.as_bytes()).to_vec()
    };
    B64.encode(&full[..full.len() / 2])
}

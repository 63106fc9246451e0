//! JWE: sign-then-encrypt to a client's public key (nested JWT, RFC 7519
//! 11.2), and decryption of JWEs encrypted to a Custos RSA-OAEP-256 key,
//! where the encrypted key is opened inside the device and the content key
//! exists only in memory.

use crate::error::{Error, Result};
use crate::keyring::ActiveKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use josekit::jwe::{JweAlgorithm, JweContentEncryption, JweDecrypter, JweEncrypter, JweHeader};
use josekit::jwk::Jwk;
use josekit::JoseError;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

/// The largest plaintext a decryption returns (bytes).
pub(crate) const MAX_PLAINTEXT: usize = 256 * 1024;

/// Content encryption algorithms Custos produces and accepts.
pub(crate) const ENCRYPTIONS: &[&str] = &["A256GCM", "A128CBC-HS256"];

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg.into())
}

/// Encrypts a signed JWT to the recipient's public JWK: RSA-OAEP-256 for RSA
/// keys, ECDH-ES for EC keys; `enc` A256GCM (default) or A128CBC-HS256;
/// `cty: JWT`, and the recipient's `kid` when its JWK has one.
///
/// # Errors
/// `InvalidArgument` for a JWK that is not a public encryption key Custos
/// can encrypt to, or an unsupported `enc`.
pub(crate) fn encrypt_nested(jws: &str, recipient_jwk: &str, enc: Option<&str>) -> Result<String> {
    let jwk = Jwk::from_bytes(recipient_jwk.as_bytes())
        .map_err(|e| invalid(format!("encryption key is not a JWK: {e}")))?;
    if jwk.parameter("d").is_some() {
        return Err(invalid(
            "encryption key contains private members; send the client's public JWK only",
        ));
    }
    if let Some(u) = jwk.key_use() {
        if u != "enc" {
            return Err(invalid(format!(
                "encryption key has \"use\": {u:?}; it must be \"enc\""
            )));
        }
    }
    let enc = enc.filter(|e| !e.is_empty()).unwrap_or("A256GCM");
    if !ENCRYPTIONS.contains(&enc) {
        return Err(invalid(format!(
            "enc {enc:?} is not supported; use one of {}",
            ENCRYPTIONS.join(", ")
        )));
    }
    let encrypter: Box<dyn JweEncrypter> = match (jwk.key_type(), jwk.algorithm()) {
        ("RSA", None | Some("RSA-OAEP-256")) => Box::new(
            josekit::jwe::RSA_OAEP_256
                .encrypter_from_jwk(&jwk)
                .map_err(|e| invalid(format!("RSA encryption key: {e}")))?,
        ),
        ("EC", None | Some("ECDH-ES")) => Box::new(
            josekit::jwe::ECDH_ES
                .encrypter_from_jwk(&jwk)
                .map_err(|e| invalid(format!("EC encryption key: {e}")))?,
        ),
        (kty, alg) => {
            return Err(invalid(format!(
                "cannot encrypt to a {kty} key with alg {alg:?}: use an RSA key (RSA-OAEP-256) or an EC key (ECDH-ES)"
            )))
        }
    };
    let mut header = JweHeader::new();
    header.set_content_encryption(enc);
    header.set_content_type("JWT");
    if let Some(kid) = jwk.key_id() {
        header.set_key_id(kid);
    }
    josekit::jwe::serialize_compact(jws.as_bytes(), &header, encrypter.as_ref())
        .map_err(|e| Error::Internal(format!("encrypting: {e}")))
}

/// A `josekit` decrypter whose private-key step runs on the device.
#[derive(Debug, Clone)]
struct DeviceDecrypter {
    key: ActiveKey,
    failure: Arc<Mutex<Option<Error>>>,
}

impl JweDecrypter for DeviceDecrypter {
    fn algorithm(&self) -> &dyn JweAlgorithm {
        &josekit::jwe::RSA_OAEP_256
    }

    fn key_id(&self) -> Option<&str> {
        // A client need not name the kid; a wrong one is refused before this.
        None
    }

    fn decrypt(
        &self,
        encrypted_key: Option<&[u8]>,
        cencryption: &dyn JweContentEncryption,
        _header: &JweHeader,
    ) -> Result<Cow<'_, [u8]>, JoseError> {
        let fail = |e: Error| {
            let text = e.to_string();
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(e);
            }
            JoseError::InvalidJweFormat(anyhow::Error::msg(text))
        };
        let Some(ek) = encrypted_key else {
            return Err(fail(invalid("the JWE has no encrypted key")));
        };
        let cek = self.key.decrypt(ek).map_err(|e| match e {
            Error::Internal(detail) | Error::FailedPrecondition(detail) => {
                // The device's detail goes to the log only: a caller learns
                // nothing about why an encrypted key was rejected.
                tracing::info!(%detail, "JWE encrypted key rejected");
                invalid("the encrypted key does not decrypt with this keyset's key")
            }
            other => other,
        });
        let cek = cek.map_err(fail)?;
        if cek.len() != cencryption.key_len() {
            let mut cek = cek;
            cek.zeroize();
            return Err(fail(invalid(
                "the encrypted key has the wrong length for enc",
            )));
        }
        Ok(Cow::Owned(cek))
    }

    fn box_clone(&self) -> Box<dyn JweDecrypter> {
        Box::new(self.clone())
    }
}

/// Decrypts a compact JWE encrypted to `key` (an RSA-OAEP-256 keyset).
/// Blocking (it calls the device). Returns the plaintext and the protected header.
///
/// # Errors
/// `InvalidArgument` for a malformed JWE, another `alg` or `enc`, a `kid`
/// naming another key, or a JWE that does not decrypt; the device's failure otherwise.
pub fn decrypt(key: &ActiveKey, jwe: &str) -> Result<(Vec<u8>, Value)> {
    let parts: Vec<&str> = jwe.split('.').collect();
    if parts.len() != 5 {
        return Err(invalid(format!(
            "a compact JWE has 5 parts; this has {}",
            parts.len()
        )));
    }
    let header: Value = B64
        .decode(parts[0])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("the JWE header is not base64url JSON"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RSA-OAEP-256") => {}
        Some(other) => {
            return Err(invalid(format!(
                "JWE alg \"{other}\" refused: this keyset accepts only RSA-OAEP-256"
            )))
        }
        None => {
            return Err(invalid(
                "the JWE header has no alg: this keyset accepts only RSA-OAEP-256",
            ))
        }
    }
    if let Some(zip) = header.get("zip") {
        return Err(invalid(format!(
            "JWE zip {zip} refused: Custos does not decompress JWE payloads (a compressed \
             payload can expand without bound); encrypt the request object uncompressed"
        )));
    }
    let enc = header.get("enc").and_then(Value::as_str).unwrap_or("");
    if !ENCRYPTIONS.contains(&enc) {
        return Err(invalid(format!(
            "JWE enc {enc:?} refused: use one of {}",
            ENCRYPTIONS.join(", ")
        )));
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str) {
        if kid != key.kid {
            return Err(invalid(format!(
                "the JWE is encrypted to kid {kid}, not to this keyset's key {}",
                key.kid
            )));
        }
    }
    let decrypter = DeviceDecrypter {
        key: key.clone(),
        failure: Arc::new(Mutex::new(None)),
    };
    match josekit::jwe::deserialize_compact(jwe, &decrypter) {
        Ok((mut plaintext, _)) if plaintext.len() > MAX_PLAINTEXT => {
            plaintext.zeroize();
            Err(invalid(format!(
                "the decrypted payload is larger than {MAX_PLAINTEXT} bytes"
            )))
        }
        Ok((plaintext, _)) => Ok((plaintext, header)),
        Err(e) => Err(decrypter
            .failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_else(|| {
                // The encrypted key was good (a failure there is recorded
                // above), so what failed is the content: its authentication
                // tag does not match the ciphertext, header and IV.
                tracing::info!(error = %e, "JWE content rejected");
                invalid(
                    "the JWE does not authenticate: its ciphertext, IV, tag or protected header \
                     was changed, or it was not made with this content key",
                )
            })),
    }
}

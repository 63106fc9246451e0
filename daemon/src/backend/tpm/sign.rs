//! Signing in the TPM: ES256 through TPM2_Sign, and RS256/PS256 either
//! through the TPM's own RSA schemes or, where its PSS salt is not 32 bytes
//! (RFC 7518 3.5), through the raw RSA operation with the padding done in
//! software (`padding.rs`). Which path a key takes is decided once, at load,
//! by a self-test signature verified strictly.

use super::blob::pad32;
use super::errors::{blob_err, null_ticket, tpm_err};
use super::TpmBackend;
use crate::alg::Algorithm;
use crate::backend::padding;
use crate::backend::profile::RsaPssMode;
use crate::backend::{BackendError, PublicKey};
use sha2::{Digest as _, Sha256};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{
    Data, Digest, HashScheme, PublicKeyRsa, RsaDecryptionScheme, Signature, SignatureScheme,
};
use tss_esapi::Context;

/// How RSA signatures of one key are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RsaPath {
    Native,
    Raw,
}

impl TpmBackend {
    /// The self-test: does this TPM's own RSASSA-PSS use a 32-byte salt?
    pub(super) fn choose_rsa_path(
        &self,
        ctx: &mut Context,
        handle: KeyHandle,
        pk: &PublicKey,
    ) -> Result<RsaPath, BackendError> {
        let path = if self.force_raw {
            RsaPath::Raw
        } else if self.profile.rsa_pss == RsaPssMode::Native {
            RsaPath::Native
        } else {
            let msg = b"custos TPM PSS self-test";
            let sig = native_rsa(ctx, handle, Algorithm::PS256, msg)?;
            if verify_pss_salt32(pk, msg, &sig) {
                RsaPath::Native
            } else {
                tracing::warn!("this TPM's RSASSA-PSS does not use a 32-byte salt");
                RsaPath::Raw
            }
        };
        tracing::info!(
            path = if path == RsaPath::Native {
                "tpm-native"
            } else {
                "raw-rsa"
            },
            "TPM RSA signing path chosen for a key"
        );
        Ok(path)
    }
}

/// An ES256 signature of `message`: r and s, 32 bytes each.
pub(super) fn ecdsa(
    ctx: &mut Context,
    handle: KeyHandle,
    message: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let digest = Digest::try_from(Sha256::digest(message).to_vec()).map_err(blob_err("digest"))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    match ctx
        .sign(handle, digest, scheme, null_ticket()?)
        .map_err(tpm_err("signing"))?
    {
        Signature::EcDsa(s) => {
            let mut out = pad32(s.signature_r().value())?;
            out.extend(pad32(s.signature_s().value())?);
            Ok(out)
        }
        _ => Err(BackendError::Internal(
            "unexpected TPM signature type".into(),
        )),
    }
}

/// An RS256 or PS256 signature of `message` on the key's chosen path.
pub(super) fn rsa(
    ctx: &mut Context,
    handle: KeyHandle,
    alg: Algorithm,
    path: Option<RsaPath>,
    message: &[u8],
) -> Result<Vec<u8>, BackendError> {
    if path == Some(RsaPath::Native) {
        return native_rsa(ctx, handle, alg, message);
    }
    let em = if alg == Algorithm::PS256 {
        padding::pss_encode_sha256(message, 2048, &rand::random())
    } else {
        padding::pkcs1_encode_sha256(message, 256)
    }
    .ok_or_else(|| BackendError::Internal("padding failed".into()))?;
    let input = PublicKeyRsa::try_from(em).map_err(blob_err("input"))?;
    let out = ctx
        .rsa_decrypt(handle, input, RsaDecryptionScheme::Null, Data::default())
        .map_err(tpm_err("raw RSA"))?;
    let v = out.value();
    let mut sig = vec![0u8; 256usize.saturating_sub(v.len())];
    sig.extend_from_slice(v);
    Ok(sig)
}

/// The TPM's own RSASSA-PSS or RSASSA-PKCS1-v1_5 over SHA-256.
fn native_rsa(
    ctx: &mut Context,
    handle: KeyHandle,
    alg: Algorithm,
    msg: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let digest = Digest::try_from(Sha256::digest(msg).to_vec()).map_err(blob_err("digest"))?;
    let hash_scheme = HashScheme::new(HashingAlgorithm::Sha256);
    let scheme = if alg == Algorithm::PS256 {
        SignatureScheme::RsaPss { hash_scheme }
    } else {
        SignatureScheme::RsaSsa { hash_scheme }
    };
    match ctx
        .sign(handle, digest, scheme, null_ticket()?)
        .map_err(tpm_err("signing"))?
    {
        Signature::RsaPss(s) | Signature::RsaSsa(s) => Ok(s.signature().value().to_vec()),
        _ => Err(BackendError::Internal(
            "the TPM returned an unexpected signature type".into(),
        )),
    }
}

/// Verifies a PS256 signature demanding a 32-byte salt (OpenSSL).
fn verify_pss_salt32(pk: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use openssl::{
        bn::BigNum,
        hash::MessageDigest,
        pkey::PKey,
        rsa::{Padding, Rsa},
        sign::{RsaPssSaltlen, Verifier},
    };
    let PublicKey::Rsa { n, e } = pk else {
        return false;
    };
    let key = (|| {
        let n = BigNum::from_slice(&hex::decode(n).ok()?).ok()?;
        let e = BigNum::from_slice(&hex::decode(e).ok()?).ok()?;
        PKey::from_rsa(Rsa::from_public_components(n, e).ok()?).ok()
    })();
    let Some(key) = key else { return false };
    let Ok(mut v) = Verifier::new(MessageDigest::sha256(), &key) else {
        return false;
    };
    v.set_rsa_padding(Padding::PKCS1_PSS).is_ok()
        && v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32)).is_ok()
        && v.set_rsa_mgf1_md(MessageDigest::sha256()).is_ok()
        && v.verify_oneshot(sig, msg).unwrap_or(false)
}

//! Signing with the mechanism the HSM profile chose, returning JWS-form
//! signatures; and RSA-OAEP-256 decryption of JWE encrypted keys.

use super::pool::PooledSession;
use crate::backend::profile::Mechanism as ProfileMechanism;
use crate::backend::BackendError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use sha2::{Digest, Sha256, Sha512};

/// DER DigestInfo prefix for SHA-256 (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// PSS as JWS demands (RFC 7518 3.5): SHA-256, MGF1-SHA-256, 32-byte salt.
const PSS: PkcsPssParams = PkcsPssParams {
    hash_alg: MechanismType::SHA256,
    mgf: PkcsMgfType::MGF1_SHA256,
    s_len: cryptoki::types::Ulong::new(32),
};

/// Signs `message` with the private key `key`.
pub(super) fn sign(
    s: &mut PooledSession<'_>,
    one_call: Option<&super::one_call::OneCallSign>,
    key: ObjectHandle,
    mechanism: ProfileMechanism,
    message: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let sha256 = || Sha256::digest(message).to_vec();
    let (mech, input) = match mechanism {
        ProfileMechanism::CKM_ECDSA => (Mechanism::Ecdsa, sha256()),
        ProfileMechanism::CKM_ECDSA_SHA256 => (Mechanism::EcdsaSha256, message.to_vec()),
        ProfileMechanism::CKM_RSA_PKCS_PSS => (Mechanism::RsaPkcsPss(PSS), sha256()),
        ProfileMechanism::CKM_SHA256_RSA_PKCS_PSS => {
            (Mechanism::Sha256RsaPkcsPss(PSS), message.to_vec())
        }
        ProfileMechanism::CKM_RSA_PKCS => {
            let mut info = SHA256_DIGEST_INFO.to_vec();
            info.extend(sha256());
            (Mechanism::RsaPkcs, info)
        }
        ProfileMechanism::CKM_SHA256_RSA_PKCS => (Mechanism::Sha256RsaPkcs, message.to_vec()),
        ProfileMechanism::CKM_EDDSA => (
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            message.to_vec(),
        ),
        ProfileMechanism::CKM_RSA_PKCS_OAEP | ProfileMechanism::CKM_RSA_X_509 => {
            return Err(BackendError::Unsupported(
                "an RSA-OAEP-256 key decrypts; it never signs".into(),
            ))
        }
    };
    let expected = match mechanism {
        ProfileMechanism::CKM_ECDSA | ProfileMechanism::CKM_ECDSA_SHA256 => Some(64),
        ProfileMechanism::CKM_EDDSA => Some(64),
        _ => None,
    };
    let sig = s.run("signing", |session| match one_call.filter(|o| o.usable()) {
        Some(one) => {
            session.sign_init(&mech, key)?;
            // RSA: room for a 4096-bit modulus; the module shortens it.
            one.sign(session, &input, expected.unwrap_or(512))
        }
        None => session.sign(&mech, key, &input),
    })?;
    if let Some(len) = expected {
        if sig.len() != len {
            return Err(BackendError::Internal(format!(
                "token returned a {}-byte signature where {len} bytes were expected",
                sig.len()
            )));
        }
    }
    Ok(sig)
}

/// PSS as RFC 9421 `rsa-pss-sha512` demands: SHA-512, MGF1-SHA-512, 64-byte salt.
const PSS_SHA512: PkcsPssParams = PkcsPssParams {
    hash_alg: MechanismType::SHA512,
    mgf: PkcsMgfType::MGF1_SHA512,
    s_len: cryptoki::types::Ulong::new(64),
};

/// Signs `message` with an RSA key as `rsa-pss-sha512`, in the same style
/// (combined or raw-with-software-hash) as the profile's PS256 mechanism.
pub(super) fn sign_pss_sha512(
    s: &mut PooledSession<'_>,
    key: ObjectHandle,
    ps256_mechanism: ProfileMechanism,
    message: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let (mech, input) = match ps256_mechanism {
        ProfileMechanism::CKM_RSA_PKCS_PSS => (
            Mechanism::RsaPkcsPss(PSS_SHA512),
            Sha512::digest(message).to_vec(),
        ),
        ProfileMechanism::CKM_SHA256_RSA_PKCS_PSS => {
            (Mechanism::Sha512RsaPkcsPss(PSS_SHA512), message.to_vec())
        }
        other => {
            return Err(BackendError::Unsupported(format!(
            "rsa-pss-sha512 needs a keyset whose profile signs with PSS (this one uses {other:?})"
        )))
        }
    };
    s.run("signing", |session| session.sign(&mech, key, &input))
}

/// Decrypts an RSA-OAEP-256 encrypted key with the private key `key`.
pub(super) fn decrypt(
    s: &mut PooledSession<'_>,
    key: ObjectHandle,
    mechanism: ProfileMechanism,
    ciphertext: &[u8],
) -> Result<Vec<u8>, BackendError> {
    match mechanism {
        ProfileMechanism::CKM_RSA_PKCS_OAEP => {
            let params = PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            );
            s.run("decrypting", |session| {
                session.decrypt(&Mechanism::RsaPkcsOaep(params), key, ciphertext)
            })
        }
        ProfileMechanism::CKM_RSA_X_509 => {
            let em = s.run("decrypting", |session| {
                session.decrypt(&Mechanism::RsaX509, key, ciphertext)
            })?;
            crate::backend::padding::decode_sha256(&em, ciphertext.len()).ok_or_else(|| {
                BackendError::Internal("the ciphertext is not a valid OAEP encoding".into())
            })
        }
        other => Err(BackendError::Unsupported(format!(
            "{other:?} is not a decryption mechanism"
        ))),
    }
}

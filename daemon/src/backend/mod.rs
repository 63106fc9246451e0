//! Where keys live. A [`KeyBackend`] makes a key inside its device, tells its
//! public key, and signs bytes with it for a JOSE algorithm. It knows nothing
//! of keysets, JOSE headers or gRPC.
//!
//! Implementations: [`pkcs11`] (any PKCS#11 token, driven by an HSM profile)
//! and [`software`] (in-memory keys for `custosd --dev` only).
//!
//! Calls block on the device: callers on the async runtime run them with
//! `tokio::task::spawn_blocking`.

pub(crate) mod guard;
pub(crate) mod padding;
pub(crate) mod pkcs11;
pub(crate) mod profile;
pub(crate) mod software;
#[cfg(feature = "tpm")]
pub(crate) mod tpm;

use crate::alg::Algorithm;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The device's reference to one key pair: the PKCS#11 `CKA_ID` (random bytes)
/// and `CKA_LABEL` that Custos gave it at generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRef {
    /// Hex of the object id (CKA_ID), unique per key.
    pub id: String,
    /// Human-readable label (CKA_LABEL), e.g. `custos:as-id-token:1`.
    pub label: String,
}

impl KeyRef {
    /// A new reference with 16 random id bytes.
    pub fn generate(label: String) -> Self {
        let id: [u8; 16] = rand::random();
        Self {
            id: hex::encode(id),
            label,
        }
    }

    /// The id as raw bytes.
    ///
    /// # Errors
    /// `Internal` when the stored id is not hex (a damaged manifest).
    pub fn id_bytes(&self) -> Result<Vec<u8>, BackendError> {
        hex::decode(&self.id)
            .map_err(|_| BackendError::Internal(format!("key id {:?} is not hex", self.id)))
    }
}

/// A public key as the JOSE layer needs it: big-endian, unpadded-by-type members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum PublicKey {
    /// P-256 point, each coordinate 32 bytes.
    #[serde(rename = "EC")]
    P256 {
        /// X coordinate (hex).
        x: String,
        /// Y coordinate (hex).
        y: String,
    },
    /// RSA modulus and public exponent, big-endian without leading zeros (hex).
    #[serde(rename = "RSA")]
    Rsa {
        /// Modulus (hex).
        n: String,
        /// Public exponent (hex).
        e: String,
    },
    /// Ed25519 public key, 32 bytes (hex).
    #[serde(rename = "OKP")]
    Ed25519 {
        /// The 32-byte key (hex).
        x: String,
    },
}

impl PublicKey {
    /// Builds a P-256 key from its coordinates.
    pub fn p256(x: &[u8], y: &[u8]) -> Self {
        Self::P256 {
            x: hex::encode(x),
            y: hex::encode(y),
        }
    }

    /// Builds an RSA key, stripping leading zero bytes.
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        let strip = |b: &[u8]| {
            let first = b
                .iter()
                .position(|&x| x != 0)
                .unwrap_or(b.len().saturating_sub(1));
            hex::encode(&b[first..])
        };
        Self::Rsa {
            n: strip(n),
            e: strip(e),
        }
    }

    /// Builds an Ed25519 key.
    pub fn ed25519(x: &[u8]) -> Self {
        Self::Ed25519 { x: hex::encode(x) }
    }

    /// Whether this key can sign with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::P256 { .. }, Algorithm::ES256)
                | (
                    Self::Rsa { .. },
                    Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256
                )
                | (Self::Ed25519 { .. }, Algorithm::EdDSA)
        )
    }
}

/// What a backend reports about a private key's protection (read back from the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KeyProtection {
    /// CKA_SENSITIVE: the key value cannot be read in the clear.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE: the key can be wrapped out of the device.
    pub extractable: bool,
}

/// A backend failure, mapped once to [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The device cannot be reached, is not logged in, or stopped answering.
    #[error("key device unavailable: {0}")]
    Unavailable(String),
    /// The key is not on the device.
    #[error("key not found on the device: {0}")]
    KeyNotFound(String),
    /// The device or its profile cannot do this algorithm.
    #[error("algorithm not supported by this backend: {0}")]
    Unsupported(String),
    /// The device refused the credentials (a wrong PIN or auth value, a
    /// lockout). Never retried: a retry would count toward the lockout.
    #[error("key device refused the authorization: {0}")]
    Refused(String),
    /// Anything else (the daemon log has the device's code).
    #[error("key device error: {0}")]
    Internal(String),
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(_) | BackendError::Refused(_) => {
                Error::Unavailable(crate::error::Outage::device(None, e.to_string()))
            }
            BackendError::KeyNotFound(_) => Error::FailedPrecondition(format!(
                "{e}; run `custos doctor` to compare the token with the keyring"
            )),
            BackendError::Unsupported(_) => Error::FailedPrecondition(e.to_string()),
            BackendError::Internal(_) => Error::Internal(e.to_string()),
        }
    }
}

/// The keys of a backend that keeps one file per key in `dir` (the software
/// backend's PEM files, the TPM's key blobs): each `<id><suffix>` is key `id`,
/// labelled `custos:<kind>:<id>`. `what` names the files in the error.
pub(crate) fn key_files(
    dir: &std::path::Path,
    suffix: &str,
    kind: &str,
    what: &str,
) -> Result<Vec<KeyRef>, BackendError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BackendError::Internal(format!("listing {what}: {e}")))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(suffix)?.to_string();
            Some(KeyRef {
                label: format!("custos:{kind}:{id}"),
                id,
            })
        })
        .collect())
}

/// A place where private keys are generated and used, and never leave.
///
/// Every method may block on the device.
pub trait KeyBackend: fmt::Debug + Send + Sync {
    /// The backend's kind, for display: `pkcs11` or `software`.
    fn kind(&self) -> &'static str;

    /// Generates a key pair for `alg` inside the device (sensitive, non-extractable)
    /// and returns its public key.
    fn generate(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError>;

    /// Finds an existing key (after a restart), prepares it for signing and
    /// returns its public key, so the caller can check it is the expected one.
    fn load(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError>;

    /// Signs `message` with `alg`, returning the signature in JWS form
    /// (ECDSA as fixed-width `r || s`, PSS with a salt as long as the hash).
    fn sign(&self, key: &KeyRef, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// Decrypts a JWE encrypted key (RSA-OAEP-256) inside the device and
    /// returns the content key, which exists only in memory.
    fn decrypt(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, BackendError>;

    /// Reads the private key's protection attributes back from the device.
    fn protection(&self, key: &KeyRef) -> Result<KeyProtection, BackendError>;

    /// Removes both halves of the key pair from the device.
    fn destroy(&self, key: &KeyRef) -> Result<(), BackendError>;

    /// Closes idle pooled sessions (so the next login is a real one).
    fn release_sessions(&self) {}

    /// What this backend can do beyond the calls every backend answers
    /// (each behind its own small trait); none by default.
    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::default()
    }

    /// Asks the device something cheap, for health checks.
    fn probe(&self) -> Result<(), BackendError> {
        self.list_keys().map(|_| ())
    }

    /// How long one call may take before the request is answered
    /// UNAVAILABLE and the call is left to finish on its own thread.
    fn call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(profile::default_call_timeout())
    }

    /// Every Custos key on the device (label `custos:*`), to find orphans:
    /// keys generated but never recorded in the manifest.
    fn list_keys(&self) -> Result<Vec<KeyRef>, BackendError>;
}

/// The optional parts of a backend, found with [`KeyBackend::capabilities`]
/// so the core trait holds only what every device does.
#[derive(Clone, Copy, Default)]
pub struct Capabilities<'a> {
    /// RFC 9421's `rsa-pss-sha512` (PKCS#11 and the software backend).
    pub rsa_pss_sha512: Option<&'a dyn RsaPssSha512>,
    /// A pool of device sessions (PKCS#11).
    pub pool: Option<&'a dyn SessionPool>,
}

impl fmt::Debug for Capabilities<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("rsa_pss_sha512", &self.rsa_pss_sha512.is_some())
            .field("pool", &self.pool.is_some())
            .finish()
    }
}

/// Signs with an RSA key as RSASSA-PSS with SHA-512, MGF1-SHA-512 and a
/// 64-byte salt: the `rsa-pss-sha512` of HTTP message signatures (RFC 9421
/// 3.3.1), which no JWS algorithm names.
pub trait RsaPssSha512: Send + Sync {
    /// Signs `message`; `alg` is the keyset's (RSA) algorithm.
    fn sign_rsa_pss_sha512(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, BackendError>;
}

/// A backend that keeps a pool of device sessions.
pub trait SessionPool: Send + Sync {
    /// The pool's figures now (for the metrics and the thread budget).
    fn stats(&self) -> PoolStats;

    /// Whether device calls are cheap CPU work in this process (a software
    /// token), best run on the request's own task rather than handed to a
    /// blocking thread (`[sessions] inline_calls`). Network and USB HSMs say no.
    fn inline_calls(&self) -> bool;

    /// Signs with a fresh device session (open, log in, find the key, sign,
    /// close) instead of the pool: what `custosd bench --no-pool` measures.
    fn sign_unpooled(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, BackendError>;
}

/// A session pool's figures now (for the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The most sessions the pool opens.
    pub size: usize,
    /// Sessions open (idle or lent).
    pub open: usize,
    /// Sessions lent to calls now.
    pub in_use: usize,
    /// Calls waiting for a session.
    pub waiters: usize,
}

//! The TPM 2.0 backend (tss-esapi): keys created under a primary storage
//! key in the owner hierarchy; the TPM-wrapped blobs (public + encrypted
//! private) are kept in the state directory, so the private key exists only
//! inside the TPM.
//!
//! - ES256: the TPM returns r and s separately; each is left-padded to 32 bytes.
//! - PS256/RS256: the TPM 2.0 specification lets a TPM's own RSASSA-PSS use
//!   the largest salt the key allows, which JWS verifiers reject (RFC 7518
//!   3.5 fixes it to 32). So each RSA key is checked at load with a
//!   self-test signature verified strictly; where the TPM would use another
//!   salt (or the profile or `rsa_raw` says so), signing goes through the
//!   TPM's raw RSA operation (TPM2_RSA_Decrypt with the null scheme) with
//!   the padding done in software (`padding.rs`).
//! - Commands are serialized (one TPM); keys are loaded once and their
//!   handles reused. A transport or handle error resets the connection; the
//!   operation is retried once after reconnecting, recreating the primary
//!   key and reloading the blobs, so a TPM restart is survived.

use crate::alg::Algorithm;
use crate::backend::padding;
use crate::backend::profile::{RsaPssMode, TpmProfile};
use crate::backend::{BackendError, KeyBackend, KeyProtection, KeyRef, PublicKey};
use crate::secret::Secret;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, Data, Digest, EccScheme, HashScheme, HashcheckTicket, Private, Public, PublicKeyRsa,
    RsaDecryptionScheme, RsaExponent, Signature, SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

/// How RSA signatures of one key are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RsaPath {
    Native,
    Raw,
}

struct Loaded {
    handle: KeyHandle,
    rsa_path: Option<RsaPath>,
}

#[derive(Default)]
struct Conn {
    ctx: Option<Context>,
    primary: Option<KeyHandle>,
    loaded: HashMap<String, Loaded>,
    /// Key ids, least recently used first.
    lru: Vec<String>,
}

impl Conn {
    fn touch(&mut self, id: &str) {
        self.lru.retain(|k| k != id);
        self.lru.push(id.to_string());
    }

    /// Flushes the least recently used keys until `room` more fit under `max`.
    fn make_room(&mut self, max: usize) {
        while self.loaded.len() >= max.max(1) && !self.lru.is_empty() {
            let id = self.lru.remove(0);
            if let (Some(l), Some(ctx)) = (self.loaded.remove(&id), self.ctx.as_mut()) {
                if let Err(e) = ctx.flush_context(l.handle.into()) {
                    tracing::warn!(error = %e, "could not flush a TPM key");
                }
            }
        }
    }
}

/// A TPM 2.0 holding Custos keys.
pub struct TpmBackend {
    tcti: String,
    dir: PathBuf,
    profile: TpmProfile,
    force_raw: bool,
    owner_auth: Option<Secret>,
    key_auth: Option<Secret>,
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for TpmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmBackend")
            .field("tcti", &self.tcti)
            .field("profile", &self.profile.name)
            .finish_non_exhaustive()
    }
}

fn tpm_err(what: &str) -> impl Fn(tss_esapi::Error) -> BackendError + '_ {
    move |e| BackendError::Unavailable(format!("TPM {what}: {e}"))
}

fn blob_err(what: &str) -> impl Fn(tss_esapi::Error) -> BackendError + '_ {
    move |e| BackendError::Internal(format!("TPM key blob {what}: {e}"))
}

fn null_ticket() -> Result<HashcheckTicket, BackendError> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(blob_err("ticket"))
}

fn auth(secret: &Option<Secret>) -> Result<Option<Auth>, BackendError> {
    secret
        .as_ref()
        .map(|s| Auth::try_from(s.expose().as_bytes().to_vec()))
        .transpose()
        .map_err(|_| BackendError::Internal("the TPM auth value is too long".into()))
}

fn pad32(v: &[u8]) -> Result<Vec<u8>, BackendError> {
    let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..];
    if v.len() > 32 {
        return Err(BackendError::Internal(
            "ECDSA component longer than 32 bytes".into(),
        ));
    }
    let mut out = vec![0u8; 32 - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

fn public_of(public: &Public) -> Result<PublicKey, BackendError> {
    match public {
        Public::Ecc { unique, .. } => Ok(PublicKey::p256(
            &pad32(unique.x().value())?,
            &pad32(unique.y().value())?,
        )),
        Public::Rsa { unique, .. } => Ok(PublicKey::rsa(unique.value(), &[1, 0, 1])),
        _ => Err(BackendError::Internal("unexpected TPM key type".into())),
    }
}

/// The blob file: public and private parts, hex, one per line.
fn encode_blob(public: &Public, private: &Private) -> Result<String, BackendError> {
    Ok(format!(
        "{}\n{}\n",
        hex::encode(public.marshall().map_err(blob_err("public"))?),
        hex::encode(private.value())
    ))
}

fn decode_blob(text: &str) -> Result<(Public, Private), BackendError> {
    let mut lines = text.lines();
    let bad = || BackendError::Internal("TPM key blob file is damaged".into());
    let public = hex::decode(lines.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let private = hex::decode(lines.next().ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((
        Public::unmarshall(&public).map_err(blob_err("public"))?,
        Private::try_from(private).map_err(blob_err("private"))?,
    ))
}

impl TpmBackend {
    /// Connects to the TPM and prepares the primary key, so an absent TPM is
    /// reported at start-up.
    ///
    /// # Errors
    /// `Unavailable` naming the TCTI when the TPM cannot be reached.
    pub fn open(
        config: &crate::config::TpmConfig,
        profile: TpmProfile,
        dir: PathBuf,
        owner_auth: Option<Secret>,
        key_auth: Option<Secret>,
    ) -> Result<Self, BackendError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let backend = Self {
            tcti: config.tcti.clone(),
            dir,
            force_raw: config.rsa_raw || profile.rsa_pss == RsaPssMode::Raw,
            profile,
            owner_auth,
            key_auth,
            conn: Mutex::new(Conn::default()),
        };
        {
            let mut conn = backend.lock();
            backend.connect(&mut conn)?;
        }
        Ok(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, key: &KeyRef) -> Result<PathBuf, BackendError> {
        key.id_bytes()?;
        Ok(self.dir.join(format!("{}.tpmkey", key.id)))
    }

    /// Opens the TCTI and creates the (deterministic) primary storage key.
    fn connect(&self, conn: &mut Conn) -> Result<(), BackendError> {
        if conn.ctx.is_some() && conn.primary.is_some() {
            return Ok(());
        }
        *conn = Conn::default();
        let tcti = TctiNameConf::from_str(&self.tcti).map_err(|e| {
            BackendError::Unavailable(format!("TCTI {:?} is not valid: {e}", self.tcti))
        })?;
        let mut ctx = Context::new(tcti).map_err(|e| {
            BackendError::Unavailable(format!("cannot reach the TPM at {:?}: {e}", self.tcti))
        })?;
        ctx.set_sessions((Some(AuthSession::Password), None, None));
        if let Some(a) = auth(&self.owner_auth)? {
            ctx.tr_set_auth(Hierarchy::Owner.into(), a)
                .map_err(tpm_err("setting the owner auth"))?;
        }
        let template = tss_esapi::utils::create_restricted_decryption_rsa_public(
            SymmetricDefinitionObject::AES_128_CFB,
            RsaKeyBits::Rsa2048,
            RsaExponent::default(),
        )
        .map_err(blob_err("primary template"))?;
        let primary = ctx
            .create_primary(Hierarchy::Owner, template, None, None, None, None)
            .map_err(tpm_err("creating the primary key"))?
            .key_handle;
        conn.ctx = Some(ctx);
        conn.primary = Some(primary);
        Ok(())
    }

    /// Runs `f` with a connected TPM; a failure resets the connection and
    /// `f` is tried once more (a restarted TPM or flushed resource manager).
    fn with_tpm<T>(
        &self,
        f: impl Fn(&Self, &mut Conn) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut conn = self.lock();
        self.connect(&mut conn)?;
        match f(self, &mut conn) {
            Err(BackendError::Unavailable(first)) => {
                tracing::warn!(error = %first, "TPM command failed; reconnecting and reloading keys");
                *conn = Conn::default();
                self.connect(&mut conn)?;
                f(self, &mut conn)
            }
            other => other,
        }
    }

    fn load_into(
        &self,
        conn: &mut Conn,
        key: &KeyRef,
        alg: Algorithm,
    ) -> Result<(KeyHandle, PublicKey, Option<RsaPath>), BackendError> {
        let text = std::fs::read_to_string(self.path(key)?)
            .map_err(|_| BackendError::KeyNotFound(format!("TPM key blob of {}", key.label)))?;
        let (public, private) = decode_blob(&text)?;
        let pk = public_of(&public)?;
        if let Some(l) = conn.loaded.get(&key.id) {
            let out = (l.handle, pk, l.rsa_path);
            conn.touch(&key.id);
            return Ok(out);
        }
        conn.make_room(self.profile.max_loaded_keys);
        let (Some(ctx), Some(primary)) = (conn.ctx.as_mut(), conn.primary) else {
            return Err(BackendError::Unavailable("TPM not connected".into()));
        };
        let handle = ctx
            .load(primary, private, public)
            .map_err(tpm_err("loading a key"))?;
        if let Some(a) = auth(&self.key_auth)? {
            ctx.tr_set_auth(handle.into(), a)
                .map_err(tpm_err("setting the key auth"))?;
        }
        let rsa_path = if alg.is_rsa() {
            Some(self.choose_rsa_path(ctx, handle, &pk)?)
        } else {
            None
        };
        conn.loaded
            .insert(key.id.clone(), Loaded { handle, rsa_path });
        conn.touch(&key.id);
        Ok((handle, pk, rsa_path))
    }

    /// The self-test: does this TPM's own RSASSA-PSS use a 32-byte salt?
    fn choose_rsa_path(
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

impl KeyBackend for TpmBackend {
    fn kind(&self) -> &'static str {
        "tpm"
    }

    fn generate(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        if !self.profile.offers(alg) {
            return Err(BackendError::Unsupported(format!(
                "TPM profile {:?} does not offer {alg}",
                self.profile.name
            )));
        }
        let template = match alg {
            Algorithm::ES256 => tss_esapi::utils::create_unrestricted_signing_ecc_public(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            ),
            // Scheme null, sign + decrypt: the TPM's own PSS/PKCS#1 or the raw operation.
            _ => tss_esapi::utils::create_unrestricted_encryption_decryption_rsa_public(
                RsaKeyBits::Rsa2048,
                RsaExponent::default(),
            ),
        }
        .map_err(blob_err("template"))?;
        let path = self.path(key)?;
        self.with_tpm(|me, conn| {
            // Creating needs an object slot too.
            conn.make_room(me.profile.max_loaded_keys);
            let (Some(ctx), Some(primary)) = (conn.ctx.as_mut(), conn.primary) else {
                return Err(BackendError::Unavailable("TPM not connected".into()));
            };
            let created = ctx
                .create(
                    primary,
                    template.clone(),
                    auth(&me.key_auth)?,
                    None,
                    None,
                    None,
                )
                .map_err(tpm_err("creating a key"))?;
            let blob = encode_blob(&created.out_public, &created.out_private)?;
            write_private_file(&path, blob.as_bytes())?;
            let (_, pk, _) = me.load_into(conn, key, alg)?;
            Ok(pk)
        })
    }

    fn load(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        self.with_tpm(|me, conn| me.load_into(conn, key, alg).map(|(_, pk, _)| pk))
    }

    fn sign(&self, key: &KeyRef, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.with_tpm(|me, conn| {
            let (handle, _, rsa_path) = me.load_into(conn, key, alg)?;
            let ctx = conn
                .ctx
                .as_mut()
                .ok_or_else(|| BackendError::Unavailable("TPM not connected".into()))?;
            match alg {
                Algorithm::ES256 => {
                    let digest = Digest::try_from(Sha256::digest(message).to_vec())
                        .map_err(blob_err("digest"))?;
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
                Algorithm::PS256 | Algorithm::RS256 => match rsa_path {
                    Some(RsaPath::Native) => native_rsa(ctx, handle, alg, message),
                    _ => {
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
                },
                other => Err(BackendError::Unsupported(format!(
                    "the TPM backend does not do {other}"
                ))),
            }
        })
    }

    fn decrypt(
        &self,
        _key: &KeyRef,
        alg: Algorithm,
        _ciphertext: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Unsupported(format!(
            "the TPM backend does not decrypt ({alg})"
        )))
    }

    fn protection(&self, key: &KeyRef) -> Result<KeyProtection, BackendError> {
        // Created with fixedTPM, fixedParent and sensitiveDataOrigin: the
        // private part exists only wrapped by the TPM's storage key.
        self.path(key)?;
        Ok(KeyProtection {
            sensitive: true,
            extractable: false,
        })
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), BackendError> {
        let mut conn = self.lock();
        conn.lru.retain(|k| k != &key.id);
        if let Some(l) = conn.loaded.remove(&key.id) {
            if let Some(ctx) = conn.ctx.as_mut() {
                let _ = ctx.flush_context(l.handle.into());
            }
        }
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::Internal(format!(
                "removing a TPM key blob: {e}"
            ))),
        }
    }

    /// Drops the TPM connection: tss-esapi flushes every object it loaded
    /// (a TPM without a resource manager keeps them otherwise). The next
    /// call reconnects.
    fn release_sessions(&self) {
        *self.lock() = Conn::default();
    }

    fn probe(&self) -> Result<(), BackendError> {
        self.with_tpm(|_, conn| {
            let ctx = conn
                .ctx
                .as_mut()
                .ok_or_else(|| BackendError::Unavailable("the TPM is not connected".into()))?;
            // GetRandom takes no authorization session.
            ctx.execute_without_session(|ctx| ctx.get_random(8))
                .map(|_| ())
                .map_err(tpm_err("probing the TPM"))
        })
    }

    fn call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.profile.call_timeout_ms)
    }

    fn list_keys(&self) -> Result<Vec<KeyRef>, BackendError> {
        super::key_files(&self.dir, ".tpmkey", "tpm", "TPM key blobs")
    }
}

fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), BackendError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))
}

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

//!
//! Files: `slots.rs` (the connection and loaded keys), `sign.rs` (the
//! signing paths), `blob.rs` (key blob files), `errors.rs` (TSS results to
//! [`BackendError`]).

mod blob;
mod errors;
mod sign;
mod slots;

use crate::alg::Algorithm;
use crate::backend::profile::{RsaPssMode, TpmProfile};
use crate::backend::{BackendError, KeyBackend, KeyProtection, KeyRef, PublicKey};
use crate::secret::Secret;
use blob::{decode_blob, encode_blob, public_of, write_private_file};
use errors::{auth, blob_err, tpm_err};
use sign::RsaPath;
use slots::{Conn, Loaded};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{EccScheme, HashScheme, RsaExponent, SymmetricDefinitionObject};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

/// A TPM 2.0 holding Custos keys.
pub(crate) struct TpmBackend {
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

impl TpmBackend {
    /// Connects to the TPM and prepares the primary key, so an absent TPM is
    /// reported at start-up.
    ///
    /// # Errors
    /// `Unavailable` naming the TCTI when the TPM cannot be reached.
    pub(crate) fn open(
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
                Algorithm::ES256 => sign::ecdsa(ctx, handle, message),
                Algorithm::PS256 | Algorithm::RS256 => {
                    sign::rsa(ctx, handle, alg, rsa_path, message)
                }
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

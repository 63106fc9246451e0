//! The PKCS#11 backend: any token with a PKCS#11 module, driven by an HSM profile.
//!
//! - `mod.rs`: opening the module, choosing the token, the [`KeyBackend`] impl.
//! - `pool.rs`: logged-in sessions reused by every request.
//! - `keys.rs`: key generation, lookup, attributes, destruction.
//! - `sign.rs`: signing with the mechanism the profile names.
//! - `errors.rs`: the one mapping from PKCS#11 return values to [`BackendError`].
//!
//! Object handles are found once (at generation or at load after a restart)
//! and cached, so no request pays for `C_FindObjects`.

pub mod data;
mod errors;
mod keys;
mod pool;
mod sign;

use crate::alg::Algorithm;
use crate::backend::profile::HsmProfile;
use crate::backend::{BackendError, KeyBackend, KeyProtection, KeyRef, PublicKey};
use crate::config::Pkcs11Config;
use crate::secret::Secret;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use pool::SessionPool;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// A PKCS#11 token holding Custos keys.
#[derive(Debug)]
pub struct Pkcs11Backend {
    profile: HsmProfile,
    pool: SessionPool,
    /// Private-key handles by key id; handles stay valid across sessions.
    handles: RwLock<HashMap<String, ObjectHandle>>,
}

impl Pkcs11Backend {
    /// Loads the module, finds the token by label and logs in.
    ///
    /// # Errors
    /// `Unavailable` with a specific message for an unloadable module, a
    /// missing token or a refused PIN.
    pub fn open(
        config: &Pkcs11Config,
        profile: HsmProfile,
        pin: Secret,
    ) -> Result<Self, BackendError> {
        let module = &config.module;
        let ctx = Pkcs11::new(module).map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot load PKCS#11 module {}: {e}",
                module.display()
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(errors::map("C_Initialize", e)),
        }
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| errors::map("listing slots", e))?;
        let mut labels = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| errors::map("reading token info", e))?;
            let label = info.label().trim_end().to_string();
            if label == config.token_label {
                found = Some(slot);
                break;
            }
            labels.push(label);
        }
        let Some(slot) = found else {
            return Err(BackendError::Unavailable(format!(
                "no token labelled {:?} in {} (tokens present: {labels:?})",
                config.token_label,
                module.display()
            )));
        };
        let pool = SessionPool::new(
            ctx,
            slot,
            pin,
            profile.sessions.pool_size,
            Duration::from_millis(profile.sessions.wait_ms),
        )?;
        Ok(Self {
            profile,
            pool,
            handles: RwLock::new(HashMap::new()),
        })
    }

    fn settings(
        &self,
        alg: Algorithm,
    ) -> Result<&crate::backend::profile::AlgorithmSettings, BackendError> {
        self.profile.algorithm(alg).ok_or_else(|| {
            BackendError::Unsupported(format!(
                "HSM profile {:?} does not offer {alg}",
                self.profile.name
            ))
        })
    }

    fn cached_handle(&self, key: &KeyRef) -> Option<ObjectHandle> {
        let map = match self.handles.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(&key.id).copied()
    }

    fn remember(&self, key: &KeyRef, handle: ObjectHandle) {
        let mut map = match self.handles.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(key.id.clone(), handle);
    }

    /// Runs `op` with a pooled session and the key's private handle: the
    /// cached one, or one found now. A cached handle can go stale (token
    /// restored, object re-created), so a "handle invalid" answer looks the
    /// key up once more before giving up.
    fn with_key<T>(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        op: impl Fn(&mut pool::PooledSession<'_>, ObjectHandle) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut s = self.pool.get()?;
        if let Some(handle) = self.cached_handle(key) {
            match op(&mut s, handle) {
                Err(BackendError::KeyNotFound(_)) => self.forget(key),
                other => return other,
            }
        }
        let (handle, _) = keys::find(&mut s, key, alg)?;
        self.remember(key, handle);
        op(&mut s, handle)
    }

    fn forget(&self, key: &KeyRef) {
        let mut map = match self.handles.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(&key.id);
    }
}

impl KeyBackend for Pkcs11Backend {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        let settings = self.settings(alg)?;
        let attempt = || {
            let mut s = self.pool.get()?;
            keys::generate(&mut s, key, alg, settings, self.profile.rsa.bits)
        };
        // A transient device error (SoftHSM2 reports CKR_GENERAL_ERROR when
        // another process holds its token lock) is retried once, on a fresh session.
        let (private, public) = match attempt() {
            Err(BackendError::Unavailable(e)) => {
                tracing::warn!(error = %e, "key generation failed; retrying once");
                std::thread::sleep(std::time::Duration::from_millis(50));
                attempt()?
            }
            other => other?,
        };
        self.remember(key, private);
        Ok(public)
    }

    fn load(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        self.settings(alg)?;
        let mut s = self.pool.get()?;
        let (private, public) = keys::find(&mut s, key, alg)?;
        self.remember(key, private);
        Ok(public)
    }

    fn sign(&self, key: &KeyRef, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mechanism = self.settings(alg)?.mechanism;
        self.with_key(key, alg, |s, handle| {
            sign::sign(s, handle, mechanism, message)
        })
    }

    fn sign_rsa_pss_sha512(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let mechanism = self.settings(alg)?.mechanism;
        self.with_key(key, alg, |s, handle| {
            sign::sign_pss_sha512(s, handle, mechanism, message)
        })
    }

    fn decrypt(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let mechanism = self.settings(alg)?.mechanism;
        self.with_key(key, alg, |s, handle| {
            sign::decrypt(s, handle, mechanism, ciphertext)
        })
    }

    fn protection(&self, key: &KeyRef) -> Result<KeyProtection, BackendError> {
        let mut s = self.pool.get()?;
        keys::protection(&mut s, key)
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), BackendError> {
        let mut s = self.pool.get()?;
        keys::destroy(&mut s, key)?;
        self.forget(key);
        Ok(())
    }

    fn sign_unpooled(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let settings = self.settings(alg)?;
        let mut s = self.pool.fresh()?;
        let (handle, _) = keys::find(&mut s, key, alg)?;
        sign::sign(&mut s, handle, settings.mechanism, message)
    }

    fn release_sessions(&self) {
        self.pool.drain();
    }

    fn list_keys(&self) -> Result<Vec<KeyRef>, BackendError> {
        let mut s = self.pool.get()?;
        data::custos_keys(&mut s)
    }
}

/// Data objects for the shared manifest (see `keyring/token_store.rs`).
impl Pkcs11Backend {
    /// Lists the data objects of `application` as (handle, label).
    ///
    /// # Errors
    /// The device's failure.
    pub fn list_data(&self, application: &str) -> Result<Vec<data::DataObject>, BackendError> {
        let mut s = self.pool.get()?;
        data::list(&mut s, application)
    }

    /// Reads a data object's value.
    ///
    /// # Errors
    /// The device's failure (`KeyNotFound` when it was removed meanwhile).
    pub fn read_data(&self, object: &data::DataObject) -> Result<Vec<u8>, BackendError> {
        let mut s = self.pool.get()?;
        data::read(&mut s, object.handle)
    }

    /// Creates a private data object; returns it.
    ///
    /// # Errors
    /// The device's failure.
    pub fn create_data(
        &self,
        application: &str,
        label: &str,
        value: Vec<u8>,
    ) -> Result<data::DataObject, BackendError> {
        let mut s = self.pool.get()?;
        let handle = data::create(&mut s, application, label, value)?;
        Ok(data::DataObject {
            handle,
            label: label.into(),
        })
    }

    /// Removes a data object (the one atomic test-and-set PKCS#11 offers:
    /// of several callers destroying the same object, one succeeds).
    ///
    /// # Errors
    /// The device's failure.
    pub fn destroy_data(&self, object: &data::DataObject) -> Result<(), BackendError> {
        let mut s = self.pool.get()?;
        data::destroy(&mut s, object.handle)
    }
}

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

mod errors;
mod init;
mod inventory;
mod keys;
mod one_call;
mod pool;
mod sign;

use crate::alg::Algorithm;
use crate::backend::profile::{HsmProfile, Mechanism as ProfileMechanism};
use crate::backend::{BackendError, KeyBackend, KeyProtection, KeyRef, PublicKey};
use crate::config::Pkcs11Config;
use crate::secret::Secret;
use cryptoki::context::Pkcs11;
use cryptoki::mechanism::MechanismType;
use cryptoki::object::ObjectHandle;
use cryptoki::slot::Slot;
use pool::SessionPool;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// A PKCS#11 token holding Custos keys.
#[derive(Debug)]
pub(crate) struct Pkcs11Backend {
    profile: HsmProfile,
    pool: SessionPool,
    /// The module's `C_Sign`, for signing in one call (`None`: cryptoki's two).
    one_call: Option<one_call::OneCallSign>,
    /// Private-key handles by key id; handles stay valid across sessions.
    handles: RwLock<HashMap<String, ObjectHandle>>,
}

impl Pkcs11Backend {
    /// Loads the module, finds the token (by label, serial or slot id),
    /// resolves each algorithm's mechanism against the token's list, and logs in.
    ///
    /// # Errors
    /// `Unavailable` with a specific message for an unloadable module, a
    /// missing token or a refused PIN.
    pub(crate) fn open(
        config: &Pkcs11Config,
        mut profile: HsmProfile,
        pin: Secret,
    ) -> Result<Self, BackendError> {
        let module = &config.module;
        let ctx = Pkcs11::new(module).map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot load PKCS#11 module {}: {e}",
                module.display()
            ))
        })?;
        if profile.token.initialize_args_required && config.initialize_args.is_none() {
            return Err(BackendError::Unavailable(format!(
                "HSM profile {:?} needs initialize_args in the backend config (see hsm-profiles/README.md)",
                profile.name
            )));
        }
        init::initialize(&ctx, config.initialize_args.as_deref())?;
        let slot = select_slot(&ctx, config, &profile)?;
        match ctx.get_mechanism_list(slot) {
            Ok(listed) => resolve_mechanisms(&mut profile, &listed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the token's mechanisms; using the profile's")
            }
        }
        let pool = SessionPool::new(
            ctx,
            slot,
            pin,
            profile.sessions.pool_size,
            Duration::from_millis(profile.sessions.wait_ms),
        )?;
        let one_call = one_call::OneCallSign::load(module);
        if one_call.is_none() {
            tracing::info!(module = %module.display(), "signing with cryptoki's length query (two C_Sign calls)");
        }
        Ok(Self {
            profile,
            pool,
            one_call,
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
        let (first, broken) = {
            let mut s = self.pool.get()?;
            let r = self.on_session(&mut s, key, alg, &op);
            (r, s.is_broken())
            // A broken session leaves the pool here.
        };
        match first {
            // The session broke under the call (a network HSM's link flapped,
            // an HA member failed over, the token logged out): the retry gets
            // a fresh, logged-in one. Signing and decryption change nothing
            // on the device, so a second try cannot duplicate anything. A
            // pool that had no session to give is not retried: that would
            // only double the wait.
            Err(BackendError::Unavailable(e)) if broken && self.profile.sessions.retry_once => {
                tracing::warn!(error = %e, "device call failed; retrying once on a fresh session");
                let mut s = self.pool.get()?;
                self.on_session(&mut s, key, alg, &op)
            }
            other => other,
        }
    }

    /// Runs `op` on the key's handle in session `s` (cached, or found).
    fn on_session<T>(
        &self,
        s: &mut pool::PooledSession<'_>,
        key: &KeyRef,
        alg: Algorithm,
        op: &impl Fn(&mut pool::PooledSession<'_>, ObjectHandle) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if let Some(handle) = self.cached_handle(key) {
            match op(s, handle) {
                Err(BackendError::KeyNotFound(_)) => self.forget(key),
                other => return other,
            }
        }
        let (handle, _) = keys::find(s, key, alg)?;
        self.remember(key, handle);
        op(s, handle)
    }

    fn forget(&self, key: &KeyRef) {
        let mut map = match self.handles.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(&key.id);
    }
}

/// Finds the configured token: by slot id (for modules whose token
/// information cannot be read), by serial number, or by label.
fn select_slot(
    ctx: &Pkcs11,
    config: &Pkcs11Config,
    profile: &HsmProfile,
) -> Result<Slot, BackendError> {
    let module = config.module.display();
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| errors::map("listing slots", e))?;
    if let Some(id) = config.slot_id {
        return slots.into_iter().find(|s| s.id() == id).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "no token in slot {id} of {module} (is the token initialised, and its slot daemon running?)"
            ))
        });
    }
    if !profile.token.info_readable {
        return Err(BackendError::Unavailable(format!(
            "HSM profile {:?}: this module's token information cannot be read; select the token with slot_id",
            profile.name
        )));
    }
    let mut seen = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| errors::map("reading token info", e))?;
        let label = info.label().trim_end().to_string();
        let serial = info.serial_number().trim_end().to_string();
        let hit = match &config.token_serial {
            Some(want) => serial == *want,
            None => label == config.token_label,
        };
        if hit {
            return Ok(slot);
        }
        seen.push(format!("{label} (serial {serial})"));
    }
    Err(BackendError::Unavailable(match &config.token_serial {
        Some(sn) => format!("no token with serial {sn:?} in {module} (tokens present: {seen:?})"),
        None => format!(
            "no token labelled {:?} in {module} (tokens present: {seen:?})",
            config.token_label
        ),
    }))
}

/// The PKCS#11 mechanism type behind a profile mechanism.
pub(crate) fn mechanism_type(m: ProfileMechanism) -> MechanismType {
    match m {
        ProfileMechanism::CKM_ECDSA => MechanismType::ECDSA,
        ProfileMechanism::CKM_ECDSA_SHA256 => MechanismType::ECDSA_SHA256,
        ProfileMechanism::CKM_RSA_PKCS_PSS => MechanismType::RSA_PKCS_PSS,
        ProfileMechanism::CKM_SHA256_RSA_PKCS_PSS => MechanismType::SHA256_RSA_PKCS_PSS,
        ProfileMechanism::CKM_RSA_PKCS => MechanismType::RSA_PKCS,
        ProfileMechanism::CKM_SHA256_RSA_PKCS => MechanismType::SHA256_RSA_PKCS,
        ProfileMechanism::CKM_EDDSA => MechanismType::EDDSA,
        ProfileMechanism::CKM_RSA_PKCS_OAEP => MechanismType::RSA_PKCS_OAEP,
        ProfileMechanism::CKM_RSA_X_509 => MechanismType::RSA_X_509,
    }
}

/// Switches an algorithm to its profile's fallback when the token does not
/// list the preferred mechanism but lists the fallback.
fn resolve_mechanisms(profile: &mut HsmProfile, listed: &[MechanismType]) {
    for (alg, settings) in profile.algorithms.iter_mut() {
        if listed.contains(&mechanism_type(settings.mechanism)) {
            continue;
        }
        match settings.fallback {
            Some(f) if listed.contains(&mechanism_type(f)) => {
                tracing::info!(alg = %alg, preferred = ?settings.mechanism, using = ?f,
                    "the token lacks the preferred mechanism; using the profile's fallback");
                settings.mechanism = f;
            }
            _ => tracing::warn!(alg = %alg, mechanism = ?settings.mechanism,
                "the token does not list this algorithm's mechanism; signing with it will fail"),
        }
    }
}

impl Pkcs11Backend {
    /// The profile as resolved against this token (fallbacks applied).
    pub(crate) fn profile(&self) -> &HsmProfile {
        &self.profile
    }

    /// The mechanisms the token lists.
    ///
    /// # Errors
    /// The module's failure.
    pub(crate) fn mechanisms(&self) -> Result<Vec<MechanismType>, BackendError> {
        self.pool.mechanisms()
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
            keys::generate(
                &mut s,
                key,
                alg,
                settings,
                self.profile.rsa.bits,
                &self.profile.keygen,
            )
        };
        // A transient device error (SoftHSM2 reports CKR_GENERAL_ERROR when
        // another process holds its token lock; a network HSM may lose the
        // reply of a generation it carried out) is retried once, but never
        // blindly: the key's id is looked up first, and a key the failed
        // call made anyway is used, not made twice. When even the lookup
        // fails the error stands; a key made regardless is an orphan that
        // `custos doctor` and the start-up inventory report.
        let (private, public) = match attempt() {
            Err(BackendError::Unavailable(e)) => {
                tracing::warn!(error = %e, "key generation failed; looking for the key before retrying once");
                std::thread::sleep(std::time::Duration::from_millis(50));
                let found = self
                    .pool
                    .fresh()
                    .and_then(|mut s| keys::find(&mut s, key, alg));
                match found {
                    Ok(made) => {
                        tracing::warn!(key = %key.label, "the failed generation made the key after all; keeping it");
                        made
                    }
                    Err(BackendError::KeyNotFound(_)) => attempt()?,
                    Err(lookup) => {
                        return Err(BackendError::Unavailable(format!(
                            "{e}; and whether the key {} was made cannot be told ({lookup}): \
                             not retried, so no duplicate; check `custos doctor` for an orphan",
                            key.label
                        )))
                    }
                }
            }
            other => other?,
        };
        self.remember(key, private);
        Ok(public)
    }

    fn load(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        self.settings(alg)?;
        let mut s = self.pool.get()?;
        let (private, public) = match keys::find(&mut s, key, alg) {
            // A key another process just generated may not show in a
            // long-lived session yet (SoftHSM2 shares a token between
            // processes that way): ask once more in a new session.
            Err(BackendError::KeyNotFound(_)) => {
                drop(s);
                let mut fresh = self.pool.fresh()?;
                keys::find(&mut fresh, key, alg)?
            }
            other => other?,
        };
        self.remember(key, private);
        Ok(public)
    }

    fn sign(&self, key: &KeyRef, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mechanism = self.settings(alg)?.mechanism;
        self.with_key(key, alg, |s, handle| {
            sign::sign(s, self.one_call.as_ref(), handle, mechanism, message)
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

    fn capabilities(&self) -> crate::backend::Capabilities<'_> {
        crate::backend::Capabilities {
            rsa_pss_sha512: Some(self),
            pool: Some(self),
        }
    }

    fn release_sessions(&self) {
        self.pool.drain();
    }

    fn probe(&self) -> Result<(), BackendError> {
        let mut s = self.pool.get()?;
        s.run("probing the token", |session| session.get_session_info())
            .map(|_| ())
    }

    fn call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.profile.sessions.call_timeout_ms)
    }

    fn list_keys(&self) -> Result<Vec<KeyRef>, BackendError> {
        let mut s = self.pool.get()?;
        inventory::custos_keys(&mut s)
    }
}

impl crate::backend::RsaPssSha512 for Pkcs11Backend {
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
}

impl crate::backend::SessionPool for Pkcs11Backend {
    fn stats(&self) -> crate::backend::PoolStats {
        self.pool.stats()
    }

    fn inline_calls(&self) -> bool {
        self.profile.sessions.inline_calls
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
        sign::sign(
            &mut s,
            self.one_call.as_ref(),
            handle,
            settings.mechanism,
            message,
        )
    }
}

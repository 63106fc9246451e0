//! The keyring: keysets, their versions and states, persisted in the manifest.
//!
//! - `keyset.rs`: the data model and the state transitions of one keyset.
//! - `policy.rs`: rotation policy and durations.
//! - `schedule.rs`: which scheduled transitions are due (pure).
//! - `manifest.rs`, `store.rs`: where the manifest lives (a file).
//!
//! The keyring keeps metadata and devices consistent: a key is generated
//! first and recorded second (a crash in between leaves an *orphan*, found
//! and reported at start-up, never used); a key is marked destroyed first and
//! removed from the device second (a crash in between leaves an object that
//! start-up removes). Every change is a read-modify-commit against the store
//! that retries when another daemon committed first.
//!
//! Reads take a snapshot `Arc<Manifest>`; writes replace it after the store
//! accepted the new generation.

pub(crate) mod etcd_store;
pub(crate) mod keyset;
mod lifecycle;
pub(crate) mod manifest;
pub(crate) mod policy;
pub(crate) mod requests;
pub(crate) mod schedule;
mod screen;
pub(crate) mod store;
mod ticks;

use crate::alg::Algorithm;
use crate::backend::guard::DeviceGuard;
use crate::backend::{KeyBackend, KeyRef, PublicKey};
use crate::error::{Error, Missing, Outage, Result};
use crate::jose::jwk;
use keyset::{KeyVersion, Keyset, Profile, Purpose, VersionState};
use manifest::Manifest;
use policy::Policy;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use store::{Commit, ManifestStore};

/// What is needed to create a keyset.
#[derive(Debug, Clone)]
pub struct NewKeyset {
    /// Keyset name.
    pub name: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// Purposes (at least one).
    pub purposes: Vec<Purpose>,
    /// Backend name; `None` picks the only (or first) backend.
    pub backend: Option<String>,
    /// FAPI profile.
    pub profile: Profile,
    /// Issuer tokens must carry (optional).
    pub issuer: Option<String>,
    /// Token lifetime ceiling in seconds; `None` for one hour.
    pub max_token_lifetime: Option<i64>,
}

/// A change to a keyset's policy; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PolicyUpdate {
    /// `Some(None)` switches scheduled rotation off.
    pub rotation_period: Option<Option<i64>>,
    /// New publish-ahead time.
    pub publish_ahead: Option<i64>,
    /// New retention time.
    pub retain_for: Option<i64>,
    /// New auto-destroy setting.
    pub auto_destroy: Option<bool>,
}

/// The key a keyset uses right now (its active version): it signs, or for
/// decryption keysets, decrypts.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// The version's kid.
    pub kid: String,
    /// The keyset's algorithm.
    pub alg: Algorithm,
    /// The keyset's profile.
    pub profile: Profile,
    /// The keyset's issuer, if configured.
    pub issuer: Option<String>,
    /// The keyset's token lifetime ceiling (seconds).
    pub max_token_lifetime: i64,
    /// Every purpose the keyset serves (not only the one asked for).
    pub purposes: Vec<Purpose>,
    /// The device object.
    pub key_ref: KeyRef,
    /// The backend holding it.
    pub backend: Arc<dyn KeyBackend>,
    /// The watch on that backend (deadlines, threads held).
    pub guard: Arc<DeviceGuard>,
}

impl ActiveKey {
    /// Decrypts a JWE encrypted key on the device (blocking).
    ///
    /// # Errors
    /// The backend's failure, mapped to a domain error.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        Ok(self.backend.decrypt(&self.key_ref, self.alg, ciphertext)?)
    }

    /// Signs `message` on the device (blocking).
    ///
    /// # Errors
    /// The backend's failure, mapped to a domain error.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(self.backend.sign(&self.key_ref, self.alg, message)?)
    }

    /// Signs `message` as RSASSA-PSS SHA-512 with 64-byte salt (RSA keys
    /// only; RFC 9421 `rsa-pss-sha512`), blocking.
    ///
    /// # Errors
    /// The backend's failure, mapped to a domain error.
    pub fn sign_rsa_pss_sha512(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signer = self.backend.capabilities().rsa_pss_sha512.ok_or_else(|| {
            crate::backend::BackendError::Unsupported(format!(
                "the {} backend does not sign rsa-pss-sha512; use an ES256 or EdDSA keyset",
                self.backend.kind()
            ))
        })?;
        Ok(signer.sign_rsa_pss_sha512(&self.key_ref, self.alg, message)?)
    }
}

/// Keysets, backends and the manifest.
#[derive(Debug)]
pub struct Keyring {
    store: Box<dyn ManifestStore>,
    backends: BTreeMap<String, Arc<dyn KeyBackend>>,
    guards: BTreeMap<String, Arc<DeviceGuard>>,
    snapshot: RwLock<Arc<Manifest>>,
    writer: Mutex<()>,
    orphans: Mutex<Vec<(String, KeyRef)>>,
    audit: std::sync::OnceLock<Arc<crate::audit::Auditor>>,
    dual_control: std::sync::OnceLock<requests::DualControl>,
    limits: std::sync::OnceLock<Limits>,
    /// Keysets held back because their record in the manifest does not match
    /// the device (name, why): not served for anything until it does.
    quarantine: Mutex<BTreeMap<String, String>>,
    /// Public keys as the device reported them, by (backend, key id): the
    /// only source a manifest's `public` is trusted from.
    device_keys: Mutex<HashMap<(String, String), PublicKey>>,
    /// How long signing goes on without an answer from a shared store.
    max_stale: std::sync::OnceLock<i64>,
}

/// Quotas that keep one keyset admin from filling the device
/// (`[keyring]` in the config; documented defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The shortest rotation period a policy may set (seconds).
    pub min_rotation_period: i64,
    /// Versions a keyset may hold on the device at once (every state but destroyed).
    pub max_live_versions: usize,
    /// Keysets one backend may hold.
    pub max_keysets_per_backend: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_rotation_period: policy::MIN_ROTATION_PERIOD,
            max_live_versions: 10,
            max_keysets_per_backend: 1000,
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Keyring {
    /// Loads the manifest from `store` and reconciles it with the devices:
    /// every live version's key must be there and hash to its kid; objects of
    /// destroyed versions are removed; unrecorded keys are reported as
    /// orphans. Blocking.
    ///
    /// # Errors
    /// A damaged manifest, a keyset whose backend is not configured, or a
    /// key that is missing or different on the device.
    pub fn open(
        store: Box<dyn ManifestStore>,
        backends: BTreeMap<String, Arc<dyn KeyBackend>>,
    ) -> Result<Self> {
        let m = store.load()?;
        let guards = backends
            .iter()
            .map(|(n, b)| (n.clone(), DeviceGuard::new(n, b.clone())))
            .collect();
        let ring = Self {
            store,
            backends,
            guards,
            snapshot: RwLock::new(Arc::new(Manifest::default())),
            writer: Mutex::new(()),
            orphans: Mutex::new(Vec::new()),
            audit: std::sync::OnceLock::new(),
            dual_control: std::sync::OnceLock::new(),
            limits: std::sync::OnceLock::new(),
            quarantine: Mutex::new(BTreeMap::new()),
            device_keys: Mutex::new(HashMap::new()),
            max_stale: std::sync::OnceLock::new(),
        };
        if let Some(ks) = m
            .keysets
            .values()
            .find(|k| !ring.backends.contains_key(&k.backend))
        {
            return Err(Error::FailedPrecondition(format!(
                "keyset {:?} lives on backend {:?}, which is not in the config",
                ks.name, ks.backend
            )));
        }
        ring.install(m);
        ring.reconcile()?;
        Ok(ring)
    }

    /// Sends scheduled transitions to the audit log (callers' changes are
    /// audited by the server).
    pub fn set_auditor(&self, audit: Arc<crate::audit::Auditor>) {
        let _ = self.audit.set(audit);
    }

    /// The audit log the keyring writes to, once set.
    pub fn auditor(&self) -> Option<&Arc<crate::audit::Auditor>> {
        self.audit.get()
    }

    fn audit_transition(&self, by: &str, keyset: &str, kid: &str, from: Option<&str>, to: &str) {
        tracing::info!(
            by,
            operation = "transition",
            keyset,
            kid,
            from = from.unwrap_or("-"),
            to,
            "key version state changed"
        );
        if by != "schedule" {
            return;
        }
        if let Some(a) = self.audit.get() {
            let detail = format!("{} -> {to}", from.unwrap_or("-"));
            let _ = a.record_blocking(
                serde_json::json!({"schedule": true}),
                &crate::audit::Event {
                    operation: "scheduled_transition",
                    keyset: Some(keyset),
                    kid: Some(kid),
                    outcome: "ok",
                    detail: Some(&detail),
                    ..crate::audit::Event::default()
                },
            );
        }
    }

    /// Keys found on a device but not in the manifest: (backend, key).
    pub fn orphans(&self) -> Vec<(String, KeyRef)> {
        self.orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes every backend's pooled device sessions (at shutdown).
    pub fn release_sessions(&self) {
        for b in self.backends.values() {
            b.release_sessions();
        }
    }

    /// Where the manifest lives, for logs.
    pub fn store_description(&self) -> String {
        self.store.describe()
    }

    /// The current manifest snapshot.
    pub fn snapshot(&self) -> Arc<Manifest> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serves `m` after screening it: keysets whose record does not match
    /// the device are held back (logged and audited when first found), the
    /// others are served.
    fn install(&self, mut m: Manifest) {
        let problems = self.screen(&m);
        {
            let mut q = self.quarantine.lock().unwrap_or_else(|p| p.into_inner());
            for (name, why) in &problems {
                if q.get(name) != Some(why) {
                    tracing::error!(keyset = %name, problem = %why,
                        "keyset quarantined: its record in the keyring manifest does not match the device; \
                         it is not used until the manifest is restored from backup");
                    if let Some(a) = self.audit.get() {
                        let _ = a.record_blocking(
                            serde_json::json!({"keyring": true}),
                            &crate::audit::Event {
                                operation: "keyset_quarantined",
                                keyset: Some(name),
                                outcome: "error",
                                detail: Some(why),
                                ..crate::audit::Event::default()
                            },
                        );
                    }
                }
            }
            for name in q.keys().filter(|n| !problems.contains_key(*n)) {
                tracing::warn!(keyset = %name, "keyset matches its device again; served");
            }
            *q = problems.clone();
        }
        for name in problems.keys() {
            m.keysets.remove(name);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
    }

    fn refuse_quarantined(&self, name: &str) -> Result<()> {
        match self
            .quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            Some(why) => Err(Error::FailedPrecondition(format!(
                "keyset {name:?} is quarantined: {why}; restore keyring.json from backup \
                 (`custos doctor` compares it with the token)"
            ))),
            None => Ok(()),
        }
    }

    /// Picks up changes another daemon committed to a shared store. Blocking.
    ///
    /// # Errors
    /// The store's failure.
    pub fn refresh(&self) -> Result<bool> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let m = self.store.load()?;
        let current = self.snapshot();
        let quarantined = !self
            .quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if m.generation <= current.generation && !quarantined {
            return Ok(false);
        }
        if m.generation != current.generation {
            tracing::info!(
                generation = m.generation,
                "keyring changed in the store; reloaded"
            );
        }
        // Quarantined keysets are screened again: a device that was away may
        // be back (what a device answered is remembered; a key id's public key
        // never changes, so only unanswered ones are asked again).
        self.install(m);
        Ok(true)
    }

    /// Applies `change` to the freshest manifest and commits it, retrying
    /// when another writer committed first. `change` may run several times.
    fn mutate<T>(&self, change: impl Fn(&mut Manifest) -> Result<T>) -> Result<T> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..64u32 {
            let mut m = self.store.load()?;
            let base = m.generation;
            let out = change(&mut m)?;
            m.generation = base + 1;
            match self.store.commit(base, &m)? {
                Commit::Done => {
                    // The store may have numbered the generation itself; the
                    // next refresh picks that up.
                    self.install(m);
                    return Ok(out);
                }
                Commit::Conflict => {
                    let jitter = rand::random::<u64>() % (10 * u64::from(attempt.min(20) + 1));
                    std::thread::sleep(std::time::Duration::from_millis(5 + jitter));
                }
            }
        }
        Err(Error::Unavailable(Outage::Contention(
            "the keyring manifest kept changing under this write; try again".into(),
        )))
    }

    /// One keyset by name.
    ///
    /// # Errors
    /// `NotFound` naming the keyset.
    pub fn keyset(&self, name: &str) -> Result<Keyset> {
        self.snapshot()
            .keysets
            .get(name)
            .cloned()
            .ok_or_else(|| self.missing(name))
    }

    /// Why keyset `name` is not served: quarantined (and why), or unknown.
    /// Quarantined keysets are never in the served snapshot, so a lookup
    /// asks this only when it missed (the signing path takes no extra lock).
    fn missing(&self, name: &str) -> Error {
        match self.refuse_quarantined(name) {
            Err(e) => e,
            Ok(()) => not_found(name),
        }
    }

    /// The backend names, for messages and tools.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<Arc<dyn KeyBackend>> {
        self.backends.get(name).cloned()
    }

    /// The watch on every backend, by name.
    pub fn guards(&self) -> &BTreeMap<String, Arc<DeviceGuard>> {
        &self.guards
    }

    fn backend_of(&self, name: &str) -> Result<Arc<dyn KeyBackend>> {
        self.backends.get(name).cloned().ok_or_else(|| {
            Error::NotFound(Missing::Backend {
                name: name.to_string(),
                known: self.backend_names(),
            })
        })
    }

    /// Generates a key for `ks` on its backend and builds the version record.
    /// Sets the quotas (once, at start; the defaults apply until then).
    pub fn set_limits(&self, limits: Limits) {
        let _ = self.limits.set(limits);
    }

    /// How long (seconds) signing goes on with the last manifest seen while
    /// a shared store does not answer: a key disabled on another daemon
    /// would still sign here, so not for ever.
    pub fn set_max_stale(&self, seconds: i64) {
        let _ = self.max_stale.set(seconds);
    }

    /// Woken when the shared store changed (see `ManifestStore::changes`).
    pub fn store_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.store.changes()
    }

    /// Seconds since a shared store last answered; `None` for a local store.
    pub fn store_silence(&self) -> Option<i64> {
        self.store
            .last_contact()
            .map(|t| now().saturating_sub(t).max(0))
    }

    fn refuse_stale(&self) -> Result<()> {
        let Some(silence) = self.store_silence() else {
            return Ok(());
        };
        let limit = self.max_stale.get().copied().unwrap_or(3600);
        if silence > limit {
            return Err(Error::Unavailable(Outage::KeyringStore(format!(
                "the keyring store ({}) has not answered for {silence} s, more than [keyring] \
                 max_stale ({limit} s): a key disabled on another daemon could still sign here, \
                 so signing waits until the store is back",
                self.store.describe()
            ))));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.limits.get().copied().unwrap_or_default()
    }

    /// The active key of `name`, checked for `purpose`.
    ///
    /// # Errors
    /// `NotFound` for an unknown keyset; `FailedPrecondition` when the purpose
    /// is not the keyset's or it has no active key.
    pub fn active_key(&self, name: &str, purpose: Purpose) -> Result<ActiveKey> {
        self.refuse_stale()?;
        let snap = self.snapshot();
        let ks = snap.keysets.get(name).ok_or_else(|| self.missing(name))?;
        if !ks.purposes.contains(&purpose) {
            let allowed: Vec<_> = ks.purposes.iter().map(|p| p.as_str()).collect();
            return Err(Error::FailedPrecondition(format!(
                "keyset {name:?} may not sign for purpose {purpose}; its purposes are: {}",
                allowed.join(", ")
            )));
        }
        let v = ks.active().ok_or_else(|| {
            Error::FailedPrecondition(format!("keyset {name:?} has no active key version"))
        })?;
        let backend = self.backend_of(&ks.backend)?;
        Ok(ActiveKey {
            kid: v.kid.clone(),
            alg: ks.alg,
            profile: ks.profile,
            issuer: ks.issuer.clone(),
            max_token_lifetime: ks.max_token_lifetime,
            purposes: ks.purposes.clone(),
            key_ref: v.key_ref.clone(),
            guard: self
                .guards
                .get(&ks.backend)
                .cloned()
                .unwrap_or_else(|| DeviceGuard::new(&ks.backend, backend.clone())),
            backend,
        })
    }
}

/// Whether any version in `m` is the device key `key_ref`.
fn names(m: &Manifest, key_ref: &KeyRef) -> bool {
    m.keysets
        .values()
        .flat_map(|k| &k.versions)
        .any(|v| v.key_ref.id == key_ref.id)
}

fn not_found(name: &str) -> Error {
    Error::NotFound(Missing::Keyset {
        name: name.to_string(),
    })
}

fn already(name: &str) -> Error {
    Error::AlreadyExists(format!("keyset {name:?} already exists"))
}

#[cfg(test)]
mod tests;

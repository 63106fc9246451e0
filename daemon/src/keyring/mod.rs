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

pub mod etcd_store;
pub mod keyset;
pub mod manifest;
pub mod policy;
pub mod requests;
pub mod schedule;
pub mod store;

use crate::alg::Algorithm;
use crate::backend::guard::DeviceGuard;
use crate::backend::{KeyBackend, KeyRef, PublicKey};
use crate::error::{Error, Result};
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
        Ok(self
            .backend
            .sign_rsa_pss_sha512(&self.key_ref, self.alg, message)?)
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
pub fn now() -> i64 {
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

    /// What is wrong with each keyset whose record in `m` cannot be
    /// trusted: a live version's public key must hash to its kid, fit the
    /// algorithm, be the key the device holds under its id, and no device
    /// key may be recorded twice. The device is asked once per key; its
    /// answer is remembered. Blocking.
    fn screen(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut problems = BTreeMap::new();
        let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
        for ks in m.keysets.values() {
            let mut problem = None;
            for v in ks
                .versions
                .iter()
                .filter(|v| v.state != VersionState::Destroyed)
            {
                if let Some(other) = seen.insert((&ks.backend, &v.key_ref.id), &ks.name) {
                    problem = Some(format!(
                        "device key {} is recorded twice (also in keyset {other:?})",
                        v.key_ref.id
                    ));
                    problems.entry(other.to_string()).or_insert_with(|| {
                        format!(
                            "device key {} is recorded twice (also in keyset {:?})",
                            v.key_ref.id, ks.name
                        )
                    });
                } else if !v.public.fits(ks.alg) {
                    problem = Some(format!(
                        "the recorded public key of kid {} is not an {} key",
                        v.kid, ks.alg
                    ));
                } else if jwk::thumbprint(&v.public) != v.kid {
                    problem = Some(format!(
                        "the recorded public key of kid {} does not hash to that kid",
                        v.kid
                    ));
                } else if let Some(p) = certificate_problem(v) {
                    problem = Some(p);
                } else {
                    match self.device_public(ks, v) {
                        Ok(device) if device == v.public => {}
                        Ok(_) => {
                            problem = Some(format!(
                                "the device key {} is not the recorded public key of kid {}",
                                v.key_ref.label, v.kid
                            ))
                        }
                        Err(e) => {
                            problem = Some(format!(
                                "kid {} cannot be checked against its device key {}: {e}",
                                v.kid, v.key_ref.label
                            ))
                        }
                    }
                }
                if problem.is_some() {
                    break;
                }
            }
            if let Some(p) = problem {
                problems.insert(ks.name.clone(), p);
            }
        }
        problems
    }

    /// The public key the device holds for version `v` of `ks` (remembered
    /// after the first answer).
    fn device_public(&self, ks: &Keyset, v: &KeyVersion) -> Result<PublicKey> {
        let slot = (ks.backend.clone(), v.key_ref.id.clone());
        if let Some(k) = self
            .device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&slot)
        {
            return Ok(k.clone());
        }
        let backend = self.backend_of(&ks.backend)?;
        let public = backend.load(&v.key_ref, ks.alg)?;
        self.device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot, public.clone());
        Ok(public)
    }

    /// Keysets held back because the manifest's record of them does not
    /// match the device: (name, why).
    pub fn quarantined(&self) -> BTreeMap<String, String> {
        self.quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Removes what a crash left behind (objects of destroyed versions) and
    /// reports unrecorded keys as orphans.
    fn reconcile(&self) -> Result<()> {
        let m = self.store.load()?;
        let mut recorded: BTreeMap<&str, Vec<&KeyRef>> = BTreeMap::new();
        for ks in m.keysets.values() {
            let Some(backend) = self.backends.get(&ks.backend) else {
                continue;
            };
            for v in &ks.versions {
                recorded
                    .entry(ks.backend.as_str())
                    .or_default()
                    .push(&v.key_ref);
                if v.state == VersionState::Destroyed {
                    // Marked destroyed, maybe not yet removed (a crash in between).
                    if let Err(e) = backend.destroy(&v.key_ref) {
                        tracing::warn!(keyset = %ks.name, kid = %v.kid, error = %e, "could not remove a destroyed key");
                    }
                }
            }
        }
        let mut orphans = Vec::new();
        for (name, backend) in &self.backends {
            let known: Vec<&KeyRef> = recorded.get(name.as_str()).cloned().unwrap_or_default();
            match backend.list_keys() {
                Ok(keys) => {
                    for k in keys
                        .into_iter()
                        .filter(|k| !known.iter().any(|r| r.id == k.id))
                    {
                        tracing::warn!(backend = %name, label = %k.label, id = %k.id,
                            "orphan key: on the device but not in the keyring manifest; it is never used (run `custos doctor`)");
                        orphans.push((name.clone(), k));
                    }
                }
                Err(e) => {
                    tracing::warn!(backend = %name, error = %e, "could not list keys to look for orphans")
                }
            }
        }
        *self.orphans.lock().unwrap_or_else(|p| p.into_inner()) = orphans;
        Ok(())
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
        Err(Error::Unavailable(
            "the keyring manifest kept changing under this write; try again".into(),
        ))
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
            Error::NotFound(format!(
                "no backend named {name:?}; configured backends: {:?}",
                self.backend_names()
            ))
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

    /// Woken when the shared store changed (see [`ManifestStore::changes`]).
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
            return Err(Error::Unavailable(format!(
                "the keyring store ({}) has not answered for {silence} s, more than [keyring] \
                 max_stale ({limit} s): a key disabled on another daemon could still sign here, \
                 so signing waits until the store is back",
                self.store.describe()
            )));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.limits.get().copied().unwrap_or_default()
    }

    fn new_version(&self, ks: &Keyset, number: usize) -> Result<(Arc<dyn KeyBackend>, KeyVersion)> {
        let live = ks
            .versions
            .iter()
            .filter(|v| v.state != VersionState::Destroyed)
            .count();
        let max = self.limits().max_live_versions;
        if live >= max {
            return Err(Error::FailedPrecondition(format!(
                "keyset {:?} holds {live} key versions on the device, the limit ([keyring] \
                 max_live_versions) is {max}: destroy retired or disabled versions first",
                ks.name
            )));
        }
        let backend = self.backend_of(&ks.backend)?;
        let key_ref = KeyRef::generate(format!("custos:{}:{number}", ks.name));
        let public = backend.generate(&key_ref, ks.alg)?;
        self.device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ks.backend.clone(), key_ref.id.clone()), public.clone());
        Ok((
            backend,
            KeyVersion {
                kid: jwk::thumbprint(&public),
                state: VersionState::Pending,
                created_at: now(),
                key_ref,
                public,
                history: Vec::new(),
                certificate_chain: Vec::new(),
            },
        ))
    }

    /// Records a freshly generated version with `record`, or removes the key
    /// from the device again when recording failed. The key is removed only
    /// when the manifest provably does not name it: a write can fail after
    /// the new manifest reached the disk (the directory fsync after the
    /// rename), and a manifest naming a destroyed key would not start.
    fn record_new<T>(
        &self,
        backend: &Arc<dyn KeyBackend>,
        key_ref: &KeyRef,
        record: impl Fn(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        let e = match self.mutate(record) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match self.store.load() {
            Ok(m) if !names(&m, key_ref) => {
                if let Err(cleanup) = backend.destroy(key_ref) {
                    tracing::error!(label = %key_ref.label, error = %cleanup,
                        "could not remove a key whose recording failed; it is an orphan");
                }
            }
            Ok(m) => {
                tracing::error!(label = %key_ref.label, error = %e,
                    "the manifest write reported a failure but the manifest names the new key; it is kept");
                let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                self.install(m);
            }
            Err(load) => {
                tracing::error!(label = %key_ref.label, error = %e, reload = %load,
                    "the manifest write failed and the manifest cannot be read back; the new key is kept \
                     (an orphan at worst, reported at start)");
            }
        }
        Err(e)
    }

    /// Creates a keyset with one active version generated on its backend. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or no purposes, `AlreadyExists`,
    /// `NotFound` for an unknown backend, or the device's failure.
    pub fn create(&self, req: NewKeyset, by: &str) -> Result<Keyset> {
        keyset::check_name(&req.name).map_err(Error::InvalidArgument)?;
        self.refuse_quarantined(&req.name)?;
        let max_token_lifetime = req
            .max_token_lifetime
            .unwrap_or(keyset::DEFAULT_MAX_LIFETIME);
        if !(1..=86_400).contains(&max_token_lifetime) {
            return Err(Error::InvalidArgument(format!(
                "max token lifetime must be between 1 second and 24 hours (got {max_token_lifetime} s)"
            )));
        }
        if req.issuer.as_deref() == Some("") {
            return Err(Error::InvalidArgument("issuer must not be empty".into()));
        }
        if req.purposes.is_empty() {
            return Err(Error::InvalidArgument(
                "a keyset needs at least one purpose".into(),
            ));
        }
        let backend_name = match req.backend {
            Some(b) if !b.is_empty() => b,
            _ => self
                .backends
                .keys()
                .next()
                .cloned()
                .ok_or_else(|| Error::FailedPrecondition("no backend is configured".into()))?,
        };
        self.backend_of(&backend_name)?;
        if self.snapshot().keysets.contains_key(&req.name) {
            return Err(already(&req.name));
        }
        let on_backend = self
            .snapshot()
            .keysets
            .values()
            .filter(|k| k.backend == backend_name)
            .count();
        let max = self.limits().max_keysets_per_backend;
        if on_backend >= max {
            return Err(Error::FailedPrecondition(format!(
                "backend {backend_name:?} holds {on_backend} keysets, the limit ([keyring] \
                 max_keysets_per_backend) is {max}"
            )));
        }
        let mut purposes = req.purposes;
        purposes.sort();
        purposes.dedup();
        let policy = Policy {
            retain_for: Policy::default().retain_for.max(max_token_lifetime),
            ..Policy::default()
        };
        let mut ks = Keyset {
            name: req.name.clone(),
            alg: req.alg,
            purposes,
            backend: backend_name,
            profile: req.profile,
            issuer: req.issuer,
            max_token_lifetime,
            created_at: now(),
            policy,
            versions: Vec::new(),
        };
        let (backend, version) = self.new_version(&ks, 1)?;
        let key_ref = version.key_ref.clone();
        ks.add_version(version, true, ks.created_at, by);
        self.record_new(&backend, &key_ref, |m| {
            if m.keysets.contains_key(&ks.name) {
                return Err(already(&ks.name));
            }
            m.keysets.insert(ks.name.clone(), ks.clone());
            Ok(ks.clone())
        })
    }

    fn change_keyset(
        &self,
        name: &str,
        change: impl Fn(&mut Keyset) -> Result<()>,
    ) -> Result<Keyset> {
        self.refuse_quarantined(name)?;
        self.mutate(|m| {
            let ks = m.keysets.get_mut(name).ok_or_else(|| not_found(name))?;
            change(ks)?;
            Ok(ks.clone())
        })
    }

    /// Makes a new version: pending (published ahead), or active at once when
    /// `now` (emergency rotation; the old active key is retired). Blocking.
    ///
    /// # Errors
    /// `NotFound`, or the device's failure.
    pub fn rotate(&self, name: &str, activate_now: bool, by: &str) -> Result<Keyset> {
        let ks = self.keyset(name)?;
        let (backend, version) = self.new_version(&ks, ks.next_number())?;
        let key_ref = version.key_ref.clone();
        let at = now();
        let ks = self.record_new(&backend, &key_ref, |m| {
            let ks = m.keysets.get_mut(name).ok_or_else(|| not_found(name))?;
            ks.add_version(version.clone(), activate_now, at, by);
            Ok(ks.clone())
        })?;
        self.audit_transition(
            by,
            name,
            &version.kid,
            None,
            if activate_now { "active" } else { "pending" },
        );
        Ok(ks)
    }

    /// Promotes a pending version, or rolls back to a retired one. Blocking.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` for disabled or destroyed versions.
    pub fn activate(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.activate(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "active");
        Ok(ks)
    }

    /// Retires a pending version. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key.
    pub fn retire(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.retire(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "retired");
        Ok(ks)
    }

    /// Disables a version: out of the JWKS, refused by every verification. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key.
    pub fn disable(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.disable(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "disabled");
        Ok(ks)
    }

    /// Destroys a version: recorded first, then removed from the device. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key; the device's failure.
    pub fn destroy(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.destroy(kid, at, by).map(|_| ()))?;
        if let Some(v) = ks.versions.iter().find(|v| v.kid == kid) {
            self.backend_of(&ks.backend)?.destroy(&v.key_ref)?;
        }
        self.audit_transition(by, name, kid, None, "destroyed");
        Ok(ks)
    }

    /// A PKCS#10 certificate request (PEM) for a TLS keyset's active key,
    /// or its pending version `kid` (so the certificate is issued before the
    /// key signs), signed inside the device; and that key's kid. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for a keyset that is not a TLS one, no active
    /// key, or a kid neither active nor pending; `InvalidArgument` for a bad
    /// subject or SAN; the device's failure.
    pub fn certificate_request(
        &self,
        name: &str,
        kid: Option<&str>,
        subject: &str,
        sans: &[String],
    ) -> Result<(String, String)> {
        self.refuse_stale()?;
        self.refuse_quarantined(name)?;
        let ks = self.keyset(name)?;
        if !ks.purposes.iter().any(|p| p.is_tls()) {
            return Err(Error::FailedPrecondition(format!(
                "keyset {name:?} is not a TLS keyset (purpose tls_client or tls_server): \
                 only transport keys get certificate requests"
            )));
        }
        let version = match kid {
            None => ks.active().ok_or_else(|| {
                Error::FailedPrecondition(format!("keyset {name:?} has no active key version"))
            })?,
            Some(kid) => ks
                .versions
                .iter()
                .find(|v| v.kid == kid)
                .filter(|v| matches!(v.state, VersionState::Active | VersionState::Pending))
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "keyset {name:?} has no active or pending version {kid}: \
                         `custos keyset show {name}` lists them"
                    ))
                })?,
        };
        let info = crate::pki::request_info(subject, sans, &version.public)?;
        let tbs = crate::pki::to_be_signed(&info)?;
        let signature = self
            .backend_of(&ks.backend)?
            .sign(&version.key_ref, ks.alg, &tbs)?;
        Ok((
            crate::pki::assemble(info, ks.alg, &signature)?,
            version.kid.clone(),
        ))
    }

    /// Stores the certificate chain a CA issued for one of a TLS keyset's
    /// versions: the leaf's public key picks the version, which must be live
    /// (not disabled or destroyed). Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a chain that does not parse or certifies none of
    /// the keyset's keys; `FailedPrecondition` for a keyset that is not a TLS
    /// one, or a version no longer live.
    pub fn set_certificate(&self, name: &str, chain_pem: &str, by: &str) -> Result<Keyset> {
        use base64::Engine;
        let chain = crate::pki::parse_chain(chain_pem)?;
        let stored: Vec<String> = chain
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
        let ks = self.change_keyset(name, |ks| {
            if !ks.purposes.iter().any(|p| p.is_tls()) {
                return Err(Error::FailedPrecondition(format!(
                    "keyset {name:?} is not a TLS keyset (purpose tls_client or tls_server); \
                     certificates are stored for transport keys only"
                )));
            }
            let mut found = None;
            for v in ks.versions.iter_mut() {
                if crate::pki::certifies(&chain[0], &v.public)? {
                    found = Some(v);
                    break;
                }
            }
            let v = found.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the leaf certificate certifies none of keyset {name:?}'s keys: give the \
                     chain issued for the CSR `custos keyset csr {name}` made"
                ))
            })?;
            if !v.state.is_live() {
                return Err(Error::FailedPrecondition(format!(
                    "kid {} is {}: a certificate is stored only for a live key",
                    v.kid,
                    v.state.as_str()
                )));
            }
            v.certificate_chain = stored.clone();
            Ok(())
        })?;
        let kid = ks
            .versions
            .iter()
            .find(|v| v.certificate_chain == stored)
            .map(|v| v.kid.clone())
            .unwrap_or_default();
        tracing::info!(target: "custos::audit", by, keyset = name, kid, operation = "set_certificate",
            x5t_s256 = crate::pki::x5t_s256(&chain[0]), outcome = "ok", "certificate stored");
        Ok(ks)
    }

    /// Changes a keyset's policy. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a policy that does not fit the keyset.
    pub fn set_policy(&self, name: &str, update: PolicyUpdate, by: &str) -> Result<Keyset> {
        let min_rotation = self.limits().min_rotation_period;
        let ks = self.change_keyset(name, |ks| {
            let mut p = ks.policy;
            if let Some(r) = update.rotation_period {
                p.rotation_period = r;
            }
            if let Some(v) = update.publish_ahead {
                p.publish_ahead = v;
            }
            if let Some(v) = update.retain_for {
                p.retain_for = v;
            }
            if let Some(v) = update.auto_destroy {
                p.auto_destroy = v;
            }
            p.check(ks.max_token_lifetime, min_rotation)
                .map_err(Error::InvalidArgument)?;
            ks.policy = p;
            Ok(())
        })?;
        tracing::info!(target: "custos::audit", by, keyset = name, operation = "set_policy",
            policy = ?ks.policy, outcome = "ok", "policy changed");
        Ok(ks)
    }

    /// Runs every scheduled transition due at `at`. Blocking. Returns how
    /// many transitions were made. Each keyset is handled on its own: a
    /// keyset whose transition fails is logged and audited and retried at
    /// the next tick, and the keysets after it still proceed.
    ///
    /// # Errors
    /// The first failure, after every keyset was tried.
    pub fn tick(&self, at: i64) -> Result<usize> {
        let mut done = 0;
        let mut first_error = None;
        let snapshot = self.snapshot();
        for ks in snapshot.keysets.values() {
            match self.tick_keyset(ks, at) {
                Ok(n) => done += n,
                Err(e) => {
                    self.schedule_failed(&ks.name, &e);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Runs the scheduled transitions of keyset `name` due at `at` (the
    /// background loop runs each keyset on its own thread, so a device that
    /// hangs holds up only its own keysets' schedule). Blocking.
    ///
    /// # Errors
    /// `NotFound`, or the transition's failure (logged and audited as in [`Keyring::tick`]).
    pub fn tick_named(&self, name: &str, at: i64) -> Result<usize> {
        let ks = self.keyset(name)?;
        self.tick_keyset(&ks, at)
            .inspect_err(|e| self.schedule_failed(name, e))
    }

    /// Logs and audits a failed scheduled transition (retried at the next tick).
    fn schedule_failed(&self, keyset: &str, e: &Error) {
        tracing::error!(keyset, error = %e, "scheduled transition failed; retrying at the next tick");
        if let Some(a) = self.audit.get() {
            let detail = e.to_string();
            let _ = a.record_blocking(
                serde_json::json!({"schedule": true}),
                &crate::audit::Event {
                    operation: "scheduled_transition",
                    keyset: Some(keyset),
                    outcome: "error",
                    detail: Some(&detail),
                    ..crate::audit::Event::default()
                },
            );
        }
    }

    /// The watch on the backend of keyset `name`, if it is served.
    pub fn guard_of(&self, name: &str) -> Option<Arc<DeviceGuard>> {
        let snap = self.snapshot();
        self.guards.get(&snap.keysets.get(name)?.backend).cloned()
    }

    /// The scheduled transitions of one keyset due at `at`.
    fn tick_keyset(&self, ks: &Keyset, at: i64) -> Result<usize> {
        let mut done = 0;
        {
            for due in schedule::due(ks, at) {
                match due {
                    schedule::Due::Rotate => {
                        let (backend, version) = self.new_version(ks, ks.next_number())?;
                        let kid = version.kid.clone();
                        let key_ref = version.key_ref.clone();
                        let added = self.record_new(&backend, &key_ref, |m| {
                            let Some(k) = m.keysets.get_mut(&ks.name) else {
                                return Ok(false);
                            };
                            // Another daemon may have rotated meanwhile.
                            if !schedule::due(k, at).contains(&schedule::Due::Rotate) {
                                return Ok(false);
                            }
                            k.add_version(version.clone(), false, at, "schedule");
                            Ok(true)
                        })?;
                        if added {
                            self.audit_transition("schedule", &ks.name, &kid, None, "pending");
                            done += 1;
                        } else if let Err(e) = backend.destroy(&key_ref) {
                            tracing::warn!(error = %e, "could not remove an unneeded key");
                        }
                    }
                    schedule::Due::Promote(kid) => {
                        self.change_keyset(&ks.name, |k| {
                            if schedule::due(k, at).contains(&schedule::Due::Promote(kid.clone())) {
                                k.activate(&kid, at, "schedule")?;
                            }
                            Ok(())
                        })?;
                        self.audit_transition(
                            "schedule",
                            &ks.name,
                            &kid,
                            Some("pending"),
                            "active",
                        );
                        done += 1;
                    }
                    schedule::Due::Expire(kid) => {
                        let destroy = ks.policy.auto_destroy;
                        let after = self.change_keyset(&ks.name, |k| {
                            if schedule::due(k, at).contains(&schedule::Due::Expire(kid.clone())) {
                                if destroy {
                                    k.destroy(&kid, at, "schedule")?;
                                } else {
                                    k.disable(&kid, at, "schedule")?;
                                }
                            }
                            Ok(())
                        })?;
                        if destroy {
                            if let Some(v) = after.versions.iter().find(|v| v.kid == kid) {
                                self.backend_of(&after.backend)?.destroy(&v.key_ref)?;
                            }
                        }
                        self.audit_transition(
                            "schedule",
                            &ks.name,
                            &kid,
                            Some("retired"),
                            if destroy { "destroyed" } else { "disabled" },
                        );
                        done += 1;
                    }
                }
            }
        }
        Ok(done)
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

/// Why the certificate chain stored with `v` cannot be served, if it cannot:
/// not DER, or its leaf certifies another key.
fn certificate_problem(v: &KeyVersion) -> Option<String> {
    let chain = v.chain_der();
    if chain.len() != v.certificate_chain.len() {
        return Some(format!(
            "the certificate chain of kid {} is not base64 DER",
            v.kid
        ));
    }
    match chain
        .first()
        .map(|leaf| crate::pki::certifies(leaf, &v.public))
    {
        None | Some(Ok(true)) => None,
        _ => Some(format!(
            "the certificate stored for kid {} does not certify its public key",
            v.kid
        )),
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
    Error::NotFound(format!(
        "no keyset named {name:?}; `custos keyset list` shows the keysets"
    ))
}

fn already(name: &str) -> Error {
    Error::AlreadyExists(format!("keyset {name:?} already exists"))
}

impl Error {
    /// Prefixes the message with where the error happened, keeping the kind.
    pub fn with_context(self, ctx: &str) -> Self {
        match self {
            Error::NotFound(m) => Error::NotFound(format!("{ctx}: {m}")),
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{ctx}: {m}")),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("{ctx}: {m}")),
            Error::AlreadyExists(m) => Error::AlreadyExists(format!("{ctx}: {m}")),
            Error::PermissionDenied(m) => Error::PermissionDenied(format!("{ctx}: {m}")),
            Error::Unavailable(m) => Error::Unavailable(format!("{ctx}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{ctx}: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::software::SoftwareBackend;

    fn ring(dir: &std::path::Path) -> Keyring {
        let b: Arc<dyn KeyBackend> = Arc::new(SoftwareBackend::new(dir.join("keys")).unwrap());
        Keyring::open(
            Box::new(store::FileStore::new(dir.join("state"))),
            BTreeMap::from([("dev".to_string(), b)]),
        )
        .unwrap()
    }

    impl Keyring {
        fn create_t(&self, n: NewKeyset) -> Result<Keyset> {
            self.create(n, "test")
        }
    }

    fn new(name: &str) -> NewKeyset {
        NewKeyset {
            name: name.into(),
            alg: Algorithm::ES256,
            purposes: vec![Purpose::IdToken],
            backend: None,
            profile: Profile::Fapi2,
            issuer: None,
            max_token_lifetime: None,
        }
    }

    #[test]
    fn create_persists_and_reopens_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let kid = ring(dir.path()).create_t(new("a")).unwrap().versions[0]
            .kid
            .clone();
        let again = ring(dir.path());
        assert_eq!(again.keyset("a").unwrap().versions[0].kid, kid);
        assert_eq!(again.snapshot().generation, 1);
        let sk = again.active_key("a", Purpose::IdToken).unwrap();
        assert_eq!(sk.sign(b"x").unwrap().len(), 64);
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(dir.path());
        r.create_t(new("a")).unwrap();
        assert!(matches!(r.create_t(new("a")), Err(Error::AlreadyExists(_))));
        assert!(matches!(r.keyset("b"), Err(Error::NotFound(_))));
        assert!(matches!(
            r.active_key("a", Purpose::Jarm),
            Err(Error::FailedPrecondition(_))
        ));
        let mut bad = new("c");
        bad.backend = Some("hsm9".into());
        assert!(matches!(r.create_t(bad), Err(Error::NotFound(_))));
        let mut none = new("d");
        none.purposes.clear();
        assert!(matches!(r.create_t(none), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn failed_manifest_write_removes_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(dir.path());
        // A directory where the temporary file goes makes the write fail
        // before the rename, even for root: the manifest provably does not
        // name the key.
        let blocker = dir
            .path()
            .join("state")
            .join(format!(".keyring.json.{}.tmp", std::process::id()));
        std::fs::create_dir_all(blocker.join("x")).unwrap();
        assert!(matches!(r.create_t(new("a")), Err(Error::Internal(_))));
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            0
        );
        assert!(r.keyset("a").is_err());
    }

    /// A backend that refuses to generate keys while `fail` is set.
    #[derive(Debug)]
    struct Flaky {
        inner: SoftwareBackend,
        fail: std::sync::atomic::AtomicBool,
    }

    impl KeyBackend for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn generate(
            &self,
            key: &KeyRef,
            alg: Algorithm,
        ) -> std::result::Result<PublicKey, crate::backend::BackendError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::backend::BackendError::Unavailable(
                    "the device is away".into(),
                ));
            }
            self.inner.generate(key, alg)
        }
        fn load(
            &self,
            key: &KeyRef,
            alg: Algorithm,
        ) -> std::result::Result<PublicKey, crate::backend::BackendError> {
            self.inner.load(key, alg)
        }
        fn sign(
            &self,
            key: &KeyRef,
            alg: Algorithm,
            m: &[u8],
        ) -> std::result::Result<Vec<u8>, crate::backend::BackendError> {
            self.inner.sign(key, alg, m)
        }
        fn decrypt(
            &self,
            key: &KeyRef,
            alg: Algorithm,
            c: &[u8],
        ) -> std::result::Result<Vec<u8>, crate::backend::BackendError> {
            self.inner.decrypt(key, alg, c)
        }
        fn protection(
            &self,
            key: &KeyRef,
        ) -> std::result::Result<crate::backend::KeyProtection, crate::backend::BackendError>
        {
            self.inner.protection(key)
        }
        fn destroy(&self, key: &KeyRef) -> std::result::Result<(), crate::backend::BackendError> {
            self.inner.destroy(key)
        }
        fn list_keys(&self) -> std::result::Result<Vec<KeyRef>, crate::backend::BackendError> {
            self.inner.list_keys()
        }
    }

    #[test]
    fn one_failing_keyset_does_not_stall_the_schedule_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Flaky {
            inner: SoftwareBackend::new(dir.path().join("flaky-keys")).unwrap(),
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        let dev: Arc<dyn KeyBackend> =
            Arc::new(SoftwareBackend::new(dir.path().join("keys")).unwrap());
        let r = Keyring::open(
            Box::new(store::FileStore::new(dir.path().join("state"))),
            BTreeMap::from([
                ("dev".to_string(), dev),
                ("flaky".to_string(), flaky.clone() as Arc<dyn KeyBackend>),
            ]),
        )
        .unwrap();
        let mut a = new("a");
        a.backend = Some("flaky".into());
        r.create_t(a).unwrap();
        r.create_t(new("b")).unwrap();
        for name in ["a", "b"] {
            let update = PolicyUpdate {
                rotation_period: Some(Some(30 * 86_400)),
                ..PolicyUpdate::default()
            };
            r.set_policy(name, update, "test").unwrap();
        }
        flaky.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        // "a" sorts first and fails; "b" still rotates.
        assert_eq!(r.tick(now() + 60 * 86_400).unwrap(), 1);
        assert_eq!(r.keyset("a").unwrap().versions.len(), 1);
        assert_eq!(r.keyset("b").unwrap().versions.len(), 2);
        // Retried at the next tick once the device is back.
        flaky.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(r.tick(now() + 60 * 86_400).unwrap() >= 1);
        assert_eq!(r.keyset("a").unwrap().versions.len(), 2);
    }

    /// Rewrites the stored manifest with `change`, bumping the generation.
    fn tamper(dir: &std::path::Path, change: impl Fn(&mut serde_json::Value)) {
        let path = manifest::path(&dir.join("state"));
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        change(&mut m);
        m["generation"] = serde_json::json!(m["generation"].as_u64().unwrap() + 1);
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    }

    #[test]
    fn a_manifest_naming_another_public_key_quarantines_that_keyset_only() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let r = ring(dir.path());
        r.create_t(new("a")).unwrap();
        r.create_t(new("b")).unwrap();
        // Another key pair, kid and public consistent with each other.
        let foreign = ring(other.path()).create_t(new("x")).unwrap().versions[0].clone();
        let (kid, public) = (
            foreign.kid.clone(),
            serde_json::to_value(&foreign.public).unwrap(),
        );
        tamper(dir.path(), |m| {
            m["keysets"]["a"]["versions"][0]["kid"] = serde_json::json!(kid);
            m["keysets"]["a"]["versions"][0]["public"] = public.clone();
        });
        // At the next refresh of the running daemon...
        assert!(r.refresh().unwrap());
        let check = |r: &Keyring| {
            assert!(
                !r.snapshot().keysets.contains_key("a"),
                "a must not be served"
            );
            assert!(
                r.quarantined()["a"].contains("is not the recorded public key"),
                "{:?}",
                r.quarantined()
            );
            let e = r.active_key("a", Purpose::IdToken).unwrap_err();
            assert!(
                matches!(e, Error::FailedPrecondition(ref m) if m.contains("quarantined")),
                "{e:?}"
            );
            assert!(r.active_key("b", Purpose::IdToken).is_ok());
            assert!(matches!(
                r.rotate("a", true, "test"),
                Err(Error::FailedPrecondition(_))
            ));
        };
        check(&r);
        // ...and after a restart.
        check(&ring(dir.path()));
        // A public key that does not hash to its kid is refused too.
        let public_b = serde_json::to_value(&r.keyset("b").unwrap().versions[0].public).unwrap();
        tamper(dir.path(), |m| {
            m["keysets"]["b"]["versions"][0]["public"] = public.clone();
        });
        assert!(r.refresh().unwrap());
        assert!(
            r.quarantined()["b"].contains("does not hash"),
            "{:?}",
            r.quarantined()
        );
        // Restoring the file serves it again.
        tamper(dir.path(), |m| {
            m["keysets"]["b"]["versions"][0]["public"] = public_b.clone();
        });
        assert!(r.refresh().unwrap());
        assert!(r.active_key("b", Purpose::IdToken).is_ok());
        assert!(!r.quarantined().contains_key("b"));
    }

    /// A store whose next commit writes the manifest and then reports a
    /// failure, as when the directory fsync after the rename fails.
    #[derive(Debug)]
    struct FailsAfterWrite {
        inner: store::FileStore,
        armed: std::sync::atomic::AtomicBool,
    }

    impl ManifestStore for FailsAfterWrite {
        fn load(&self) -> Result<Manifest> {
            self.inner.load()
        }
        fn commit(&self, base: u64, next: &Manifest) -> Result<Commit> {
            let done = self.inner.commit(base, next)?;
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Internal(
                    "fsync of the state directory failed".into(),
                ));
            }
            Ok(done)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    #[test]
    fn a_write_that_fails_after_the_rename_keeps_the_key_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let b: Arc<dyn KeyBackend> =
            Arc::new(SoftwareBackend::new(dir.path().join("keys")).unwrap());
        let r = Keyring::open(
            Box::new(FailsAfterWrite {
                inner: store::FileStore::new(dir.path().join("state")),
                armed: std::sync::atomic::AtomicBool::new(true),
            }),
            BTreeMap::from([("dev".to_string(), b)]),
        )
        .unwrap();
        assert!(matches!(r.create_t(new("a")), Err(Error::Internal(_))));
        // The manifest names the key: it is kept, served, and the next start accepts it.
        assert!(r.active_key("a", Purpose::IdToken).is_ok());
        let again = ring(dir.path());
        assert_eq!(
            again
                .active_key("a", Purpose::IdToken)
                .unwrap()
                .sign(b"x")
                .unwrap()
                .len(),
            64
        );
    }
}

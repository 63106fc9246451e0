//! The keyring: keysets, their versions and states, persisted in the manifest.
//!
//! - `keyset.rs`: the data model and the state transitions of one keyset.
//! - `policy.rs`: rotation policy and durations.
//! - `schedule.rs`: which scheduled transitions are due (pure).
//! - `manifest.rs`, `store.rs`, `token_store.rs`: where the manifest lives
//!   (a file, or data objects on the token shared by several daemons).
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

pub mod keyset;
pub mod manifest;
pub mod policy;
pub mod schedule;
pub mod store;
pub mod token_store;

use crate::alg::Algorithm;
use crate::backend::{KeyBackend, KeyRef};
use crate::error::{Error, Result};
use crate::jose::jwk;
use keyset::{KeyVersion, Keyset, Profile, Purpose, VersionState};
use manifest::Manifest;
use policy::Policy;
use std::collections::BTreeMap;
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
    snapshot: RwLock<Arc<Manifest>>,
    writer: Mutex<()>,
    orphans: Mutex<Vec<(String, KeyRef)>>,
    audit: std::sync::OnceLock<Arc<crate::audit::Auditor>>,
    limits: std::sync::OnceLock<Limits>,
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
        let ring = Self {
            store,
            backends,
            snapshot: RwLock::new(Arc::new(m)),
            writer: Mutex::new(()),
            orphans: Mutex::new(Vec::new()),
            audit: std::sync::OnceLock::new(),
            limits: std::sync::OnceLock::new(),
        };
        ring.reconcile(true)?;
        Ok(ring)
    }

    fn reconcile(&self, strict: bool) -> Result<()> {
        let m = self.snapshot();
        let mut recorded: BTreeMap<&str, Vec<&KeyRef>> = BTreeMap::new();
        for ks in m.keysets.values() {
            let Some(backend) = self.backends.get(&ks.backend) else {
                return Err(Error::FailedPrecondition(format!(
                    "keyset {:?} lives on backend {:?}, which is not in the config",
                    ks.name, ks.backend
                )));
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
                    continue;
                }
                let checked = backend.load(&v.key_ref, ks.alg).map_err(|e| {
                    Error::from(e).with_context(&format!("keyset {:?} kid {}", ks.name, v.kid))
                });
                let mismatch = match &checked {
                    Ok(public) => jwk::thumbprint(public) != v.kid,
                    Err(_) => false,
                };
                if mismatch {
                    return Err(Error::Internal(format!(
                        "keyset {:?}: the device key {} no longer matches kid {}; refusing to use it",
                        ks.name, v.key_ref.label, v.kid
                    )));
                }
                if let Err(e) = checked {
                    if strict {
                        return Err(e);
                    }
                    tracing::error!(keyset = %ks.name, kid = %v.kid, error = %e, "a recorded key is missing on its device");
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
            let _ = a.record(
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

    fn install(&self, m: Manifest) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
    }

    /// Picks up changes another daemon committed to a shared store. Blocking.
    ///
    /// # Errors
    /// The store's failure.
    pub fn refresh(&self) -> Result<bool> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let m = self.store.load()?;
        let current = self.snapshot();
        // Only move forward: a store may briefly show an older generation
        // while a concurrent writer withdraws a losing write.
        if m.generation <= current.generation {
            return Ok(false);
        }
        tracing::info!(
            generation = m.generation,
            "keyring changed in the store; reloaded"
        );
        self.install(m);
        self.reconcile(false)?;
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
            .ok_or_else(|| not_found(name))
    }

    /// The backend names, for messages and tools.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<Arc<dyn KeyBackend>> {
        self.backends.get(name).cloned()
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
        Ok((
            backend,
            KeyVersion {
                kid: jwk::thumbprint(&public),
                state: VersionState::Pending,
                created_at: now(),
                key_ref,
                public,
                history: Vec::new(),
            },
        ))
    }

    /// Records a freshly generated version with `record`, or removes the key
    /// from the device again when recording fails.
    fn record_new<T>(
        &self,
        backend: &Arc<dyn KeyBackend>,
        key_ref: &KeyRef,
        record: impl Fn(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        match self.mutate(record) {
            Ok(v) => Ok(v),
            Err(e) => {
                if let Err(cleanup) = backend.destroy(key_ref) {
                    tracing::error!(label = %key_ref.label, error = %cleanup,
                        "could not remove a key whose recording failed; it is an orphan");
                }
                Err(e)
            }
        }
    }

    /// Creates a keyset with one active version generated on its backend. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or no purposes, `AlreadyExists`,
    /// `NotFound` for an unknown backend, or the device's failure.
    pub fn create(&self, req: NewKeyset, by: &str) -> Result<Keyset> {
        keyset::check_name(&req.name).map_err(Error::InvalidArgument)?;
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
                    tracing::error!(keyset = %ks.name, error = %e,
                        "scheduled transition failed; retrying at the next tick");
                    if let Some(a) = self.audit.get() {
                        let detail = e.to_string();
                        let _ = a.record(
                            serde_json::json!({"schedule": true}),
                            &crate::audit::Event {
                                operation: "scheduled_transition",
                                keyset: Some(&ks.name),
                                outcome: "error",
                                detail: Some(&detail),
                                ..crate::audit::Event::default()
                            },
                        );
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
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
        let snap = self.snapshot();
        let ks = snap.keysets.get(name).ok_or_else(|| not_found(name))?;
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
            backend,
        })
    }
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
        // A non-empty directory where the manifest goes makes the final rename
        // fail, even for root.
        let blocker = manifest::path(&dir.path().join("state"));
        std::fs::create_dir_all(blocker.join("x")).unwrap();
        assert!(matches!(r.create_t(new("a")), Err(Error::Internal(_))));
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            0
        );
        assert!(r.keyset("a").is_err());
    }
}

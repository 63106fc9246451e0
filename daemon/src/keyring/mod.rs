//! The keyring: keysets, their versions and states, persisted in the manifest.
//!
//! It owns the configured backends by name, asks them to make and use keys,
//! and keeps the metadata (`manifest.rs`) consistent with the devices: a key
//! is generated first and recorded second, and when recording fails the new
//! key is destroyed again, so no half-written state survives.
//!
//! Reads (list, get, public keys) take a snapshot `Arc<Manifest>`; writes are
//! serialized by one mutex and replace the snapshot after the manifest file
//! is safely on disk.

pub mod keyset;
pub mod manifest;

use crate::alg::Algorithm;
use crate::backend::{KeyBackend, KeyRef};
use crate::error::{Error, Result};
use crate::jose::jwk;
use keyset::{KeyVersion, Keyset, Profile, Purpose, VersionState};
use manifest::Manifest;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

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
}

/// Keysets, backends and the manifest.
#[derive(Debug)]
pub struct Keyring {
    state_dir: PathBuf,
    backends: BTreeMap<String, Arc<dyn KeyBackend>>,
    snapshot: RwLock<Arc<Manifest>>,
    writer: Mutex<()>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Keyring {
    /// Loads the manifest from `state_dir` and checks every live version
    /// against its device: the key must be there and its public key must
    /// hash to the recorded kid. Blocking.
    ///
    /// # Errors
    /// A clear error for a damaged manifest, a keyset whose backend is not
    /// configured, or a key that is missing or different on the device.
    pub fn open(
        state_dir: PathBuf,
        backends: BTreeMap<String, Arc<dyn KeyBackend>>,
    ) -> Result<Self> {
        std::fs::create_dir_all(&state_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create state_dir {}: {e}",
                state_dir.display()
            ))
        })?;
        let m = manifest::load(&state_dir)?;
        for ks in m.keysets.values() {
            let Some(backend) = backends.get(&ks.backend) else {
                return Err(Error::FailedPrecondition(format!(
                    "keyset {:?} lives on backend {:?}, which is not in the config",
                    ks.name, ks.backend
                )));
            };
            for v in ks
                .versions
                .iter()
                .filter(|v| v.state != VersionState::Destroyed)
            {
                let public = backend.load(&v.key_ref, ks.alg).map_err(|e| {
                    Error::from(e).with_context(&format!("keyset {:?} kid {}", ks.name, v.kid))
                })?;
                if jwk::thumbprint(&public) != v.kid {
                    return Err(Error::Internal(format!(
                        "keyset {:?}: the device key {} no longer matches kid {}; refusing to start",
                        ks.name, v.key_ref.label, v.kid
                    )));
                }
            }
        }
        Ok(Self {
            state_dir,
            backends,
            snapshot: RwLock::new(Arc::new(m)),
            writer: Mutex::new(()),
        })
    }

    /// The current manifest snapshot.
    pub fn snapshot(&self) -> Arc<Manifest> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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

    /// Creates a keyset with one active version generated on its backend. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or no purposes, `AlreadyExists`,
    /// `NotFound` for an unknown backend, or the device's failure.
    pub fn create(&self, req: NewKeyset) -> Result<Keyset> {
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
        let Some(backend) = self.backends.get(&backend_name).cloned() else {
            return Err(Error::NotFound(format!(
                "no backend named {backend_name:?}; configured backends: {:?}",
                self.backend_names()
            )));
        };
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.snapshot().keysets.contains_key(&req.name) {
            return Err(Error::AlreadyExists(format!(
                "keyset {:?} already exists",
                req.name
            )));
        }
        let key_ref = KeyRef::generate(format!("custos:{}:1", req.name));
        let public = backend.generate(&key_ref, req.alg)?;
        let created_at = now();
        let mut purposes = req.purposes;
        purposes.sort();
        purposes.dedup();
        let ks = Keyset {
            name: req.name.clone(),
            alg: req.alg,
            purposes,
            backend: backend_name,
            profile: req.profile,
            issuer: req.issuer,
            max_token_lifetime,
            created_at,
            versions: vec![KeyVersion {
                kid: jwk::thumbprint(&public),
                state: VersionState::Active,
                created_at,
                key_ref: key_ref.clone(),
                public,
            }],
        };
        let mut next = (*self.snapshot()).clone();
        next.generation += 1;
        next.keysets.insert(ks.name.clone(), ks.clone());
        if let Err(e) = manifest::store(&self.state_dir, &next) {
            if let Err(cleanup) = backend.destroy(&key_ref) {
                tracing::error!(label = %key_ref.label, error = %cleanup,
                    "could not remove a key whose manifest write failed; it is an orphan");
            }
            return Err(e);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(ks)
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
        let backend = self.backends.get(&ks.backend).cloned().ok_or_else(|| {
            Error::FailedPrecondition(format!("backend {:?} is not configured", ks.backend))
        })?;
        Ok(ActiveKey {
            kid: v.kid.clone(),
            alg: ks.alg,
            profile: ks.profile,
            issuer: ks.issuer.clone(),
            max_token_lifetime: ks.max_token_lifetime,
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
        Keyring::open(dir.join("state"), BTreeMap::from([("dev".to_string(), b)])).unwrap()
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
        let kid = ring(dir.path()).create(new("a")).unwrap().versions[0]
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
        r.create(new("a")).unwrap();
        assert!(matches!(r.create(new("a")), Err(Error::AlreadyExists(_))));
        assert!(matches!(r.keyset("b"), Err(Error::NotFound(_))));
        assert!(matches!(
            r.active_key("a", Purpose::Jarm),
            Err(Error::FailedPrecondition(_))
        ));
        let mut bad = new("c");
        bad.backend = Some("hsm9".into());
        assert!(matches!(r.create(bad), Err(Error::NotFound(_))));
        let mut none = new("d");
        none.purposes.clear();
        assert!(matches!(r.create(none), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn failed_manifest_write_removes_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(dir.path());
        // A non-empty directory where the manifest goes makes the final rename
        // fail, even for root.
        let blocker = manifest::path(&dir.path().join("state"));
        std::fs::create_dir_all(blocker.join("x")).unwrap();
        assert!(matches!(r.create(new("a")), Err(Error::Internal(_))));
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            0
        );
        assert!(r.keyset("a").is_err());
    }
}

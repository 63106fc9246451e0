//! The keyring's unit tests (software backend, temporary state dirs).

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
    ) -> std::result::Result<crate::backend::KeyProtection, crate::backend::BackendError> {
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
    let dev: Arc<dyn KeyBackend> = Arc::new(SoftwareBackend::new(dir.path().join("keys")).unwrap());
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
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
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
    let b: Arc<dyn KeyBackend> = Arc::new(SoftwareBackend::new(dir.path().join("keys")).unwrap());
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

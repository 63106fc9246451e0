//! Compact JWE parsing and decryption (with a software RSA-OAEP-256 key in
//! place of the HSM) must never panic, and must fail closed.
#![no_main]

use custos_daemon::alg::Algorithm;
use custos_daemon::backend::software::SoftwareBackend;
use custos_daemon::backend::{KeyBackend, KeyRef};
use custos_daemon::keyring::keyset::Profile;
use custos_daemon::keyring::ActiveKey;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn key() -> &'static ActiveKey {
    static KEY: OnceLock<(tempfile::TempDir, ActiveKey)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = Arc::new(SoftwareBackend::new(dir.path().into()).expect("backend"));
        let key_ref = KeyRef::generate("fuzz".into());
        backend.generate(&key_ref, Algorithm::RsaOaep256).expect("keygen");
        let key = ActiveKey {
            kid: "fuzz".into(),
            alg: Algorithm::RsaOaep256,
            profile: Profile::Fapi2,
            issuer: None,
            max_token_lifetime: 3600,
            purposes: vec![custos_daemon::keyring::keyset::Purpose::RequestObjectDecryption],
            key_ref,
            guard: custos_daemon::backend::guard::DeviceGuard::new("fuzz", backend.clone()),
            backend,
        };
        (dir, key)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = custos_daemon::jose::jwe::decrypt(key(), text);
});

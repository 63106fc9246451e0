//! Compact JWE parsing and decryption (with a software RSA-OAEP-256 key in
//! place of the HSM) must never panic, and must fail closed.
#![no_main]

use custos_daemon::{
    ActiveKey, Algorithm, DeviceGuard, KeyBackend, KeyRef, Profile, Purpose, SoftwareBackend,
};
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
            purposes: vec![Purpose::RequestObjectDecryption],
            key_ref,
            guard: DeviceGuard::new("fuzz", backend.clone()),
            backend,
        };
        (dir, key)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = custos_daemon::untrusted::decrypt_jwe(key(), text);
});

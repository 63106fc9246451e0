//! Client certificates as terminators forward them (PEM, DER, URL-encoded
//! PEM): parsing must never panic and garbage must be a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(der) = custos_daemon::untrusted::parse_certificate(data) {
        let t = custos_daemon::untrusted::x5t_s256(&der);
        assert_eq!(t.len(), 43);
    }
});

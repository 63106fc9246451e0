//! DPoP proof checks (RFC 9449 4.3) must never panic on any proof.
#![no_main]

use custos_daemon::untrusted::{
    check_proof, normalize_htu, record, DpopRequest, DpopRules, ReplayCache,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static CACHE: OnceLock<ReplayCache> = OnceLock::new();
    let Ok(proof) = std::str::from_utf8(data) else { return };
    let req = DpopRequest {
        proof,
        htm: "POST",
        htu: "https://rs.example/resource",
        access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
    };
    let cache = CACHE.get_or_init(|| ReplayCache::new(1000, 1000));
    if let Ok(p) = check_proof(&req, 1_700_000_000, DpopRules { window: 60, skew: 60 }) {
        let _ = record(cache, "fuzz", &p, 1_700_000_000);
    }
    let _ = normalize_htu(proof);
});

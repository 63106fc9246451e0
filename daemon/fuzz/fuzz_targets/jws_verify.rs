//! Compact JWS parsing, header rules, key selection from a JWKS and
//! signature verification must never panic on any input.
#![no_main]

use custos_daemon::untrusted::verify;
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256",
 "x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = verify::parse(text) else { return };
    let _ = verify::check_times(&parsed.claims, 1_700_000_000, 60, true);
    let _ = verify::audience_contains(&parsed.claims, "https://rs");
    let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("static JWKS");
    if let Ok(Ok(key)) = verify::key_from_jwks(&jwks, &parsed) {
        let _ = key.verify(&parsed);
    }
});

//! The daemon config and HSM profile parsers must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = custos_daemon::Config::parse(text);
    let _ = custos_daemon::HsmProfile::parse(text);
    let _ = custos_daemon::untrusted::parse_duration(text);
});

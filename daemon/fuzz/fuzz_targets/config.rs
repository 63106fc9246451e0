//! The daemon config and HSM profile parsers must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = custos_daemon::config::Config::parse(text);
    let _ = custos_daemon::backend::profile::HsmProfile::parse(text);
    let _ = custos_daemon::keyring::policy::parse_duration(text);
});

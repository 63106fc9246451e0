//! Claim times and policy durations: parsing never panics, an accepted claim
//! time is within 0..=MAX_TIME, an accepted duration within 0..=MAX_DURATION,
//! and the schedule sums of accepted values never overflow.
#![no_main]

use custos_daemon::untrusted::{
    parse_duration, parse_numeric_date, Policy, MAX_DURATION, MAX_TIME, MIN_ROTATION_PERIOD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(t) = parse_numeric_date("iat", &v) {
            assert!((0..=MAX_TIME).contains(&t));
            // Any two accepted times and a lifetime: no overflow possible.
            let _ = t.checked_sub(MAX_TIME).expect("no overflow");
            let _ = t.checked_add(MAX_DURATION).expect("no overflow");
        }
    }
    if let Ok(d) = parse_duration(text) {
        assert!((0..=MAX_DURATION).contains(&d));
        let p = Policy {
            rotation_period: Some(d),
            publish_ahead: d,
            retain_for: d,
            auto_destroy: true,
        };
        if p.check(60, MIN_ROTATION_PERIOD).is_ok() {
            let _ = MAX_TIME.checked_add(d).expect("no overflow");
        }
    }
});

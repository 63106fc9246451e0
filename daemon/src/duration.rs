//! Durations in the config and the API (`90d`, `12h`, `30s`): parsed and
//! printed here, below `config` and `keyring` alike, so the config does not
//! reach up into the keyring for them.

/// The longest duration a policy may name: 100 years (in seconds). Longer
/// values are refused with the field's name, so a schedule sum of a time
/// and a duration always fits an `i64`.
pub const MAX_DURATION: i64 = 100 * 365 * 86_400;

/// Parses `90d`, `12h`, `30m`, `45s` or plain seconds.
///
/// # Errors
/// A message showing the accepted forms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let err = || format!("duration {s:?}: use a number with s, m, h or d (e.g. 90d, 12h, 30s)");
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        Some(_) => (s, 's'),
        None => return Err(err()),
    };
    let n: i64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(err)?;
    if secs > MAX_DURATION {
        return Err(format!(
            "duration {s:?} is longer than the maximum of {}",
            format_duration(MAX_DURATION)
        ));
    }
    Ok(secs)
}

/// Formats seconds in the largest whole unit (`7d`, `90s`).
pub(crate) fn format_duration(secs: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

//! Per-keyset rotation policy and the durations it is written in.

use serde::{Deserialize, Serialize};

/// When a keyset rotates and how long keys stay published around a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Rotate when the active key is this old (seconds); `None` = manual only.
    #[serde(default)]
    pub rotation_period: Option<i64>,
    /// How long a new key is published before it becomes active (seconds).
    #[serde(default = "default_publish_ahead")]
    pub publish_ahead: i64,
    /// How long a retired key stays published (seconds); at least the max token lifetime.
    #[serde(default = "default_retain_for")]
    pub retain_for: i64,
    /// Destroy expired retired keys instead of disabling them.
    #[serde(default)]
    pub auto_destroy: bool,
}

fn default_publish_ahead() -> i64 {
    86_400
}
fn default_retain_for() -> i64 {
    7 * 86_400
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rotation_period: None,
            publish_ahead: default_publish_ahead(),
            retain_for: default_retain_for(),
            auto_destroy: false,
        }
    }
}

impl Policy {
    /// Checks the policy against the keyset's longest token lifetime.
    ///
    /// # Errors
    /// A message naming the field at fault.
    pub fn check(&self, max_token_lifetime: i64) -> Result<(), String> {
        if let Some(p) = self.rotation_period {
            if p <= 0 {
                return Err("rotation_period must be positive (or none)".into());
            }
        }
        if self.publish_ahead < 0 {
            return Err("publish_ahead must not be negative".into());
        }
        if self.retain_for < max_token_lifetime {
            return Err(format!(
                "retain_for ({}) is shorter than the keyset's maximum token lifetime ({}): tokens would outlive their key in the JWKS",
                format_duration(self.retain_for),
                format_duration(max_token_lifetime)
            ));
        }
        Ok(())
    }
}

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
    n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(err)
}

/// Formats seconds in the largest whole unit (`7d`, `90s`).
pub fn format_duration(secs: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30"), Ok(30));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert_eq!(format_duration(7 * 86_400), "7d");
        assert_eq!(format_duration(90), "90s");
    }

    #[test]
    fn retain_for_must_cover_token_lifetime() {
        let p = Policy {
            retain_for: 60,
            ..Policy::default()
        };
        assert!(p.check(3600).unwrap_err().contains("retain_for"));
        assert!(Policy::default().check(3600).is_ok());
    }
}

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

pub(crate) use crate::duration::{format_duration, parse_duration, MAX_DURATION};

/// The default shortest rotation period (`[keyring] min_rotation_period`):
/// one hour. A shorter one would let an admin of one keyset glob fill the
/// device with keys.
pub const MIN_ROTATION_PERIOD: i64 = 3600;

impl Policy {
    /// Checks the policy against the keyset's longest token lifetime.
    ///
    /// # Errors
    /// A message naming the field at fault.
    pub fn check(&self, max_token_lifetime: i64, min_rotation_period: i64) -> Result<(), String> {
        let bounded = |name: &str, v: i64| {
            if (0..=MAX_DURATION).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be between 0 and {} (got {v} s)",
                    format_duration(MAX_DURATION)
                ))
            }
        };
        if let Some(p) = self.rotation_period {
            bounded("rotation_period", p)?;
            if p < min_rotation_period {
                return Err(format!(
                    "rotation_period must be at least {} ([keyring] min_rotation_period; got {}), or none",
                    format_duration(min_rotation_period),
                    format_duration(p)
                ));
            }
        }
        bounded("publish_ahead", self.publish_ahead)?;
        bounded("retain_for", self.retain_for)?;
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
    fn durations_are_bounded_and_rotation_has_a_floor() {
        assert!(parse_duration("9223372036854775807s")
            .unwrap_err()
            .contains("maximum"));
        assert!(parse_duration("36600d").is_err());
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        let huge = Policy {
            retain_for: i64::MAX,
            ..Policy::default()
        };
        assert!(huge
            .check(3600, MIN_ROTATION_PERIOD)
            .unwrap_err()
            .contains("retain_for"));
        let fast = Policy {
            rotation_period: Some(2),
            ..Policy::default()
        };
        assert!(fast
            .check(3600, MIN_ROTATION_PERIOD)
            .unwrap_err()
            .contains("at least"));
        let neg = Policy {
            publish_ahead: -1,
            ..Policy::default()
        };
        assert!(neg
            .check(3600, MIN_ROTATION_PERIOD)
            .unwrap_err()
            .contains("publish_ahead"));
    }

    #[test]
    fn retain_for_must_cover_token_lifetime() {
        let p = Policy {
            retain_for: 60,
            ..Policy::default()
        };
        assert!(p
            .check(3600, MIN_ROTATION_PERIOD)
            .unwrap_err()
            .contains("retain_for"));
        assert!(Policy::default().check(3600, MIN_ROTATION_PERIOD).is_ok());
    }
}

//! NumericDate (RFC 7519 section 2) values as Custos accepts them: whole
//! seconds from 0 to [`MAX_TIME`] (the end of the year 9999). Bounding every
//! claim time this way means no sum or difference of two of them, or of one
//! and a configured lifetime, can overflow an `i64`: a hostile `iat` of
//! `-9223372036854775808` is refused here instead of wrapping a lifetime
//! check somewhere else.

use serde_json::Value;

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_TIME: i64 = 253_402_300_799;

/// Reads one NumericDate claim value.
///
/// # Errors
/// A message naming the claim when it is not an integer in `0..=MAX_TIME`.
pub fn parse(name: &str, v: &Value) -> Result<i64, String> {
    match v.as_i64() {
        Some(t) if (0..=MAX_TIME).contains(&t) => Ok(t),
        Some(t) => Err(format!(
            "claim {name:?} ({t}) is outside 0..={MAX_TIME} (1970 to the year 9999)"
        )),
        None => Err(format!(
            "claim {name:?} must be an integer number of seconds"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds() {
        assert_eq!(parse("iat", &json!(0)), Ok(0));
        assert_eq!(parse("iat", &json!(MAX_TIME)), Ok(MAX_TIME));
        assert!(parse("iat", &json!(-1)).unwrap_err().contains("iat"));
        assert!(parse("exp", &json!(i64::MAX)).is_err());
        assert!(parse("exp", &json!(i64::MIN)).is_err());
        assert!(parse("exp", &json!(1.5)).is_err());
        assert!(parse("exp", &json!("1")).is_err());
        assert!(parse("exp", &json!(u64::MAX)).is_err());
    }
}

//! `private_key_jwt` client assertions (RFC 7523 section 3; OpenID Connect
//! Core 9): `iss` = `sub` = client_id, the token endpoint (or issuer) as
//! `aud`, a short lifetime and a fresh `jti` every time.

use super::claims::{invalid, Context, Token};
use crate::error::Result;
use crate::jose::verify::audience_contains;
use crate::verdict::{invalid as refused, Invalid, Reason};
use serde_json::{Map, Value};

/// The longest lifetime a presented assertion may have: one hour, counted
/// from the later of `iat` and now.
pub(crate) const MAX_PRESENTED_LIFETIME: i64 = 3600;

/// The default lifetime: 60 seconds.
pub(crate) const DEFAULT_LIFETIME: i64 = 60;

/// Builds the assertion's claims.
///
/// # Errors
/// `InvalidArgument` for an empty client id or audience, or a lifetime
/// outside 1 s .. the keyset's maximum.
pub(crate) fn build(
    client_id: &str,
    audience: &str,
    lifetime: Option<i64>,
    jti: String,
    ctx: &Context,
) -> Result<Token> {
    if client_id.is_empty() {
        return Err(invalid("client_id is required"));
    }
    if audience.is_empty() {
        return Err(invalid(
            "audience is required (the authorization server's issuer or token endpoint)",
        ));
    }
    let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
    if lifetime <= 0 || lifetime > ctx.max_lifetime {
        return Err(invalid(format!(
            "lifetime must be between 1 and {} seconds (got {lifetime})",
            ctx.max_lifetime
        )));
    }
    let mut c = Map::new();
    c.insert("iss".into(), Value::String(client_id.into()));
    c.insert("sub".into(), Value::String(client_id.into()));
    c.insert("aud".into(), Value::String(audience.into()));
    c.insert("iat".into(), Value::from(ctx.now));
    c.insert("exp".into(), Value::from(ctx.now + lifetime));
    c.insert("jti".into(), Value::String(jti));
    Ok(Token {
        typ: None,
        claims: c,
    })
}

/// Checks a presented client assertion's claims (RFC 7523 section 3):
/// `iss` = `sub` = the client, `aud` one of the accepted audiences, a `jti`,
/// and at most [`MAX_PRESENTED_LIFETIME`] from the later of `now` and `iat`
/// to `exp`. The signature and the times against the clock are checked by
/// the caller. Returns the `jti` and until when it must be remembered
/// (`exp`, which this check has bounded).
///
/// # Errors
/// [`Invalid`] naming the rule.
pub(crate) fn check<'a>(
    c: &'a Map<String, Value>,
    client_id: &str,
    audiences: &[String],
    now: i64,
) -> std::result::Result<(&'a str, i64), Invalid> {
    let text = |name: &str| {
        c.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| refused(Reason::MissingClaim, format!("{name} is required")))
    };
    if text("iss")? != client_id || text("sub")? != client_id {
        return Err(refused(
            Reason::ClaimsMismatch,
            "iss and sub must both be the client_id",
        ));
    }
    if !audiences.iter().any(|a| audience_contains(c, a)) {
        return Err(refused(
            Reason::WrongAudience,
            "aud contains none of the accepted audiences",
        ));
    }
    let time = |name: &str| -> std::result::Result<Option<i64>, Invalid> {
        c.get(name)
            .map(|v| {
                crate::numeric_date::parse(name, v).map_err(|e| refused(Reason::MissingClaim, e))
            })
            .transpose()
    };
    let exp = time("exp")?.ok_or_else(|| refused(Reason::MissingClaim, "exp is required"))?;
    let start = time("iat")?.unwrap_or(now).max(now);
    // Bounded NumericDates (and a real clock): no overflow.
    if exp - start > MAX_PRESENTED_LIFETIME {
        return Err(refused(
            Reason::LifetimeTooLong,
            format!(
                "exp is {} s after max(now, iat); an assertion may live at most {MAX_PRESENTED_LIFETIME} s",
                exp - start
            ),
        ));
    }
    let jti = text("jti")?;
    if jti.is_empty() {
        return Err(refused(Reason::MissingClaim, "jti must not be empty"));
    }
    Ok((jti, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_refusals() {
        let ctx = Context {
            now: 10,
            max_lifetime: 3600,
            issuer: None,
        };
        let t = build("c1", "https://as/token", None, "j".into(), &ctx).unwrap();
        assert_eq!(t.claims["iss"], "c1");
        assert_eq!(t.claims["sub"], "c1");
        assert_eq!(t.claims["exp"], 70);
        assert!(build("", "a", None, "j".into(), &ctx).is_err());
        assert!(build("c", "", None, "j".into(), &ctx).is_err());
        assert!(build("c", "a", Some(0), "j".into(), &ctx).is_err());
        assert!(build("c", "a", Some(3601), "j".into(), &ctx).is_err());
    }
}

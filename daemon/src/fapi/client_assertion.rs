//! `private_key_jwt` client assertions (RFC 7523 section 3; OpenID Connect
//! Core 9): `iss` = `sub` = client_id, the token endpoint (or issuer) as
//! `aud`, a short lifetime and a fresh `jti` every time.

use super::claims::{invalid, Context, Token};
use crate::error::Result;
use serde_json::{Map, Value};

/// The default lifetime: 60 seconds.
pub const DEFAULT_LIFETIME: i64 = 60;

/// Builds the assertion's claims.
///
/// # Errors
/// `InvalidArgument` for an empty client id or audience, or a lifetime
/// outside 1 s .. the keyset's maximum.
pub fn build(
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

//! Request objects (RFC 9101; FAPI 1 Advanced 5.2.2 and FAPI 2.0 Message
//! Signing), signed with a client's key.

use super::claims::{self, invalid, Context, Token};
use crate::error::Result;
use crate::jose::verify::audience_contains;
use crate::verdict::{invalid as refused, Invalid, Reason};
use serde_json::{Map, Value};

/// The media type of a request object (RFC 9101 section 10.8).
pub(crate) const TYP: &str = "oauth-authz-req+jwt";
/// The longest allowed `exp - nbf`: 60 minutes (FAPI 1 Advanced 5.2.2 item 13).
pub(crate) const MAX_VALIDITY: i64 = 3600;
/// The default lifetime when the caller gives no `exp`.
pub(crate) const DEFAULT_LIFETIME: i64 = 300;

/// Builds a request object: required parameters checked, `iat`, `nbf`, `exp`
/// and `jti` filled in when absent.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault.
pub(crate) fn build(
    c: Map<String, Value>,
    lifetime: Option<i64>,
    jti: String,
    ctx: &Context,
) -> Result<Token> {
    for name in ["iss", "client_id", "response_type", "redirect_uri", "scope"] {
        claims::string(&c, name)?;
    }
    claims::audience(&c)?;
    super::rar::check(&c)?;
    if c.get("iss") != c.get("client_id") {
        return Err(invalid("claim \"iss\" must equal \"client_id\""));
    }
    signed_request(c, lifetime.unwrap_or(DEFAULT_LIFETIME), jti, ctx)
}

/// Fills in `iat`, `nbf` (now), `exp` (`nbf` + `lifetime`) and `jti` when
/// absent, checks `exp - nbf` is within 60 minutes, and types the token as a
/// request object: shared by authorization requests and CIBA requests.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault.
pub(crate) fn signed_request(
    mut c: Map<String, Value>,
    lifetime: i64,
    jti: String,
    ctx: &Context,
) -> Result<Token> {
    if lifetime <= 0 || lifetime > MAX_VALIDITY {
        return Err(invalid(format!(
            "lifetime must be between 1 and {MAX_VALIDITY} seconds (got {lifetime})"
        )));
    }
    let iat = claims::time(&c, "iat")?.unwrap_or(ctx.now);
    claims::refuse_future_iat(iat, ctx)?;
    let nbf = claims::time(&c, "nbf")?.unwrap_or(ctx.now);
    let exp = claims::time(&c, "exp")?.unwrap_or(nbf + lifetime);
    if exp <= nbf {
        return Err(invalid(format!(
            "claim \"exp\" ({exp}) must be after \"nbf\" ({nbf})"
        )));
    }
    if exp - nbf > MAX_VALIDITY {
        return Err(invalid(format!(
            "claims \"exp\" - \"nbf\" is {} s; FAPI allows at most {MAX_VALIDITY} s (60 minutes)",
            exp - nbf
        )));
    }
    c.insert("iat".into(), Value::from(iat));
    c.insert("nbf".into(), Value::from(nbf));
    c.insert("exp".into(), Value::from(exp));
    c.entry("jti").or_insert(Value::String(jti));
    Ok(Token {
        typ: Some(TYP.into()),
        claims: c,
    })
}

/// What an authorization server expects of a presented request object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    /// The client that sent it: `iss` (and `client_id` for RFC 9101).
    pub client_id: &'a str,
    /// The authorization server's issuer: must be in `aud`.
    pub issuer: &'a str,
    /// A CIBA signed authentication request rather than an RFC 9101 one.
    pub ciba: bool,
}

fn claim<'a>(c: &'a Map<String, Value>, name: &str) -> std::result::Result<&'a str, Invalid> {
    c.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| refused(Reason::MissingClaim, format!("{name} is required")))
}

/// Checks a presented request object's `typ` and claims (RFC 9101 section
/// 10.8, FAPI 1 Advanced 5.2.2, CIBA Core 7.1.1): `typ` exactly
/// `oauth-authz-req+jwt`, `iss` (and `client_id`) the client, `aud` the
/// issuer, `nbf` and `exp` present with `exp - nbf` at most 60 minutes; for
/// CIBA also `iat`, `jti` and the CIBA parameter rules. The signature and the
/// times against the clock are checked by the caller.
///
/// # Errors
/// [`Invalid`] naming the rule.
pub(crate) fn check(
    typ: Option<&str>,
    c: &Map<String, Value>,
    expected: Expected<'_>,
) -> std::result::Result<(), Invalid> {
    if typ != Some(TYP) {
        return Err(refused(
            Reason::WrongTyp,
            match typ {
                Some(t) => format!("typ \"{t}\" is not {TYP}"),
                None => format!("the request object has no typ; it must be {TYP}"),
            },
        ));
    }
    if expected.ciba {
        // CIBA Core 7.1.1: iss is the client; iat and jti are required.
        if claim(c, "iss")? != expected.client_id {
            return Err(refused(Reason::ClaimsMismatch, "iss must be the client"));
        }
        claim(c, "jti")?;
        if !c.get("iat").is_some_and(Value::is_i64) {
            return Err(refused(Reason::MissingClaim, "iat is required"));
        }
        super::ciba::rules(c)?;
    } else if claim(c, "iss")? != expected.client_id || claim(c, "client_id")? != expected.client_id
    {
        return Err(refused(
            Reason::ClaimsMismatch,
            "iss and client_id must both be the client",
        ));
    }
    if !audience_contains(c, expected.issuer) {
        return Err(refused(
            Reason::WrongAudience,
            format!("aud does not contain {}", expected.issuer),
        ));
    }
    let time = |name: &str| -> std::result::Result<i64, Invalid> {
        let v = c
            .get(name)
            .ok_or_else(|| refused(Reason::MissingClaim, format!("{name} is required")))?;
        crate::numeric_date::parse(name, v).map_err(|e| refused(Reason::MissingClaim, e))
    };
    let (nbf, exp) = (time("nbf")?, time("exp")?);
    // Both are bounded NumericDates: the difference cannot overflow.
    if exp - nbf > MAX_VALIDITY {
        return Err(refused(
            Reason::LifetimeTooLong,
            format!("exp - nbf is {} s; at most {MAX_VALIDITY}", exp - nbf),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::at(1000, None)
    }

    fn base() -> Map<String, Value> {
        json!({"iss": "c1", "client_id": "c1", "aud": "https://as", "response_type": "code",
               "redirect_uri": "https://c/cb", "scope": "openid"})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn fills_times_and_jti() {
        let t = build(base(), None, "j1".into(), &ctx()).unwrap();
        assert_eq!(t.typ.as_deref(), Some(TYP));
        assert_eq!(t.claims["nbf"], 1000);
        assert_eq!(t.claims["iat"], 1000);
        assert_eq!(t.claims["exp"], 1300);
        assert_eq!(t.claims["jti"], "j1");
    }

    #[test]
    fn refusals() {
        let mut c = base();
        c.insert("iss".into(), json!("other"));
        assert!(build(c, None, "j".into(), &ctx())
            .unwrap_err()
            .to_string()
            .contains("client_id"));
        for missing in ["scope", "redirect_uri", "response_type", "aud"] {
            let mut c = base();
            c.remove(missing);
            let err = build(c, None, "j".into(), &ctx()).unwrap_err().to_string();
            assert!(err.contains(missing), "{err}");
        }
        let mut c = base();
        c.insert("exp".into(), json!(1000 + 3601));
        assert!(build(c, None, "j".into(), &ctx())
            .unwrap_err()
            .to_string()
            .contains("60 minutes"));
        let mut c = base();
        c.insert("exp".into(), json!(999));
        assert!(build(c, None, "j".into(), &ctx()).is_err());
    }
}

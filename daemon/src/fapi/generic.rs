//! What `SignJwt` and `SignJwtBatch` may sign: generic JWTs (purpose
//! `generic`) and signed UserInfo responses (purpose `userinfo`).
//!
//! Every other purpose is a token kind with its own typed operation, which
//! applies that kind's FAPI rules; generic signing must never produce a token
//! that a typed operation or verifier would take for its own. So: the `typ`
//! values of typed tokens (and of other registered JWT kinds) are refused,
//! `cnf` (a sender constraint) is refused, a lifetime is bounded like every
//! other token's, and a `generic` keyset serves no typed purpose
//! ([`super::profile::check_keyset`]).

use super::claims::{self, invalid, Context, Token};
use crate::error::Result;
use crate::keyring::keyset::Purpose;
use serde_json::{Map, Value};

/// `typ` values generic signing refuses, with what they belong to. Compared
/// case-insensitively, with or without the `application/` prefix (RFC 7515
/// section 4.1.9).
pub(crate) const RESERVED_TYP: &[(&str, &str)] = &[
    (
        "at+jwt",
        "JWT access tokens (RFC 9068): use SignAccessToken",
    ),
    (
        "oauth-authz-req+jwt",
        "request objects (RFC 9101): use SignRequestObject",
    ),
    (
        "token-introspection+jwt",
        "introspection responses (RFC 9701): use SignIntrospectionResponse",
    ),
    ("dpop+jwt", "DPoP proofs (RFC 9449)"),
    ("logout+jwt", "logout tokens (OpenID Back-Channel Logout)"),
    ("secevent+jwt", "security event tokens (RFC 8417)"),
    (
        "client-authentication+jwt",
        "client assertions: use SignClientAssertion",
    ),
    ("jwt-authorization-grant+jwt", "JWT authorization grants"),
    ("kb+jwt", "SD-JWT key binding JWTs"),
    (
        "entity-statement+jwt",
        "OpenID Federation entity statements",
    ),
    ("trust-mark+jwt", "OpenID Federation trust marks"),
    ("jwk-set+jwt", "signed JWK sets"),
    ("openid4vci-proof+jwt", "OpenID4VCI key proofs"),
    ("statuslist+jwt", "token status lists"),
];

/// Claims a signed UserInfo response must not carry: they would make it
/// look like an ID token or a bound token.
const USERINFO_REFUSED: [&str; 5] = ["nonce", "at_hash", "c_hash", "s_hash", "auth_req_id"];

/// Refuses a reserved `typ`.
///
/// # Errors
/// `InvalidArgument` naming the `typ` and the operation it belongs to.
pub(crate) fn check_typ(typ: Option<&str>) -> Result<()> {
    let Some(t) = typ else { return Ok(()) };
    let lower = t.to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    if let Some((_, what)) = RESERVED_TYP.iter().find(|(r, _)| *r == bare) {
        return Err(invalid(format!(
            "typ {t:?} is reserved for {what}; generic signing does not produce it"
        )));
    }
    Ok(())
}

/// Builds a generic JWT or a signed UserInfo response from the caller's
/// claims: reserved `typ` and `cnf` refused; `iat` set to now when absent
/// and never in the future; when `exp` is given, the keyset's lifetime
/// ceiling applies. A UserInfo response also needs `sub` and `aud`, takes
/// the keyset's issuer as `iss`, and refuses ID-token-only claims.
///
/// # Errors
/// `InvalidArgument` naming the claim or header at fault;
/// `FailedPrecondition` for a purpose that has its own operation.
pub(crate) fn build(
    purpose: Purpose,
    typ: Option<String>,
    mut c: Map<String, Value>,
    ctx: &Context,
) -> Result<Token> {
    check_typ(typ.as_deref())?;
    claims::refuse_computed(&c, &["cnf"])?;
    match purpose {
        Purpose::Generic => {}
        Purpose::Userinfo => {
            claims::string(&c, "sub")?;
            claims::issuer(&mut c, ctx)?;
            claims::audience(&c)?;
            refuse_userinfo_only(&c)?;
        }
        other => return Err(typed_only(other)),
    }
    if c.contains_key("exp") {
        claims::check_lifetime(&mut c, ctx)?;
    } else {
        match claims::time(&c, "iat")? {
            Some(iat) => claims::refuse_future_iat(iat, ctx)?,
            None => {
                c.insert("iat".into(), Value::from(ctx.now));
            }
        }
    }
    claims::time(&c, "nbf")?;
    Ok(Token { typ, claims: c })
}

/// Refuses claims that would make a UserInfo response look like an ID
/// token or a bound token.
///
/// # Errors
/// `InvalidArgument` naming the claim.
pub(crate) fn refuse_userinfo_only(c: &Map<String, Value>) -> Result<()> {
    for name in USERINFO_REFUSED {
        if c.contains_key(name) {
            return Err(invalid(format!(
                "claim {name:?} does not belong in a UserInfo response"
            )));
        }
    }
    Ok(())
}

/// The refusal for a typed purpose asked of generic signing.
pub(crate) fn typed_only(purpose: Purpose) -> crate::error::Error {
    crate::error::Error::FailedPrecondition(format!(
        "purpose {purpose} is signed only by its own operation ({}), which applies its FAPI rules; \
         SignJwt signs purposes generic and userinfo",
        purpose.operation()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::at(1000, Some("https://as"))
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn reserved_typ_refused_in_any_spelling() {
        for t in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "dpop+jwt",
            "logout+jwt",
        ] {
            let e = build(Purpose::Generic, Some(t.into()), Map::new(), &ctx()).unwrap_err();
            assert!(e.to_string().contains("reserved"), "{t}: {e}");
        }
        assert!(build(Purpose::Generic, Some("JWT".into()), Map::new(), &ctx()).is_ok());
        assert!(build(Purpose::Generic, None, Map::new(), &ctx()).is_ok());
    }

    #[test]
    fn no_cnf_and_lifetime_ceiling() {
        let e = build(
            Purpose::Generic,
            None,
            map(json!({"cnf": {"jkt": "x"}})),
            &ctx(),
        );
        assert!(e.unwrap_err().to_string().contains("cnf"));
        let e = build(
            Purpose::Generic,
            None,
            map(json!({"exp": 1000 + 3601})),
            &ctx(),
        );
        assert!(e.unwrap_err().to_string().contains("lifetime"));
        // A future iat does not stretch the lifetime.
        let far = 1000 + 365 * 86400;
        let e = build(
            Purpose::Generic,
            None,
            map(json!({"iat": far, "exp": far + 60})),
            &ctx(),
        );
        assert!(e.unwrap_err().to_string().contains("future"));
        let e = build(Purpose::Generic, None, map(json!({"iat": far})), &ctx());
        assert!(e.unwrap_err().to_string().contains("future"));
        let e = build(Purpose::Generic, None, map(json!({"iat": -5})), &ctx());
        assert!(e.unwrap_err().to_string().contains("iat"));
    }

    #[test]
    fn userinfo_rules_and_typed_purposes() {
        let ok = build(
            Purpose::Userinfo,
            None,
            map(json!({"sub": "u", "aud": "c1"})),
            &ctx(),
        )
        .unwrap();
        assert_eq!(ok.claims["iss"], "https://as");
        let e = build(Purpose::Userinfo, None, map(json!({"aud": "c1"})), &ctx());
        assert!(e.unwrap_err().to_string().contains("sub"));
        let e = build(
            Purpose::Userinfo,
            None,
            map(json!({"sub": "u", "aud": "c1", "nonce": "n"})),
            &ctx(),
        );
        assert!(e.unwrap_err().to_string().contains("nonce"));
        for p in [
            Purpose::IdToken,
            Purpose::AccessToken,
            Purpose::ClientAssertion,
        ] {
            let e = build(p, None, map(json!({})), &ctx()).unwrap_err();
            assert!(
                matches!(e, crate::error::Error::FailedPrecondition(_)),
                "{e}"
            );
        }
    }
}

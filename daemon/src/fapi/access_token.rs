//! JWT access tokens (RFC 9068), optionally sender-constrained: bound to a
//! client certificate (`cnf.x5t#S256`, RFC 8705) or a DPoP key (`cnf.jkt`,
//! RFC 9449).

use super::claims::{self, invalid, Context, Token};
use crate::error::Result;
use crate::jose::verify::audience_contains;
use crate::verdict::{invalid as refused, Invalid, Reason};
use serde_json::{json, Map, Value};

/// The media type of a JWT access token (RFC 9068 section 2.1).
pub(crate) const TYP: &str = "at+jwt";

/// How the token is bound to its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// A bearer token.
    None,
    /// mTLS: base64url SHA-256 of the client certificate's DER.
    CertificateThumbprint(String),
    /// DPoP: RFC 7638 thumbprint of the client's DPoP key.
    DpopJkt(String),
}

/// Builds the access token's claims.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault, or a malformed `jkt`.
pub(crate) fn build(
    mut c: Map<String, Value>,
    binding: Binding,
    jti: String,
    ctx: &Context,
) -> Result<Token> {
    claims::refuse_computed(&c, &["cnf"])?;
    claims::issuer(&mut c, ctx)?;
    claims::string(&c, "sub")?;
    claims::string(&c, "client_id")?;
    claims::audience(&c)?;
    super::rar::check(&c)?;
    claims::check_lifetime(&mut c, ctx)?;
    c.entry("jti").or_insert(Value::String(jti));
    match binding {
        Binding::None => {}
        Binding::CertificateThumbprint(t) => {
            c.insert("cnf".into(), json!({ "x5t#S256": t }));
        }
        Binding::DpopJkt(jkt) => {
            if !is_sha256_b64url(&jkt) {
                return Err(invalid(
                    "jkt must be an RFC 7638 SHA-256 thumbprint: 43 base64url characters",
                ));
            }
            c.insert("cnf".into(), json!({ "jkt": jkt }));
        }
    }
    Ok(Token {
        typ: Some(TYP.into()),
        claims: c,
    })
}

/// The claims RFC 9068 section 2.2 requires of every JWT access token.
pub(crate) const REQUIRED: [&str; 7] = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"];

/// What a resource server expects of a presented access token.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expected<'a> {
    /// The issuer it trusts (checked against `iss` when given).
    pub issuer: Option<&'a str>,
    /// Its own identifier (must be in `aud` when given).
    pub audience: Option<&'a str>,
}

/// Checks a presented access token's header `typ` and claims (RFC 9068
/// section 4): `typ` exactly `at+jwt` (or `application/at+jwt`), every
/// required claim present, `iss` and `aud` as expected. Signature, times and
/// the sender constraint are checked by the caller.
///
/// # Errors
/// [`Invalid`] with `wrong_typ`, `missing_claim`, `wrong_issuer` or `wrong_audience`.
pub(crate) fn check(
    typ: Option<&str>,
    c: &Map<String, Value>,
    expected: Expected<'_>,
) -> std::result::Result<(), Invalid> {
    match typ {
        Some(t) if t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("application/at+jwt") => {}
        Some(t) => {
            return Err(refused(
                Reason::WrongTyp,
                format!("typ \"{t}\" is not {TYP}"),
            ))
        }
        None => {
            return Err(refused(
                Reason::WrongTyp,
                format!("the token has no typ; an access token must have typ {TYP} (RFC 9068)"),
            ))
        }
    }
    for name in REQUIRED {
        if !c.contains_key(name) {
            return Err(refused(
                Reason::MissingClaim,
                format!("{name} is required in an access token (RFC 9068 section 2.2)"),
            ));
        }
    }
    if let Some(want) = expected.issuer {
        if c.get("iss").and_then(Value::as_str) != Some(want) {
            return Err(refused(Reason::WrongIssuer, format!("iss is not {want}")));
        }
    }
    if let Some(want) = expected.audience {
        if !audience_contains(c, want) {
            return Err(refused(
                Reason::WrongAudience,
                format!("aud does not contain {want}"),
            ));
        }
    }
    Ok(())
}

/// The rule for a token presented without a certificate or DPoP proof: a
/// sender-constrained token (one with `cnf`) is refused, and a bearer token
/// is accepted only when the resource server allows bearer tokens (FAPI
/// requires sender-constrained tokens).
///
/// # Errors
/// [`Invalid`] with `cnf_missing`.
pub(crate) fn check_unbound(
    c: &Map<String, Value>,
    allow_bearer: bool,
) -> std::result::Result<(), Invalid> {
    if c.contains_key("cnf") {
        return Err(refused(
            Reason::CnfMissing,
            "the token is sender-constrained but no certificate or DPoP proof was presented",
        ));
    }
    if !allow_bearer {
        return Err(refused(
            Reason::CnfMissing,
            "the token has no cnf: FAPI requires sender-constrained tokens (set allow_bearer to accept)",
        ));
    }
    Ok(())
}

fn is_sha256_b64url(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Map<String, Value> {
        json!({"iss": "https://as", "sub": "u", "aud": "https://rs", "exp": 1300, "client_id": "c1"})
            .as_object()
            .unwrap()
            .clone()
    }

    fn ctx() -> Context {
        Context::at(1000, None)
    }

    #[test]
    fn bindings() {
        let t = build(base(), Binding::None, "j".into(), &ctx()).unwrap();
        assert_eq!(t.typ.as_deref(), Some("at+jwt"));
        assert_eq!(t.claims["iat"], 1000);
        assert_eq!(t.claims["jti"], "j");
        assert!(t.claims.get("cnf").is_none());
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let t = build(base(), Binding::DpopJkt(jkt.into()), "j".into(), &ctx()).unwrap();
        assert_eq!(t.claims["cnf"]["jkt"], jkt);
        assert!(build(base(), Binding::DpopJkt("short".into()), "j".into(), &ctx()).is_err());
        let t = build(
            base(),
            Binding::CertificateThumbprint("abc".into()),
            "j".into(),
            &ctx(),
        )
        .unwrap();
        assert_eq!(t.claims["cnf"]["x5t#S256"], "abc");
    }

    #[test]
    fn refusals() {
        let mut c = base();
        c.insert("cnf".into(), json!({"jkt": "x"}));
        assert!(build(c, Binding::None, "j".into(), &ctx())
            .unwrap_err()
            .to_string()
            .contains("cnf"));
        let mut c = base();
        c.remove("client_id");
        assert!(build(c, Binding::None, "j".into(), &ctx())
            .unwrap_err()
            .to_string()
            .contains("client_id"));
    }
}

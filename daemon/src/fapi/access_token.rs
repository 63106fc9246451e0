//! JWT access tokens (RFC 9068), optionally sender-constrained: bound to a
//! client certificate (`cnf.x5t#S256`, RFC 8705) or a DPoP key (`cnf.jkt`,
//! RFC 9449).

use super::claims::{self, invalid, Context, Token};
use crate::error::Result;
use serde_json::{json, Map, Value};

/// The media type of a JWT access token (RFC 9068 section 2.1).
pub const TYP: &str = "at+jwt";

/// How the token is bound to its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
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
pub fn build(
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
        Context {
            now: 1000,
            max_lifetime: 3600,
            issuer: None,
        }
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

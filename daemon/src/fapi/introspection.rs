//! Signed token introspection responses (RFC 9701, required by FAPI 2.0
//! Message Signing for resource servers that ask for them).
//!
//! The JWT carries `iss`, `aud`, `iat` and `token_introspection`, which holds
//! the RFC 7662 response: `active` is required, and an inactive token's
//! response says nothing else (RFC 9701 5, so a client learns nothing about
//! tokens it should not see).

use super::claims::{self, invalid, Context, Token};
use crate::error::Result;
use serde_json::{Map, Value};

/// The media type of a signed introspection response (RFC 9701 section 5).
pub(crate) const TYP: &str = "token-introspection+jwt";

/// RFC 7662 2.2 members whose type is fixed: strings.
const STRINGS: [&str; 6] = ["scope", "client_id", "username", "token_type", "sub", "iss"];
/// RFC 7662 2.2 members whose type is fixed: NumericDate.
const TIMES: [&str; 3] = ["exp", "iat", "nbf"];

/// Builds the introspection JWT for the client `audience` from the RFC 7662
/// `response` object.
///
/// # Errors
/// `InvalidArgument` naming the member at fault.
pub(crate) fn build(response: Map<String, Value>, audience: &str, ctx: &Context) -> Result<Token> {
    if audience.is_empty() {
        return Err(invalid(
            "audience (the client that asked for introspection) is required",
        ));
    }
    match response.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            if let Some(extra) = response.keys().find(|k| *k != "active") {
                return Err(invalid(format!(
                    "an inactive token's introspection response must hold only \"active\" \
                     (found {extra:?})"
                )));
            }
        }
        Some(_) => return Err(invalid("member \"active\" must be a boolean")),
        None => return Err(invalid("member \"active\" is required")),
    }
    for name in STRINGS {
        if response.get(name).is_some_and(|v| !v.is_string()) {
            return Err(invalid(format!("member {name:?} must be a string")));
        }
    }
    for name in TIMES {
        if response.get(name).is_some_and(|v| v.as_i64().is_none()) {
            return Err(invalid(format!(
                "member {name:?} must be an integer number of seconds"
            )));
        }
    }
    if let Some(aud) = response.get("aud") {
        let mut probe = Map::new();
        probe.insert("aud".into(), aud.clone());
        claims::audience(&probe)?;
    }
    let mut c = Map::new();
    claims::issuer(&mut c, ctx)?;
    c.insert("aud".into(), Value::String(audience.into()));
    c.insert("iat".into(), Value::from(ctx.now));
    c.insert("token_introspection".into(), Value::Object(response));
    Ok(Token {
        typ: Some(TYP.into()),
        claims: c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::at(1000, Some("https://as.example"))
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The shape of RFC 9701 section 5's example.
    #[test]
    fn active_response() {
        let r = obj(
            json!({"active": true, "iss": "https://as.example", "aud": "https://rs.example",
            "iat": 1514797822, "exp": 1514797942, "client_id": "paiB2goo0a", "scope": "read write dolphin",
            "sub": "Z5O3upPC88QrAjx00dis", "jti": "t1FoCCaZd4Xv4ORJUWVUeTZfsKhW30CQCrWDDjwXy6w"}),
        );
        let t = build(r.clone(), "https://rs.example", &ctx()).unwrap();
        assert_eq!(t.typ.as_deref(), Some(TYP));
        assert_eq!(t.claims["iss"], "https://as.example");
        assert_eq!(t.claims["aud"], "https://rs.example");
        assert_eq!(t.claims["iat"], 1000);
        assert_eq!(t.claims["token_introspection"], Value::Object(r));
        assert_eq!(t.claims.len(), 4);
    }

    #[test]
    fn refusals_name_the_member() {
        let cases = [
            (json!({}), "active"),
            (json!({"active": "yes"}), "active"),
            (json!({"active": false, "sub": "u"}), "sub"),
            (json!({"active": true, "scope": 1}), "scope"),
            (json!({"active": true, "exp": "later"}), "exp"),
            (json!({"active": true, "aud": []}), "aud"),
        ];
        for (v, needle) in cases {
            let e = build(obj(v.clone()), "rs", &ctx()).unwrap_err().to_string();
            assert!(e.contains(needle), "{v}: {e}");
        }
        assert!(build(obj(json!({"active": false})), "", &ctx()).is_err());
        let mut no_issuer = ctx();
        no_issuer.issuer = None;
        let e = build(obj(json!({"active": false})), "rs", &no_issuer)
            .unwrap_err()
            .to_string();
        assert!(e.contains("iss"), "{e}");
    }
}

//! JARM authorization responses (OpenID FAPI JARM, section 2): the response
//! parameters wrapped in a signed JWT for the client.

use super::claims::{invalid, Context, Token};
use crate::error::Result;
use serde_json::{Map, Value};

/// The longest and the default JARM lifetime: 10 minutes (JARM 2.1 recommends short).
pub(crate) const MAX_LIFETIME: i64 = 600;

/// What the authorization server hands over for a JARM response.
#[derive(Debug, Clone, Default)]
pub(crate) struct JarmInput {
    /// The client the response is for (becomes `aud`).
    pub client_id: String,
    /// Lifetime in seconds; `None` for the default (600).
    pub lifetime: Option<i64>,
    /// The authorization response parameters.
    pub params: Map<String, Value>,
    /// Issuer for this call when the keyset has none configured.
    pub issuer: Option<String>,
}

const SUCCESS: &[&str] = &["code", "state"];
const ERROR: &[&str] = &["error", "error_description", "error_uri", "state"];

/// Builds the JARM claims: `iss`, `aud`, `iat`, `exp` and the response parameters.
///
/// # Errors
/// `InvalidArgument` for a missing issuer or client, a bad lifetime, unknown
/// parameters, or a response that mixes success and error.
pub(crate) fn build(input: JarmInput, ctx: &Context) -> Result<Token> {
    let issuer = match (&ctx.issuer, input.issuer.filter(|s| !s.is_empty())) {
        (Some(configured), Some(given)) if *configured != given => {
            return Err(invalid(format!(
                "issuer {given:?} differs from this keyset's issuer {configured:?}"
            )))
        }
        (Some(configured), _) => configured.clone(),
        (None, Some(given)) => given,
        (None, None) => {
            return Err(invalid(
                "no issuer: create the keyset with --issuer or pass one with the request",
            ))
        }
    };
    if input.client_id.is_empty() {
        return Err(invalid("client_id is required (it becomes \"aud\")"));
    }
    let lifetime = input.lifetime.unwrap_or(MAX_LIFETIME);
    if lifetime <= 0 || lifetime > MAX_LIFETIME {
        return Err(invalid(format!(
            "JARM lifetime must be between 1 and {MAX_LIFETIME} seconds (got {lifetime})"
        )));
    }
    let p = input.params;
    let is_error = p.contains_key("error");
    if is_error && p.contains_key("code") {
        return Err(invalid(
            "a JARM response is either a success (code) or an error (error), never both",
        ));
    }
    if !is_error && !p.contains_key("code") {
        return Err(invalid(
            "JARM parameters need \"code\" (success) or \"error\" (error response)",
        ));
    }
    let allowed = if is_error { ERROR } else { SUCCESS };
    for (k, v) in &p {
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(format!(
                "parameter {k:?} is not allowed in a JARM {} response (allowed: {})",
                if is_error { "error" } else { "success" },
                allowed.join(", ")
            )));
        }
        if v.as_str().is_none_or(|s| s.is_empty()) {
            return Err(invalid(format!(
                "parameter {k:?} must be a non-empty string"
            )));
        }
    }
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::String(issuer));
    claims.insert("aud".into(), Value::String(input.client_id));
    claims.insert("iat".into(), Value::from(ctx.now));
    claims.insert("exp".into(), Value::from(ctx.now + lifetime));
    claims.extend(p);
    Ok(Token { typ: None, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(params: Value) -> JarmInput {
        JarmInput {
            client_id: "c1".into(),
            lifetime: None,
            params: params.as_object().unwrap().clone(),
            issuer: Some("https://as".into()),
        }
    }

    fn ctx() -> Context {
        Context::at(100, None)
    }

    #[test]
    fn success_and_error_responses() {
        let t = build(input(json!({"code": "abc", "state": "s"})), &ctx()).unwrap();
        assert_eq!(t.claims["aud"], "c1");
        assert_eq!(t.claims["iss"], "https://as");
        assert_eq!(t.claims["exp"], 700);
        assert_eq!(t.claims["code"], "abc");
        let t = build(
            input(json!({"error": "access_denied", "state": "s"})),
            &ctx(),
        )
        .unwrap();
        assert_eq!(t.claims["error"], "access_denied");
    }

    #[test]
    fn refusals() {
        for (p, needle) in [
            (json!({"code": "a", "error": "x"}), "never both"),
            (json!({"state": "s"}), "need"),
            (
                json!({"code": "a", "error_description": "x"}),
                "error_description",
            ),
            (json!({"code": "a", "id_token": "x"}), "id_token"),
            (json!({"code": 5}), "string"),
        ] {
            let err = build(input(p.clone()), &ctx()).unwrap_err().to_string();
            assert!(err.contains(needle), "{p}: {err}");
        }
        let mut i = input(json!({"code": "a"}));
        i.lifetime = Some(601);
        assert!(build(i, &ctx()).is_err());
        let mut i = input(json!({"code": "a"}));
        i.issuer = None;
        assert!(build(i, &ctx()).unwrap_err().to_string().contains("issuer"));
        let mut i = input(json!({"code": "a"}));
        i.client_id.clear();
        assert!(build(i, &ctx()).is_err());
    }
}

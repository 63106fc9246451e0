//! ID tokens (OpenID Connect Core 2, 3.1.3.6; FAPI 1 Advanced 5.2.2.1 detached signature).

use super::claims::{self, Context, Token};
use super::hash::token_hash;
use crate::alg::Algorithm;
use crate::error::Result;
use serde_json::{Map, Value};

/// What the authorization server hands over for an ID token.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdTokenInput {
    /// The claims (`iss`, `sub`, `aud`, `exp` required).
    pub claims: Map<String, Value>,
    /// The authorization code issued with it (gives `c_hash`).
    pub code: Option<String>,
    /// The access token issued with it (gives `at_hash`).
    pub access_token: Option<String>,
    /// The `state` of the request (gives `s_hash`).
    pub state: Option<String>,
    /// CIBA push mode: the `auth_req_id` the token answers.
    pub auth_req_id: Option<String>,
    /// CIBA push mode: the refresh token issued with it (gives `rt_hash`).
    pub refresh_token: Option<String>,
}

/// CIBA Core 10.3.1: the push-mode claim carrying the `auth_req_id`.
pub(crate) const AUTH_REQ_ID: &str = "urn:openid:params:jwt:claim:auth_req_id";
/// CIBA Core 10.3.1: the push-mode hash of the refresh token.
pub(crate) const RT_HASH: &str = "urn:openid:params:jwt:claim:rt_hash";

/// Checks the claims and adds `iat` and the token hashes.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault.
pub(crate) fn build(input: IdTokenInput, alg: Algorithm, ctx: &Context) -> Result<Token> {
    let mut c = input.claims;
    claims::refuse_computed(&c, &["c_hash", "at_hash", "s_hash", AUTH_REQ_ID, RT_HASH])?;
    claims::issuer(&mut c, ctx)?;
    claims::string(&c, "sub")?;
    claims::audience(&c)?;
    claims::check_lifetime(&mut c, ctx)?;
    for (name, value) in [
        ("c_hash", input.code),
        ("at_hash", input.access_token),
        ("s_hash", input.state),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            c.insert(name.into(), Value::String(token_hash(alg, &v)));
        }
    }
    // CIBA push mode (CIBA Core 10.3.1): auth_req_id with at_hash, and
    // rt_hash when a refresh token was issued; rt_hash only in push mode.
    let auth_req_id = input.auth_req_id.filter(|v| !v.is_empty());
    let refresh_token = input.refresh_token.filter(|v| !v.is_empty());
    match (&auth_req_id, &refresh_token) {
        (None, Some(_)) => return Err(claims::invalid(
            "a refresh token (rt_hash) belongs only to a CIBA push-mode ID token: give auth_req_id",
        )),
        (Some(_), _) if !c.contains_key("at_hash") => {
            return Err(claims::invalid(
                "a CIBA push-mode ID token needs at_hash: give the access token",
            ))
        }
        _ => {}
    }
    if let Some(id) = auth_req_id {
        c.insert(AUTH_REQ_ID.into(), Value::String(id));
    }
    if let Some(rt) = refresh_token {
        c.insert(RT_HASH.into(), Value::String(token_hash(alg, &rt)));
    }
    Ok(Token {
        typ: None,
        claims: c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::at(1_000_000, None)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn base() -> Value {
        json!({"iss": "https://as", "sub": "u", "aud": "c", "exp": 1_000_600})
    }

    #[test]
    fn adds_iat_and_hashes() {
        let t = build(
            IdTokenInput {
                claims: claims(base()),
                code: Some("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk".into()),
                access_token: Some("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".into()),
                state: Some("xyz".into()),
                auth_req_id: Some("1c266114-a1be-4252-8ad1-04986c5b9ac1".into()),
                refresh_token: Some("rt-1".into()),
            },
            Algorithm::PS256,
            &ctx(),
        )
        .unwrap();
        assert_eq!(t.claims["iat"], 1_000_000);
        assert_eq!(t.claims["c_hash"], "LDktKdoQak3Pk0cnXxCltA");
        assert_eq!(t.claims["at_hash"], "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(t.claims["s_hash"], token_hash(Algorithm::PS256, "xyz"));
        assert_eq!(
            t.claims[AUTH_REQ_ID],
            "1c266114-a1be-4252-8ad1-04986c5b9ac1"
        );
        assert_eq!(t.claims[RT_HASH], token_hash(Algorithm::PS256, "rt-1"));
        assert_eq!(t.typ, None);
    }

    #[test]
    fn refusals_name_the_claim() {
        let cases = [
            (json!({"sub": "u", "aud": "c", "exp": 1_000_600}), "iss"),
            (json!({"iss": "i", "aud": "c", "exp": 1_000_600}), "sub"),
            (json!({"iss": "i", "sub": "u", "exp": 1_000_600}), "aud"),
            (json!({"iss": "i", "sub": "u", "aud": "c"}), "exp"),
            (
                json!({"iss": "i", "sub": "u", "aud": [], "exp": 1_000_600}),
                "aud",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": "soon"}),
                "exp",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": 999_999}),
                "exp",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": 1_003_601}),
                "maximum",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": 1_000_600, "at_hash": "x"}),
                "at_hash",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": 1_000_600, "c_hash": "x"}),
                "c_hash",
            ),
            (
                json!({"iss": "i", "sub": "u", "aud": "c", "exp": 1_000_600, RT_HASH: "x"}),
                "rt_hash",
            ),
        ];
        for (v, needle) in cases {
            let err = build(
                IdTokenInput {
                    claims: claims(v.clone()),
                    ..Default::default()
                },
                Algorithm::ES256,
                &ctx(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn push_mode_needs_at_hash_and_rt_hash_needs_push_mode() {
        let push = |at: Option<&str>, id: Option<&str>, rt: Option<&str>| {
            build(
                IdTokenInput {
                    claims: claims(base()),
                    access_token: at.map(String::from),
                    auth_req_id: id.map(String::from),
                    refresh_token: rt.map(String::from),
                    ..Default::default()
                },
                Algorithm::ES256,
                &ctx(),
            )
        };
        assert!(push(None, Some("id"), None)
            .unwrap_err()
            .to_string()
            .contains("at_hash"));
        assert!(push(Some("at"), None, Some("rt"))
            .unwrap_err()
            .to_string()
            .contains("auth_req_id"));
        assert!(push(Some("at"), Some("id"), None).is_ok());
    }

    #[test]
    fn keyset_issuer_is_enforced_and_filled_in() {
        let mut c = ctx();
        c.issuer = Some("https://bank".into());
        let mut v = base();
        v.as_object_mut().unwrap().remove("iss");
        let t = build(
            IdTokenInput {
                claims: claims(v),
                ..Default::default()
            },
            Algorithm::ES256,
            &c,
        )
        .unwrap();
        assert_eq!(t.claims["iss"], "https://bank");
        assert!(build(
            IdTokenInput {
                claims: claims(base()),
                ..Default::default()
            },
            Algorithm::ES256,
            &c
        )
        .is_err());
    }
}

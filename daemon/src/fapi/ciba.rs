//! CIBA signed authentication requests (OpenID CIBA Core 7.1.1 and the FAPI
//! CIBA profile 5.2.2): a request object a client posts to the backchannel
//! authentication endpoint, signed with the client's key.
//!
//! The same rules serve both sides: [`build`] for a client signing one,
//! [`check`] for an authorization server verifying one.

use super::claims::{self, invalid, Context, Token};
use super::request_object::signed_request;
use crate::error::Result;
use crate::verdict::{self, Invalid, Reason};
use serde_json::{Map, Value};

/// Whether a request-object call is about a CIBA signed authentication
/// request (`kind = "ciba"`) or an RFC 9101 authorization request (`""` or
/// `"authorization"`).
///
/// # Errors
/// `InvalidArgument` for another kind.
pub(crate) fn is_ciba_kind(kind: &str) -> Result<bool> {
    match kind {
        "" | "authorization" => Ok(false),
        "ciba" => Ok(true),
        other => Err(invalid(format!(
            "request object kind {other:?} is unknown: use authorization or ciba"
        ))),
    }
}

/// The hints of which exactly one identifies the user (CIBA Core 7.1).
pub(crate) const HINTS: [&str; 3] = ["login_hint_token", "id_token_hint", "login_hint"];

/// The default lifetime when the caller gives no `exp`.
pub(crate) const DEFAULT_LIFETIME: i64 = 300;

/// Checks the authentication request parameters of a CIBA request object:
/// `iss`, `aud`, a `scope` with `openid`, exactly one hint, and the types of
/// `binding_message`, `client_notification_token`, `user_code` and
/// `requested_expiry`. Time claims are checked by the caller.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault.
pub(crate) fn check(c: &Map<String, Value>) -> Result<()> {
    rules(c).map_err(|i| invalid(i.detail))
}

/// [`check`] for a presented request: the same rules, each refusal typed
/// (`missing_claim` for an absent or mistyped required claim,
/// `claims_mismatch` for claims that break a rule).
///
/// # Errors
/// [`Invalid`] naming the claim at fault.
pub(crate) fn rules(c: &Map<String, Value>) -> std::result::Result<(), Invalid> {
    let missing = |e: crate::error::Error| verdict::invalid(Reason::MissingClaim, e.detail());
    let mismatch = |m: String| verdict::invalid(Reason::ClaimsMismatch, m);
    claims::string(c, "iss").map_err(missing)?;
    claims::audience(c).map_err(missing)?;
    let scope = claims::string(c, "scope").map_err(missing)?;
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(mismatch(
            "claim \"scope\" must include openid (CIBA Core 7.1)".into(),
        ));
    }
    let hints: Vec<&str> = HINTS.into_iter().filter(|h| c.contains_key(*h)).collect();
    match hints.as_slice() {
        [one] => {
            claims::string(c, one).map_err(missing)?;
        }
        [] => {
            return Err(verdict::invalid(
                Reason::MissingClaim,
                "one of login_hint_token, id_token_hint or login_hint is required",
            ))
        }
        many => {
            return Err(mismatch(format!(
                "exactly one hint is allowed, found {}",
                many.join(" and ")
            )))
        }
    }
    for name in ["binding_message", "client_notification_token", "user_code"] {
        if c.contains_key(name) {
            claims::string(c, name).map_err(|e| mismatch(e.detail()))?;
        }
    }
    if let Some(e) = c.get("requested_expiry") {
        let ok = e.as_i64().is_some_and(|n| n > 0)
            || e.as_str()
                .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0));
        if !ok {
            return Err(mismatch(
                "claim \"requested_expiry\" must be a positive number of seconds".into(),
            ));
        }
    }
    for forbidden in ["response_type", "redirect_uri", "request", "request_uri"] {
        if c.contains_key(forbidden) {
            return Err(mismatch(format!(
                "claim {forbidden:?} does not belong in a CIBA authentication request"
            )));
        }
    }
    super::rar::check(c).map_err(|e| mismatch(e.detail()))
}

/// Builds a CIBA signed authentication request: parameters checked, `iat`,
/// `nbf`, `exp` and `jti` filled in when absent, `exp - nbf` at most 60 minutes.
///
/// # Errors
/// `InvalidArgument` naming the claim at fault.
pub(crate) fn build(
    c: Map<String, Value>,
    lifetime: Option<i64>,
    jti: String,
    ctx: &Context,
) -> Result<Token> {
    check(&c)?;
    signed_request(c, lifetime.unwrap_or(DEFAULT_LIFETIME), jti, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fapi::request_object::TYP;
    use serde_json::json;

    fn ctx() -> Context {
        Context::at(1000, None)
    }

    /// Shaped like CIBA Core 7.1.1's example signed request.
    fn base() -> Map<String, Value> {
        json!({"iss": "s6BhdRkqt3", "aud": "https://server.example.com",
               "scope": "openid email example-scope", "login_hint_token": "eyJraWQiOi...",
               "client_notification_token": "8d67dc78-7faa-4d41-aabd-67707b374255",
               "binding_message": "W4SCT", "requested_expiry": "120"})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn fills_times_and_jti() {
        let t = build(base(), None, "j".into(), &ctx()).unwrap();
        assert_eq!(t.claims["nbf"], 1000);
        assert_eq!(t.claims["exp"], 1300);
        assert_eq!(t.claims["jti"], "j");
        assert_eq!(t.typ.as_deref(), Some(TYP));
    }

    #[test]
    fn refusals_name_the_claim() {
        let with = |k: &str, v: Value| {
            let mut c = base();
            c.insert(k.into(), v);
            c
        };
        let without = |k: &str| {
            let mut c = base();
            c.remove(k);
            c
        };
        let cases = [
            (without("login_hint_token"), "hint"),
            (
                with("login_hint", json!("alice")),
                "login_hint_token and login_hint",
            ),
            (with("scope", json!("email")), "openid"),
            (with("binding_message", json!(5)), "binding_message"),
            (with("requested_expiry", json!(-1)), "requested_expiry"),
            (with("redirect_uri", json!("https://c/cb")), "redirect_uri"),
            (with("exp", json!(1000 + 3601)), "60"),
            (without("aud"), "aud"),
        ];
        for (c, needle) in cases {
            let e = build(c, None, "j".into(), &ctx()).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}

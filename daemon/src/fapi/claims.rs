//! Small checked accessors for JWT claims, shared by the token rules.
//! Every refusal names the offending claim.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// The inputs every token rule shares.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The current time (Unix seconds); injected so rules are testable.
    pub now: i64,
    /// The longest lifetime a token of this keyset may have, in seconds.
    pub max_lifetime: i64,
    /// The keyset's configured issuer, if any.
    pub issuer: Option<String>,
}

#[cfg(test)]
impl Context {
    /// The rule tests' context: `now`, an hour's maximum lifetime, `issuer`.
    pub(crate) fn at(now: i64, issuer: Option<&str>) -> Self {
        Self {
            now,
            max_lifetime: 3600,
            issuer: issuer.map(String::from),
        }
    }
}

/// A token ready to sign: its `typ` header (if any) and its claims.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// JOSE `typ` header.
    pub typ: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
}

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg.into())
}

/// INVALID_ARGUMENT about claim `name` (named in the status's field violation).
pub(crate) fn bad_claim(name: &str, msg: impl Into<String>) -> Error {
    Error::invalid_claim(name, msg)
}

/// A required non-empty string claim.
pub(crate) fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(bad_claim(name, format!("claim {name:?} must not be empty"))),
        Some(_) => Err(bad_claim(name, format!("claim {name:?} must be a string"))),
        None => Err(bad_claim(name, format!("claim {name:?} is required"))),
    }
}

/// A required `aud`: a non-empty string or a non-empty array of non-empty strings.
pub(crate) fn audience(claims: &Map<String, Value>) -> Result<()> {
    match claims.get("aud") {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(Value::Array(a))
            if !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) =>
        {
            Ok(())
        }
        Some(_) => Err(bad_claim(
            "aud",
            "claim \"aud\" must be a string or an array of strings",
        )),
        None => Err(bad_claim("aud", "claim \"aud\" is required")),
    }
}

/// How far in the future a caller-supplied `iat` may be (seconds): clocks
/// differ a little, not by more.
pub(crate) const MAX_FUTURE_IAT: i64 = 60;

/// An optional integer time claim (NumericDate in whole seconds, bounded).
pub(crate) fn time(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => crate::numeric_date::parse(name, v)
            .map(Some)
            .map_err(|m| bad_claim(name, m)),
    }
}

/// A required integer time claim.
pub(crate) fn required_time(claims: &Map<String, Value>, name: &str) -> Result<i64> {
    time(claims, name)?.ok_or_else(|| bad_claim(name, format!("claim {name:?} is required")))
}

/// Refuses claims that Custos computes itself and never takes from a caller.
pub(crate) fn refuse_computed(claims: &Map<String, Value>, names: &[&str]) -> Result<()> {
    for n in names {
        if claims.contains_key(*n) {
            return Err(bad_claim(
                n,
                format!("claim {n:?} is computed by Custos and must not be supplied"),
            ));
        }
    }
    Ok(())
}

/// Sets `iat` to now when absent, refuses an `iat` more than
/// [`MAX_FUTURE_IAT`] seconds ahead, then checks that `exp` is after the later
/// of `now` and `iat` and at most `max_lifetime` beyond it (so a future `iat`
/// cannot stretch a token's real lifetime).
pub(crate) fn check_lifetime(claims: &mut Map<String, Value>, ctx: &Context) -> Result<()> {
    let exp = required_time(claims, "exp")?;
    let iat = match time(claims, "iat")? {
        Some(t) => t,
        None => {
            claims.insert("iat".into(), Value::from(ctx.now));
            ctx.now
        }
    };
    refuse_future_iat(iat, ctx)?;
    if exp <= iat {
        return Err(bad_claim(
            "exp",
            format!("claim \"exp\" ({exp}) must be after \"iat\" ({iat})"),
        ));
    }
    let start = iat.max(ctx.now);
    let lifetime = exp.saturating_sub(start);
    if lifetime > ctx.max_lifetime {
        return Err(bad_claim(
            "exp",
            format!(
                "token lifetime {lifetime} s (exp - max(now, iat)) exceeds this keyset's maximum \
                 of {} s",
                ctx.max_lifetime
            ),
        ));
    }
    Ok(())
}

/// Refuses an `iat` more than [`MAX_FUTURE_IAT`] seconds after now.
pub(crate) fn refuse_future_iat(iat: i64, ctx: &Context) -> Result<()> {
    if iat > ctx.now.saturating_add(MAX_FUTURE_IAT) {
        return Err(bad_claim(
            "iat",
            format!(
                "claim \"iat\" ({iat}) is in the future (now {}); at most {MAX_FUTURE_IAT} s \
                 ahead is accepted",
                ctx.now
            ),
        ));
    }
    Ok(())
}

/// When the keyset has an issuer, `iss` must be it (filled in when absent).
pub(crate) fn issuer(claims: &mut Map<String, Value>, ctx: &Context) -> Result<()> {
    if let Some(expected) = &ctx.issuer {
        match claims.get("iss") {
            None => {
                claims.insert("iss".into(), Value::String(expected.clone()));
            }
            Some(Value::String(s)) if s == expected => {}
            Some(_) => {
                return Err(bad_claim(
                    "iss",
                    format!("claim \"iss\" must be this keyset's issuer {expected:?}"),
                ))
            }
        }
    }
    string(claims, "iss").map(|_| ())
}

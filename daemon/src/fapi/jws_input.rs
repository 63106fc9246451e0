//! Caller-built JWS signing inputs (`SignJwsInput`).
//!
//! An authorization server with external signing (node-oidc-provider's
//! `ExternalSigningKey`) builds the header and payload itself and asks only
//! for the signature over `BASE64URL(header).BASE64URL(payload)`. That must
//! not become a way around the typed operations: the input is parsed, its
//! header must name the keyset's algorithm and active kid, carry the
//! purpose's `typ` and nothing that would change how it is verified, and its
//! claims must pass the purpose's rules that apply to a finished token.
//! Nothing is added or changed: a token that needs fixing is refused.

use super::claims::{self, invalid, Context};
use super::{generic, introspection, jarm};
use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::keyring::keyset::Purpose;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{Map, Value};

/// The longest signing input accepted (bytes): the claims limit plus room
/// for a header, base64url-encoded.
pub(crate) const MAX_INPUT_BYTES: usize = 96 * 1024;

/// Header parameters a caller-built input may carry. Anything else (`crit`,
/// `jku`, `jwk`, `x5u`, `x5c`, `b64`, ...) would change how a verifier finds
/// the key or reads the payload, and is refused.
const HEADER_ALLOWED: [&str; 3] = ["alg", "kid", "typ"];

/// The purposes whose tokens an external-signing AS builds itself.
pub(crate) const PURPOSES: [Purpose; 6] = [
    Purpose::IdToken,
    Purpose::Userinfo,
    Purpose::Jarm,
    Purpose::AccessToken,
    Purpose::Introspection,
    Purpose::Generic,
];

/// A parsed signing input.
#[derive(Debug, Clone)]
pub(crate) struct JwsInput {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

/// Parses `input` and checks it for `purpose` against the keyset's `alg`,
/// its active `kid` and `ctx`.
///
/// # Errors
/// `InvalidArgument` naming the rule broken; `FailedPrecondition` for a
/// purpose that is signed only by its typed operation.
pub(crate) fn check(
    input: &str,
    purpose: Purpose,
    alg: Algorithm,
    kid: &str,
    ctx: &Context,
) -> Result<JwsInput> {
    if !PURPOSES.contains(&purpose) {
        return Err(Error::FailedPrecondition(format!(
            "purpose {} is not signed from a caller-built input: use its typed RPC",
            purpose.as_str()
        )));
    }
    let parsed = parse(input)?;
    check_header(&parsed.header, purpose, alg, kid)?;
    check_claims(&parsed.claims, purpose, ctx)?;
    Ok(parsed)
}

fn parse(input: &str) -> Result<JwsInput> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(invalid(format!(
            "the signing input is {} bytes; the limit is {MAX_INPUT_BYTES}",
            input.len()
        )));
    }
    let (h, p) = input.split_once('.').ok_or_else(|| {
        invalid("the signing input must be BASE64URL(header) \".\" BASE64URL(payload)")
    })?;
    if p.contains('.') {
        return Err(invalid(
            "the signing input has more than two parts: send header.payload, without a signature",
        ));
    }
    let decode = |part: &str, what: &str| {
        B64.decode(part)
            .map_err(|_| invalid(format!("the {what} is not unpadded base64url")))
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| invalid(format!("the {what} is not UTF-8")))
            })
    };
    let header = crate::jose::jws::parse_claims(&decode(h, "header")?)
        .map_err(|e| invalid(format!("header: {e}")))?;
    let claims = crate::jose::jws::parse_claims(&decode(p, "payload")?)?;
    Ok(JwsInput { header, claims })
}

fn check_header(
    header: &Map<String, Value>,
    purpose: Purpose,
    alg: Algorithm,
    kid: &str,
) -> Result<()> {
    if let Some(extra) = header
        .keys()
        .find(|k| !HEADER_ALLOWED.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "header parameter {extra:?} is not accepted (only alg, kid and typ)"
        )));
    }
    match header.get("alg") {
        Some(Value::String(a)) if a == alg.as_str() => {}
        Some(Value::String(a)) => {
            return Err(invalid(format!(
                "header alg {a:?} is not this keyset's algorithm {}",
                alg.as_str()
            )))
        }
        _ => return Err(invalid("header alg is required and must be a string")),
    }
    match header.get("kid") {
        Some(Value::String(k)) if k == kid => {}
        Some(Value::String(k)) => {
            return Err(invalid(format!(
                "header kid {k:?} is not this keyset's active key {kid:?}: \
                 build the header with the active kid (GetKeyset or the JWKS)"
            )))
        }
        _ => return Err(invalid("header kid is required and must be a string")),
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(invalid("header typ must be a string")),
    };
    let bare = typ.map(|t| {
        let lower = t.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map_or(lower.clone(), str::to_string)
    });
    let wanted = match purpose {
        Purpose::AccessToken => Some(super::access_token::TYP),
        Purpose::Introspection => Some(introspection::TYP),
        Purpose::Generic => return generic::check_typ(typ),
        _ => None,
    };
    match (wanted, bare.as_deref()) {
        (Some(w), Some(t)) if t == w => Ok(()),
        (Some(w), _) => Err(invalid(format!(
            "a {} must have header typ {w:?}",
            purpose.as_str()
        ))),
        (None, None | Some("jwt")) => Ok(()),
        (None, Some(_)) => Err(invalid(format!(
            "a {} has no typ or typ \"JWT\" (got {:?})",
            purpose.as_str(),
            typ.unwrap_or_default()
        ))),
    }
}

fn check_claims(c: &Map<String, Value>, purpose: Purpose, ctx: &Context) -> Result<()> {
    if purpose != Purpose::AccessToken && c.contains_key("cnf") {
        return Err(invalid(format!(
            "claim \"cnf\" (a sender constraint) does not belong in a {}",
            purpose.as_str()
        )));
    }
    if purpose != Purpose::Generic {
        issuer(c, ctx)?;
    }
    let (exp_required, iat_required) = match purpose {
        Purpose::IdToken | Purpose::AccessToken => (true, true),
        Purpose::Jarm => (true, false),
        _ => (false, false),
    };
    match purpose {
        Purpose::IdToken => {
            claims::string(c, "sub")?;
            claims::audience(c)?;
        }
        Purpose::Userinfo => {
            claims::string(c, "sub")?;
            claims::audience(c)?;
            generic::refuse_userinfo_only(c)?;
        }
        Purpose::AccessToken => {
            for name in super::access_token::REQUIRED {
                if !c.contains_key(name) {
                    return Err(invalid(format!(
                        "claim {name:?} is required in an access token (RFC 9068 section 2.2)"
                    )));
                }
            }
            claims::string(c, "sub")?;
            claims::string(c, "client_id")?;
            claims::string(c, "jti")?;
            claims::audience(c)?;
        }
        Purpose::Jarm => {
            claims::string(c, "aud")?;
            match (c.contains_key("code"), c.contains_key("error")) {
                (true, true) => return Err(invalid(
                    "a JARM response is either a success (code) or an error (error), never both",
                )),
                (false, false) => {
                    return Err(invalid(
                        "a JARM response needs \"code\" (success) or \"error\" (error response)",
                    ))
                }
                _ => {}
            }
        }
        Purpose::Introspection => {
            let aud = claims::string(c, "aud")?;
            let Some(Value::Object(response)) = c.get("token_introspection") else {
                return Err(invalid(
                    "claim \"token_introspection\" (the RFC 7662 response object) is required",
                ));
            };
            // The same member rules as SignIntrospectionResponse.
            introspection::build(response.clone(), aud, ctx)?;
        }
        _ => {}
    }
    times(c, purpose, exp_required, iat_required, ctx)
}

/// `iss` must be the keyset's issuer; a keyset without one needs `iss` set.
fn issuer(c: &Map<String, Value>, ctx: &Context) -> Result<()> {
    let iss = claims::string(c, "iss")?;
    match &ctx.issuer {
        Some(want) if iss != want => Err(invalid(format!(
            "claim \"iss\" must be this keyset's issuer {want:?}"
        ))),
        _ => Ok(()),
    }
}

fn times(
    c: &Map<String, Value>,
    purpose: Purpose,
    exp_required: bool,
    iat_required: bool,
    ctx: &Context,
) -> Result<()> {
    let iat = if iat_required {
        Some(claims::required_time(c, "iat")?)
    } else {
        claims::time(c, "iat")?
    };
    if let Some(iat) = iat {
        claims::refuse_future_iat(iat, ctx)?;
    }
    claims::time(c, "nbf")?;
    let exp = if exp_required {
        Some(claims::required_time(c, "exp")?)
    } else {
        claims::time(c, "exp")?
    };
    let Some(exp) = exp else { return Ok(()) };
    if exp <= ctx.now {
        return Err(invalid(format!(
            "claim \"exp\" ({exp}) is not in the future (now {})",
            ctx.now
        )));
    }
    let ceiling = if purpose == Purpose::Jarm {
        ctx.max_lifetime.min(jarm::MAX_LIFETIME)
    } else {
        ctx.max_lifetime
    };
    // The same measure as the typed operations: from the later of now and iat.
    let mut probe = c.clone();
    claims::check_lifetime(
        &mut probe,
        &Context {
            max_lifetime: ceiling,
            ..ctx.clone()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KID: &str = "kid-1";

    fn ctx() -> Context {
        Context::at(1_000_000, Some("https://as.bank"))
    }

    fn input(header: Value, claims: Value) -> String {
        format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        )
    }

    fn id_claims() -> Value {
        json!({"iss": "https://as.bank", "sub": "alice", "aud": "client-1",
               "iat": 1_000_000, "exp": 1_000_300, "nonce": "n"})
    }

    fn run(purpose: Purpose, header: Value, claims: Value) -> Result<JwsInput> {
        check(
            &input(header, claims),
            purpose,
            Algorithm::ES256,
            KID,
            &ctx(),
        )
    }

    fn refused(r: Result<JwsInput>, needle: &str) {
        match r {
            Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle:?}"),
            Ok(_) => panic!("accepted; expected a refusal naming {needle:?}"),
        }
    }

    #[test]
    fn an_id_token_as_oidc_provider_builds_it_passes() {
        let ok = run(
            Purpose::IdToken,
            json!({"alg": "ES256", "kid": KID}),
            id_claims(),
        )
        .expect("accepted");
        assert_eq!(ok.claims["sub"], "alice");
    }

    #[test]
    fn alg_and_kid_must_be_the_keysets() {
        refused(
            run(
                Purpose::IdToken,
                json!({"alg": "PS256", "kid": KID}),
                id_claims(),
            ),
            "not this keyset's algorithm",
        );
        refused(
            run(
                Purpose::IdToken,
                json!({"alg": "none", "kid": KID}),
                id_claims(),
            ),
            "not this keyset's algorithm",
        );
        refused(
            run(
                Purpose::IdToken,
                json!({"alg": "ES256", "kid": "old"}),
                id_claims(),
            ),
            "not this keyset's active key",
        );
        refused(
            run(Purpose::IdToken, json!({"alg": "ES256"}), id_claims()),
            "kid is required",
        );
        refused(
            run(
                Purpose::IdToken,
                json!({"alg": "ES256", "kid": KID, "jku": "https://evil"}),
                id_claims(),
            ),
            "\"jku\" is not accepted",
        );
    }

    #[test]
    fn each_purpose_has_its_typ() {
        let at = json!({"iss": "https://as.bank", "sub": "alice", "aud": "rs", "client_id": "c",
                        "jti": "j", "iat": 1_000_000, "exp": 1_000_300});
        refused(
            run(
                Purpose::AccessToken,
                json!({"alg": "ES256", "kid": KID}),
                at.clone(),
            ),
            "must have header typ \"at+jwt\"",
        );
        run(
            Purpose::AccessToken,
            json!({"alg": "ES256", "kid": KID, "typ": "at+jwt"}),
            at,
        )
        .expect("an access token");
        refused(
            run(
                Purpose::IdToken,
                json!({"alg": "ES256", "kid": KID, "typ": "at+jwt"}),
                id_claims(),
            ),
            "has no typ or typ \"JWT\"",
        );
        refused(
            run(
                Purpose::Generic,
                json!({"alg": "ES256", "kid": KID, "typ": "application/at+jwt"}),
                json!({"hello": "world"}),
            ),
            "reserved",
        );
    }

    #[test]
    fn finished_token_rules_apply() {
        let h = json!({"alg": "ES256", "kid": KID});
        let mut c = id_claims();
        c.as_object_mut().expect("object").remove("sub");
        refused(run(Purpose::IdToken, h.clone(), c), "\"sub\" is required");
        let mut c = id_claims();
        c["exp"] = json!(1_000_000 + 7200);
        refused(run(Purpose::IdToken, h.clone(), c), "exceeds");
        let mut c = id_claims();
        c["iat"] = json!(1_000_000 + 600);
        refused(run(Purpose::IdToken, h.clone(), c), "in the future");
        let mut c = id_claims();
        c["iss"] = json!("https://evil");
        refused(run(Purpose::IdToken, h.clone(), c), "issuer");
        let mut c = id_claims();
        c["cnf"] = json!({"jkt": "x"});
        refused(run(Purpose::IdToken, h.clone(), c), "cnf");
        let mut c = id_claims();
        c["exp"] = json!(999_999);
        c["iat"] = json!(999_000);
        refused(run(Purpose::IdToken, h.clone(), c), "not in the future");
        refused(
            run(
                Purpose::Jarm,
                h.clone(),
                json!({"iss": "https://as.bank", "aud": "client-1", "exp": 1_000_000 + 900, "code": "c"}),
            ),
            "exceeds",
        );
        run(
            Purpose::Jarm,
            h.clone(),
            json!({"iss": "https://as.bank", "aud": "client-1", "exp": 1_000_120, "code": "c"}),
        )
        .expect("JARM without iat, as oidc-provider builds it");
        refused(
            run(
                Purpose::Introspection,
                json!({"alg": "ES256", "kid": KID, "typ": "token-introspection+jwt"}),
                json!({"iss": "https://as.bank", "aud": "client-1", "iat": 1_000_000,
                       "token_introspection": {"active": false, "sub": "alice"}}),
            ),
            "inactive",
        );
    }

    #[test]
    fn typed_only_purposes_and_malformed_inputs_are_refused() {
        let r = check(
            &input(json!({"alg": "ES256", "kid": KID}), json!({})),
            Purpose::ClientAssertion,
            Algorithm::ES256,
            KID,
            &ctx(),
        );
        assert!(matches!(r, Err(Error::FailedPrecondition(_))), "{r:?}");
        for bad in [
            "",
            "abc",
            "a.b.c",
            "!!.!!",
            &"a".repeat(MAX_INPUT_BYTES + 1),
        ] {
            assert!(
                matches!(
                    check(bad, Purpose::IdToken, Algorithm::ES256, KID, &ctx()),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:.20}"
            );
        }
    }
}

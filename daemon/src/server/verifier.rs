//! The `Verifier` service: access tokens with their mTLS or DPoP binding,
//! JWS against a keyset or a client's JWKS, request objects and client
//! assertions. Everything runs on public keys in memory: no device call.
//! A token that fails is a [`pb::Verdict`] with a reason, not a gRPC error.

use super::caller::{Caller, Gate};
use super::status::to_status;
use crate::audit::Event;
use crate::binding::replay::{Refusal, ReplayCache};
use crate::binding::{cert, dpop};
use crate::config::VerifyConfig;
use crate::error::Error;
use crate::fapi::request_object;
use crate::jose::verify::{self, invalid, Invalid, Parsed, Reason};
use crate::keyring::keyset::VersionState;
use crate::keyring::{now, Keyring};
use custos_proto::v1 as pb;
use custos_proto::v1::verifier_server::Verifier;
use serde_json::{Map, Value};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `custos.v1.Verifier`.
#[derive(Debug, Clone)]
pub(crate) struct VerifierService {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) gate: Gate,
    pub(crate) rules: VerifyConfig,
    pub(crate) keys: Arc<verify::KeyCache>,
    pub(crate) replay: Arc<ReplayCache>,
}

fn verdict(result: Result<(Parsed, String), Invalid>) -> pb::Verdict {
    match result {
        Ok((parsed, kid)) => pb::Verdict {
            valid: true,
            reason: String::new(),
            detail: String::new(),
            claims_json: Value::Object(parsed.claims).to_string(),
            kid,
        },
        Err(i) => pb::Verdict {
            valid: false,
            reason: i.reason.as_str().into(),
            detail: i.detail,
            claims_json: String::new(),
            kid: String::new(),
        },
    }
}

pub(super) fn parse_jwks(json: &str) -> Result<Value, Status> {
    if json.len() > 256 * 1024 {
        return Err(to_status(Error::InvalidArgument(
            "the JWKS is larger than 256 KiB".into(),
        )));
    }
    serde_json::from_str(json)
        .map_err(|e| to_status(Error::InvalidArgument(format!("the JWKS is not JSON: {e}"))))
}

/// Audits a failed verification (valid ones are not logged: they are the
/// resource server's hot path and carry no decision of Custos's own).
pub(super) fn audit(
    gate: &Gate,
    caller: &Caller,
    operation: &str,
    v: &pb::Verdict,
) -> Result<(), Status> {
    if v.valid {
        return Ok(());
    }
    gate.audit
        .record(
            caller.to_json(),
            &Event {
                operation,
                kid: Some(v.kid.as_str()).filter(|k| !k.is_empty()),
                outcome: "invalid",
                detail: Some(&v.reason),
                ..Event::default()
            },
        )
        .map_err(to_status)
}

impl VerifierService {
    /// Signature check against the keyring: the kid must name an active or
    /// retired version, and alg must be that key's.
    fn check_keyring(
        &self,
        caller: &Caller,
        parsed: &Parsed,
        keyset: Option<&str>,
    ) -> Result<String, Invalid> {
        let Some(kid) = parsed.kid() else {
            return Err(invalid(Reason::UnknownKid, "the token has no kid"));
        };
        let snapshot = self.keyring.snapshot();
        let cached = self
            .keys
            .get(&snapshot, kid)
            .filter(|c| keyset.is_none_or(|k| k == c.keyset))
            .ok_or_else(|| {
                invalid(
                    Reason::UnknownKid,
                    format!("kid {kid} is not a key of this keyring"),
                )
            })?;
        if !self.gate.may(caller, "verify", Some(&cached.keyset)) {
            return Err(invalid(
                Reason::UnknownKid,
                format!("kid {kid} belongs to a keyset this caller may not verify with"),
            ));
        }
        let Some(key) = cached.key.as_ref() else {
            return Err(invalid(
                Reason::UnknownKid,
                format!(
                    "kid {kid} is {} and does not verify",
                    state_name(cached.state)
                ),
            ));
        };
        key.verify(parsed)?;
        Ok(kid.to_string())
    }

    fn access_token(
        &self,
        caller: &Caller,
        req: &pb::VerifyAccessTokenRequest,
    ) -> Result<Result<(Parsed, String), Invalid>, Status> {
        use pb::verify_access_token_request::Binding;
        // A certificate that does not parse is a bad request, not a verdict.
        let der = match &req.binding {
            Some(Binding::ClientCertificate(c)) => Some(cert::parse(c).map_err(to_status)?),
            _ => None,
        };
        let now = now();
        let skew = self.rules.clock_skew;
        Ok((|| {
            let parsed = verify::parse(&req.token)?;
            if parsed.typ().is_some_and(|t| {
                !t.eq_ignore_ascii_case("at+jwt") && !t.eq_ignore_ascii_case("application/at+jwt")
            }) {
                return Err(invalid(
                    Reason::WrongTyp,
                    format!("typ {:?} is not at+jwt", parsed.typ()),
                ));
            }
            let kid = self.check_keyring(caller, &parsed, None)?;
            let c = &parsed.claims;
            verify::check_times(c, now, skew, true)?;
            if !req.issuer.is_empty()
                && c.get("iss").and_then(Value::as_str) != Some(req.issuer.as_str())
            {
                return Err(invalid(
                    Reason::WrongIssuer,
                    format!("iss is not {}", req.issuer),
                ));
            }
            if !req.audience.is_empty() && !verify::audience_contains(c, &req.audience) {
                return Err(invalid(
                    Reason::WrongAudience,
                    format!("aud does not contain {}", req.audience),
                ));
            }
            match (&req.binding, &der) {
                (Some(Binding::ClientCertificate(_)), Some(der)) => cert::check_binding(c, der)?,
                (Some(Binding::Dpop(p)), _) => {
                    let jkt = dpop::check_proof(
                        &dpop::DpopRequest {
                            proof: &p.proof,
                            htm: &p.htm,
                            htu: &p.htu,
                            access_token: Some(&req.token),
                        },
                        now,
                        dpop::DpopRules {
                            window: self.rules.dpop_window,
                            skew,
                        },
                        &self.replay,
                    )?;
                    dpop::check_binding(c, &jkt)?;
                }
                _ => {
                    if c.contains_key("cnf") {
                        return Err(invalid(
                            Reason::CnfMissing,
                            "the token is sender-constrained but no certificate or DPoP proof was presented",
                        ));
                    }
                    if !req.allow_bearer {
                        return Err(invalid(
                            Reason::CnfMissing,
                            "the token has no cnf: FAPI requires sender-constrained tokens (set allow_bearer to accept)",
                        ));
                    }
                }
            }
            Ok((parsed, kid))
        })())
    }

    fn client_jws(&self, token: &str, jwks: &Value) -> Result<Result<Parsed, Invalid>, Status> {
        let parsed = match verify::parse(token) {
            Ok(p) => p,
            Err(i) => return Ok(Err(i)),
        };
        let key = verify::key_from_jwks(jwks, &parsed)
            .map_err(|e| to_status(Error::InvalidArgument(e)))?;
        Ok(key.and_then(|k| k.verify(&parsed)).map(|()| parsed))
    }
}

fn state_name(s: VersionState) -> &'static str {
    s.as_str()
}

fn claim<'a>(c: &'a Map<String, Value>, name: &str) -> Result<&'a str, Invalid> {
    c.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(Reason::MissingClaim, format!("{name} is required")))
}

#[tonic::async_trait]
impl Verifier for VerifierService {
    async fn verify_access_token(
        &self,
        request: Request<pb::VerifyAccessTokenRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let v = verdict(self.access_token(&caller, request.get_ref())?);
        audit(&self.gate, &caller, "verify_access_token", &v)?;
        Ok(Response::new(v))
    }

    async fn verify_jws(
        &self,
        request: Request<pb::VerifyJwsRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        use pb::verify_jws_request::Keys;
        let keyset = match &request.get_ref().keys {
            Some(Keys::Keyset(k)) => Some(k.clone()),
            _ => None,
        };
        let caller = self.gate.check(&request, "verify", keyset.as_deref())?;
        let req = request.into_inner();
        let typ_ok = |p: &Parsed| -> Result<(), Invalid> {
            if !req.typ.is_empty() && p.typ() != Some(req.typ.as_str()) {
                return Err(invalid(
                    Reason::WrongTyp,
                    format!("typ {:?} is not {}", p.typ(), req.typ),
                ));
            }
            Ok(())
        };
        let result = match &req.keys {
            Some(Keys::Keyset(name)) => {
                self.keyring.keyset(name).map_err(to_status)?;
                verify::parse(&req.token).and_then(|p| {
                    typ_ok(&p)?;
                    let kid = self.check_keyring(&caller, &p, Some(name))?;
                    Ok((p, kid))
                })
            }
            Some(Keys::JwksJson(j)) => {
                let jwks = parse_jwks(j)?;
                self.client_jws(&req.token, &jwks)?.and_then(|p| {
                    typ_ok(&p)?;
                    let kid = p.kid().unwrap_or_default().to_string();
                    Ok((p, kid))
                })
            }
            None => {
                return Err(to_status(Error::InvalidArgument(
                    "give a keyset or a JWKS to verify against".into(),
                )))
            }
        };
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_jws", &v)?;
        Ok(Response::new(v))
    }

    async fn verify_request_object(
        &self,
        request: Request<pb::VerifyRequestObjectRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let req = request.into_inner();
        if req.client_id.is_empty() || req.issuer.is_empty() {
            return Err(to_status(Error::InvalidArgument(
                "client_id and issuer are required".into(),
            )));
        }
        let ciba = crate::fapi::ciba::is_ciba_kind(&req.kind).map_err(to_status)?;
        let jwks = parse_jwks(&req.jwks_json)?;
        let now = now();
        let skew = self.rules.clock_skew;
        let result = self.client_jws(&req.token, &jwks)?.and_then(|p| {
            if p.typ().is_some_and(|t| t != request_object::TYP) {
                return Err(invalid(
                    Reason::WrongTyp,
                    format!("typ {:?} is not {}", p.typ(), request_object::TYP),
                ));
            }
            let c = &p.claims;
            verify::check_times(c, now, skew, true)?;
            if ciba {
                // CIBA Core 7.1.1: iss is the client; iat and jti are required.
                if claim(c, "iss")? != req.client_id {
                    return Err(invalid(Reason::ClaimsMismatch, "iss must be the client"));
                }
                claim(c, "jti")?;
                if !c.get("iat").is_some_and(Value::is_i64) {
                    return Err(invalid(Reason::MissingClaim, "iat is required"));
                }
                crate::fapi::ciba::check(c).map_err(|e| {
                    let detail = e.to_string();
                    let reason = if detail.contains("required") || detail.contains("must include") {
                        Reason::MissingClaim
                    } else {
                        Reason::ClaimsMismatch
                    };
                    invalid(reason, detail)
                })?;
            } else if claim(c, "iss")? != req.client_id || claim(c, "client_id")? != req.client_id {
                return Err(invalid(
                    Reason::ClaimsMismatch,
                    "iss and client_id must both be the client",
                ));
            }
            if !verify::audience_contains(c, &req.issuer) {
                return Err(invalid(
                    Reason::WrongAudience,
                    format!("aud does not contain {}", req.issuer),
                ));
            }
            let nbf = c
                .get("nbf")
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid(Reason::MissingClaim, "nbf is required"))?;
            let exp = c.get("exp").and_then(Value::as_i64).unwrap_or(0);
            if exp - nbf > request_object::MAX_VALIDITY {
                return Err(invalid(
                    Reason::LifetimeTooLong,
                    format!("exp - nbf is {} s; at most 3600", exp - nbf),
                ));
            }
            let kid = p.kid().unwrap_or_default().to_string();
            Ok((p, kid))
        });
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_request_object", &v)?;
        Ok(Response::new(v))
    }

    async fn verify_http_message(
        &self,
        request: Request<pb::VerifyHttpMessageRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        use pb::verify_http_message_request::Keys;
        let keyset = match &request.get_ref().keys {
            Some(Keys::Keyset(k)) => Some(k.clone()),
            _ => None,
        };
        let caller = self.gate.check(&request, "verify", keyset.as_deref())?;
        self.verify_http(&caller, request.into_inner())
            .map(Response::new)
    }

    async fn verify_client_assertion(
        &self,
        request: Request<pb::VerifyClientAssertionRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let req = request.into_inner();
        if req.client_id.is_empty() || req.audiences.is_empty() {
            return Err(to_status(Error::InvalidArgument(
                "client_id and at least one audience are required".into(),
            )));
        }
        let jwks = parse_jwks(&req.jwks_json)?;
        let now = now();
        let skew = self.rules.clock_skew;
        let result = self.client_jws(&req.token, &jwks)?.and_then(|p| {
            let c = &p.claims;
            verify::check_times(c, now, skew, true)?;
            if claim(c, "iss")? != req.client_id || claim(c, "sub")? != req.client_id {
                return Err(invalid(
                    Reason::ClaimsMismatch,
                    "iss and sub must both be the client_id",
                ));
            }
            if !req
                .audiences
                .iter()
                .any(|a| verify::audience_contains(c, a))
            {
                return Err(invalid(
                    Reason::WrongAudience,
                    "aud contains none of the accepted audiences",
                ));
            }
            let exp = c.get("exp").and_then(Value::as_i64).unwrap_or(0);
            let iat = c.get("iat").and_then(Value::as_i64).unwrap_or(now);
            if exp - iat > 3600 {
                return Err(invalid(
                    Reason::LifetimeTooLong,
                    "an assertion may live at most one hour",
                ));
            }
            let jti = claim(c, "jti")?;
            match self.replay.check_and_insert(
                &format!("assertion:{}:{jti}", req.client_id),
                exp + skew,
                now,
            ) {
                Ok(()) => {}
                Err(Refusal::Replayed) => {
                    return Err(invalid(
                        Reason::Replay,
                        format!("jti {jti} was used before"),
                    ))
                }
                Err(Refusal::Full) => {
                    return Err(invalid(
                        Reason::Replay,
                        "the replay cache is full; try again shortly",
                    ))
                }
            }
            let kid = p.kid().unwrap_or_default().to_string();
            Ok((p, kid))
        });
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_client_assertion", &v)?;
        Ok(Response::new(v))
    }
}

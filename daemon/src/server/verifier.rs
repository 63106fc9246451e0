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
use crate::fapi::{access_token, client_assertion, request_object};
use crate::jose::verify::{self, invalid, Invalid, Parsed, Reason};
use crate::keyring::keyset::{Purpose, VersionState};
use crate::keyring::{now, Keyring};
use custos_proto::v1 as pb;
use custos_proto::v1::verifier_server::Verifier;
use serde_json::Value;
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

/// A verified token: what was parsed, the kid that verified it, and what it
/// was checked against (a keyset name, or `jwks` for caller-supplied keys).
pub(super) struct Verified {
    parsed: Parsed,
    kid: String,
    against: String,
}

fn verdict(result: Result<Verified, Invalid>) -> pb::Verdict {
    match result {
        Ok(v) => accepted(Value::Object(v.parsed.claims).to_string(), v.kid, v.against),
        Err(i) => refused(i),
    }
}

/// The verdict for a valid input: what it says (`claims_json`), the kid that
/// verified it and what that key was taken from (a keyset name, or `jwks`).
pub(super) fn accepted(claims_json: String, kid: String, keyset: String) -> pb::Verdict {
    pb::Verdict {
        valid: true,
        reason: String::new(),
        detail: String::new(),
        claims_json,
        kid,
        keyset,
    }
}

/// The verdict for an invalid input: its reason code and detail, nothing else.
pub(super) fn refused(i: Invalid) -> pb::Verdict {
    pb::Verdict {
        valid: false,
        reason: i.reason.as_str().into(),
        detail: i.detail,
        claims_json: String::new(),
        kid: String::new(),
        keyset: String::new(),
    }
}

/// Which keyring keys a verification may trust.
#[derive(Debug, Clone, Copy)]
enum Trust<'a> {
    /// The keys of this keyset (the caller named it).
    Keyset(&'a str),
    /// Keys of keysets that serve this token kind; when the keyset has an
    /// issuer, the token's `iss` must be it.
    Kind(Purpose),
}

/// A verification against caller-supplied keys.
fn from_jwks(parsed: Parsed) -> Verified {
    let kid = parsed.kid().unwrap_or_default().to_string();
    Verified {
        parsed,
        kid,
        against: "jwks".into(),
    }
}

pub(super) fn parse_jwks(json: &str) -> Result<Value, Status> {
    if json.len() > 256 * 1024 {
        return Err(to_status(Error::invalid("the JWKS is larger than 256 KiB")));
    }
    serde_json::from_str(json)
        .map_err(|e| to_status(Error::invalid(format!("the JWKS is not JSON: {e}"))))
}

/// Audits a failed verification (valid ones are not logged: they are the
/// resource server's hot path and carry no decision of Custos's own).
pub(super) async fn audit(
    gate: &Gate,
    caller: &Caller,
    operation: &str,
    v: &pb::Verdict,
) -> Result<(), Status> {
    if v.valid {
        return Ok(());
    }
    gate.audit_failure(
        caller,
        &Event {
            operation,
            kid: Some(v.kid.as_str()).filter(|k| !k.is_empty()),
            outcome: "invalid",
            detail: Some(&v.reason),
            ..Event::default()
        },
    )
    .await
    .map_err(to_status)
}

impl VerifierService {
    /// Signature check against the keyring: the kid must name an active or
    /// retired version of a keyset `trust` allows (and the caller may
    /// verify with), and alg must be that key's. Returns the kid and the
    /// keyset's name.
    fn check_keyring(
        &self,
        caller: &Caller,
        parsed: &Parsed,
        trust: Trust<'_>,
    ) -> Result<(String, String), Invalid> {
        let Some(kid) = parsed.kid() else {
            return Err(invalid(Reason::UnknownKid, "the token has no kid"));
        };
        let snapshot = self.keyring.snapshot();
        let unknown = || {
            invalid(
                Reason::UnknownKid,
                format!("kid {kid} is not a key of this keyring"),
            )
        };
        let cached = self.keys.get(&snapshot, kid).ok_or_else(unknown)?;
        let keyset = snapshot.keysets.get(&cached.keyset).ok_or_else(unknown)?;
        match trust {
            Trust::Keyset(name) if name != keyset.name => return Err(unknown()),
            Trust::Keyset(_) => {}
            Trust::Kind(purpose) => {
                if !keyset.purposes.contains(&purpose) {
                    return Err(invalid(
                        Reason::UnknownKid,
                        format!(
                            "kid {kid} belongs to keyset {}, which does not serve {purpose}; \
                             only keys of {purpose} keysets are trusted for it",
                            keyset.name
                        ),
                    ));
                }
                if let Some(issuer) = &keyset.issuer {
                    if parsed.claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                        return Err(invalid(
                            Reason::WrongIssuer,
                            format!(
                                "iss is not {issuer}, the issuer of keyset {} that kid {kid} belongs to",
                                keyset.name
                            ),
                        ));
                    }
                }
            }
        }
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
        Ok((kid.to_string(), cached.keyset.clone()))
    }

    fn access_token(
        &self,
        caller: &Caller,
        req: &pb::VerifyAccessTokenRequest,
    ) -> Result<Result<Verified, Invalid>, Status> {
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
            let expected = access_token::Expected {
                issuer: Some(req.issuer.as_str()).filter(|i| !i.is_empty()),
                audience: Some(req.audience.as_str()).filter(|a| !a.is_empty()),
            };
            access_token::check(parsed.typ(), &parsed.claims, expected)?;
            let (kid, keyset) =
                self.check_keyring(caller, &parsed, Trust::Kind(Purpose::AccessToken))?;
            let c = &parsed.claims;
            verify::check_times(c, now, skew, true)?;
            match (&req.binding, &der) {
                (Some(Binding::ClientCertificate(_)), Some(der)) => cert::check_binding(c, der)?,
                (Some(Binding::Dpop(p)), _) => {
                    let proof = dpop::check_proof(
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
                    )?;
                    dpop::check_binding(c, &proof.jkt)?;
                    // Everything else passed: only now is the jti remembered.
                    dpop::record(&self.replay, &caller.key(), &proof, now)?;
                }
                _ => access_token::check_unbound(c, req.allow_bearer)?,
            }
            Ok(Verified {
                parsed,
                kid,
                against: keyset,
            })
        })())
    }

    fn client_jws(&self, token: &str, jwks: &Value) -> Result<Result<Parsed, Invalid>, Status> {
        let parsed = match verify::parse(token) {
            Ok(p) => p,
            Err(i) => return Ok(Err(i)),
        };
        let key = verify::key_from_jwks(jwks, &parsed).map_err(|e| to_status(Error::invalid(e)))?;
        Ok(key.and_then(|k| k.verify(&parsed)).map(|()| parsed))
    }
}

fn state_name(s: VersionState) -> &'static str {
    s.as_str()
}

#[tonic::async_trait]
impl Verifier for VerifierService {
    async fn verify_access_token(
        &self,
        request: Request<pb::VerifyAccessTokenRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let v = verdict(self.access_token(&caller, request.get_ref())?);
        audit(&self.gate, &caller, "verify_access_token", &v).await?;
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
                    let (kid, keyset) = self.check_keyring(&caller, &p, Trust::Keyset(name))?;
                    Ok(Verified {
                        parsed: p,
                        kid,
                        against: keyset,
                    })
                })
            }
            Some(Keys::JwksJson(j)) => {
                let jwks = parse_jwks(j)?;
                self.client_jws(&req.token, &jwks)?.and_then(|p| {
                    typ_ok(&p)?;
                    Ok(from_jwks(p))
                })
            }
            None => {
                return Err(to_status(Error::invalid(
                    "give a keyset or a JWKS to verify against",
                )))
            }
        };
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_jws", &v).await?;
        Ok(Response::new(v))
    }

    async fn verify_request_object(
        &self,
        request: Request<pb::VerifyRequestObjectRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let req = request.into_inner();
        if req.client_id.is_empty() || req.issuer.is_empty() {
            return Err(to_status(Error::invalid(
                "client_id and issuer are required",
            )));
        }
        let ciba = crate::fapi::ciba::is_ciba_kind(&req.kind).map_err(to_status)?;
        let jwks = parse_jwks(&req.jwks_json)?;
        let now = now();
        let skew = self.rules.clock_skew;
        let result = self.client_jws(&req.token, &jwks)?.and_then(|p| {
            verify::check_times(&p.claims, now, skew, true)?;
            request_object::check(
                p.typ(),
                &p.claims,
                request_object::Expected {
                    client_id: &req.client_id,
                    issuer: &req.issuer,
                    ciba,
                },
            )?;
            Ok(from_jwks(p))
        });
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_request_object", &v).await?;
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
            .await
            .map(Response::new)
    }

    async fn verify_client_assertion(
        &self,
        request: Request<pb::VerifyClientAssertionRequest>,
    ) -> Result<Response<pb::Verdict>, Status> {
        let caller = self.gate.check(&request, "verify", None)?;
        let req = request.into_inner();
        if req.client_id.is_empty() || req.audiences.is_empty() {
            return Err(to_status(Error::invalid(
                "client_id and at least one audience are required",
            )));
        }
        let jwks = parse_jwks(&req.jwks_json)?;
        let now = now();
        let skew = self.rules.clock_skew;
        let partition = format!("assertion:{}", req.client_id);
        let result = self.client_jws(&req.token, &jwks)?.and_then(|p| {
            verify::check_times(&p.claims, now, skew, true)?;
            let (jti, exp) =
                client_assertion::check(&p.claims, &req.client_id, &req.audiences, now)?;
            // Every other check passed: remember the jti until the checked
            // expiry, in this caller's partition for this client.
            match self.replay.check_and_insert(
                &caller.key(),
                &partition,
                jti,
                exp.saturating_add(skew),
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
                        format!(
                            "this caller's replay cache for client {} is full; try again shortly",
                            req.client_id
                        ),
                    ))
                }
            }
            Ok(from_jwks(p))
        });
        let v = verdict(result);
        audit(&self.gate, &caller, "verify_client_assertion", &v).await?;
        Ok(Response::new(v))
    }
}

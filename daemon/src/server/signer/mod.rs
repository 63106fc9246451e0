//! The `Signer` service: generic JWS signing, the FAPI token operations, and
//! JWE decryption. Each handler checks the caller, turns the request into a
//! checked `fapi/` input, and hands the result to [`SignerService::issue`],
//! the one path that signs, encrypts and audits.
//!
//! `issue.rs` holds that path and the small helpers every handler shares;
//! this file is the handlers.

mod issue;

use issue::{claims_of, generic_allowed, invalid, jti, lifetime, optional};

use crate::audit::Event;
use crate::binding::cert;
use crate::error::Error;
use crate::fapi::{self, access_token, claims::Context, claims::Token};
use crate::jose::{jwe, jws};
use crate::keyring::keyset::{Profile, Purpose};
use crate::keyring::{now, Keyring};
use crate::server::caller::Gate;
use crate::server::status::{audit_code, device, to_status};
use custos_proto::v1 as pb;
use custos_proto::v1::signer_server::Signer;
use serde_json::Map;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `custos.v1.Signer`.
#[derive(Debug, Clone)]
pub(crate) struct SignerService {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) gate: Gate,
    pub(crate) max_batch: usize,
}

#[tonic::async_trait]
impl Signer for SignerService {
    async fn sign_jwt(
        &self,
        request: Request<pb::SignJwtRequest>,
    ) -> Result<Response<pb::SignJwtResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let purpose: Purpose = req.purpose.parse().map_err(invalid)?;
        let typ = optional(req.typ);
        let claims = claims_of(&req.claims_json);
        let signed = self
            .issue(
                caller,
                "sign_jwt",
                &req.keyset,
                purpose,
                None,
                |key, ctx| {
                    generic_allowed(key, purpose)?;
                    let claims = claims.map_err(|s| Error::invalid(s.message().to_string()))?;
                    fapi::generic::build(purpose, typ, claims, ctx)
                },
            )
            .await?
            .into_inner();
        Ok(Response::new(pb::SignJwtResponse {
            jws: signed.token,
            kid: signed.kid,
        }))
    }

    async fn sign_jwt_batch(
        &self,
        request: Request<pb::SignJwtBatchRequest>,
    ) -> Result<Response<pb::SignJwtBatchResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        if req.claims_json.is_empty() || req.claims_json.len() > self.max_batch {
            return Err(invalid(format!(
                "a batch has 1 to {} claim sets (got {}); see [limits] max_batch",
                self.max_batch,
                req.claims_json.len()
            )));
        }
        let purpose: Purpose = req.purpose.parse().map_err(invalid)?;
        let key = self.key(&req.keyset, purpose)?;
        generic_allowed(&key, purpose).map_err(to_status)?;
        let kid = key.kid.clone();
        let typ = optional(req.typ);
        let ctx = Context {
            now: now(),
            max_lifetime: key.max_token_lifetime,
            issuer: key.issuer.clone(),
        };
        // The rules run before the device is asked for anything.
        let tokens: Vec<Result<Token, Error>> = req
            .claims_json
            .iter()
            .map(|c| {
                jws::parse_claims(c)
                    .and_then(|m| fapi::generic::build(purpose, typ.clone(), m, &ctx))
            })
            .collect();
        // One trip to the blocking pool for the whole batch.
        let (guard, alg) = (key.guard.clone(), key.alg);
        let results: Vec<Result<jws::SignedJws, Error>> = device(&guard, alg, move || {
            Ok(tokens
                .into_iter()
                .map(|t| t.and_then(|t| jws::sign_jwt(&key, t.typ.as_deref(), &t.claims)))
                .collect())
        })
        .await?;
        // One audit line per item, written together (one write for the batch):
        // no token is returned unless its line is written.
        let mut items = Vec::with_capacity(results.len());
        let mut audited: Vec<(Option<String>, Option<String>)> = Vec::with_capacity(results.len());
        for r in results {
            let item = match r {
                Ok(jws::SignedJws {
                    token,
                    input_sha256,
                }) => {
                    audited.push((Some(input_sha256), None));
                    pb::batch_item::Result::Signed(pb::SignJwtResponse {
                        jws: token,
                        kid: kid.clone(),
                    })
                }
                Err(e) => {
                    let status = to_status(e);
                    let code = audit_code(&status);
                    audited.push((None, Some(code.clone())));
                    pb::batch_item::Result::Error(pb::ItemError {
                        code,
                        message: status.message().to_string(),
                    })
                }
            };
            items.push(pb::BatchItem { result: Some(item) });
        }
        let events: Vec<Event<'_>> = audited
            .iter()
            .map(|(digest, code)| Event {
                operation: "sign_jwt_batch",
                keyset: Some(&req.keyset),
                kid: digest.as_ref().map(|_| kid.as_str()),
                purpose: Some(purpose.as_str()),
                input_sha256: digest.clone(),
                outcome: if digest.is_some() { "ok" } else { "error" },
                detail: code.as_deref(),
            })
            .collect();
        self.gate
            .audit
            .record_all(&caller.to_json(), &events)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SignJwtBatchResponse { items }))
    }

    async fn sign_id_token(
        &self,
        request: Request<pb::SignIdTokenRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let input = fapi::id_token::IdTokenInput {
            claims: claims_of(&req.claims_json)?,
            code: optional(req.code),
            access_token: optional(req.access_token),
            state: optional(req.state),
            auth_req_id: optional(req.auth_req_id),
            refresh_token: optional(req.refresh_token),
        };
        self.issue(
            caller,
            "sign_id_token",
            &req.keyset,
            Purpose::IdToken,
            req.encrypt_to,
            |key, ctx| {
                // FAPI-CIBA (5.2.2) forbids push mode: only oidc keysets sign it.
                if input.auth_req_id.is_some() && key.profile != Profile::Oidc {
                    return Err(Error::FailedPrecondition(format!(
                        "CIBA push mode is not allowed under the {} profile (FAPI-CIBA forbids it); \
                         use a keyset with profile oidc",
                        key.profile.as_str()
                    )));
                }
                fapi::id_token::build(input, key.alg, ctx)
            },
        )
        .await
    }

    async fn sign_jarm_response(
        &self,
        request: Request<pb::SignJarmResponseRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let params = if req.params_json.trim().is_empty() {
            Map::new()
        } else {
            claims_of(&req.params_json)?
        };
        let input = fapi::jarm::JarmInput {
            client_id: req.client_id,
            lifetime: lifetime(req.lifetime_seconds),
            params,
            issuer: optional(req.issuer),
        };
        self.issue(
            caller,
            "sign_jarm_response",
            &req.keyset,
            Purpose::Jarm,
            req.encrypt_to,
            |_, ctx| fapi::jarm::build(input, ctx),
        )
        .await
    }

    async fn sign_request_object(
        &self,
        request: Request<pb::SignRequestObjectRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let claims = claims_of(&req.claims_json)?;
        let life = lifetime(req.lifetime_seconds);
        let ciba = fapi::ciba::is_ciba_kind(&req.kind).map_err(to_status)?;
        self.issue(
            caller,
            "sign_request_object",
            &req.keyset,
            Purpose::RequestObject,
            None,
            |_, ctx| {
                if ciba {
                    fapi::ciba::build(claims, life, jti(), ctx)
                } else {
                    fapi::request_object::build(claims, life, jti(), ctx)
                }
            },
        )
        .await
    }

    async fn sign_introspection_response(
        &self,
        request: Request<pb::SignIntrospectionResponseRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let response = claims_of(&req.response_json)?;
        let issuer = optional(req.issuer);
        self.issue(
            caller,
            "sign_introspection_response",
            &req.keyset,
            Purpose::Introspection,
            req.encrypt_to,
            |_, ctx| {
                let mut ctx = ctx.clone();
                match (&ctx.issuer, issuer) {
                    (Some(mine), Some(given)) if *mine != given => {
                        return Err(Error::invalid(format!(
                            "issuer {given:?} is not this keyset's issuer {mine:?}"
                        )))
                    }
                    (None, given) => ctx.issuer = given,
                    _ => {}
                }
                fapi::introspection::build(response, &req.audience, &ctx)
            },
        )
        .await
    }

    async fn sign_jws_input(
        &self,
        request: Request<pb::SignJwsInputRequest>,
    ) -> Result<Response<pb::SignJwsInputResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let purpose: Purpose = req.purpose.parse().map_err(invalid)?;
        let digest = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(req.signing_input.as_bytes()))
        };
        let result = async {
            let key = self.key(&req.keyset, purpose)?;
            if purpose == Purpose::Generic {
                generic_allowed(&key, purpose).map_err(to_status)?;
            }
            let ctx = Context {
                now: now(),
                max_lifetime: key.max_token_lifetime,
                issuer: key.issuer.clone(),
            };
            fapi::jws_input::check(&req.signing_input, purpose, key.alg, &key.kid, &ctx)
                .map_err(to_status)?;
            let (kid, alg, guard) = (key.kid.clone(), key.alg, key.guard.clone());
            let input = req.signing_input.clone();
            let signature = device(&guard, alg, move || key.sign(input.as_bytes())).await?;
            Ok::<_, Status>((signature, kid, alg))
        }
        .await;
        let result = result.map(|(signature, kid, alg)| {
            let reply = pb::SignJwsInputResponse {
                signature,
                kid: kid.clone(),
                alg: alg.as_str().to_string(),
            };
            (reply, kid, Some(digest.clone()))
        });
        self.audited(
            &caller,
            "sign_jws_input",
            &req.keyset,
            purpose,
            Some(digest.clone()),
            result,
        )
        .await
        .map(Response::new)
    }

    async fn sign_tls_handshake(
        &self,
        request: Request<pb::SignTlsHandshakeRequest>,
    ) -> Result<Response<pb::SignTlsHandshakeResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        self.sign_tls(caller, req).await.map(Response::new)
    }

    async fn sign_http_message(
        &self,
        request: Request<pb::SignHttpMessageRequest>,
    ) -> Result<Response<pb::SignHttpMessageResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        self.sign_http(caller, req).await.map(Response::new)
    }

    async fn sign_client_assertion(
        &self,
        request: Request<pb::SignClientAssertionRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let life = lifetime(req.lifetime_seconds);
        self.issue(
            caller,
            "sign_client_assertion",
            &req.keyset,
            Purpose::ClientAssertion,
            None,
            |_, ctx| fapi::client_assertion::build(&req.client_id, &req.audience, life, jti(), ctx),
        )
        .await
    }

    async fn sign_access_token(
        &self,
        request: Request<pb::SignAccessTokenRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        use pb::sign_access_token_request::Binding as B;
        let (caller, req) = self.gate.admit(request, "sign", |r| &r.keyset)?;
        let claims = claims_of(&req.claims_json)?;
        let binding = match req.binding {
            None => access_token::Binding::None,
            Some(B::ClientCertificate(c)) => {
                let der = cert::parse(&c).map_err(to_status)?;
                access_token::Binding::CertificateThumbprint(cert::x5t_s256(&der))
            }
            Some(B::Jkt(j)) => access_token::Binding::DpopJkt(j),
        };
        self.issue(
            caller,
            "sign_access_token",
            &req.keyset,
            Purpose::AccessToken,
            None,
            |_, ctx| access_token::build(claims, binding, jti(), ctx),
        )
        .await
    }

    async fn decrypt_jwe(
        &self,
        request: Request<pb::DecryptJweRequest>,
    ) -> Result<Response<pb::DecryptJweResponse>, Status> {
        let (caller, req) = self.gate.admit(request, "decrypt", |r| &r.keyset)?;
        if req.jwe.len() > 256 * 1024 {
            return Err(invalid("the JWE is larger than 256 KiB"));
        }
        let key = self
            .keyring
            .active_key(&req.keyset, Purpose::RequestObjectDecryption)
            .map_err(to_status)?;
        let kid = key.kid.clone();
        let jwe_text = req.jwe;
        let (guard, alg) = (key.guard.clone(), key.alg);
        let result = device(&guard, alg, move || jwe::decrypt(&key, &jwe_text)).await;
        let (outcome, detail) = match &result {
            Ok(_) => ("ok", None),
            Err(s) => ("error", Some(audit_code(s))),
        };
        self.audit(
            &caller,
            "decrypt_jwe",
            &req.keyset,
            Some(&kid),
            Purpose::RequestObjectDecryption,
            None,
            outcome,
            detail.as_deref(),
        )
        .await?;
        let (plaintext, header) = result?;
        Ok(Response::new(pb::DecryptJweResponse {
            plaintext,
            header_json: header.to_string(),
            kid,
        }))
    }
}

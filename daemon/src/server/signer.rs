//! The `Signer` service: generic JWS signing, the FAPI token operations, and
//! JWE decryption. Each handler checks the caller, turns the request into a
//! checked `fapi/` input, and hands the result to [`SignerService::issue`],
//! the one path that signs, encrypts and audits.

use super::caller::{Caller, Gate};
use super::status::{blocking, to_status};
use crate::binding::cert;
use crate::error::Error;
use crate::fapi::{self, access_token, claims::Context, claims::Token};
use crate::jose::{jwe, jws};
use crate::keyring::keyset::Purpose;
use crate::keyring::{ActiveKey, Keyring};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use custos_proto::v1 as pb;
use custos_proto::v1::signer_server::Signer;
use serde_json::{Map, Value};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `custos.v1.Signer`.
#[derive(Debug, Clone)]
pub(crate) struct SignerService {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) gate: Gate,
}

fn invalid(m: impl Into<String>) -> Status {
    to_status(Error::InvalidArgument(m.into()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh `jti`: 128 random bits, base64url.
fn jti() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

fn optional(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn lifetime(secs: i64) -> Option<i64> {
    (secs != 0).then_some(secs)
}

fn claims_of(json: &str) -> Result<Map<String, Value>, Status> {
    jws::parse_claims(json).map_err(to_status)
}

impl SignerService {
    fn key(&self, keyset: &str, purpose: Purpose) -> Result<ActiveKey, Status> {
        let key = self
            .keyring
            .active_key(keyset, purpose)
            .map_err(to_status)?;
        fapi::profile::check(key.profile, key.alg).map_err(to_status)?;
        Ok(key)
    }

    /// Builds the token with `build`, signs it on the device, encrypts it when
    /// asked, and writes the audit record.
    async fn issue(
        &self,
        caller: Caller,
        operation: &'static str,
        keyset: &str,
        purpose: Purpose,
        encrypt_to: Option<pb::Encryption>,
        build: impl FnOnce(&ActiveKey, &Context) -> Result<Token, Error>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let key = self.key(keyset, purpose)?;
        let ctx = Context {
            now: now(),
            max_lifetime: key.max_token_lifetime,
            issuer: key.issuer.clone(),
        };
        let token = build(&key, &ctx).map_err(to_status)?;
        let kid = key.kid.clone();
        let encrypt_to = encrypt_to.filter(|e| !e.recipient_jwk.is_empty());
        let encrypted = encrypt_to.is_some();
        let signed = blocking(move || {
            let jws = jws::sign_jwt(&key, token.typ, token.claims)?;
            match encrypt_to {
                Some(e) => jwe::encrypt_nested(&jws, &e.recipient_jwk, optional(e.enc).as_deref()),
                None => Ok(jws),
            }
        })
        .await?;
        tracing::info!(target: "custos::audit", %caller, operation, %keyset, %kid,
            %purpose, encrypted, outcome = "ok", "signed");
        Ok(Response::new(pb::SignedToken {
            token: signed,
            kid,
            encrypted,
        }))
    }
}

#[tonic::async_trait]
impl Signer for SignerService {
    async fn sign_jwt(
        &self,
        request: Request<pb::SignJwtRequest>,
    ) -> Result<Response<pb::SignJwtResponse>, Status> {
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
        let purpose: Purpose = req.purpose.parse().map_err(invalid)?;
        let key = self.key(&req.keyset, purpose)?;
        let claims = claims_of(&req.claims_json)?;
        let typ = optional(req.typ);
        let kid = key.kid.clone();
        let token = blocking(move || jws::sign_jwt(&key, typ.as_deref(), claims)).await?;
        tracing::info!(target: "custos::audit", %caller, operation = "sign_jwt",
            keyset = %req.keyset, %kid, %purpose, outcome = "ok", "signed");
        Ok(Response::new(pb::SignJwtResponse { jws: token, kid }))
    }

    async fn sign_id_token(
        &self,
        request: Request<pb::SignIdTokenRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
        let input = fapi::id_token::IdTokenInput {
            claims: claims_of(&req.claims_json)?,
            code: optional(req.code),
            access_token: optional(req.access_token),
            state: optional(req.state),
        };
        self.issue(
            caller,
            "sign_id_token",
            &req.keyset,
            Purpose::IdToken,
            req.encrypt_to,
            |key, ctx| fapi::id_token::build(input, key.alg, ctx),
        )
        .await
    }

    async fn sign_jarm_response(
        &self,
        request: Request<pb::SignJarmResponseRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
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
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
        let claims = claims_of(&req.claims_json)?;
        let life = lifetime(req.lifetime_seconds);
        self.issue(
            caller,
            "sign_request_object",
            &req.keyset,
            Purpose::RequestObject,
            None,
            |_, ctx| fapi::request_object::build(claims, life, jti(), ctx),
        )
        .await
    }

    async fn sign_client_assertion(
        &self,
        request: Request<pb::SignClientAssertionRequest>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
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
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
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
        let caller = self.gate.check(&request, "decrypt")?;
        let req = request.into_inner();
        if req.jwe.len() > 256 * 1024 {
            return Err(invalid("the JWE is larger than 256 KiB"));
        }
        let key = self
            .keyring
            .active_key(&req.keyset, Purpose::RequestObjectDecryption)
            .map_err(to_status)?;
        let kid = key.kid.clone();
        let jwe_text = req.jwe;
        let (plaintext, header) = blocking(move || jwe::decrypt(&key, &jwe_text)).await?;
        tracing::info!(target: "custos::audit", %caller, operation = "decrypt_jwe",
            keyset = %req.keyset, %kid, outcome = "ok", "decrypted");
        Ok(Response::new(pb::DecryptJweResponse {
            plaintext,
            header_json: header.to_string(),
            kid,
        }))
    }
}

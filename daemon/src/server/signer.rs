//! The `Signer` service: JWS signing with a keyset's active key.

use super::caller::Gate;
use super::status::{blocking, to_status};
use crate::error::Error;
use crate::fapi;
use crate::jose::jws;
use crate::keyring::keyset::Purpose;
use crate::keyring::Keyring;
use custos_proto::v1 as pb;
use custos_proto::v1::signer_server::Signer;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `custos.v1.Signer`.
#[derive(Debug, Clone)]
pub(crate) struct SignerService {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) gate: Gate,
}

#[tonic::async_trait]
impl Signer for SignerService {
    async fn sign_jwt(
        &self,
        request: Request<pb::SignJwtRequest>,
    ) -> Result<Response<pb::SignJwtResponse>, Status> {
        let caller = self.gate.check(&request, "sign")?;
        let req = request.into_inner();
        let purpose: Purpose = req
            .purpose
            .parse()
            .map_err(|m| to_status(Error::InvalidArgument(m)))?;
        let key = self
            .keyring
            .signing_key(&req.keyset, purpose)
            .map_err(to_status)?;
        fapi::profile::check(key.profile, key.alg).map_err(to_status)?;
        let claims = jws::parse_claims(&req.claims_json).map_err(to_status)?;
        let typ = Some(req.typ).filter(|t| !t.is_empty());
        let kid = key.kid.clone();
        let token = blocking(move || jws::sign_jwt(&key, typ.as_deref(), claims)).await?;
        tracing::info!(target: "custos::audit", %caller, operation = "sign_jwt",
            keyset = %req.keyset, %kid, %purpose, outcome = "ok", "signed");
        Ok(Response::new(pb::SignJwtResponse { jws: token, kid }))
    }
}

//! The `KeyAdmin` service: create, list and show keysets, and the JWKS.

use super::caller::Gate;
use super::convert;
use super::status::{blocking, to_status};
use crate::error::Error;
use crate::fapi;
use crate::jose;
use crate::keyring::keyset::{Profile, Purpose};
use crate::keyring::{Keyring, NewKeyset};
use custos_proto::v1 as pb;
use custos_proto::v1::key_admin_server::KeyAdmin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `custos.v1.KeyAdmin`.
#[derive(Debug, Clone)]
pub(crate) struct KeyAdminService {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) gate: Gate,
}

fn invalid(m: String) -> Status {
    to_status(Error::InvalidArgument(m))
}

#[tonic::async_trait]
impl KeyAdmin for KeyAdminService {
    async fn create_keyset(
        &self,
        request: Request<pb::CreateKeysetRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let caller = self.gate.check(&request, "admin")?;
        let req = request.into_inner();
        let alg = req.alg.parse().map_err(invalid)?;
        let profile: Profile = req.profile.parse().map_err(invalid)?;
        let purposes = req
            .purposes
            .iter()
            .map(|p| p.parse::<Purpose>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        fapi::profile::check_keyset(profile, alg, &purposes).map_err(to_status)?;
        let new = NewKeyset {
            name: req.name,
            alg,
            purposes,
            backend: Some(req.backend).filter(|b| !b.is_empty()),
            profile,
            issuer: Some(req.issuer).filter(|i| !i.is_empty()),
            max_token_lifetime: (req.max_token_lifetime != 0).then_some(req.max_token_lifetime),
        };
        let keyring = self.keyring.clone();
        let ks = blocking(move || keyring.create(new)).await?;
        tracing::info!(target: "custos::audit", %caller, operation = "create_keyset",
            keyset = %ks.name, kid = %ks.versions[0].kid, outcome = "ok", "keyset created");
        Ok(Response::new(convert::keyset(&ks)))
    }

    async fn list_keysets(
        &self,
        request: Request<pb::ListKeysetsRequest>,
    ) -> Result<Response<pb::ListKeysetsResponse>, Status> {
        self.gate.check(&request, "jwks")?;
        let snap = self.keyring.snapshot();
        Ok(Response::new(pb::ListKeysetsResponse {
            keysets: snap.keysets.values().map(convert::keyset).collect(),
        }))
    }

    async fn get_keyset(
        &self,
        request: Request<pb::GetKeysetRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        self.gate.check(&request, "jwks")?;
        let ks = self
            .keyring
            .keyset(&request.get_ref().name)
            .map_err(to_status)?;
        Ok(Response::new(convert::keyset(&ks)))
    }

    async fn get_jwks(
        &self,
        request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        self.gate.check(&request, "jwks")?;
        let name = &request.get_ref().keyset;
        let snap = self.keyring.snapshot();
        let jwks = if name.is_empty() {
            jose::jwks(snap.keysets.values())
        } else {
            let ks = self.keyring.keyset(name).map_err(to_status)?;
            jose::jwks([&ks])
        };
        Ok(Response::new(pb::GetJwksResponse {
            jwks_json: jwks.to_string(),
        }))
    }
}

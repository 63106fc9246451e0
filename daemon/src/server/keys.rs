//! The `KeyAdmin` service: create, list and show keysets, and the JWKS.

use super::caller::{Caller, Gate};
use super::convert;
use super::status::{audit_code, blocking, to_status};
use crate::error::Error;
use crate::fapi;
use crate::jose;
use crate::keyring::keyset::Keyset;
use crate::keyring::keyset::{Profile, Purpose};
use crate::keyring::policy::parse_duration;
use crate::keyring::requests::Guarded;
use crate::keyring::{Keyring, NewKeyset, PolicyUpdate};
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
    to_status(Error::invalid(m))
}

impl KeyAdminService {
    /// A keyset as the API shows it, with its backend's health.
    fn shown(&self, ks: &Keyset) -> pb::Keyset {
        pb::Keyset {
            backend_problem: self
                .keyring
                .guards()
                .get(&ks.backend)
                .and_then(|g| g.problem())
                .unwrap_or_default(),
            ..convert::keyset(ks)
        }
    }

    /// A state change of one version (activate, retire, disable): checked,
    /// run and audited like every admin change.
    async fn version_change(
        &self,
        request: Request<pb::VersionRequest>,
        operation: &'static str,
        right: &'static str,
        change: fn(&Keyring, &str, &str, &str) -> Result<Keyset, Error>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, right, |r| &r.name)?;
        let (name, kid) = (req.name.clone(), req.kid.clone());
        if operation == "disable_version" {
            let guarded = Guarded::DisableVersion {
                keyset: name.clone(),
                kid: kid.clone(),
            };
            if let Some(held) = self.hold(&caller, guarded).await {
                return Err(held);
            }
        }
        self.admin(caller, operation, &name, Some(&kid), move |k, by| {
            change(k, &req.name, &req.kid, by)
        })
        .await
    }

    /// Runs an admin change on the keyring off the runtime, as `caller`,
    /// and audits it (success or failure).
    async fn admin(
        &self,
        caller: Caller,
        operation: &str,
        keyset: &str,
        kid: Option<&str>,
        change: impl FnOnce(&Keyring, &str) -> Result<Keyset, Error> + Send + 'static,
    ) -> Result<Response<pb::Keyset>, Status> {
        let keyring = self.keyring.clone();
        let by = caller.to_string();
        let result = blocking(move || change(&keyring, &by)).await;
        let code = result.as_ref().err().map(audit_code);
        self.gate
            .audit_admin(
                &caller,
                operation,
                keyset,
                kid,
                result.is_ok(),
                code.as_deref(),
            )
            .await?;
        Ok(Response::new(self.shown(&result?)))
    }
}

#[tonic::async_trait]
impl KeyAdmin for KeyAdminService {
    async fn create_keyset(
        &self,
        request: Request<pb::CreateKeysetRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, "manage", |r| &r.name)?;
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
        let name = new.name.clone();
        self.admin(caller, "create_keyset", &name, None, move |k, by| {
            k.create(new, by)
        })
        .await
    }

    async fn list_keysets(
        &self,
        request: Request<pb::ListKeysetsRequest>,
    ) -> Result<Response<pb::ListKeysetsResponse>, Status> {
        let caller = self.gate.check(&request, "jwks", None)?;
        let snap = self.keyring.snapshot();
        Ok(Response::new(pb::ListKeysetsResponse {
            keysets: snap
                .keysets
                .values()
                .filter(|ks| self.gate.may(&caller, "jwks", Some(&ks.name)))
                .map(|ks| self.shown(ks))
                .collect(),
        }))
    }

    async fn get_keyset(
        &self,
        request: Request<pb::GetKeysetRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        self.gate
            .check(&request, "jwks", Some(&request.get_ref().name))?;
        let ks = self
            .keyring
            .keyset(&request.get_ref().name)
            .map_err(to_status)?;
        Ok(Response::new(self.shown(&ks)))
    }

    async fn get_jwks(
        &self,
        request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let name = &request.get_ref().keyset;
        let caller = self.gate.check(
            &request,
            "jwks",
            Some(name.as_str()).filter(|n| !n.is_empty()),
        )?;
        let snap = self.keyring.snapshot();
        let jwks = if name.is_empty() {
            // The issuer's published JWKS: its own keysets only, one issuer.
            let issuer = Some(request.get_ref().issuer.as_str()).filter(|i| !i.is_empty());
            let published: Vec<&Keyset> = snap
                .keysets
                .values()
                .filter(|ks| ks.published())
                .filter(|ks| issuer.is_none_or(|i| ks.issuer.as_deref() == Some(i)))
                .filter(|ks| self.gate.may(&caller, "jwks", Some(&ks.name)))
                .collect();
            let mut issuers: Vec<&str> = published
                .iter()
                .filter_map(|ks| ks.issuer.as_deref())
                .collect();
            issuers.sort_unstable();
            issuers.dedup();
            if issuers.len() > 1 {
                return Err(to_status(Error::FailedPrecondition(format!(
                    "the published keysets belong to {} issuers ({}); name one (CLI: --issuer) \
                     so a JWKS never mixes issuers",
                    issuers.len(),
                    issuers.join(", ")
                ))));
            }
            jose::jwks(published)
        } else {
            let ks = self.keyring.keyset(name).map_err(to_status)?;
            jose::jwks([&ks])
        };
        Ok(Response::new(pb::GetJwksResponse {
            jwks_json: jwks.to_string(),
        }))
    }

    async fn rotate_keyset(
        &self,
        request: Request<pb::RotateKeysetRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, "manage", |r| &r.name)?;
        let name = req.name.clone();
        self.admin(caller, "rotate_keyset", &name, None, move |k, by| {
            k.rotate(&req.name, req.now, by)
        })
        .await
    }

    async fn activate_version(
        &self,
        request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        self.version_change(request, "activate_version", "manage", Keyring::activate)
            .await
    }

    async fn retire_version(
        &self,
        request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        self.version_change(request, "retire_version", "manage", Keyring::retire)
            .await
    }

    async fn disable_version(
        &self,
        request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        self.version_change(request, "disable_version", "destroy", Keyring::disable)
            .await
    }

    async fn destroy_version(
        &self,
        request: Request<pb::DestroyVersionRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, "destroy", |r| &r.name)?;
        if !req.confirm {
            return Err(to_status(Error::FailedPrecondition(
                "destroying a key cannot be undone: confirm it (CLI: --yes)".into(),
            )));
        }
        let (name, kid) = (req.name.clone(), req.kid.clone());
        let guarded = Guarded::DestroyVersion {
            keyset: name.clone(),
            kid: kid.clone(),
        };
        if let Some(held) = self.hold(&caller, guarded).await {
            return Err(held);
        }
        self.admin(
            caller,
            "destroy_version",
            &name,
            Some(&kid),
            move |k, by| k.destroy(&req.name, &req.kid, by),
        )
        .await
    }

    async fn create_certificate_request(
        &self,
        request: Request<pb::CreateCertificateRequestRequest>,
    ) -> Result<Response<pb::CertificateRequest>, Status> {
        let (caller, req) = self.gate.admit(request, "manage", |r| &r.keyset)?;
        let keyring = self.keyring.clone();
        let name = req.keyset.clone();
        let result = blocking(move || {
            let kid = Some(req.kid.as_str()).filter(|k| !k.is_empty());
            keyring.certificate_request(&req.keyset, kid, &req.subject, &req.sans)
        })
        .await;
        let code = result.as_ref().err().map(audit_code);
        let kid = result.as_ref().ok().map(|(_, kid)| kid.clone());
        self.gate
            .audit_admin(
                &caller,
                "create_certificate_request",
                &name,
                kid.as_deref(),
                result.is_ok(),
                code.as_deref(),
            )
            .await?;
        let (csr_pem, kid) = result?;
        Ok(Response::new(pb::CertificateRequest { csr_pem, kid }))
    }

    async fn set_certificate(
        &self,
        request: Request<pb::SetCertificateRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, "manage", |r| &r.keyset)?;
        let name = req.keyset.clone();
        self.admin(caller, "set_certificate", &name, None, move |k, by| {
            k.set_certificate(&req.keyset, &req.chain_pem, by)
        })
        .await
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::Keyset>, Status> {
        let (caller, req) = self.gate.admit(request, "manage", |r| &r.name)?;
        let dur = |s: Option<String>| s.map(|s| parse_duration(&s)).transpose().map_err(invalid);
        let update = PolicyUpdate {
            rotation_period: match req.rotation_period.as_deref() {
                None => None,
                Some("none") | Some("") => Some(None),
                Some(s) => Some(Some(parse_duration(s).map_err(invalid)?)),
            },
            publish_ahead: dur(req.publish_ahead)?,
            retain_for: dur(req.retain_for)?,
            auto_destroy: req.auto_destroy,
        };
        let name = req.name.clone();
        let guarded = Guarded::SetPolicy {
            keyset: name.clone(),
            rotation_period: update.rotation_period,
            publish_ahead: update.publish_ahead,
            retain_for: update.retain_for,
            auto_destroy: update.auto_destroy,
        };
        if let Some(held) = self.hold(&caller, guarded).await {
            return Err(held);
        }
        self.admin(caller, "set_policy", &name, None, move |k, by| {
            k.set_policy(&req.name, update, by)
        })
        .await
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        self.gate.check(&request, "manage", None)?;
        Ok(Response::new(pb::ListRequestsResponse {
            requests: self
                .keyring
                .requests()
                .iter()
                .map(super::requests::shown)
                .collect(),
        }))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::PendingRequest>, Status> {
        let id = request.get_ref().id.clone();
        let (_, r) = self.request_caller(&request, &id, |_| "manage")?;
        Ok(Response::new(super::requests::shown(&r)))
    }

    async fn approve_request(
        &self,
        request: Request<pb::ApproveRequestRequest>,
    ) -> Result<Response<pb::PendingRequest>, Status> {
        let id = request.get_ref().id.clone();
        let (caller, r) = self.request_caller(&request, &id, Guarded::right)?;
        let req = request.into_inner();
        self.decide(caller, r, Some(req.digest), String::new())
            .await
            .map(Response::new)
    }

    async fn reject_request(
        &self,
        request: Request<pb::RejectRequestRequest>,
    ) -> Result<Response<pb::PendingRequest>, Status> {
        let id = request.get_ref().id.clone();
        let (caller, r) = self.request_caller(&request, &id, Guarded::right)?;
        let req = request.into_inner();
        self.decide(caller, r, None, req.reason)
            .await
            .map(Response::new)
    }
}

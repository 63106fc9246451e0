//! Key administration: keysets and their versions, JWKS, certificates,
//! dual-control requests and policies.

use crate::{proto, version, Client, Error, KeysetSpec};

impl Client {
    /// Creates a keyset and its first active key.
    ///
    /// # Errors
    /// The daemon's status: `ALREADY_EXISTS`, `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, ...
    pub async fn create_keyset(&self, spec: KeysetSpec) -> Result<proto::Keyset, Error> {
        let req = proto::CreateKeysetRequest {
            name: spec.name,
            alg: spec.alg,
            purposes: spec.purposes,
            backend: spec.backend.unwrap_or_default(),
            profile: spec.profile.unwrap_or_default(),
            issuer: spec.issuer.unwrap_or_default(),
            max_token_lifetime: spec.max_token_lifetime.unwrap_or_default(),
        };
        Ok(self.keys.clone().create_keyset(req).await?.into_inner())
    }

    /// Lists every keyset.
    ///
    /// # Errors
    /// The daemon's status.
    pub async fn list_keysets(&self) -> Result<Vec<proto::Keyset>, Error> {
        Ok(self
            .keys
            .clone()
            .list_keysets(proto::ListKeysetsRequest {})
            .await?
            .into_inner()
            .keysets)
    }

    /// One keyset by name.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown keyset.
    pub async fn get_keyset(&self, name: &str) -> Result<proto::Keyset, Error> {
        let req = proto::GetKeysetRequest { name: name.into() };
        Ok(self.keys.clone().get_keyset(req).await?.into_inner())
    }

    /// The JWK Set of one keyset, or with `None` the authorization server's
    /// published JWKS (its own keysets only: never client, HTTP-message or
    /// generic keys), as JSON text.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown keyset; `FAILED_PRECONDITION` when the
    /// published keysets name several issuers (use [`Client::issuer_jwks`]).
    pub async fn jwks(&self, keyset: Option<&str>) -> Result<String, Error> {
        self.get_jwks(keyset.unwrap_or_default(), "").await
    }

    /// The published JWKS of one issuer's keysets, as JSON text.
    ///
    /// # Errors
    /// Transport and status errors.
    pub async fn issuer_jwks(&self, issuer: &str) -> Result<String, Error> {
        self.get_jwks("", issuer).await
    }

    async fn get_jwks(&self, keyset: &str, issuer: &str) -> Result<String, Error> {
        let req = proto::GetJwksRequest {
            keyset: keyset.into(),
            issuer: issuer.into(),
        };
        Ok(self
            .keys
            .clone()
            .get_jwks(req)
            .await?
            .into_inner()
            .jwks_json)
    }

    /// Makes a new key version: pending, or active at once with `now`.
    ///
    /// # Errors
    /// `NOT_FOUND`, or the device's failure.
    pub async fn rotate(&self, name: &str, now: bool) -> Result<proto::Keyset, Error> {
        let req = proto::RotateKeysetRequest {
            name: name.into(),
            now,
        };
        Ok(self.keys.clone().rotate_keyset(req).await?.into_inner())
    }

    /// Promotes a pending version early, or rolls back to a retired one.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for a disabled or destroyed version.
    pub async fn activate(&self, name: &str, kid: &str) -> Result<proto::Keyset, Error> {
        Ok(self
            .keys
            .clone()
            .activate_version(version(name, kid))
            .await?
            .into_inner())
    }

    /// Retires a pending version.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for the active version.
    pub async fn retire(&self, name: &str, kid: &str) -> Result<proto::Keyset, Error> {
        Ok(self
            .keys
            .clone()
            .retire_version(version(name, kid))
            .await?
            .into_inner())
    }

    /// Disables a version: out of the JWKS, refused by every verification.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for the active version.
    pub async fn disable(&self, name: &str, kid: &str) -> Result<proto::Keyset, Error> {
        Ok(self
            .keys
            .clone()
            .disable_version(version(name, kid))
            .await?
            .into_inner())
    }

    /// Destroys a version's key on the device; `confirm` must be true.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for the active version or without confirmation.
    pub async fn destroy(
        &self,
        name: &str,
        kid: &str,
        confirm: bool,
    ) -> Result<proto::Keyset, Error> {
        let req = proto::DestroyVersionRequest {
            name: name.into(),
            kid: kid.into(),
            confirm,
        };
        Ok(self.keys.clone().destroy_version(req).await?.into_inner())
    }

    /// A PKCS#10 certificate request (PEM) for a TLS keyset's active key
    /// (or its pending version `kid`), signed inside the device.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for a keyset that is not a TLS one;
    /// `INVALID_ARGUMENT` for a subject or SAN that does not parse.
    pub async fn create_certificate_request(
        &self,
        keyset: &str,
        kid: Option<&str>,
        subject: &str,
        sans: &[String],
    ) -> Result<proto::CertificateRequest, Error> {
        let req = proto::CreateCertificateRequestRequest {
            keyset: keyset.into(),
            subject: subject.into(),
            sans: sans.to_vec(),
            kid: kid.unwrap_or_default().into(),
        };
        Ok(self
            .keys
            .clone()
            .create_certificate_request(req)
            .await?
            .into_inner())
    }

    /// Stores the certificate chain (PEM, leaf first) a CA issued for one of
    /// a TLS keyset's keys.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` when the leaf certifies none of the keyset's keys.
    pub async fn set_certificate(
        &self,
        keyset: &str,
        chain_pem: &str,
    ) -> Result<proto::Keyset, Error> {
        let req = proto::SetCertificateRequest {
            keyset: keyset.into(),
            chain_pem: chain_pem.into(),
        };
        Ok(self.keys.clone().set_certificate(req).await?.into_inner())
    }

    /// Dual control: every request (pending and decided).
    ///
    /// # Errors
    /// `PERMISSION_DENIED` without the manage right.
    pub async fn list_requests(&self) -> Result<Vec<proto::PendingRequest>, Error> {
        Ok(self
            .keys
            .clone()
            .list_requests(proto::ListRequestsRequest {})
            .await?
            .into_inner()
            .requests)
    }

    /// One dual-control request, with the digest to approve.
    ///
    /// # Errors
    /// `NOT_FOUND`.
    pub async fn get_request(&self, id: &str) -> Result<proto::PendingRequest, Error> {
        let req = proto::GetRequestRequest { id: id.into() };
        Ok(self.keys.clone().get_request(req).await?.into_inner())
    }

    /// Approves request `id` whose digest is `digest` (as `get_request` showed it).
    ///
    /// # Errors
    /// `PERMISSION_DENIED` for the requester; `FAILED_PRECONDITION` for a
    /// second approval by the same caller, an expired or decided request, or
    /// a digest that is not the request's.
    pub async fn approve_request(
        &self,
        id: &str,
        digest: &str,
    ) -> Result<proto::PendingRequest, Error> {
        let req = proto::ApproveRequestRequest {
            id: id.into(),
            digest: digest.into(),
        };
        Ok(self.keys.clone().approve_request(req).await?.into_inner())
    }

    /// Rejects (or withdraws) request `id`.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` for a request no longer pending.
    pub async fn reject_request(
        &self,
        id: &str,
        reason: &str,
    ) -> Result<proto::PendingRequest, Error> {
        let req = proto::RejectRequestRequest {
            id: id.into(),
            reason: reason.into(),
        };
        Ok(self.keys.clone().reject_request(req).await?.into_inner())
    }

    /// Changes a keyset's rotation policy.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for durations that do not parse or a retention
    /// shorter than the keyset's maximum token lifetime.
    pub async fn set_policy(&self, req: proto::SetPolicyRequest) -> Result<proto::Keyset, Error> {
        Ok(self.keys.clone().set_policy(req).await?.into_inner())
    }
}

//! Verification: access tokens, JWS, request objects, client assertions
//! and HTTP message signatures.

use crate::{proto, Client, Error};

impl Client {
    /// Verifies an access token from this keyring with its mTLS or DPoP binding.
    /// An invalid token is `Ok` with `valid == false` and a reason.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a request that cannot be checked (e.g. a certificate that does not parse).
    pub async fn verify_access_token(
        &self,
        req: proto::VerifyAccessTokenRequest,
    ) -> Result<proto::Verdict, Error> {
        Ok(self
            .verifier
            .clone()
            .verify_access_token(req)
            .await?
            .into_inner())
    }

    /// Verifies a compact JWS against a keyset or a JWKS.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown keyset, `INVALID_ARGUMENT` for a bad JWKS.
    pub async fn verify_jws(&self, req: proto::VerifyJwsRequest) -> Result<proto::Verdict, Error> {
        Ok(self.verifier.clone().verify_jws(req).await?.into_inner())
    }

    /// Verifies a client's request object against its JWKS.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a bad JWKS or missing parameters.
    pub async fn verify_request_object(
        &self,
        req: proto::VerifyRequestObjectRequest,
    ) -> Result<proto::Verdict, Error> {
        Ok(self
            .verifier
            .clone()
            .verify_request_object(req)
            .await?
            .into_inner())
    }

    /// Verifies an RFC 9421 HTTP message signature (and the body's Content-Digest).
    /// An invalid signature is `Ok` with `valid == false` and a reason.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a malformed message, component list or JWKS.
    pub async fn verify_http_message(
        &self,
        req: proto::VerifyHttpMessageRequest,
    ) -> Result<proto::Verdict, Error> {
        Ok(self
            .verifier
            .clone()
            .verify_http_message(req)
            .await?
            .into_inner())
    }

    /// Verifies a client's `private_key_jwt` assertion; a reused `jti` is refused.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a bad JWKS or missing parameters.
    pub async fn verify_client_assertion(
        &self,
        req: proto::VerifyClientAssertionRequest,
    ) -> Result<proto::Verdict, Error> {
        Ok(self
            .verifier
            .clone()
            .verify_client_assertion(req)
            .await?
            .into_inner())
    }
}

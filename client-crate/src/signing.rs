//! Signing: the FAPI token kinds, generic JWS, batches, TLS handshakes,
//! HTTP messages, and JWE decryption.

use crate::{proto, Client, Error};

impl Client {
    /// Signs a JSON object of claims with a keyset's active key.
    ///
    /// # Errors
    /// `NOT_FOUND`, `INVALID_ARGUMENT` (claims), `FAILED_PRECONDITION` (purpose),
    /// `UNAVAILABLE` (device).
    pub async fn sign_jwt(
        &self,
        keyset: &str,
        purpose: &str,
        typ: Option<&str>,
        claims_json: &str,
    ) -> Result<proto::SignJwtResponse, Error> {
        let req = proto::SignJwtRequest {
            keyset: keyset.into(),
            purpose: purpose.into(),
            typ: typ.unwrap_or_default().into(),
            claims_json: claims_json.into(),
        };
        Ok(self.signer.clone().sign_jwt(req).await?.into_inner())
    }

    /// Signs an OpenID Connect ID token; Custos computes `c_hash`, `at_hash`
    /// and `s_hash` from the code, access token and state given.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the claim at fault, or the keyset's refusals.
    pub async fn sign_id_token(
        &self,
        req: proto::SignIdTokenRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self.signer.clone().sign_id_token(req).await?.into_inner())
    }

    /// Signs a JARM authorization response.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for mixed or unknown parameters, or the keyset's refusals.
    pub async fn sign_jarm_response(
        &self,
        req: proto::SignJarmResponseRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self
            .signer
            .clone()
            .sign_jarm_response(req)
            .await?
            .into_inner())
    }

    /// Signs an RFC 9101 request object with a client's key.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the claim at fault, or the keyset's refusals.
    pub async fn sign_request_object(
        &self,
        req: proto::SignRequestObjectRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self
            .signer
            .clone()
            .sign_request_object(req)
            .await?
            .into_inner())
    }

    /// Signs a `private_key_jwt` client assertion with a fresh `jti`.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for an empty client id or audience, or the keyset's refusals.
    pub async fn sign_client_assertion(
        &self,
        req: proto::SignClientAssertionRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self
            .signer
            .clone()
            .sign_client_assertion(req)
            .await?
            .into_inner())
    }

    /// Signs a caller-built JWS signing input (`header.payload`) for an
    /// authorization server with external signing; returns the raw signature.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the header or claim rule broken;
    /// `FAILED_PRECONDITION` for a purpose signed only by its typed RPC.
    pub async fn sign_jws_input(
        &self,
        req: proto::SignJwsInputRequest,
    ) -> Result<proto::SignJwsInputResponse, Error> {
        Ok(self.signer.clone().sign_jws_input(req).await?.into_inner())
    }

    /// Signs an RFC 9068 access token, optionally certificate- or DPoP-bound.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the claim at fault or a bad certificate, or the keyset's refusals.
    pub async fn sign_access_token(
        &self,
        req: proto::SignAccessTokenRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self
            .signer
            .clone()
            .sign_access_token(req)
            .await?
            .into_inner())
    }

    /// Decrypts a JWE encrypted to an RSA-OAEP-256 keyset, inside the device.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a JWE that is malformed or does not decrypt.
    pub async fn decrypt_jwe(
        &self,
        keyset: &str,
        jwe: &str,
    ) -> Result<proto::DecryptJweResponse, Error> {
        let req = proto::DecryptJweRequest {
            keyset: keyset.into(),
            jwe: jwe.into(),
        };
        Ok(self.signer.clone().decrypt_jwe(req).await?.into_inner())
    }

    /// Signs an RFC 9701 token introspection response (typ token-introspection+jwt).
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the member at fault, or the keyset's refusals.
    pub async fn sign_introspection_response(
        &self,
        req: proto::SignIntrospectionResponseRequest,
    ) -> Result<proto::SignedToken, Error> {
        Ok(self
            .signer
            .clone()
            .sign_introspection_response(req)
            .await?
            .into_inner())
    }

    /// Signs an HTTP request or response (RFC 9421) with a keyset's active key,
    /// returning the Signature-Input, Signature and Content-Digest values to add.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a malformed message or component, or the keyset's refusals.
    pub async fn sign_http_message(
        &self,
        req: proto::SignHttpMessageRequest,
    ) -> Result<proto::SignHttpMessageResponse, Error> {
        Ok(self
            .signer
            .clone()
            .sign_http_message(req)
            .await?
            .into_inner())
    }

    /// Signs many claim sets in one call; each item succeeds or fails alone.
    ///
    /// # Errors
    /// A status for the whole call (unknown keyset, too many items, ...).
    pub async fn sign_jwt_batch(
        &self,
        keyset: &str,
        purpose: &str,
        typ: Option<&str>,
        claims_json: Vec<String>,
    ) -> Result<Vec<proto::BatchItem>, Error> {
        let req = proto::SignJwtBatchRequest {
            keyset: keyset.into(),
            purpose: purpose.into(),
            typ: typ.unwrap_or_default().into(),
            claims_json,
        };
        Ok(self
            .signer
            .clone()
            .sign_jwt_batch(req)
            .await?
            .into_inner()
            .items)
    }

    /// Signs a TLS handshake message with a TLS keyset's active key (what
    /// the `rustls` feature's signing key calls).
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a scheme the key does not sign or a message
    /// that is not that side's handshake input; `FAILED_PRECONDITION` when
    /// `kid` is set and is not the active version.
    pub async fn sign_tls_handshake(
        &self,
        req: proto::SignTlsHandshakeRequest,
    ) -> Result<proto::SignTlsHandshakeResponse, Error> {
        Ok(self
            .signer
            .clone()
            .sign_tls_handshake(req)
            .await?
            .into_inner())
    }
}

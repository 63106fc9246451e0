//! # custos-client
//!
//! A typed async client for the Custos signing daemon, for any Rust FAPI
//! server (and the `custos` CLI, which is built on it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), custos_client::Error> {
//! let client = custos_client::Client::connect_unix("/run/custos/custos.sock").await?;
//! let signed = client
//!     .sign_jwt("as-id-token", "id_token", None, r#"{"sub":"alice"}"#)
//!     .await?;
//! println!("{} (kid {})", signed.jws, signed.kid);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use custos_proto::v1::key_admin_client::KeyAdminClient;
use custos_proto::v1::signer_client::SignerClient;
use custos_proto::v1::verifier_client::VerifierClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated protocol types (`custos.v1`), for callers that need them.
pub use custos_proto::v1 as proto;

pub mod audit;
pub mod bench;
pub mod http;
#[cfg(feature = "rustls")]
pub mod tls;

/// A client failure: either the daemon could not be reached, or it answered
/// with a gRPC error status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be reached.
    #[error("cannot reach custosd at {path}: {reason}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The daemon refused or failed the call.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// What the daemon returned cannot be used as asked (for example a TLS
    /// keyset whose active key has no certificate yet).
    #[error("{0}")]
    Input(String),
}

impl Error {
    /// The gRPC status, when the daemon answered.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(s) => Some(s),
            Error::Connect { .. } | Error::Input(_) => None,
        }
    }
}

/// Options for creating a keyset.
#[derive(Debug, Clone, Default)]
pub struct KeysetSpec {
    /// Keyset name.
    pub name: String,
    /// JOSE algorithm: ES256, PS256, EdDSA or RS256.
    pub alg: String,
    /// Purposes, e.g. `id_token`.
    pub purposes: Vec<String>,
    /// Backend name; `None` for the daemon's default.
    pub backend: Option<String>,
    /// FAPI profile (`fapi2` when `None`).
    pub profile: Option<String>,
    /// Issuer every token of the keyset must carry.
    pub issuer: Option<String>,
    /// Longest token lifetime in seconds (`None`: one hour).
    pub max_token_lifetime: Option<i64>,
}

/// A connection to `custosd`. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    keys: KeyAdminClient<Channel>,
    signer: SignerClient<Channel>,
    verifier: VerifierClient<Channel>,
    channel: Channel,
}

impl Client {
    /// Connects to the daemon's Unix socket.
    ///
    /// # Errors
    /// [`Error::Connect`] when nothing listens there.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let connect_err = |reason: String| Error::Connect {
            path: path.clone(),
            reason,
        };
        // The URI is a placeholder required by tonic; the connector ignores it.
        let endpoint =
            Endpoint::try_from("http://custosd.invalid").map_err(|e| connect_err(e.to_string()))?;
        let socket = path.clone();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| connect_err(error_chain(&e)))?;
        Ok(Self::from_channel(channel))
    }

    /// Connects over TCP with mutual TLS: `url` like `https://custos.bank:7443`,
    /// the client's certificate and key (PEM), and the CA (PEM) that issued
    /// the daemon's certificate.
    ///
    /// # Errors
    /// [`Error::Connect`] when the URL is bad, the daemon is unreachable, or
    /// the TLS handshake fails.
    pub async fn connect_tls(
        url: &str,
        client_cert_pem: &[u8],
        client_key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Self, Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let connect_err = |reason: String| Error::Connect {
            path: PathBuf::from(url),
            reason,
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(client_cert_pem, client_key_pem));
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| connect_err(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| connect_err(e.to_string()))?
            .connect()
            .await
            .map_err(|e| connect_err(error_chain(&e)))?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel (for custom transports).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            keys: KeyAdminClient::new(channel.clone()),
            signer: SignerClient::new(channel.clone()),
            verifier: VerifierClient::new(channel.clone()),
            channel,
        }
    }

    /// The underlying channel (for health checks or generated clients).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    reason
}

fn version(name: &str, kid: &str) -> proto::VersionRequest {
    proto::VersionRequest {
        name: name.into(),
        kid: kid.into(),
    }
}

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

mod admin;
pub mod audit;
pub mod bench;
pub mod http;
mod signing;
#[cfg(feature = "rustls")]
pub mod tls;
mod verifying;

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

    /// For an UNAVAILABLE answer, what was down: `device`, `keyring-store`,
    /// `audit-log` or `contention` (the daemon's `custos-unavailable`
    /// metadata). `device` is the one worth sending to another custosd.
    pub fn outage(&self) -> Option<&str> {
        self.metadata("custos-unavailable")
    }

    /// The backend a device outage names (`custos-backend`), when known.
    pub fn backend(&self) -> Option<&str> {
        self.metadata("custos-backend")
    }

    /// For a NOT_FOUND answer, what was missing: `keyset`, `version`,
    /// `backend` or `request` (`custos-missing`).
    pub fn missing(&self) -> Option<&str> {
        self.metadata("custos-missing")
    }

    /// For a RESOURCE_EXHAUSTED answer (the rate limit), how long to wait
    /// before the next call can succeed (the standard `google.rpc.RetryInfo`
    /// detail).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        use tonic_types::StatusExt;
        self.status()?.get_details_retry_info()?.retry_delay
    }

    /// For an INVALID_ARGUMENT answer about one claim, its name as
    /// `claims.<name>` (the standard `google.rpc.BadRequest` field violation).
    pub fn invalid_field(&self) -> Option<String> {
        use tonic_types::StatusExt;
        let bad = self.status()?.get_details_bad_request()?;
        bad.field_violations.into_iter().next().map(|v| v.field)
    }

    fn metadata(&self, key: &str) -> Option<&str> {
        self.status()?.metadata().get(key)?.to_str().ok()
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

pub(crate) fn version(name: &str, kid: &str) -> proto::VersionRequest {
    proto::VersionRequest {
        name: name.into(),
        kid: kid.into(),
    }
}

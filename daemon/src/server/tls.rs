//! The optional TCP listener with mutual TLS (rustls): a client without a
//! certificate, with one not issued by `client_ca`, expired, or revoked by
//! a `client_crl`, never reaches a service.
//!
//! Limits, all from `[server]`: at most `max_connections` connections at
//! once (more wait in the kernel's backlog), handshakes that take longer
//! than `handshake_timeout` are dropped (they run concurrently, so a slow
//! client cannot hold up the others), and a connection that sends nothing
//! for `idle_timeout` is closed. The certificate, key, CA and CRLs are read
//! again on SIGHUP ([`Tls::reload`]); a bad reload keeps the old settings.

use super::caller::Caller;
use crate::config::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

/// Where the listener's own certificate and key come from.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    /// A PEM chain and a PEM private key file (a secret file).
    Files {
        /// Our certificate chain (PEM).
        cert: PathBuf,
        /// Our private key (PEM, a secret file).
        key: PathBuf,
    },
    /// A `tls_server` keyset: key in the device, chain stored on the keyset.
    Keyset(Arc<super::tls_key::KeysetCertificate>),
}

/// The files the TLS settings are built from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// Our certificate and key.
    pub identity: Identity,
    /// CA certificates that issue client certificates (PEM).
    pub client_ca: PathBuf,
    /// CRLs of that CA (PEM), possibly none.
    pub client_crl: Vec<PathBuf>,
}

/// The listener's settings: the rustls config (replaced on reload) and the limits.
#[derive(Debug)]
pub(crate) struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

impl Tls {
    /// Reads the files and the limits of `server`.
    ///
    /// # Errors
    /// A message naming the file or setting at fault.
    pub(crate) fn new(files: TlsFiles, server: &ServerConfig) -> Result<Self, String> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            config: RwLock::new(Arc::new(config)),
            max_connections: server.max_connections,
            handshake_timeout: ServerConfig::duration(
                "handshake_timeout",
                &server.handshake_timeout,
            )?,
            idle_timeout: ServerConfig::duration("idle_timeout", &server.idle_timeout)?,
        })
    }

    /// Reads the certificate, key, CA and CRLs again; new connections use
    /// them. On error the old settings stay.
    ///
    /// # Errors
    /// A message naming the file at fault.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.files)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn pem_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// Builds the rustls server config: our certificate, client certificates
/// required, verified against `client_ca` and checked against the CRLs,
/// HTTP/2 only.
///
/// # Errors
/// A message naming the file at fault.
pub(crate) fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&files.client_ca, "client_ca")? {
        roots
            .add(ca)
            .map_err(|e| format!("client_ca {}: {e}", files.client_ca.display()))?;
    }
    let mut crls = Vec::new();
    for path in &files.client_crl {
        let found: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_file_iter(path)
                .map_err(|e| format!("client_crl {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client_crl {}: {e}", path.display()))?;
        if found.is_empty() {
            return Err(format!(
                "client_crl {}: no PEM \"X509 CRL\" block in the file",
                path.display()
            ));
        }
        crls.extend(found);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| format!("client_ca/client_crl: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier);
    let mut config = match &files.identity {
        Identity::Files { cert, key } => {
            let certs = pem_certs(cert, "tls_cert")?;
            let key_pem = crate::files::read_trusted(key, crate::files::Kind::Secret)
                .map_err(|e| format!("tls_key: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
            builder
                .with_single_cert(certs, key)
                .map_err(|e| format!("tls_cert/tls_key: {e}"))?
        }
        Identity::Keyset(resolver) => builder.with_cert_resolver(resolver.clone()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// An established TLS connection: holds its place among `max_connections`
/// and is closed after `idle_timeout` without a byte from the client.
pub(crate) struct Conn {
    inner: TlsStream<TcpStream>,
    peer: TlsPeer,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
    _place: tokio::sync::OwnedSemaphorePermit,
}

/// What every request on one TLS connection carries: the client
/// certificate's identity, read once when the handshake completed. The
/// certificate cannot change on an established connection (rustls does not
/// renegotiate), so parsing it per request would only repeat work.
#[derive(Debug, Clone)]
pub(crate) struct TlsPeer {
    /// The verified client's identity; `None` when its certificate could
    /// not be parsed (every call is then refused as unidentified).
    pub(crate) caller: Option<Arc<Caller>>,
}

impl Connected for Conn {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let deadline = tokio::time::Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(deadline);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle TLS connection closed ([server] idle_timeout)",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

use std::future::Future;

/// Accepts TCP connections (at most `max_connections` at once) and
/// completes TLS handshakes, yielding the established connections; failed
/// and slow handshakes are logged and dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Conn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let places = Arc::new(tokio::sync::Semaphore::new(tls.max_connections));
    tokio::spawn(async move {
        loop {
            let Ok(place) = places.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    continue;
                }
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let (handshake_timeout, idle_timeout) = (tls.handshake_timeout, tls.idle_timeout);
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let caller = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .and_then(|leaf| Caller::from_certificate(leaf.as_ref()))
                            .map(Arc::new);
                        let conn = Conn {
                            inner: stream,
                            peer: TlsPeer { caller },
                            idle: Box::pin(tokio::time::sleep(idle_timeout)),
                            idle_timeout,
                            _place: place,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => {
                        tracing::warn!(%peer, "TLS handshake timed out ([server] handshake_timeout)")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

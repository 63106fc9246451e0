//! Mutual TLS with a transport key that stays in Custos (feature `rustls`).
//!
//! FAPI clients authenticate with mutual TLS (RFC 8705) and get
//! certificate-bound tokens; their transport key deserves the HSM as much as
//! a signing key. rustls signs through the [`SigningKey`] / [`Signer`] seam,
//! so a [`TlsKeys`] hands rustls a key whose every handshake signature is a
//! `SignTlsHandshake` call on a Custos TLS keyset (purpose `tls_client` or
//! `tls_server`), with the certificate chain stored on the keyset.
//!
//! rustls signs synchronously, inside a handshake that may itself run on an
//! async runtime. [`TlsKeys`] therefore owns one thread with its own
//! single-threaded runtime and its own connection to custosd: a handshake
//! hands its message over a channel and waits (at most
//! [`TlsKeys::SIGN_TIMEOUT`]) for the answer. It never blocks on, or
//! deadlocks with, the caller's runtime, and works without one.
//!
//! Every handshake asks custosd for the keyset's active version, so a
//! rotation (and the certificate stored for the new key) takes effect at the
//! next connection; a version without a certificate presents none. Client
//! configurations resume no sessions, so a disabled key stops the very next
//! connection rather than when a session ticket expires.
//!
//! ```no_run
//! # fn demo(roots: rustls::RootCertStore) -> Result<(), custos_client::Error> {
//! let keys = custos_client::tls::TlsKeys::connect_unix("/run/custos/custos.sock")?;
//! let config = keys.client_config("bank-transport", roots)?;
//! // hand `config` to tokio-rustls, hyper-rustls, reqwest, ...
//! # Ok(()) }
//! ```

use crate::{proto, Client, Error};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// One request to the bridge thread.
enum Job {
    Sign(
        proto::SignTlsHandshakeRequest,
        mpsc::Sender<Result<proto::SignTlsHandshakeResponse, Error>>,
    ),
    Keyset(String, mpsc::Sender<Result<proto::Keyset, Error>>),
}

/// A connection to custosd for TLS keys, usable from synchronous code (rustls's
/// signing callbacks). Cheap to clone; the bridge thread ends when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct TlsKeys {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Sign(..) => "Job::Sign",
            Job::Keyset(..) => "Job::Keyset",
        })
    }
}

impl TlsKeys {
    /// How long a handshake waits for custosd before it fails.
    pub const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts the bridge thread and connects it to custosd's Unix socket.
    /// Blocks until connected (call it from `spawn_blocking` inside async code
    /// that must not block).
    ///
    /// # Errors
    /// [`Error::Connect`] when nothing listens there.
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::Builder::new()
            .name("custos-tls-keys".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Connect {
                            path: path.clone(),
                            reason: format!("cannot start the TLS key thread's runtime: {e}"),
                        }));
                        return;
                    }
                };
                let client = match runtime.block_on(Client::connect_unix(&path)) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    match job {
                        Job::Sign(req, reply) => {
                            let _ = reply.send(runtime.block_on(client.sign_tls_handshake(req)));
                        }
                        Job::Keyset(name, reply) => {
                            let _ = reply.send(runtime.block_on(client.get_keyset(&name)));
                        }
                    }
                }
            })
            .map_err(|e| Error::Connect {
                path: PathBuf::from("custos-tls-keys"),
                reason: format!("cannot start the TLS key thread: {e}"),
            })?;
        ready.recv().map_err(|_| gone())??;
        Ok(Self { jobs })
    }

    fn ask<T>(&self, job: impl FnOnce(mpsc::Sender<Result<T, Error>>) -> Job) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        self.jobs.send(job(tx)).map_err(|_| gone())?;
        rx.recv_timeout(Self::SIGN_TIMEOUT).map_err(|_| gone())?
    }

    /// The keyset as custosd shows it (blocking).
    ///
    /// # Errors
    /// The daemon's status (`NOT_FOUND`, `PERMISSION_DENIED`, ...).
    pub fn keyset(&self, name: &str) -> Result<proto::Keyset, Error> {
        self.ask(|tx| Job::Keyset(name.to_string(), tx))
    }

    /// The keyset's active version as a rustls [`CertifiedKey`]: its stored
    /// certificate chain and a signing key bound to that version.
    ///
    /// # Errors
    /// The daemon's status; [`Error::Input`] when the keyset is not a TLS
    /// keyset, or its active version has no certificate yet.
    pub fn certified_key(&self, keyset: &str) -> Result<Arc<CertifiedKey>, Error> {
        let ks = self.keyset(keyset)?;
        let purpose = ks
            .purposes
            .iter()
            .find(|p| *p == "tls_client" || *p == "tls_server")
            .cloned()
            .ok_or_else(|| {
                Error::Input(format!(
                    "keyset {keyset:?} is not a TLS keyset (purpose tls_client or tls_server)"
                ))
            })?;
        let active = ks
            .versions
            .iter()
            .find(|v| v.state == "active")
            .ok_or_else(|| Error::Input(format!("keyset {keyset:?} has no active key")))?;
        let chain = pem_certificates(&active.certificate_chain_pem);
        if chain.is_empty() {
            return Err(Error::Input(format!(
                "keyset {keyset:?}'s active key {} has no certificate: `custos keyset csr`, \
                 have it issued, then `custos keyset set-certificate`",
                active.kid
            )));
        }
        let scheme = scheme_of(&ks.alg).ok_or_else(|| {
            Error::Input(format!(
                "keyset {keyset:?} has alg {}, which TLS does not sign with",
                ks.alg
            ))
        })?;
        let key = CustosSigningKey {
            keys: self.clone(),
            keyset: keyset.to_string(),
            purpose,
            kid: active.kid.clone(),
            scheme,
        };
        Ok(Arc::new(CertifiedKey::new(chain, Arc::new(key))))
    }

    /// A rustls client configuration that authenticates with `keyset`'s
    /// transport key and trusts `roots` for the server.
    ///
    /// # Errors
    /// As [`TlsKeys::certified_key`], checked once now so a missing
    /// certificate fails here rather than at the first handshake.
    pub fn client_config(
        &self,
        keyset: &str,
        roots: rustls::RootCertStore,
    ) -> Result<rustls::ClientConfig, Error> {
        self.certified_key(keyset)?;
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(ActiveVersion {
                keys: self.clone(),
                keyset: keyset.to_string(),
            }));
        // No session resumption: a resumed TLS 1.3 session carries the
        // first handshake's client authentication, so a disabled or rotated
        // key would go on authenticating until the ticket expired. Every
        // connection signs afresh (one SignTlsHandshake call).
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// A rustls server configuration whose certificate key is `keyset`'s,
    /// checking clients with `client_verifier` (or none).
    ///
    /// # Errors
    /// As [`TlsKeys::certified_key`].
    pub fn server_config(
        &self,
        keyset: &str,
        client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<rustls::ServerConfig, Error> {
        self.certified_key(keyset)?;
        let builder = rustls::ServerConfig::builder();
        let builder = match client_verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        Ok(builder.with_cert_resolver(Arc::new(ActiveVersion {
            keys: self.clone(),
            keyset: keyset.to_string(),
        })))
    }
}

fn gone() -> Error {
    Error::Connect {
        path: PathBuf::from("custosd"),
        reason: format!(
            "custosd did not answer the TLS key thread within {} s",
            TlsKeys::SIGN_TIMEOUT.as_secs()
        ),
    }
}

/// The certificates of a PEM text, in order.
fn pem_certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// The TLS signature scheme a keyset algorithm signs with.
fn scheme_of(alg: &str) -> Option<SignatureScheme> {
    match alg {
        "ES256" => Some(SignatureScheme::ECDSA_NISTP256_SHA256),
        "PS256" => Some(SignatureScheme::RSA_PSS_SHA256),
        "EdDSA" => Some(SignatureScheme::ED25519),
        _ => None,
    }
}

/// The scheme's name on the wire to custosd (RFC 8446 4.2.3).
fn scheme_name(scheme: SignatureScheme) -> &'static str {
    match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => "ecdsa_secp256r1_sha256",
        SignatureScheme::RSA_PSS_SHA256 => "rsa_pss_rsae_sha256",
        _ => "ed25519",
    }
}

/// Picks the keyset's active version at every handshake.
#[derive(Debug)]
struct ActiveVersion {
    keys: TlsKeys,
    keyset: String,
}

impl ActiveVersion {
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.keys.certified_key(&self.keyset).ok()
    }
}

impl ResolvesClientCert for ActiveVersion {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
            .filter(|k| k.key.choose_scheme(sigschemes).is_some())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for ActiveVersion {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
            .filter(|k| k.key.choose_scheme(hello.signature_schemes()).is_some())
    }
}

/// A rustls signing key whose private half is one version of a Custos TLS keyset.
#[derive(Debug, Clone)]
pub struct CustosSigningKey {
    keys: TlsKeys,
    keyset: String,
    purpose: String,
    kid: String,
    scheme: SignatureScheme,
}

impl SigningKey for CustosSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&self.scheme)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.scheme {
            SignatureScheme::ECDSA_NISTP256_SHA256 => SignatureAlgorithm::ECDSA,
            SignatureScheme::RSA_PSS_SHA256 => SignatureAlgorithm::RSA,
            _ => SignatureAlgorithm::ED25519,
        }
    }
}

impl Signer for CustosSigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let req = proto::SignTlsHandshakeRequest {
            keyset: self.keyset.clone(),
            purpose: self.purpose.clone(),
            scheme: scheme_name(self.scheme).into(),
            message: message.to_vec(),
            peer: String::new(),
            kid: self.kid.clone(),
        };
        self.keys
            .ask(|tx| Job::Sign(req, tx))
            .map(|r| r.signature)
            .map_err(|e| {
                rustls::Error::General(format!("custosd refused the handshake signature: {e}"))
            })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

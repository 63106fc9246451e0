//! custosd's own TCP listener with its certificate key in the HSM: a rustls
//! certificate resolver over a TLS keyset (purpose `tls_server`). Each
//! handshake takes the keyset's active version and the chain stored with it,
//! and signs the CertificateVerify on the device under the rules of
//! `fapi::tls`, as `SignTlsHandshake` would; a version without a certificate
//! (or a keyset without an active key) fails the handshake.
//!
//! rustls signs synchronously inside the handshake, which runs on an async
//! worker: the device call is made under `block_in_place` there, so the
//! other connections' tasks move to another worker while the device answers.

use crate::alg::Algorithm;
use crate::audit::Event;
use crate::fapi::tls;
use crate::keyring::keyset::Purpose;
use crate::keyring::Keyring;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::sync::Arc;

/// Resolves the listener's certificate from a TLS keyset at every handshake.
#[derive(Debug)]
pub(crate) struct KeysetCertificate {
    keyring: Arc<Keyring>,
    keyset: String,
}

impl KeysetCertificate {
    /// A resolver over `keyset`, checked now: it must be a `tls_server`
    /// keyset whose active version has a certificate.
    ///
    /// # Errors
    /// A message for the operator naming what is missing.
    pub(crate) fn new(keyring: Arc<Keyring>, keyset: &str) -> Result<Self, String> {
        let me = Self {
            keyring,
            keyset: keyset.to_string(),
        };
        me.current()?;
        Ok(me)
    }

    fn current(&self) -> Result<Arc<CertifiedKey>, String> {
        let name = &self.keyset;
        let ks = self
            .keyring
            .keyset(name)
            .map_err(|e| format!("[server] tls_keyset {name:?}: {e}"))?;
        if !ks.purposes.contains(&Purpose::TlsServer) {
            return Err(format!(
                "[server] tls_keyset {name:?} is not a tls_server keyset: create one with \
                 --purpose tls_server"
            ));
        }
        let active = ks
            .active()
            .ok_or_else(|| format!("[server] tls_keyset {name:?} has no active key"))?;
        let chain: Vec<CertificateDer<'static>> = active
            .chain_der()
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        if chain.is_empty() {
            return Err(format!(
                "[server] tls_keyset {name:?}: its active key {} has no certificate yet \
                 (`custos keyset csr`, have it issued, `custos keyset set-certificate`)",
                active.kid
            ));
        }
        let scheme = match ks.alg {
            Algorithm::ES256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            Algorithm::PS256 => SignatureScheme::RSA_PSS_SHA256,
            Algorithm::EdDSA => SignatureScheme::ED25519,
            other => {
                return Err(format!(
                    "[server] tls_keyset {name:?}: {other} keys do not sign TLS"
                ))
            }
        };
        let key = DeviceKey {
            keyring: self.keyring.clone(),
            keyset: name.clone(),
            kid: active.kid.clone(),
            alg: ks.alg,
            scheme,
        };
        Ok(Arc::new(CertifiedKey::new(chain, Arc::new(key))))
    }
}

impl ResolvesServerCert for KeysetCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current() {
            Ok(k) if k.key.choose_scheme(hello.signature_schemes()).is_some() => Some(k),
            Ok(_) => {
                tracing::warn!(keyset = %self.keyset, "a TLS client offers none of the listener key's signature schemes");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "the TCP listener has no certificate to present");
                None
            }
        }
    }
}

/// One version of the listener's TLS keyset, signing on the device.
#[derive(Debug, Clone)]
struct DeviceKey {
    keyring: Arc<Keyring>,
    keyset: String,
    kid: String,
    alg: Algorithm,
    scheme: SignatureScheme,
}

impl SigningKey for DeviceKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&self.scheme)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.alg {
            Algorithm::ES256 => SignatureAlgorithm::ECDSA,
            Algorithm::PS256 => SignatureAlgorithm::RSA,
            _ => SignatureAlgorithm::ED25519,
        }
    }
}

impl DeviceKey {
    fn sign_on_device(&self, message: &[u8]) -> crate::error::Result<Vec<u8>> {
        let key = self.keyring.active_key(&self.keyset, Purpose::TlsServer)?;
        if key.kid != self.kid {
            return Err(crate::error::Error::FailedPrecondition(format!(
                "the listener's key {} is no longer active (now {})",
                self.kid, key.kid
            )));
        }
        let scheme = tls::scheme_of(self.alg).unwrap_or_default();
        tls::check(Purpose::TlsServer, self.alg, scheme, message)?;
        tls::wire_signature(self.alg, key.sign(message)?)
    }
}

impl Signer for DeviceKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if multi {
            tokio::task::block_in_place(|| self.sign_on_device(message))
        } else {
            self.sign_on_device(message)
        };
        if let Some(audit) = self.keyring.auditor() {
            let detail = result.as_ref().err().map(|e| e.to_string());
            audit.record_nowait(
                serde_json::json!({"tls_listener": true}),
                &Event {
                    operation: "sign_tls_handshake",
                    keyset: Some(&self.keyset),
                    kid: Some(&self.kid),
                    purpose: Some(Purpose::TlsServer.as_str()),
                    outcome: if result.is_ok() { "ok" } else { "error" },
                    detail: Some(detail.as_deref().unwrap_or("custosd's own TCP listener")),
                    ..Event::default()
                },
            );
        }
        result.map_err(|e| {
            tracing::error!(keyset = %self.keyset, error = %e, "the listener's handshake signature failed");
            rustls::Error::General(format!("the listener's key cannot sign: {e}"))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

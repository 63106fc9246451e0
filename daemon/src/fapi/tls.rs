//! What a TLS keyset may sign: the handshake signatures of RFC 8446 (TLS 1.3)
//! and RFC 5246 (TLS 1.2) for the one side its purpose names, under the one
//! signature scheme its algorithm fits. FAPI clients authenticate with mutual
//! TLS (RFC 8705), so their transport key is as sensitive as a signing key;
//! these rules keep a TLS key from becoming a signing oracle for anything else.

use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::keyring::keyset::Purpose;

/// The keyset algorithms a TLS keyset may have.
pub(crate) const ALGORITHMS: [Algorithm; 3] =
    [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA];

/// The TLS `SignatureScheme` (RFC 8446 4.2.3) a keyset algorithm signs with.
pub(crate) fn scheme_of(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::ES256 => Some("ecdsa_secp256r1_sha256"),
        Algorithm::PS256 => Some("rsa_pss_rsae_sha256"),
        Algorithm::EdDSA => Some("ed25519"),
        _ => None,
    }
}

/// What a handshake message was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageKind {
    /// TLS 1.3 CertificateVerify content (64 spaces, context string, transcript hash).
    Tls13,
    /// A TLS 1.2 signature input: the client's handshake transcript, or the
    /// server's randoms and ECDHE parameters.
    Tls12,
}

impl MessageKind {
    /// How the audit line and the reply name it, for `purpose`.
    pub(crate) fn describe(self, purpose: Purpose) -> &'static str {
        match (self, purpose) {
            (Self::Tls13, Purpose::TlsServer) => "tls1.3 server CertificateVerify",
            (Self::Tls13, _) => "tls1.3 client CertificateVerify",
            (Self::Tls12, Purpose::TlsServer) => "tls1.2 ServerKeyExchange",
            (Self::Tls12, _) => "tls1.2 client CertificateVerify",
        }
    }
}

const TLS13_PAD: [u8; 64] = [0x20; 64];
const TLS13_CLIENT: &[u8] = b"TLS 1.3, client CertificateVerify\0";
const TLS13_SERVER: &[u8] = b"TLS 1.3, server CertificateVerify\0";

/// Checks a `SignTlsHandshake` request: the purpose is a TLS one, the scheme
/// is the keyset's, and the message has the shape of that side's handshake
/// signature input. Returns what the message is.
///
/// # Errors
/// `InvalidArgument` naming what does not fit.
pub(crate) fn check(
    purpose: Purpose,
    alg: Algorithm,
    scheme: &str,
    message: &[u8],
) -> Result<MessageKind> {
    if !purpose.is_tls() {
        return Err(Error::invalid(format!(
            "SignTlsHandshake signs for purpose tls_client or tls_server, not {purpose}"
        )));
    }
    let expected = scheme_of(alg)
        .ok_or_else(|| Error::invalid(format!("{alg} keys do not sign TLS handshakes")))?;
    if scheme != expected {
        return Err(Error::invalid(format!(
            "signature scheme {scheme:?} does not fit this keyset: its {alg} key signs \
             {expected} only (offer that scheme in the TLS stack)"
        )));
    }
    if let Some(rest) = message.strip_prefix(&TLS13_PAD) {
        let (mine, theirs) = match purpose {
            Purpose::TlsServer => (TLS13_SERVER, TLS13_CLIENT),
            _ => (TLS13_CLIENT, TLS13_SERVER),
        };
        return match rest.strip_prefix(mine) {
            Some(hash) if matches!(hash.len(), 32 | 48) => Ok(MessageKind::Tls13),
            Some(hash) => Err(Error::invalid(format!(
                "a TLS 1.3 CertificateVerify carries a 32- or 48-byte transcript hash, not {} bytes",
                hash.len()
            ))),
            None if rest.starts_with(theirs) => Err(Error::invalid(format!(
                "a {purpose} key does not sign the other side's CertificateVerify"
            ))),
            None => Err(Error::invalid(
                "the message starts like a TLS 1.3 CertificateVerify but has no known context string"
                    ,
            )),
        };
    }
    // TLS 1.2: the client signs its handshake transcript, which starts with
    // the ClientHello header (type 1); the server signs client_random (32),
    // server_random (32) and ServerECDHParams, which start with curve_type
    // named_curve (3).
    let tls12 = match purpose {
        Purpose::TlsServer => message.len() > 64 + 3 && message[64] == 3,
        _ => message.len() > 4 && message[0] == 1,
    };
    if tls12 {
        Ok(MessageKind::Tls12)
    } else {
        Err(Error::invalid(format!(
            "the message is not a {purpose} handshake signature input (TLS 1.3 CertificateVerify \
             content, or TLS 1.2's); a TLS key signs nothing else"
        )))
    }
}

/// The signature as TLS carries it: ECDSA as a DER `Ecdsa-Sig-Value`
/// (the device gives `r || s`), the others unchanged.
///
/// # Errors
/// `Internal` when an ECDSA signature is not 64 bytes.
pub(crate) fn wire_signature(alg: Algorithm, raw: Vec<u8>) -> Result<Vec<u8>> {
    if alg != Algorithm::ES256 {
        return Ok(raw);
    }
    crate::pki::ecdsa_der(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls13(context: &[u8], hash_len: usize) -> Vec<u8> {
        let mut m = vec![0x20; 64];
        m.extend_from_slice(context);
        m.extend(std::iter::repeat_n(7u8, hash_len));
        m
    }

    #[test]
    fn each_side_signs_its_own_certificate_verify() {
        let client = tls13(TLS13_CLIENT, 32);
        let server = tls13(TLS13_SERVER, 48);
        let es = Algorithm::ES256;
        let scheme = "ecdsa_secp256r1_sha256";
        assert_eq!(
            check(Purpose::TlsClient, es, scheme, &client).unwrap(),
            MessageKind::Tls13
        );
        assert_eq!(
            check(Purpose::TlsServer, es, scheme, &server).unwrap(),
            MessageKind::Tls13
        );
        let err = check(Purpose::TlsClient, es, scheme, &server).unwrap_err();
        assert!(err.to_string().contains("other side"), "{err}");
        assert!(check(Purpose::TlsServer, es, scheme, &client).is_err());
        assert!(check(Purpose::TlsClient, es, scheme, &tls13(TLS13_CLIENT, 20)).is_err());
    }

    #[test]
    fn the_scheme_must_be_the_keysets() {
        let m = tls13(TLS13_CLIENT, 32);
        assert!(check(
            Purpose::TlsClient,
            Algorithm::PS256,
            "rsa_pss_rsae_sha256",
            &m
        )
        .is_ok());
        let err = check(Purpose::TlsClient, Algorithm::PS256, "rsa_pkcs1_sha256", &m).unwrap_err();
        assert!(
            err.to_string().contains("rsa_pss_rsae_sha256 only"),
            "{err}"
        );
        assert!(check(Purpose::TlsClient, Algorithm::EdDSA, "ed25519", &m).is_ok());
        assert!(check(Purpose::TlsClient, Algorithm::RS256, "rsa_pkcs1_sha256", &m).is_err());
    }

    #[test]
    fn a_tls_key_signs_no_token_and_no_other_purpose() {
        let jws = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";
        let err = check(
            Purpose::TlsClient,
            Algorithm::ES256,
            "ecdsa_secp256r1_sha256",
            jws,
        )
        .unwrap_err();
        assert!(err.to_string().contains("signs nothing else"), "{err}");
        let m = tls13(TLS13_CLIENT, 32);
        assert!(check(
            Purpose::IdToken,
            Algorithm::ES256,
            "ecdsa_secp256r1_sha256",
            &m
        )
        .is_err());
    }

    #[test]
    fn tls12_inputs_have_their_sides_shape() {
        let mut transcript = vec![1, 0, 0, 40];
        transcript.extend([0u8; 40]);
        let s = "ecdsa_secp256r1_sha256";
        assert_eq!(
            check(Purpose::TlsClient, Algorithm::ES256, s, &transcript).unwrap(),
            MessageKind::Tls12
        );
        assert!(check(Purpose::TlsServer, Algorithm::ES256, s, &transcript).is_err());
        let mut ske = vec![9u8; 64];
        ske.extend([3, 0, 23, 65]);
        assert!(check(Purpose::TlsServer, Algorithm::ES256, s, &ske).is_ok());
    }
}

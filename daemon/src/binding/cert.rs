//! Client certificates as they arrive from TLS terminators: PEM, DER, or
//! URL-encoded PEM in a header (as nginx's `$ssl_client_escaped_cert` and
//! Envoy's XFCC do). Output: the DER and its RFC 8705 `x5t#S256`.

use crate::error::{Error, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Parses a certificate given as DER, PEM or URL-encoded PEM, checking it is
/// an X.509 certificate. Returns its DER.
///
/// # Errors
/// `InvalidArgument` with what was wrong; never panics on garbage.
pub fn parse(input: &[u8]) -> Result<Vec<u8>> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "client certificate: {why}; give PEM, DER or URL-encoded PEM"
        ))
    };
    // DER is binary: it is taken exactly as given (its last signature byte may
    // well be 0x20 or 0x0a). Only text (PEM) is trimmed.
    let trimmed = if input.first() == Some(&0x30) {
        input
    } else {
        trim_ascii(input)
    };
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    let der = if trimmed.first() == Some(&0x30) {
        trimmed.to_vec()
    } else {
        let text = std::str::from_utf8(trimmed).map_err(|_| bad("neither DER nor text"))?;
        let text = if text.contains('%') {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map_err(|_| bad("URL-encoding does not decode to text"))?
                .into_owned()
        } else {
            text.to_string()
        };
        pem_body(&text).ok_or_else(|| {
            bad(if text.contains("-----BEGIN CERTIFICATE-----") {
                "the PEM CERTIFICATE block's body is not base64"
            } else {
                "no PEM CERTIFICATE block (-----BEGIN CERTIFICATE-----)"
            })
        })?
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((&[], _)) => Ok(der),
        Ok(_) => Err(bad("trailing bytes after the certificate")),
        Err(e) => Err(bad(&format!("not an X.509 certificate ({e})"))),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    // Some terminators replace newlines with spaces; '+' may arrive as ' '
    // only if the sender mangled it, which base64 then rejects.
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The RFC 8705 certificate thumbprint: base64url(SHA-256(DER)).
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Checks the token's `cnf.x5t#S256` against the presented certificate (DER).
///
/// # Errors
/// `cnf_missing` or `cnf_mismatch`.
pub(crate) fn check_binding(
    claims: &serde_json::Map<String, serde_json::Value>,
    der: &[u8],
) -> Result<(), crate::verdict::Invalid> {
    use crate::verdict::{invalid, Reason};
    let bound = claims
        .get("cnf")
        .and_then(|c| c.get("x5t#S256"))
        .and_then(serde_json::Value::as_str);
    match bound {
        None => Err(invalid(Reason::CnfMissing, "the token has no cnf.x5t#S256")),
        Some(t) if t == x5t_s256(der) => Ok(()),
        Some(_) => Err(invalid(
            Reason::CnfMismatch,
            "the client certificate is not the one the token is bound to",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (Vec<u8>, String) {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::x509::{X509NameBuilder, X509};
        let key = PKey::generate_ed25519().unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "client").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_u32(7)
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        b.sign(&key, MessageDigest::null()).unwrap();
        let cert = b.build();
        (
            cert.to_der().unwrap(),
            String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        )
    }

    #[test]
    fn der_pem_and_url_encoded_pem_agree() {
        let (der, pem) = self_signed();
        assert_eq!(parse(&der).unwrap(), der);
        assert_eq!(parse(pem.as_bytes()).unwrap(), der);
        let escaped: String =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(parse(escaped.as_bytes()).unwrap(), der);
        assert_eq!(x5t_s256(&der).len(), 43);
    }

    #[test]
    fn der_ending_in_a_whitespace_byte_is_not_trimmed() {
        // Find a certificate whose DER ends in a byte that is ASCII whitespace.
        for _ in 0..2000 {
            let (der, _) = self_signed();
            if der.last().is_some_and(|b| b.is_ascii_whitespace()) {
                assert_eq!(parse(&der).unwrap(), der);
                return;
            }
        }
        panic!("no certificate ending in whitespace in 2000 tries");
    }

    #[test]
    fn garbage_is_a_clear_invalid_argument() {
        for g in [
            &b""[..],
            b"hello",
            b"\x30\x03\x01\x01",
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
            b"%ZZ%",
        ] {
            assert!(matches!(parse(g), Err(Error::InvalidArgument(_))), "{g:?}");
        }
    }
}

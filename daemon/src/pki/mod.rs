//! X.509 for TLS keysets: the certificate signing request a CA needs
//! (PKCS#10, RFC 2986, signed inside the device), and the chain it issues
//! back, matched to the key version it certifies. Encoding is the
//! RustCrypto `x509-cert` crate's; key conversions are OpenSSL's.

use crate::alg::Algorithm;
use crate::backend::PublicKey;
use crate::error::{Error, Result};
use base64::Engine;
use std::str::FromStr;
use x509_cert::der::asn1::{BitString, Ia5String, OctetString};
use x509_cert::der::{Any, Decode, Encode, EncodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

fn internal(what: &str) -> impl Fn(openssl::error::ErrorStack) -> Error + '_ {
    move |e| Error::Internal(format!("{what}: {e}"))
}

/// The DER `SubjectPublicKeyInfo` of a public key.
///
/// # Errors
/// `Internal` when the recorded key is not a valid key of its type.
pub(crate) fn spki_der(public: &PublicKey) -> Result<Vec<u8>> {
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{Id, PKey};
    let hex =
        |h: &str| hex::decode(h).map_err(|_| Error::Internal("a recorded key is not hex".into()));
    let bn = |h: &str| BigNum::from_slice(&hex(h)?).map_err(internal("a key number"));
    let pkey = match public {
        PublicKey::P256 { x, y } => {
            let group =
                EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(internal("P-256"))?;
            let key = EcKey::from_public_key_affine_coordinates(&group, &*bn(x)?, &*bn(y)?)
                .map_err(internal("a P-256 point"))?;
            PKey::from_ec_key(key).map_err(internal("a P-256 key"))?
        }
        PublicKey::Rsa { n, e } => {
            let rsa = openssl::rsa::Rsa::from_public_components(bn(n)?, bn(e)?)
                .map_err(internal("an RSA key"))?;
            PKey::from_rsa(rsa).map_err(internal("an RSA key"))?
        }
        PublicKey::Ed25519 { x } => PKey::public_key_from_raw_bytes(&hex(x)?, Id::ED25519)
            .map_err(internal("an Ed25519 key"))?,
    };
    pkey.public_key_to_der()
        .map_err(internal("encoding a public key"))
}

/// An ECDSA signature `r || s` (64 bytes, P-256) as the DER `Ecdsa-Sig-Value`
/// X.509 and TLS carry.
///
/// # Errors
/// `Internal` when the signature is not 64 bytes.
pub(crate) fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>> {
    if raw.len() != 64 {
        return Err(Error::Internal(format!(
            "an ES256 signature from the device has {} bytes, not 64",
            raw.len()
        )));
    }
    let n = |b: &[u8]| openssl::bn::BigNum::from_slice(b).map_err(internal("an ECDSA number"));
    openssl::ecdsa::EcdsaSig::from_private_components(n(&raw[..32])?, n(&raw[32..])?)
        .and_then(|s| s.to_der())
        .map_err(internal("encoding an ECDSA signature"))
}

/// RSASSA-PSS-params for SHA-256, MGF1 with SHA-256, salt 32 (RFC 4055 3.1):
/// what a PS256 key signs with, which is not the ASN.1 default (SHA-1, salt 20).
const PSS_SHA256_PARAMS: [u8; 54] = [
    0x30, 0x34, // SEQUENCE
    0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, // [0] hashAlgorithm sha256
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, // [1] maskGenAlgorithm mgf1(sha256)
    0xa2, 0x03, 0x02, 0x01, 0x20, // [2] saltLength 32
];

/// The X.509 signature algorithm of a keyset algorithm.
///
/// # Errors
/// `InvalidArgument` for algorithms that do not sign certificates here.
pub(crate) fn signature_algorithm(alg: Algorithm) -> Result<AlgorithmIdentifierOwned> {
    let (oid, parameters) = match alg {
        Algorithm::ES256 => ("1.2.840.10045.4.3.2", None),
        Algorithm::PS256 => (
            "1.2.840.113549.1.1.10",
            Some(Any::from_der(&PSS_SHA256_PARAMS).map_err(der_error)?),
        ),
        Algorithm::EdDSA => ("1.3.101.112", None),
        other => {
            return Err(Error::invalid(format!(
                "{other} keys do not sign certificate requests here"
            )))
        }
    };
    Ok(AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap(oid),
        parameters,
    })
}

fn der_error(e: x509_cert::der::Error) -> Error {
    Error::Internal(format!("X.509 encoding: {e}"))
}

/// One subject alternative name from its text form.
fn general_name(san: &str) -> Result<GeneralName> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "subject alternative name {san:?}: {why}; write DNS:host, URI:https://..., IP:10.0.0.1 or email:a@b"
        ))
    };
    let (kind, value) = san.split_once(':').ok_or_else(|| bad("no kind"))?;
    let ia5 = |v: &str| Ia5String::new(v).map_err(|_| bad("not ASCII"));
    match kind.to_ascii_lowercase().as_str() {
        "dns" if !value.is_empty() => Ok(GeneralName::DnsName(ia5(value)?)),
        "uri" if !value.is_empty() => Ok(GeneralName::UniformResourceIdentifier(ia5(value)?)),
        "email" if !value.is_empty() => Ok(GeneralName::Rfc822Name(ia5(value)?)),
        "ip" => {
            let ip: std::net::IpAddr = value.parse().map_err(|_| bad("not an IP address"))?;
            let bytes = match ip {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            };
            Ok(GeneralName::IpAddress(
                OctetString::new(bytes).map_err(der_error)?,
            ))
        }
        _ => Err(bad("unknown kind or empty value")),
    }
}

/// The part of a CSR the key signs: subject, public key, and the requested
/// subject alternative names.
///
/// # Errors
/// `InvalidArgument` for a subject that is not an RFC 4514 name or a bad SAN.
pub(crate) fn request_info(
    subject: &str,
    sans: &[String],
    public: &PublicKey,
) -> Result<CertReqInfo> {
    if subject.trim().is_empty() {
        return Err(Error::invalid(
            "a certificate request needs a subject, e.g. --subject 'CN=client-1,O=Bank,C=GB'",
        ));
    }
    let subject = Name::from_str(subject).map_err(|e| {
        Error::invalid(format!(
            "subject {subject:?} is not an RFC 4514 name ({e}); write e.g. CN=client-1,O=Bank,C=GB"
        ))
    })?;
    let public_key = SubjectPublicKeyInfoOwned::from_der(&spki_der(public)?).map_err(der_error)?;
    let mut attributes = x509_cert::attr::Attributes::new();
    if !sans.is_empty() {
        let names = sans
            .iter()
            .map(|s| general_name(s))
            .collect::<Result<Vec<_>>>()?;
        let value = SubjectAltName(names).to_der().map_err(der_error)?;
        let ext = Extension {
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.17"),
            critical: false,
            extn_value: OctetString::new(value).map_err(der_error)?,
        };
        attributes
            .insert(ExtensionReq(vec![ext]).try_into().map_err(der_error)?)
            .map_err(der_error)?;
    }
    Ok(CertReqInfo {
        version: Version::V1,
        subject,
        public_key,
        attributes,
    })
}

/// The DER bytes the key signs for `info`.
///
/// # Errors
/// `Internal` when encoding fails.
pub(crate) fn to_be_signed(info: &CertReqInfo) -> Result<Vec<u8>> {
    info.to_der().map_err(der_error)
}

/// The finished CSR in PEM, from its info and the device's signature
/// (ECDSA as `r || s`, converted here).
///
/// # Errors
/// `Internal` when encoding fails.
pub(crate) fn assemble(info: CertReqInfo, alg: Algorithm, signature: &[u8]) -> Result<String> {
    let signature = match alg {
        Algorithm::ES256 => ecdsa_der(signature)?,
        _ => signature.to_vec(),
    };
    let req = CertReq {
        info,
        algorithm: signature_algorithm(alg)?,
        signature: BitString::from_bytes(&signature).map_err(der_error)?,
    };
    req.to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(der_error)
}

/// A certificate chain as stored: each certificate's DER, leaf first.
///
/// # Errors
/// `InvalidArgument` when the text holds no certificate or one does not parse.
pub(crate) fn parse_chain(pem: &str) -> Result<Vec<Vec<u8>>> {
    let certs = openssl::x509::X509::stack_from_pem(pem.as_bytes()).map_err(|e| {
        Error::invalid(format!(
            "the certificate chain is not PEM certificates: {e}"
        ))
    })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            "the certificate chain holds no certificate: give the PEM file the CA issued, leaf first"
                ,
        ));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(internal("encoding a certificate")))
        .collect()
}

/// Whether a certificate (DER) certifies `public`.
///
/// # Errors
/// `InvalidArgument` when the certificate does not parse.
pub(crate) fn certifies(cert_der: &[u8], public: &PublicKey) -> Result<bool> {
    let cert = openssl::x509::X509::from_der(cert_der)
        .map_err(|e| Error::invalid(format!("a certificate does not parse: {e}")))?;
    let theirs = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| Error::invalid(format!("a certificate's public key: {e}")))?;
    Ok(theirs == spki_der(public)?)
}

/// The chain back as PEM text, leaf first.
pub(crate) fn chain_pem(chain: &[Vec<u8>]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for der in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(der);
        for line in text.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// RFC 8705 `x5t#S256`: base64url SHA-256 of the certificate's DER.
pub(crate) fn x5t_s256(cert_der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::PKey;
    use openssl::x509::X509Req;

    fn p256() -> (PKey<openssl::pkey::Private>, PublicKey) {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = openssl::ec::EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().unwrap(),
            openssl::bn::BigNum::new().unwrap(),
        );
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let public = PublicKey::p256(&x.to_vec_padded(32).unwrap(), &y.to_vec_padded(32).unwrap());
        (PKey::from_ec_key(key).unwrap(), public)
    }

    #[test]
    fn an_es256_request_verifies_with_openssl_and_carries_its_names() {
        let (key, public) = p256();
        let sans = vec![
            "DNS:client.example".to_string(),
            "URI:https://client.example/".into(),
        ];
        let info = request_info("CN=client-1,O=Bank,C=GB", &sans, &public).unwrap();
        let tbs = to_be_signed(&info).unwrap();
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        let der = signer.sign_oneshot_to_vec(&tbs).unwrap();
        let sig = openssl::ecdsa::EcdsaSig::from_der(&der).unwrap();
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        let pem = assemble(info, Algorithm::ES256, &raw).unwrap();
        let req = X509Req::from_pem(pem.as_bytes()).unwrap();
        assert!(req.verify(&req.public_key().unwrap()).unwrap());
        let subject: Vec<String> = req
            .subject_name()
            .entries()
            .map(|e| String::from_utf8(e.data().as_slice().to_vec()).unwrap())
            .collect();
        assert_eq!(subject, ["GB", "Bank", "client-1"]);
        let exts = req.extensions().unwrap();
        assert_eq!(exts.len(), 1);
        assert!(certifies_req(&req, &public));
    }

    fn certifies_req(req: &X509Req, public: &PublicKey) -> bool {
        req.public_key().unwrap().public_key_to_der().unwrap() == spki_der(public).unwrap()
    }

    #[test]
    fn bad_subjects_and_names_are_refused_with_the_form_to_use() {
        let (_, public) = p256();
        let err = request_info("", &[], &public).unwrap_err();
        assert!(err.to_string().contains("needs a subject"), "{err}");
        let err = request_info("CN=x", &["host".into()], &public).unwrap_err();
        assert!(err.to_string().contains("DNS:host"), "{err}");
        let err = request_info("CN=x", &["IP:300.1.1.1".into()], &public).unwrap_err();
        assert!(err.to_string().contains("not an IP address"), "{err}");
        assert!(request_info("CN=x", &["IP:::1".into()], &public).is_ok());
    }

    #[test]
    fn the_pss_parameters_are_sha256_mgf1_sha256_salt_32() {
        // Parsed back by OpenSSL's ASN.1 printer, not by the code that wrote them.
        let alg = signature_algorithm(Algorithm::PS256).unwrap();
        let params = alg.parameters.unwrap().to_der().unwrap();
        assert_eq!(params, PSS_SHA256_PARAMS);
        let mut p = std::process::Command::new("openssl")
            .args(["asn1parse", "-inform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        p.stdin.take().unwrap().write_all(&params).unwrap();
        let out = String::from_utf8(p.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(out.matches("sha256").count(), 2, "{out}");
        assert!(out.contains("mgf1") && out.contains(":20"), "{out}");
    }

    #[test]
    fn chains_round_trip_and_match_their_key() {
        let (key, public) = p256();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "leaf").unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509::builder().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build();
        let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
        let chain = parse_chain(&pem).unwrap();
        assert_eq!(chain_pem(&chain), pem);
        assert!(certifies(&chain[0], &public).unwrap());
        let (_, other) = p256();
        assert!(!certifies(&chain[0], &other).unwrap());
        assert!(parse_chain("not pem").is_err());
        assert_eq!(x5t_s256(&chain[0]).len(), 43);
    }
}

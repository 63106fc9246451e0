//! A test PKI for the mutual-TLS listener (rcgen): a CA, leaves, CRLs.

use custos_client::Client;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A test CA made with rcgen: issues server and client certificates and CRLs.
pub struct Pki {
    /// Where its files are.
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    /// A CA named `name`, its certificate in `DIR/NAME/ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("ca");
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        Self { dir, ca, ca_key }
    }

    /// Issues a leaf; returns (cert path, key path).
    pub fn issue(
        &self,
        name: &str,
        sans: Vec<rcgen::SanType>,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.subject_alt_names = sans;
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params.serial_number = Some(rcgen::SerialNumber::from(serial(name)));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (c, k)
    }
    /// Writes a CRL revoking the leaves named `revoked` to `DIR/NAME.crl.pem`.
    pub fn crl(&self, file: &str, revoked: &[&str]) -> PathBuf {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(rand::random::<u32>() as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|n| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial(n)),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca, &self.ca_key).expect("crl");
        let path = self.dir.join(file);
        std::fs::write(&path, crl.pem().expect("pem")).expect("write crl");
        path
    }
}

/// The serial number a leaf named `name` gets.
fn serial(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        >> 1
}

/// A URI SAN.
pub fn uri(s: &str) -> rcgen::SanType {
    rcgen::SanType::URI(rcgen::Ia5String::try_from(s).expect("ia5"))
}

/// A client over mutual TLS.
pub async fn tls_client(
    url: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<Client, custos_client::Error> {
    Client::connect_tls(
        url,
        &std::fs::read(cert).expect("cert"),
        &std::fs::read(key).expect("key"),
        &std::fs::read(ca).expect("ca"),
    )
    .await
}

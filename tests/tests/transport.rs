//! FAPI clients' transport keys in the HSM: a TLS keyset on a real SoftHSM2
//! token gets a CSR signed inside the device (`custos keyset csr`), a test CA
//! issues the certificate with `openssl x509 -req`, the chain is stored on
//! the keyset, and a rustls client whose key is custos-client's
//! Custos-backed signing key completes mutual TLS with `openssl s_server
//! -Verify 1` and with custosd's own mTLS listener, whose server key is a
//! `tls_server` keyset too. The certificate the server saw carries the
//! x5t#S256 the keyset shows, and a certificate-bound access token issued
//! for it verifies only with that certificate.

use custos_client::proto;
use custos_client::tls::TlsKeys;
use custos_e2e::{audit_lines, free_port, spec, Daemon, Hsm};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A test CA made by the openssl CLI (P-256, self-signed).
struct Ca {
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    fn new(dir: &Path) -> Self {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Test Transport CA",
            "-keyout",
            path(&key),
            "-out",
            path(&cert),
        ]);
        Self { cert, key }
    }

    /// Issues a certificate for `csr`, copying its SANs (what a CA does for
    /// an Open Banking transport certificate).
    fn issue(&self, csr: &Path, out: &Path) {
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(csr),
            "-CA",
            path(&self.cert),
            "-CAkey",
            path(&self.key),
            "-CAcreateserial",
            "-days",
            "1",
            "-copy_extensions",
            "copy",
            "-out",
            path(out),
        ]);
    }

    /// A server certificate for localhost with an ordinary key file.
    fn server(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (csr, cert, key) = (
            dir.join("srv.csr"),
            dir.join("srv.pem"),
            dir.join("srv.key"),
        );
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            path(&key),
            "-out",
            path(&csr),
        ]);
        self.issue(&csr, &cert);
        (cert, key)
    }

    fn roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.cert).expect("ca pem") {
            roots.add(c.expect("ca cert")).expect("root");
        }
        roots
    }
}

/// Makes TLS keyset `name` (alg, purpose), has its CSR issued by `ca`, and
/// stores the chain, all through the `custos` CLI. Returns the certificate file.
fn transport_keyset(
    d: &Daemon,
    ca: &Ca,
    dir: &Path,
    name: &str,
    alg: &str,
    purpose: &str,
) -> PathBuf {
    let ok = |args: &[&str]| {
        let out = d.cli(args, None);
        assert!(
            out.status.success(),
            "custos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["keyset", "create", name, "--alg", alg, "--purpose", purpose]);
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    ok(&[
        "keyset",
        "csr",
        name,
        "--subject",
        "CN=client-1,O=Bank,C=GB",
        "--san",
        "DNS:client-1.bank.example",
        "--san",
        "DNS:localhost",
        "--output",
        path(&csr),
    ]);
    // The CSR is checked by OpenSSL, not by the code that made it.
    let text = openssl(&["req", "-in", path(&csr), "-noout", "-verify", "-text"]);
    assert!(text.contains("client-1.bank.example"), "{text}");
    if alg == "PS256" {
        assert!(
            text.contains("rsassaPss") && text.contains("Salt Length: 0x20"),
            "{text}"
        );
    }
    ca.issue(&csr, &cert);
    let shown = ok(&["keyset", "set-certificate", name, path(&cert)]);
    assert!(shown.contains("x5t#S256"), "{shown}");
    cert
}

fn x5t_s256(cert_pem: &Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in", path(cert_pem)])
        .output()
        .expect("openssl")
        .stdout;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// `openssl s_server -Verify 1 -verify_return_error -www` on a free port.
struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    fn start(ca: &Ca, cert: &Path, key: &Path) -> Self {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &port.to_string(), "-Verify", "1"])
            .args(["-verify_return_error", "-www", "-CAfile", path(&ca.cert)])
            .args(["-cert", path(cert), "-key", path(key)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET over TLS with `config`: the page s_server writes, or the error.
async fn fetch(config: rustls::ClientConfig, port: u16) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut page = String::new();
    tls.read_to_string(&mut page)
        .await
        .map_err(|e| e.to_string())?;
    Ok(page)
}

/// The usual scene: a test CA, a `bank-transport` keyset of `alg` (purpose
/// tls_client) with a certificate from it, `openssl s_server` requiring a
/// client certificate from that CA, and a `TlsKeys` bridge to the daemon.
async fn scene(d: &Daemon, dir: &Path, alg: &str) -> (Ca, PathBuf, SServer, TlsKeys) {
    let ca = Ca::new(dir);
    let cert = transport_keyset(d, &ca, dir, "bank-transport", alg, "tls_client");
    let (srv_cert, srv_key) = ca.server(dir);
    let server = SServer::start(&ca, &srv_cert, &srv_key);
    let keys = tls_keys(d).await;
    (ca, cert, server, keys)
}

async fn tls_keys(d: &Daemon) -> TlsKeys {
    let socket = d.socket.clone();
    tokio::task::spawn_blocking(move || TlsKeys::connect_unix(socket))
        .await
        .expect("thread")
        .expect("connect")
}

async fn mutual_tls_with_openssl(alg: &str) {
    let hsm = Hsm::new();
    let dir = hsm.dir.path().to_path_buf();
    let audit = dir.join("audit.jsonl");
    let d = Daemon::start_with(&hsm, custos_e2e::DaemonConfig::audited(&audit)).await;
    let (ca, cert, server, keys) = scene(&d, &dir, alg).await;

    let config = keys
        .client_config("bank-transport", ca.roots())
        .expect("client config");
    let page = fetch(config, server.port)
        .await
        .expect("mutual TLS completes");
    // s_server -www prints the client certificate it verified.
    assert!(page.contains("Client certificate"), "{page}");
    assert!(page.contains("client-1"), "{page}");
    let ks = d
        .client()
        .await
        .get_keyset("bank-transport")
        .await
        .expect("keyset");
    let active = ks
        .versions
        .iter()
        .find(|v| v.state == "active")
        .expect("active");
    assert_eq!(active.x5t_s256, x5t_s256(&cert));
    let signed: Vec<Value> = audit_lines(&audit)
        .into_iter()
        .filter(|l| l["operation"] == "sign_tls_handshake" && l["outcome"] == "ok")
        .collect();
    assert!(!signed.is_empty(), "every handshake signature is audited");
    assert_eq!(signed[0]["detail"], "tls1.3 client CertificateVerify");
    assert_eq!(signed[0]["kid"], active.kid.as_str());

    // The same key never signs a token: SignJwt and SignJwsInput are refused.
    let c = d.client().await;
    let e = c
        .sign_jwt("bank-transport", "generic", None, "{}")
        .await
        .expect_err("a TLS key signs no JWT");
    assert_eq!(
        e.status().expect("status").code(),
        tonic::Code::FailedPrecondition
    );
    // A raw message that is no handshake input is refused.
    let e = c
        .sign_tls_handshake(proto::SignTlsHandshakeRequest {
            keyset: "bank-transport".into(),
            purpose: "tls_client".into(),
            scheme: if alg == "ES256" {
                "ecdsa_secp256r1_sha256"
            } else {
                "rsa_pss_rsae_sha256"
            }
            .into(),
            message: b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("not a handshake");
    assert_eq!(
        e.status().expect("status").code(),
        tonic::Code::InvalidArgument
    );

    // Emergency rotation and the old key disabled: the new key has no
    // certificate, so the client presents none and s_server refuses.
    let old = active.kid.clone();
    c.rotate("bank-transport", true).await.expect("rotate");
    c.disable("bank-transport", &old).await.expect("disable");
    let config = keys
        .client_config("bank-transport", ca.roots())
        .map(Some)
        .unwrap_or(None);
    assert!(
        config.is_none(),
        "no client config without a certificate for the active key"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_transport_key_in_softhsm_completes_mutual_tls_with_openssl() {
    mutual_tls_with_openssl("ES256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ps256_transport_key_in_softhsm_completes_mutual_tls_with_openssl() {
    mutual_tls_with_openssl("PS256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_transport_key_fails_the_handshake() {
    let hsm = Hsm::new();
    let dir = hsm.dir.path().to_path_buf();
    let d = Daemon::start(&hsm).await;
    let (ca, _, server, keys) = scene(&d, &dir, "ES256").await;
    let config = keys
        .client_config("bank-transport", ca.roots())
        .expect("config");
    fetch(config.clone(), server.port)
        .await
        .expect("works before");
    let c = d.client().await;
    let old = c.get_keyset("bank-transport").await.expect("ks").versions[0]
        .kid
        .clone();
    c.rotate("bank-transport", true).await.expect("rotate");
    c.disable("bank-transport", &old).await.expect("disable");
    // The config still holds the old certificate's resolver; the active key
    // has no certificate now, and the disabled one signs nothing.
    let e = fetch(config, server.port)
        .await
        .expect_err("refused after the disable");
    assert!(!e.is_empty());
    let direct = c
        .sign_tls_handshake(proto::SignTlsHandshakeRequest {
            keyset: "bank-transport".into(),
            purpose: "tls_client".into(),
            scheme: "ecdsa_secp256r1_sha256".into(),
            message: [
                vec![0x20; 64],
                b"TLS 1.3, client CertificateVerify\0".to_vec(),
                vec![1; 32],
            ]
            .concat(),
            kid: old.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the disabled kid does not sign");
    assert_eq!(
        direct.status().expect("status").code(),
        tonic::Code::FailedPrecondition
    );
}

/// A tonic channel over TLS made by `config` (ALPN h2) to 127.0.0.1:`port`.
async fn grpc_over(
    config: rustls::ClientConfig,
    port: u16,
) -> Result<custos_client::Client, String> {
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(custos_client::Client::from_channel(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custosd_serves_mutual_tls_with_its_own_key_in_the_hsm_and_binds_tokens_to_the_client_certificate(
) {
    let hsm = Hsm::new();
    let dir = hsm.dir.path().to_path_buf();
    let mut d = Daemon::start(&hsm).await;
    let ca = Ca::new(&dir);
    let client_cert = transport_keyset(&d, &ca, &dir, "bank-transport", "ES256", "tls_client");
    transport_keyset(&d, &ca, &dir, "custosd-listener", "PS256", "tls_server");
    let c = d.client().await;
    c.create_keyset(spec("as-at", "ES256", &["access_token"]))
        .await
        .expect("access-token keyset");
    // The listener is configured now that its keyset has a certificate.
    let port = free_port();
    let config = std::fs::read_to_string(&d.config).expect("config");
    let config = config.replacen(
        "[server]\n",
        &format!(
            "[server]\ntcp = \"127.0.0.1:{port}\"\ntls_keyset = \"custosd-listener\"\nclient_ca = \"{}\"\n",
            ca.cert.display()
        ),
        1,
    ) + "\n[[access]]\nname = \"bank client\"\ntls_san = \"client-1.bank.example\"\nkeysets = [\"as-at\"]\noperations = [\"sign\", \"verify\", \"jwks\"]\n";
    std::fs::write(&d.config, config).expect("write config");
    d.restart().await;

    let keys = tls_keys(&d).await;
    let tls = keys
        .client_config("bank-transport", ca.roots())
        .expect("config");
    let over_tls = grpc_over(tls, port).await.expect("mutual TLS with custosd");
    // The caller is the certificate's SAN, granted by the rule above.
    let jwks = over_tls
        .jwks(Some("as-at"))
        .await
        .expect("granted over mTLS");
    assert!(jwks.contains("\"keys\""), "{jwks}");
    // Certificate-bound access token (RFC 8705) for the certificate the
    // handshake presented: the x5t#S256 is the keyset's.
    let cert_pem = std::fs::read(&client_cert).expect("cert");
    let exp = custos_e2e::now() + 300;
    let token = over_tls
        .sign_access_token(proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: serde_json::json!({
                "iss": "https://as.bank", "sub": "alice", "aud": "https://rs.bank",
                "exp": exp, "client_id": "client-1",
            })
            .to_string(),
            binding: Some(
                proto::sign_access_token_request::Binding::ClientCertificate(cert_pem.clone()),
            ),
        })
        .await
        .expect("cert-bound token");
    let payload = token.token.split('.').nth(1).expect("payload");
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json");
    let ks = c.get_keyset("bank-transport").await.expect("ks");
    assert_eq!(claims["cnf"]["x5t#S256"], ks.versions[0].x5t_s256.as_str());
    assert_eq!(claims["cnf"]["x5t#S256"], x5t_s256(&client_cert).as_str());
    let verify = |cert: Vec<u8>| proto::VerifyAccessTokenRequest {
        token: token.token.clone(),
        audience: "https://rs.bank".into(),
        binding: Some(proto::verify_access_token_request::Binding::ClientCertificate(cert)),
        ..Default::default()
    };
    let ok = over_tls
        .verify_access_token(verify(cert_pem))
        .await
        .expect("verify");
    assert!(ok.valid, "{ok:?}");
    let (other, _) = custos_e2e::client_cert(&dir, "someone-else");
    let bad = over_tls
        .verify_access_token(verify(std::fs::read(other).expect("other")))
        .await
        .expect("verify");
    assert!(!bad.valid && bad.reason == "cnf_mismatch", "{bad:?}");

    // A client whose transport key is not a certificate from the CA never
    // gets past the handshake: an ordinary rustls client with no certificate.
    let anonymous = rustls::ClientConfig::builder()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let refused = match grpc_over(anonymous, port).await {
        Ok(c) => c
            .jwks(Some("as-at"))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    assert!(refused.is_err(), "no certificate, no service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_key_certified_ahead_takes_over_at_activation_without_a_failed_handshake() {
    let hsm = Hsm::new();
    let dir = hsm.dir.path().to_path_buf();
    let d = Daemon::start(&hsm).await;
    let (ca, first, server, keys) = scene(&d, &dir, "ES256").await;
    let config = keys
        .client_config("bank-transport", ca.roots())
        .expect("config");
    let c = d.client().await;
    let ks = c
        .rotate("bank-transport", false)
        .await
        .expect("rotate ahead");
    let pending = ks.versions.last().expect("new").kid.clone();
    // The pending key's CSR, issued and stored before it signs.
    let csr = dir.join("next.csr");
    let next = dir.join("next.pem");
    let out = d.cli(
        &[
            "keyset",
            "csr",
            "bank-transport",
            "--kid",
            &pending,
            "--subject",
            "CN=client-1",
            "--output",
            path(&csr),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca.issue(&csr, &next);
    let out = d.cli(
        &["keyset", "set-certificate", "bank-transport", path(&next)],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Still the first key's certificate until the activation...
    let page = fetch(config.clone(), server.port).await.expect("before");
    let seen = |page: &str, cert: &Path| {
        let pem = std::fs::read_to_string(cert).expect("pem");
        let body = pem.lines().nth(1).expect("first base64 line").to_string();
        page.contains(&body)
    };
    assert!(seen(&page, &first) && !seen(&page, &next));
    c.activate("bank-transport", &pending)
        .await
        .expect("activate");
    // ...then the same config presents the new key's, and the handshake works.
    let page = fetch(config, server.port).await.expect("after activation");
    assert!(seen(&page, &next) && !seen(&page, &first), "{page}");
    // A destroyed or unknown kid gets no CSR.
    let out = d.cli(
        &[
            "keyset",
            "csr",
            "bank-transport",
            "--kid",
            "no-such-kid",
            "--subject",
            "CN=x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active or pending version"));
}

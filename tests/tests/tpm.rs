//! End-to-end tests of the TPM 2.0 backend against a real swtpm: every
//! signature checked by an independent verifier (RustCrypto, openssl).

use custos_client::{proto, Client, KeysetSpec};
use custos_e2e::verify::{oidc_hash, openssl_pss_verify, verify_with_jwks};
use custos_e2e::{now, Daemon, DaemonConfig, Hsm, Swtpm};
use serde_json::{json, Value};

fn spec(name: &str, alg: &str, purposes: &[&str]) -> KeysetSpec {
    KeysetSpec {
        name: name.into(),
        alg: alg.into(),
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        backend: Some("tpm".into()),
        profile: if alg == "RS256" {
            Some("oidc".into())
        } else {
            None
        },
        ..KeysetSpec::default()
    }
}

fn config(tpm: &Swtpm, rsa_raw: bool) -> DaemonConfig {
    DaemonConfig {
        extra_toml: tpm.backend_toml(rsa_raw),
        env: vec![("CUSTOS_TPM_KEY_AUTH".into(), "tpm-key-auth-secret".into())],
        ..DaemonConfig::default()
    }
}

async fn jwks(c: &Client) -> Value {
    custos_e2e::every_jwks(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tpm_es256_signatures_verify() {
    let hsm = Hsm::new();
    let tpm = Swtpm::start();
    let d = Daemon::start_with(&hsm, config(&tpm, false)).await;
    let c = d.client().await;
    let ks = c
        .create_keyset(spec("tpm-es", "ES256", &["generic"]))
        .await
        .expect("create on the TPM");
    assert_eq!(ks.backend, "tpm");
    let set = jwks(&c).await;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in 0..250 {
                out.push(
                    c.sign_jwt(
                        "tpm-es",
                        "generic",
                        None,
                        &json!({"w": w, "i": i}).to_string(),
                    )
                    .await
                    .expect("sign")
                    .jws,
                );
            }
            out
        });
    }
    let mut n = 0;
    while let Some(batch) = tasks.join_next().await {
        for jws in batch.expect("task") {
            let v = verify_with_jwks(&jws, &set).unwrap_or_else(|e| panic!("signature {n}: {e}"));
            assert_eq!(v.signature.len(), 64);
            n += 1;
        }
    }
    assert_eq!(n, 1000);
    assert!(
        !d.log_text().contains("tpm-key-auth-secret"),
        "the key auth value is never logged"
    );
}

async fn rsa_signatures(rsa_raw: bool) {
    let hsm = Hsm::new();
    let tpm = Swtpm::start();
    let d = Daemon::start_with(&hsm, config(&tpm, rsa_raw)).await;
    let c = d.client().await;
    c.create_keyset(spec("tpm-ps", "PS256", &["generic"]))
        .await
        .expect("PS256 on the TPM");
    c.create_keyset(spec("tpm-rs", "RS256", &["generic"]))
        .await
        .expect("RS256 on the TPM");
    let set = jwks(&c).await;
    let ps_jwk = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["alg"] == "PS256")
        .expect("jwk")
        .clone();
    for i in 0..10 {
        let t = c
            .sign_jwt("tpm-ps", "generic", None, &json!({"i": i}).to_string())
            .await
            .expect("sign")
            .jws;
        verify_with_jwks(&t, &set).expect("RustCrypto PSS with salt 32");
        assert!(
            openssl_pss_verify(&t, &ps_jwk, 32).expect("openssl"),
            "salt 32 (raw path: {rsa_raw})"
        );
        assert!(
            !openssl_pss_verify(&t, &ps_jwk, 64).expect("openssl"),
            "not another salt"
        );
        let t = c
            .sign_jwt("tpm-rs", "generic", None, &json!({"i": i}).to_string())
            .await
            .expect("sign")
            .jws;
        verify_with_jwks(&t, &set).expect("RS256");
    }
    let expected = if rsa_raw {
        "path=\"raw-rsa\""
    } else {
        "path=\"tpm-native\""
    };
    assert!(
        d.log_text().contains(expected),
        "the {expected} path signed:\n{}",
        d.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_rsa_signatures_through_the_tpms_own_pss() {
    rsa_signatures(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_rsa_signatures_through_the_raw_rsa_path() {
    rsa_signatures(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fapi_operations_and_rotation_on_tpm_keysets() {
    let hsm = Hsm::new();
    let tpm = Swtpm::start();
    let d = Daemon::start_with(&hsm, config(&tpm, false)).await;
    let c = d.client().await;
    c.create_keyset(spec("as-id", "ES256", &["id_token"]))
        .await
        .expect("create");
    c.create_keyset(spec("client", "PS256", &["client_assertion"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let t = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "as-id".into(),
            claims_json: json!({"iss": "https://as", "sub": "u", "aud": "c", "exp": now() + 60})
                .to_string(),
            code: "the-code".into(),
            ..Default::default()
        })
        .await
        .expect("id token");
    let v = verify_with_jwks(&t.token, &set).expect("verifies");
    assert_eq!(v.claims["c_hash"], oidc_hash("ES256", "the-code"));
    let a = c
        .sign_client_assertion(proto::SignClientAssertionRequest {
            keyset: "client".into(),
            client_id: "c1".into(),
            audience: "https://as/token".into(),
            lifetime_seconds: 0,
        })
        .await
        .expect("assertion");
    let v = verify_with_jwks(&a.token, &set).expect("verifies");
    assert_eq!(v.claims["sub"], "c1");
    // Rotation on the TPM, as on PKCS#11.
    let ks = c.rotate("as-id", true).await.expect("rotate --now");
    let new = ks
        .versions
        .iter()
        .find(|v| v.state == "active")
        .expect("active")
        .kid
        .clone();
    let s = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "as-id".into(),
            claims_json: json!({"iss": "https://as.example", "sub": "a", "aud": "c1",
                "exp": now() + 60})
            .to_string(),
            ..Default::default()
        })
        .await
        .expect("sign");
    let s = proto::SignJwtResponse {
        jws: s.token,
        kid: s.kid,
    };
    assert_eq!(s.kid, new);
    verify_with_jwks(&s.jws, &jwks(&c).await).expect("new key verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_and_tpm_restarts_are_survived() {
    let hsm = Hsm::new();
    let mut tpm = Swtpm::start();
    let mut d = Daemon::start_with(&hsm, config(&tpm, false)).await;
    let c = d.client().await;
    for (name, alg) in [("e", "ES256"), ("p", "PS256"), ("r", "RS256")] {
        c.create_keyset(spec(name, alg, &["generic"]))
            .await
            .expect("create");
    }
    let before = jwks(&c).await;
    // The daemon restarts: same kids, still signing.
    d.restart().await;
    let c = d.client().await;
    assert_eq!(jwks(&c).await, before);
    for name in ["e", "p", "r"] {
        let s = c
            .sign_jwt(name, "generic", None, "{}")
            .await
            .expect("sign after daemon restart");
        verify_with_jwks(&s.jws, &before).expect("verifies");
    }
    // The TPM restarts under the running daemon: the next calls succeed after reload.
    tpm.restart();
    for name in ["e", "p", "r", "e"] {
        let s = c
            .sign_jwt(name, "generic", None, "{}")
            .await
            .expect("sign after TPM restart");
        verify_with_jwks(&s.jws, &before).expect("verifies");
    }
    assert!(
        d.log_text().contains("reconnecting"),
        "the reload is logged"
    );
    // An absent TPM is UNAVAILABLE with a clear message, not a hang.
    drop(tpm);
    let e = c
        .sign_jwt("e", "generic", None, "{}")
        .await
        .expect_err("no TPM");
    assert_eq!(e.status().expect("status").code(), tonic::Code::Unavailable);
    assert!(e.status().expect("status").message().contains("TPM"), "{e}");
    assert_eq!(e.outage(), Some("device"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tpm_gets_unavailable_at_its_deadline_and_recovers_on_its_own() {
    let hsm = Hsm::new();
    let tpm = Swtpm::start();
    let mut cfg = config(&tpm, false);
    cfg.extra_toml.push_str("call_timeout = \"2s\"\n");
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("tpm-es", "ES256", &["generic"]))
        .await
        .expect("create on the TPM");
    c.create_keyset(KeysetSpec {
        backend: Some("hsm".into()),
        ..spec("hsm-es", "ES256", &["generic"])
    })
    .await
    .expect("create on the token");
    c.sign_jwt("tpm-es", "generic", None, "{}")
        .await
        .expect("the TPM signs");

    tpm.signal("STOP");
    let start = std::time::Instant::now();
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        c.sign_jwt("tpm-es", "generic", None, "{}"),
    )
    .await
    .expect("answered at the deadline, not left hanging")
    .expect_err("a stopped TPM cannot sign");
    assert_eq!(
        e.status().map(tonic::Status::code),
        Some(tonic::Code::Unavailable),
        "{e}"
    );
    assert!(e.to_string().contains("\"tpm\""), "names the backend: {e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(6));
    // The other backend is not held up by the TPM's lock or threads.
    for _ in 0..5 {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            c.sign_jwt("hsm-es", "generic", None, "{}"),
        )
        .await
        .expect("the token answers at once")
        .expect("the token signs");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while custos_e2e::health(&c, "custos.backend.tpm").await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "TPM health never NOT_SERVING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    tpm.signal("CONT");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            c.sign_jwt("tpm-es", "generic", None, "{}"),
        )
        .await;
        if matches!(r, Ok(Ok(_))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {r:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while custos_e2e::health(&c, "custos.backend.tpm").await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "TPM health never SERVING again:\n{}",
            d.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

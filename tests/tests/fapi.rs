//! End-to-end tests of the FAPI token operations on SoftHSM2: every token is
//! verified by an independent implementation and its claims checked, hashes
//! recomputed here, JWEs opened with RustCrypto.

use custos_client::{proto, Client};
use custos_e2e::jwe::{encrypt_rsa_oaep_256, Recipient};
use custos_e2e::verify::{oidc_hash, verify_with_jwks, Verified};
use custos_e2e::{client_cert, now, spec, Daemon, Hsm};
use serde_json::{json, Value};
use tonic::Code;

async fn jwks(c: &Client) -> Value {
    custos_e2e::every_jwks(c).await
}

fn refused<T: std::fmt::Debug>(r: Result<T, custos_client::Error>) -> (Code, String) {
    let e = r.expect_err("must be refused");
    let s = e.status().expect("a gRPC status");
    (s.code(), s.message().to_string())
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, custos_client::Error>, needle: &str) {
    let (code, msg) = refused(r);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains(needle),
        "message should name {needle:?}: {msg}"
    );
}

async fn setup() -> (Hsm, Daemon, Client) {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    (hsm, d, c)
}

fn id_claims(exp_in: i64) -> String {
    json!({"iss": "https://as.bank", "sub": "alice", "aud": "client-1", "exp": now() + exp_in, "nonce": "n-1"}).to_string()
}

fn verify(token: &str, set: &Value) -> Verified {
    verify_with_jwks(token, set).unwrap_or_else(|e| panic!("independent verification failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_carry_independently_recomputed_hashes_for_each_algorithm() {
    let (_hsm, _d, c) = setup().await;
    for alg in ["ES256", "PS256", "EdDSA"] {
        c.create_keyset(spec(&format!("id-{alg}"), alg, &["id_token"]))
            .await
            .expect("create");
    }
    let set = jwks(&c).await;
    let (code, at, state) = (
        "SplxlOBeZQQYbYS6WxSbIA",
        "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
        "af0ifjsldkj",
    );
    for alg in ["ES256", "PS256", "EdDSA"] {
        let t = c
            .sign_id_token(proto::SignIdTokenRequest {
                keyset: format!("id-{alg}"),
                claims_json: id_claims(300),
                code: code.into(),
                access_token: at.into(),
                state: state.into(),
                encrypt_to: None,
                ..Default::default()
            })
            .await
            .expect("sign");
        assert!(!t.encrypted);
        let v = verify(&t.token, &set);
        assert_eq!(v.header["alg"], alg);
        assert_eq!(v.claims["c_hash"], oidc_hash(alg, code), "{alg} c_hash");
        assert_eq!(v.claims["at_hash"], oidc_hash(alg, at), "{alg} at_hash");
        assert_eq!(v.claims["s_hash"], oidc_hash(alg, state), "{alg} s_hash");
        let expected_len = if alg == "EdDSA" { 43 } else { 22 };
        assert_eq!(
            v.claims["c_hash"].as_str().expect("str").len(),
            expected_len
        );
        let iat = v.claims["iat"].as_i64().expect("iat set");
        assert!((iat - now()).abs() < 30);
        assert_eq!(v.claims["nonce"], "n-1");
    }
    // Without code/access token/state there are no hashes.
    let t = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "id-ES256".into(),
            claims_json: id_claims(60),
            ..Default::default()
        })
        .await
        .expect("sign");
    let v = verify(&t.token, &set);
    assert!(v.claims.get("c_hash").is_none() && v.claims.get("at_hash").is_none());

    // Refusals name the claim.
    let req = |claims: Value| proto::SignIdTokenRequest {
        keyset: "id-ES256".into(),
        claims_json: claims.to_string(),
        ..Default::default()
    };
    let base = json!({"iss": "i", "sub": "s", "aud": "a", "exp": now() + 60});
    for missing in ["iss", "sub", "aud", "exp"] {
        let mut cl = base.clone();
        cl.as_object_mut().expect("obj").remove(missing);
        assert_invalid(c.sign_id_token(req(cl)).await, missing);
    }
    let mut cl = base.clone();
    cl["exp"] = json!(now() - 10);
    assert_invalid(c.sign_id_token(req(cl)).await, "exp");
    let mut cl = base.clone();
    cl["exp"] = json!(now() + 3700);
    assert_invalid(c.sign_id_token(req(cl)).await, "maximum");
    let mut cl = base.clone();
    cl["at_hash"] = json!("forged");
    assert_invalid(c.sign_id_token(req(cl)).await, "at_hash");
    // Purpose: an id_token keyset cannot sign a request object.
    let (code_, msg) = refused(
        c.sign_request_object(proto::SignRequestObjectRequest {
            keyset: "id-ES256".into(),
            claims_json: "{}".into(),
            lifetime_seconds: 0,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_token_lifetime_is_per_keyset() {
    let (_hsm, _d, c) = setup().await;
    let mut s = spec("short", "ES256", &["id_token", "access_token"]);
    s.max_token_lifetime = Some(120);
    c.create_keyset(s).await.expect("create");
    let ok = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "short".into(),
            claims_json: id_claims(100),
            ..Default::default()
        })
        .await;
    assert!(ok.is_ok());
    assert_invalid(
        c.sign_id_token(proto::SignIdTokenRequest {
            keyset: "short".into(),
            claims_json: id_claims(200),
            ..Default::default()
        })
        .await,
        "120",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jarm_success_error_encryption_and_refusals() {
    let (_hsm, _d, c) = setup().await;
    let mut s = spec("jarm", "PS256", &["jarm"]);
    s.issuer = Some("https://as.bank".into());
    c.create_keyset(s).await.expect("create");
    c.create_keyset(spec("jarm-noiss", "ES256", &["jarm"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let req = |params: Value, lifetime: i64| proto::SignJarmResponseRequest {
        keyset: "jarm".into(),
        client_id: "client-1".into(),
        lifetime_seconds: lifetime,
        params_json: params.to_string(),
        issuer: String::new(),
        encrypt_to: None,
    };
    let t = c
        .sign_jarm_response(req(json!({"code": "c-123", "state": "s-1"}), 0))
        .await
        .expect("success");
    let v = verify(&t.token, &set);
    assert_eq!(v.claims["iss"], "https://as.bank");
    assert_eq!(v.claims["aud"], "client-1");
    assert_eq!(v.claims["code"], "c-123");
    assert_eq!(v.claims["state"], "s-1");
    let exp = v.claims["exp"].as_i64().expect("exp");
    assert!((exp - (now() + 600)).abs() < 30, "default lifetime 600 s");
    let t = c
        .sign_jarm_response(req(
            json!({"error": "access_denied", "error_description": "no", "state": "s"}),
            120,
        ))
        .await
        .expect("error response");
    let v = verify(&t.token, &set);
    assert_eq!(v.claims["error"], "access_denied");
    assert!((v.claims["exp"].as_i64().expect("exp") - (now() + 120)).abs() < 30);

    assert_invalid(
        c.sign_jarm_response(req(json!({"code": "c", "error": "x"}), 0))
            .await,
        "never both",
    );
    assert_invalid(
        c.sign_jarm_response(req(json!({"code": "c"}), 601)).await,
        "600",
    );
    assert_invalid(
        c.sign_jarm_response(req(json!({"code": "c", "scope": "x"}), 0))
            .await,
        "scope",
    );
    let mut other_iss = req(json!({"code": "c"}), 0);
    other_iss.issuer = "https://evil".into();
    assert_invalid(c.sign_jarm_response(other_iss).await, "issuer");
    let mut no_iss = req(json!({"code": "c"}), 0);
    no_iss.keyset = "jarm-noiss".into();
    assert_invalid(c.sign_jarm_response(no_iss.clone()).await, "issuer");
    no_iss.issuer = "https://as2".into();
    let t = c
        .sign_jarm_response(no_iss)
        .await
        .expect("issuer given per call");
    assert_eq!(verify(&t.token, &set).claims["iss"], "https://as2");

    // Sign-then-encrypt to an EC client key (ECDH-ES + A256GCM), opened independently.
    let client_key = Recipient::ec();
    let mut enc = req(json!({"code": "c-9", "state": "s"}), 0);
    enc.encrypt_to = Some(proto::Encryption {
        recipient_jwk: client_key.public_jwk("client-enc-1").to_string(),
        enc: String::new(),
    });
    let t = c.sign_jarm_response(enc).await.expect("encrypted jarm");
    assert!(t.encrypted);
    let (header, inner) = client_key
        .decrypt(&t.token)
        .expect("independent ECDH-ES decryption");
    assert_eq!(header["alg"], "ECDH-ES");
    assert_eq!(header["enc"], "A256GCM");
    assert_eq!(header["cty"], "JWT");
    assert_eq!(header["kid"], "client-enc-1");
    let v = verify(std::str::from_utf8(&inner).expect("utf-8"), &set);
    assert_eq!(v.claims["code"], "c-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_encrypted_to_an_rsa_client_with_both_encs() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("id", "ES256", &["id_token"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let client_key = Recipient::rsa();
    for enc in ["A256GCM", "A128CBC-HS256"] {
        let t = c
            .sign_id_token(proto::SignIdTokenRequest {
                keyset: "id".into(),
                claims_json: id_claims(60),
                code: "abc".into(),
                encrypt_to: Some(proto::Encryption {
                    recipient_jwk: client_key.public_jwk("rsa-1").to_string(),
                    enc: enc.into(),
                }),
                ..Default::default()
            })
            .await
            .expect("encrypted id token");
        let (header, inner) = client_key
            .decrypt(&t.token)
            .unwrap_or_else(|e| panic!("{enc}: {e}"));
        assert_eq!(header["alg"], "RSA-OAEP-256");
        assert_eq!(header["enc"], enc);
        let v = verify(std::str::from_utf8(&inner).expect("utf-8"), &set);
        assert_eq!(v.claims["c_hash"], oidc_hash("ES256", "abc"));
    }
    let bad = |jwk: Value, enc: &str| proto::SignIdTokenRequest {
        keyset: "id".into(),
        claims_json: id_claims(60),
        encrypt_to: Some(proto::Encryption {
            recipient_jwk: jwk.to_string(),
            enc: enc.into(),
        }),
        ..Default::default()
    };
    assert_invalid(
        c.sign_id_token(bad(client_key.public_jwk("k"), "A128GCM"))
            .await,
        "enc",
    );
    let mut private = client_key.public_jwk("k");
    private["d"] = json!("AAAA");
    assert_invalid(c.sign_id_token(bad(private, "")).await, "private");
    let mut sig_use = client_key.public_jwk("k");
    sig_use["use"] = json!("sig");
    assert_invalid(c.sign_id_token(bad(sig_use, "")).await, "use");
    assert_invalid(
        c.sign_id_token(bad(json!({"kty": "oct", "k": "AAAA"}), ""))
            .await,
        "oct",
    );
    assert_invalid(c.sign_id_token(bad(json!("not a jwk"), "")).await, "JWK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_objects_follow_rfc_9101_and_fapi_limits() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("client-ro", "PS256", &["request_object"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let base = json!({"iss": "client-1", "client_id": "client-1", "aud": "https://as.bank", "response_type": "code",
                      "redirect_uri": "https://client/cb", "scope": "openid accounts", "state": "s", "nonce": "n",
                      "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"});
    let req = |claims: &Value, lifetime: i64| proto::SignRequestObjectRequest {
        keyset: "client-ro".into(),
        claims_json: claims.to_string(),
        lifetime_seconds: lifetime,
        ..Default::default()
    };
    let t = c.sign_request_object(req(&base, 0)).await.expect("sign");
    let v = verify(&t.token, &set);
    assert_eq!(v.header["typ"], "oauth-authz-req+jwt");
    let (nbf, exp) = (
        v.claims["nbf"].as_i64().expect("nbf"),
        v.claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - nbf, 300);
    assert!((nbf - now()).abs() < 30);
    assert!(v.claims["iat"].is_i64());
    let jti1 = v.claims["jti"].as_str().expect("jti").to_string();
    let v2 = verify(
        &c.sign_request_object(req(&base, 3600))
            .await
            .expect("sign")
            .token,
        &set,
    );
    assert_ne!(v2.claims["jti"], jti1.as_str(), "a fresh jti each time");
    assert_eq!(
        v2.claims["exp"].as_i64().expect("exp") - v2.claims["nbf"].as_i64().expect("nbf"),
        3600
    );

    assert_invalid(c.sign_request_object(req(&base, 3601)).await, "3600");
    let mut long = base.clone();
    long["nbf"] = json!(now());
    long["exp"] = json!(now() + 3601);
    assert_invalid(c.sign_request_object(req(&long, 0)).await, "60 minutes");
    let mut wrong_iss = base.clone();
    wrong_iss["iss"] = json!("someone-else");
    assert_invalid(c.sign_request_object(req(&wrong_iss, 0)).await, "client_id");
    for missing in ["aud", "client_id", "response_type", "redirect_uri", "scope"] {
        let mut m = base.clone();
        m.as_object_mut().expect("obj").remove(missing);
        assert_invalid(c.sign_request_object(req(&m, 0)).await, missing);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_assertions_have_fresh_jtis_and_the_right_subjects() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("client-ca", "EdDSA", &["client_assertion"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let req = |lifetime: i64| proto::SignClientAssertionRequest {
        keyset: "client-ca".into(),
        client_id: "client-1".into(),
        audience: "https://as.bank/token".into(),
        lifetime_seconds: lifetime,
    };
    let mut jtis = std::collections::HashSet::new();
    for _ in 0..50 {
        let v = verify(
            &c.sign_client_assertion(req(0)).await.expect("sign").token,
            &set,
        );
        assert_eq!(v.claims["iss"], "client-1");
        assert_eq!(v.claims["sub"], "client-1");
        assert_eq!(v.claims["aud"], "https://as.bank/token");
        assert_eq!(
            v.claims["exp"].as_i64().expect("exp") - v.claims["iat"].as_i64().expect("iat"),
            60
        );
        let jti = v.claims["jti"].as_str().expect("jti").to_string();
        assert!(jti.len() >= 22, "at least 128 bits: {jti}");
        assert!(jtis.insert(jti), "jti repeated");
    }
    let v = verify(
        &c.sign_client_assertion(req(300)).await.expect("sign").token,
        &set,
    );
    assert_eq!(
        v.claims["exp"].as_i64().expect("exp") - v.claims["iat"].as_i64().expect("iat"),
        300
    );
    let mut no_aud = req(0);
    no_aud.audience.clear();
    assert_invalid(c.sign_client_assertion(no_aud).await, "audience");
    let mut no_client = req(0);
    no_client.client_id.clear();
    assert_invalid(c.sign_client_assertion(no_client).await, "client_id");
    assert_invalid(c.sign_client_assertion(req(-5)).await, "lifetime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_are_typed_and_bound_to_certificates_or_dpop_keys() {
    use base64::Engine;
    use sha2::Digest;
    let (hsm, _d, c) = setup().await;
    c.create_keyset(spec("at", "ES256", &["access_token"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let claims = json!({"iss": "https://as.bank", "sub": "alice", "aud": "https://rs.bank", "exp": now() + 300,
                        "client_id": "client-1", "scope": "accounts"})
    .to_string();
    let req = |binding| proto::SignAccessTokenRequest {
        keyset: "at".into(),
        claims_json: claims.clone(),
        binding,
    };
    use proto::sign_access_token_request::Binding;

    let v = verify(
        &c.sign_access_token(req(None)).await.expect("bearer").token,
        &set,
    );
    assert_eq!(v.header["typ"], "at+jwt");
    assert!(v.claims["jti"].is_string() && v.claims["iat"].is_i64());
    assert!(v.claims.get("cnf").is_none());

    let (pem_path, der) = client_cert(hsm.dir.path(), "client-1");
    let expected =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
    let pem = std::fs::read(&pem_path).expect("pem");
    for input in [pem.clone(), der.clone()] {
        let v = verify(
            &c.sign_access_token(req(Some(Binding::ClientCertificate(input))))
                .await
                .expect("mtls")
                .token,
            &set,
        );
        assert_eq!(v.claims["cnf"]["x5t#S256"], expected.as_str());
    }
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let v = verify(
        &c.sign_access_token(req(Some(Binding::Jkt(jkt.into()))))
            .await
            .expect("dpop")
            .token,
        &set,
    );
    assert_eq!(v.claims["cnf"]["jkt"], jkt);

    assert_invalid(
        c.sign_access_token(req(Some(Binding::ClientCertificate(b"garbage".to_vec()))))
            .await,
        "certificate",
    );
    assert_invalid(
        c.sign_access_token(req(Some(Binding::Jkt("short".into()))))
            .await,
        "jkt",
    );
    let mut no_client: Value = serde_json::from_str(&claims).expect("json");
    no_client.as_object_mut().expect("obj").remove("client_id");
    assert_invalid(
        c.sign_access_token(proto::SignAccessTokenRequest {
            keyset: "at".into(),
            claims_json: no_client.to_string(),
            binding: None,
        })
        .await,
        "client_id",
    );
    let mut forged: Value = serde_json::from_str(&claims).expect("json");
    forged["cnf"] = json!({"jkt": jkt});
    assert_invalid(
        c.sign_access_token(proto::SignAccessTokenRequest {
            keyset: "at".into(),
            claims_json: forged.to_string(),
            binding: None,
        })
        .await,
        "cnf",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_request_objects_are_opened_inside_the_hsm() {
    let (hsm, d, c) = setup().await;
    let mut dec = spec("as-enc", "RSA-OAEP-256", &["request_object_decryption"]);
    dec.profile = Some("fapi1-advanced".into());
    c.create_keyset(dec)
        .await
        .expect("create decryption keyset");
    c.create_keyset(spec("client-ro", "ES256", &["request_object"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let enc_jwk = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["alg"] == "RSA-OAEP-256")
        .expect("enc key")
        .clone();
    assert_eq!(enc_jwk["use"], "enc");
    assert_eq!(enc_jwk["kty"], "RSA");

    // The client signs a request object and encrypts it to the AS's published key,
    // with RustCrypto, as any client library would.
    let ro = c
        .sign_request_object(proto::SignRequestObjectRequest {
            keyset: "client-ro".into(),
            claims_json:
                json!({"iss": "c1", "client_id": "c1", "aud": "https://as", "response_type": "code",
                                "redirect_uri": "https://c/cb", "scope": "openid"})
                .to_string(),
            lifetime_seconds: 0,
            ..Default::default()
        })
        .await
        .expect("sign")
        .token;
    let jwe = encrypt_rsa_oaep_256(ro.as_bytes(), &enc_jwk, "RSA-OAEP-256");
    let out = c
        .decrypt_jwe("as-enc", &jwe)
        .await
        .unwrap_or_else(|e| panic!("decrypt in the HSM: {e}\n{}", d.log_text()));
    assert_eq!(out.plaintext, ro.as_bytes());
    assert_eq!(out.kid, enc_jwk["kid"].as_str().expect("kid"));
    verify(std::str::from_utf8(&out.plaintext).expect("utf-8"), &set);

    // Refusals: RSA1_5, tampering, wrong kid, the wrong keyset kinds.
    let mut parts: Vec<String> = jwe.split('.').map(String::from).collect();
    let (code, msg) = refused(
        c.decrypt_jwe("as-enc", &encrypt_rsa_oaep_256(b"x", &enc_jwk, "RSA1_5"))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("RSA1_5"), "{msg}");
    parts[3] = {
        let mut ct = parts[3].clone().into_bytes();
        ct[0] = if ct[0] == b'A' { b'B' } else { b'A' };
        String::from_utf8(ct).expect("ascii")
    };
    assert_eq!(
        refused(c.decrypt_jwe("as-enc", &parts.join(".")).await).0,
        Code::InvalidArgument
    );
    let mut other = enc_jwk.clone();
    other["kid"] = json!("another-key");
    assert_eq!(
        refused(
            c.decrypt_jwe(
                "as-enc",
                &encrypt_rsa_oaep_256(b"x", &other, "RSA-OAEP-256")
            )
            .await
        )
        .0,
        Code::InvalidArgument
    );
    assert_eq!(
        refused(c.decrypt_jwe("as-enc", "a.b.c").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        refused(c.decrypt_jwe("client-ro", &jwe).await).0,
        Code::FailedPrecondition
    );
    assert_eq!(
        refused(
            c.sign_jwt("as-enc", "request_object_decryption", None, "{}")
                .await
        )
        .0,
        Code::FailedPrecondition
    );
    assert_eq!(
        refused(
            c.create_keyset(spec("bad", "RSA-OAEP-256", &["id_token"]))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    // On the token the decryption key decrypts and does nothing else.
    let listing = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let rsa_obj = listing
        .split("Private Key Object")
        .find(|o| o.contains("custos:as-enc:"))
        .expect("as-enc key");
    let usage = rsa_obj
        .lines()
        .find(|l| l.contains("Usage:"))
        .expect("usage");
    assert!(
        usage.contains("decrypt") && !usage.contains("sign"),
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_token_subcommands() {
    let (hsm, d, c) = setup().await;
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = d.cli(args, stdin);
        assert!(
            out.status.success(),
            "custos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    ok(
        &[
            "keyset",
            "create",
            "as",
            "--alg",
            "ES256",
            "--purpose",
            "id_token,jarm,access_token",
            "--issuer",
            "https://as.bank",
            "--profile",
            "fapi1-advanced",
        ],
        None,
    );
    ok(
        &[
            "keyset",
            "create",
            "client",
            "--alg",
            "PS256",
            "--purpose",
            "request_object,client_assertion",
        ],
        None,
    );
    let set = jwks(&c).await;
    let claims = hsm.dir.path().join("id.json");
    std::fs::write(&claims, id_claims(120)).expect("write");
    let t = ok(
        &[
            "sign",
            "id-token",
            "--keyset",
            "as",
            "--code",
            "abc",
            "--state",
            "st",
            "--claims",
            claims.to_str().expect("utf-8"),
        ],
        None,
    );
    let v = verify(&t, &set);
    assert_eq!(v.claims["c_hash"], oidc_hash("ES256", "abc"));
    assert_eq!(v.claims["s_hash"], oidc_hash("ES256", "st"));
    let t = ok(
        &[
            "sign",
            "jarm",
            "--keyset",
            "as",
            "--client-id",
            "c1",
            "--lifetime",
            "60",
        ],
        Some(r#"{"code":"x","state":"y"}"#),
    );
    assert_eq!(verify(&t, &set).claims["aud"], "c1");
    let ro = json!({"iss": "c1", "client_id": "c1", "aud": "https://as", "response_type": "code", "redirect_uri": "https://c/cb", "scope": "openid"});
    let t = ok(
        &["sign", "request-object", "--keyset", "client"],
        Some(&ro.to_string()),
    );
    assert_eq!(verify(&t, &set).header["typ"], "oauth-authz-req+jwt");
    let t = ok(
        &[
            "sign",
            "client-assertion",
            "--keyset",
            "client",
            "--client-id",
            "c1",
            "--audience",
            "https://as/token",
        ],
        None,
    );
    assert_eq!(verify(&t, &set).claims["sub"], "c1");
    let (pem, _) = client_cert(hsm.dir.path(), "client-1");
    let at = json!({"iss": "https://as.bank", "sub": "a", "aud": "rs", "exp": now() + 60, "client_id": "c1"}).to_string();
    let t = ok(
        &[
            "sign",
            "access-token",
            "--keyset",
            "as",
            "--cert",
            pem.to_str().expect("utf-8"),
        ],
        Some(&at),
    );
    assert!(verify(&t, &set).claims["cnf"]["x5t#S256"].is_string());
    let enc_key = Recipient::ec();
    let jwk_file = hsm.dir.path().join("client-enc.jwk");
    std::fs::write(&jwk_file, enc_key.public_jwk("e1").to_string()).expect("write");
    let t = ok(
        &[
            "sign",
            "id-token",
            "--keyset",
            "as",
            "--encrypt-to",
            jwk_file.to_str().expect("utf-8"),
        ],
        Some(&id_claims(60)),
    );
    let (_, inner) = enc_key.decrypt(&t).expect("decrypt");
    verify(std::str::from_utf8(&inner).expect("utf-8"), &set);
    // A refusal is exit 1 with the claim named on stderr.
    let out = d.cli(
        &["sign", "id-token", "--keyset", "as"],
        Some(r#"{"sub":"x"}"#),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exp")
            || String::from_utf8_lossy(&out.stderr).contains("aud")
    );
    // EdDSA is outside fapi1-advanced.
    let out = d.cli(
        &[
            "keyset",
            "create",
            "x",
            "--alg",
            "EdDSA",
            "--purpose",
            "id_token",
            "--profile",
            "fapi1-advanced",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PS256, ES256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_authorization_requests_are_checked_and_metadata_matches_the_keysets() {
    let (_hsm, d, c) = setup().await;
    c.create_keyset(spec("client-ro", "ES256", &["request_object"]))
        .await
        .expect("create");
    c.create_keyset(spec("as-at", "PS256", &["access_token"]))
        .await
        .expect("create");
    c.create_keyset(spec("as-id", "EdDSA", &["id_token", "jarm"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let details = json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]);
    let ro = json!({"iss": "c1", "client_id": "c1", "aud": "https://as", "response_type": "code",
                    "redirect_uri": "https://c/cb", "scope": "openid", "authorization_details": details});
    let t = c
        .sign_request_object(proto::SignRequestObjectRequest {
            keyset: "client-ro".into(),
            claims_json: ro.to_string(),
            lifetime_seconds: 0,
            ..Default::default()
        })
        .await
        .expect("RAR request object");
    assert_eq!(
        verify(&t.token, &set).claims["authorization_details"],
        details
    );
    let mut bad = ro.clone();
    bad["authorization_details"] = json!([{"type": "payment_initiation"}, {"actions": ["read"]}]);
    assert_invalid(
        c.sign_request_object(proto::SignRequestObjectRequest {
            keyset: "client-ro".into(),
            claims_json: bad.to_string(),
            lifetime_seconds: 0,
            ..Default::default()
        })
        .await,
        "authorization_details[1]",
    );
    let at = json!({"iss": "https://as", "sub": "u", "aud": "rs", "exp": now() + 60, "client_id": "c1", "authorization_details": {"type": "x"}});
    assert_invalid(
        c.sign_access_token(proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: at.to_string(),
            binding: None,
        })
        .await,
        "authorization_details",
    );
    // Discovery metadata reflects what the keysets will do.
    let out = d.cli(&["metadata"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(m["id_token_signing_alg_values_supported"], json!(["EdDSA"]));
    assert_eq!(
        m["authorization_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    assert_eq!(
        m["id_token_encryption_alg_values_supported"],
        json!(["RSA-OAEP-256", "ECDH-ES"])
    );
    assert_eq!(
        m["jwks_uri_content"]["keys"]
            .as_array()
            .expect("keys")
            .len(),
        // as-at and as-id: the client's request-object key is never published
        // in the issuer's jwks_uri (trust model).
        2
    );
    let out = d.cli(&["metadata", "--keyset", "as-at"], None);
    let m: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(m.get("id_token_signing_alg_values_supported").is_none());
    assert_eq!(m["jwks_uri_content"]["keys"][0]["alg"], "PS256");
    assert_eq!(
        d.cli(&["metadata", "--keyset", "nope"], None).status.code(),
        Some(1)
    );
}

//! End-to-end tests of the rest of the FAPI family on SoftHSM2: RFC 9701
//! signed introspection, RFC 9421 HTTP message signatures (with RFC 9530
//! Content-Digest) and CIBA. Every signature is checked by an independent
//! implementation (RustCrypto, ed25519-dalek, or the openssl CLI), and every
//! signature base is rebuilt here by hand.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use custos_client::{proto, Client};
use custos_e2e::sign::EcKey;
use custos_e2e::verify::{oidc_hash, openssl_pss_sha512_verify, verify_raw, verify_with_jwks};
use custos_e2e::{now, spec, Daemon, Hsm};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::Code;

async fn setup() -> (Hsm, Daemon, Client) {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    (hsm, d, c)
}

async fn jwks(c: &Client) -> Value {
    custos_e2e::every_jwks(c).await
}

fn refused<T: std::fmt::Debug>(r: Result<T, custos_client::Error>) -> (Code, String) {
    let e = r.expect_err("must be refused");
    let s = e.status().expect("a gRPC status");
    (s.code(), s.message().to_string())
}

fn field(name: &str, value: &str) -> proto::HttpField {
    proto::HttpField {
        name: name.into(),
        value: value.into(),
    }
}

/// A FAPI resource request with a body.
fn resource_request() -> proto::HttpMessage {
    proto::HttpMessage {
        method: "POST".into(),
        target_uri: "https://rs.bank.example/payments?type=domestic".into(),
        fields: vec![
            field("Host", "rs.bank.example"),
            field("Authorization", "DPoP eyJhbGciOiJFUzI1NiJ9.e30.sig"),
            field("Content-Type", "application/json"),
        ],
        body: br#"{"amount": "10.00", "currency": "EUR"}"#.to_vec(),
        ..Default::default()
    }
}

fn with_fields(mut m: proto::HttpMessage, extra: &[(&str, &str)]) -> proto::HttpMessage {
    for (n, v) in extra {
        m.fields.push(field(n, v));
    }
    m
}

/// The signature bytes of a one-member `Signature` field `label=:b64:`.
fn signature_bytes(field_value: &str, label: &str) -> Vec<u8> {
    let b64 = field_value
        .strip_prefix(&format!("{label}=:"))
        .and_then(|s| s.strip_suffix(':'))
        .expect("label=:base64:");
    STANDARD.decode(b64).expect("base64")
}

fn jwk_of<'a>(set: &'a Value, kid: &str) -> &'a Value {
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("kid in JWKS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_responses_are_signed_as_rfc_9701_says() {
    let (_hsm, d, c) = setup().await;
    c.create_keyset(spec("intro", "PS256", &["introspection"]))
        .await
        .expect("create");
    c.create_keyset(spec("ids", "ES256", &["id_token"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let response = json!({"active": true, "scope": "accounts payments", "client_id": "rs-client",
        "sub": "alice", "exp": now() + 300, "token_type": "DPoP", "cnf": {"jkt": "abc"}});
    let t = c
        .sign_introspection_response(proto::SignIntrospectionResponseRequest {
            keyset: "intro".into(),
            audience: "rs-client".into(),
            response_json: response.to_string(),
            issuer: "https://as.bank".into(),
            encrypt_to: None,
        })
        .await
        .expect("sign");
    let v = verify_with_jwks(&t.token, &set).expect("independent verification");
    assert_eq!(v.header["typ"], "token-introspection+jwt");
    assert_eq!(v.header["alg"], "PS256");
    assert_eq!(v.claims["iss"], "https://as.bank");
    assert_eq!(v.claims["aud"], "rs-client");
    assert!((v.claims["iat"].as_i64().expect("iat") - now()).abs() < 30);
    assert_eq!(v.claims["token_introspection"], response);
    assert!(
        v.claims.get("sub").is_none(),
        "sub stays inside token_introspection"
    );

    let inactive = c
        .sign_introspection_response(proto::SignIntrospectionResponseRequest {
            keyset: "intro".into(),
            audience: "rs-client".into(),
            response_json: r#"{"active": false}"#.into(),
            issuer: "https://as.bank".into(),
            encrypt_to: None,
        })
        .await
        .expect("inactive");
    let v = verify_with_jwks(&inactive.token, &set).expect("verify");
    assert_eq!(v.claims["token_introspection"], json!({"active": false}));

    for (body, needle) in [
        (r#"{"active": false, "sub": "alice"}"#, "sub"),
        (r#"{"scope": "x"}"#, "active"),
        (r#"{"active": "true"}"#, "active"),
        ("[1]", "object"),
    ] {
        let (code, msg) = refused(
            c.sign_introspection_response(proto::SignIntrospectionResponseRequest {
                keyset: "intro".into(),
                audience: "rs-client".into(),
                response_json: body.into(),
                issuer: "https://as.bank".into(),
                encrypt_to: None,
            })
            .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (code, msg) = refused(
        c.sign_introspection_response(proto::SignIntrospectionResponseRequest {
            keyset: "ids".into(),
            audience: "rs-client".into(),
            response_json: r#"{"active": false}"#.into(),
            issuer: "https://as.bank".into(),
            encrypt_to: None,
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");

    // The CLI path.
    let out = d.cli(
        &[
            "sign",
            "introspection",
            "--keyset",
            "intro",
            "--audience",
            "rs-2",
            "--issuer",
            "https://as.bank",
        ],
        Some(r#"{"active": true, "scope": "accounts"}"#),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf8");
    let v = verify_with_jwks(token.trim(), &set).expect("verify");
    assert_eq!(v.claims["aud"], "rs-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_signed_for_each_algorithm_and_checked_independently() {
    let hsm = Hsm::new();
    let audit = hsm.dir.path().join("audit.jsonl");
    let d = Daemon::start_with(&hsm, custos_e2e::DaemonConfig::audited(&audit)).await;
    let c = d.client().await;
    let mut bases = Vec::new();
    for alg in ["ES256", "EdDSA", "PS256"] {
        c.create_keyset(spec(&format!("http-{alg}"), alg, &["http_message"]))
            .await
            .expect("create");
    }
    let set = jwks(&c).await;
    let body = br#"{"amount": "10.00", "currency": "EUR"}"#;
    let digest = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)));
    for (alg, http_alg) in [
        ("ES256", "ecdsa-p256-sha256"),
        ("EdDSA", "ed25519"),
        ("PS256", "rsa-pss-sha512"),
    ] {
        let keyset = format!("http-{alg}");
        let signed = c
            .sign_http_message(proto::SignHttpMessageRequest {
                keyset: keyset.clone(),
                message: Some(resource_request()),
                ..Default::default()
            })
            .await
            .expect("sign");
        assert_eq!(signed.alg, http_alg);
        assert_eq!(signed.label, "sig1");
        assert_eq!(
            signed.content_digest, digest,
            "Content-Digest recomputed here"
        );
        // The Signature-Input as FAPI wants it, and the base rebuilt by hand.
        let params = signed.signature_input.strip_prefix("sig1=").expect("label");
        let created: i64 = params
            .split(";created=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.parse().ok())
            .expect("created");
        assert!((created - now()).abs() < 30);
        let expected_params = format!(
            "(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created={created};keyid=\"{}\";alg=\"{http_alg}\";tag=\"fapi-2-request\"",
            signed.kid
        );
        assert_eq!(params, expected_params);
        bases.push(hex_sha256(signed.signature_base.as_bytes()));
        let base = format!(
            "\"@method\": POST\n\"@target-uri\": https://rs.bank.example/payments?type=domestic\n\"authorization\": DPoP eyJhbGciOiJFUzI1NiJ9.e30.sig\n\"content-digest\": {digest}\n\"@signature-params\": {expected_params}"
        );
        assert_eq!(signed.signature_base, base);
        let sig = signature_bytes(&signed.signature, "sig1");
        let jwk = jwk_of(&set, &signed.kid);
        match alg {
            "PS256" => {
                assert_eq!(sig.len(), 256);
                assert!(openssl_pss_sha512_verify(jwk, base.as_bytes(), &sig, 64).expect("openssl"));
                assert!(
                    !openssl_pss_sha512_verify(jwk, base.as_bytes(), &sig, 32).expect("openssl")
                );
            }
            jose => verify_raw(jose, jwk, base.as_bytes(), &sig).expect("independent verification"),
        }

        // The daemon's own verifier agrees, against the keyset and a JWKS.
        let msg = with_fields(
            resource_request(),
            &[
                ("Content-Digest", &signed.content_digest),
                ("Signature-Input", &signed.signature_input),
                ("Signature", &signed.signature),
            ],
        );
        for keys in [
            proto::verify_http_message_request::Keys::Keyset(keyset.clone()),
            proto::verify_http_message_request::Keys::JwksJson(set.to_string()),
        ] {
            let v = c
                .verify_http_message(proto::VerifyHttpMessageRequest {
                    message: Some(msg.clone()),
                    keys: Some(keys),
                    tag: "fapi-2-request".into(),
                    ..Default::default()
                })
                .await
                .expect("verify");
            assert!(v.valid, "{alg}: {} {}", v.reason, v.detail);
            assert_eq!(v.kid, signed.kid);
        }
    }
    // The audit line's input_sha256 is the SHA-256 of the whole signature
    // base, recomputed here (bases hold host names, so nothing may cut at a dot).
    let audited: Vec<String> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|l| l["operation"] == "sign_http_message" && l["outcome"] == "ok")
        .map(|l| l["input_sha256"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(audited, bases);
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_signature_refusals_give_reasons() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("http", "ES256", &["http_message"]))
        .await
        .expect("create");
    c.create_keyset(spec("other", "ES256", &["http_message"]))
        .await
        .expect("create");
    let sign = |components: Vec<String>| {
        let c = c.clone();
        async move {
            let s = c
                .sign_http_message(proto::SignHttpMessageRequest {
                    keyset: "http".into(),
                    message: Some(resource_request()),
                    components,
                    ..Default::default()
                })
                .await
                .expect("sign");
            with_fields(
                resource_request(),
                &[
                    ("Content-Digest", &s.content_digest),
                    ("Signature-Input", &s.signature_input),
                    ("Signature", &s.signature),
                ],
            )
        }
    };
    let verify = |msg: proto::HttpMessage, keyset: &str, max_age: i64, tag: &str| {
        let c = c.clone();
        let keyset = keyset.to_string();
        let tag = tag.to_string();
        async move {
            c.verify_http_message(proto::VerifyHttpMessageRequest {
                message: Some(msg),
                keys: Some(proto::verify_http_message_request::Keys::Keyset(keyset)),
                max_age_seconds: max_age,
                tag,
                ..Default::default()
            })
            .await
            .expect("verify call")
        }
    };
    let good = sign(vec![]).await;
    assert!(verify(good.clone(), "http", 0, "").await.valid);

    let mut tampered = good.clone();
    tampered.body = br#"{"amount": "99999.00", "currency": "EUR"}"#.to_vec();
    let v = verify(tampered, "http", 0, "").await;
    assert_eq!(
        (v.valid, v.reason.as_str()),
        (false, "digest_mismatch"),
        "{}",
        v.detail
    );

    let mut moved = good.clone();
    moved.target_uri = "https://rs.bank.example/payments?type=international".into();
    let v = verify(moved, "http", 0, "").await;
    assert_eq!(v.reason, "bad_signature", "{}", v.detail);

    let v = verify(good.clone(), "other", 0, "").await;
    assert_eq!(v.reason, "unknown_kid", "{}", v.detail);

    let v = verify(good.clone(), "http", 0, "fapi-2-response").await;
    assert_eq!(v.reason, "wrong_tag", "{}", v.detail);

    let mut stripped = good.clone();
    stripped.body = Vec::new();
    let v = verify(stripped, "http", 0, "").await;
    assert_eq!(
        v.reason, "digest_mismatch",
        "a removed body is caught: {}",
        v.detail
    );

    let partial = sign(vec!["@method".into(), "@target-uri".into()]).await;
    let v = verify(partial, "http", 0, "").await;
    assert_eq!(v.reason, "missing_component", "{}", v.detail);
    assert!(v.detail.contains("authorization"), "{}", v.detail);

    let (code, msg) = refused(
        c.sign_http_message(proto::SignHttpMessageRequest {
            keyset: "http".into(),
            message: Some(resource_request()),
            components: vec!["@query-param;name=\"x\"".into()],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let (code, msg) = refused(
        c.sign_http_message(proto::SignHttpMessageRequest {
            keyset: "http".into(),
            message: Some(resource_request()),
            components: vec!["x-missing".into()],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("x-missing"), "{msg}");
    let (code, _) = refused(
        c.sign_http_message(proto::SignHttpMessageRequest {
            keyset: "http".into(),
            message: Some(proto::HttpMessage::default()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    let mut not_http = resource_request();
    not_http.target_uri = "urn:example:x".into();
    let (code, _) = refused(
        c.sign_http_message(proto::SignHttpMessageRequest {
            keyset: "http".into(),
            message: Some(not_http),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    // A PKCS#1 v1.5 (RS256) keyset does not sign HTTP messages.
    let mut rs = spec("rs256", "RS256", &["http_message"]);
    rs.profile = Some("oidc".into());
    c.create_keyset(rs).await.expect("create");
    let (code, msg) = refused(
        c.sign_http_message(proto::SignHttpMessageRequest {
            keyset: "rs256".into(),
            message: Some(resource_request()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let v = verify(good, "http", 1, "").await;
    assert_eq!(v.reason, "expired", "{}", v.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_signature_covers_the_request_signature() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("client", "ES256", &["http_message"]))
        .await
        .expect("create");
    c.create_keyset(spec("rs", "EdDSA", &["http_message"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let signed_request = |c: Client| async move {
        let s = c
            .sign_http_message(proto::SignHttpMessageRequest {
                keyset: "client".into(),
                message: Some(resource_request()),
                ..Default::default()
            })
            .await
            .expect("sign request");
        with_fields(
            resource_request(),
            &[
                ("Content-Digest", &s.content_digest),
                ("Signature-Input", &s.signature_input),
                ("Signature", &s.signature),
            ],
        )
    };
    let request = signed_request(c.clone()).await;
    let response = proto::HttpMessage {
        status: 201,
        fields: vec![field("Content-Type", "application/json")],
        body: br#"{"payment_id": "p-1"}"#.to_vec(),
        ..Default::default()
    };
    let s = c
        .sign_http_message(proto::SignHttpMessageRequest {
            keyset: "rs".into(),
            message: Some(response.clone()),
            request: Some(request.clone()),
            ..Default::default()
        })
        .await
        .expect("sign response");
    assert!(
        s.signature_input.contains(r#""signature";req;key="sig1""#)
            && s.signature_input.contains(r#"tag="fapi-2-response""#),
        "{}",
        s.signature_input
    );
    let request_sig = request
        .fields
        .iter()
        .find(|f| f.name == "Signature")
        .expect("sig")
        .value
        .strip_prefix("sig1=")
        .expect("label")
        .to_string();
    assert!(
        s.signature_base.contains(&format!(
            "\n\"signature\";req;key=\"sig1\": {request_sig}\n"
        )),
        "{}",
        s.signature_base
    );
    verify_raw(
        "EdDSA",
        jwk_of(&set, &s.kid),
        s.signature_base.as_bytes(),
        &signature_bytes(&s.signature, "sig1"),
    )
    .expect("independent verification");

    let signed_response = with_fields(
        response,
        &[
            ("Content-Digest", &s.content_digest),
            ("Signature-Input", &s.signature_input),
            ("Signature", &s.signature),
        ],
    );
    let check = |req: proto::HttpMessage| {
        let c = c.clone();
        let msg = signed_response.clone();
        async move {
            c.verify_http_message(proto::VerifyHttpMessageRequest {
                message: Some(msg),
                request: Some(req),
                keys: Some(proto::verify_http_message_request::Keys::Keyset(
                    "rs".into(),
                )),
                tag: "fapi-2-response".into(),
                ..Default::default()
            })
            .await
            .expect("verify")
        }
    };
    let v = check(request).await;
    assert!(v.valid, "{} {}", v.reason, v.detail);
    // Without the request it answers, a response is not verified by default.
    let (code, msg) = refused(
        c.verify_http_message(proto::VerifyHttpMessageRequest {
            message: Some(signed_response.clone()),
            keys: Some(proto::verify_http_message_request::Keys::Keyset(
                "rs".into(),
            )),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    // Another signature on the same request (ECDSA is randomized): the
    // response no longer verifies.
    let resigned = signed_request(c.clone()).await;
    let v = check(resigned).await;
    assert_eq!(
        (v.valid, v.reason.as_str()),
        (false, "bad_signature"),
        "{}",
        v.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_signs_and_verifies_raw_http_messages() {
    let (_hsm, d, c) = setup().await;
    c.create_keyset(spec("http", "PS256", &["http_message"]))
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("tmp");
    let raw = "POST /payments HTTP/1.1\r\nHost: rs.bank.example\r\nAuthorization: DPoP abc\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"amount\": 1}";
    let path = dir.path().join("req.http");
    std::fs::write(&path, raw).expect("write");
    let out = d.cli(
        &[
            "sign",
            "http",
            "--keyset",
            "http",
            "--message",
            path.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = String::from_utf8(out.stdout).expect("utf8");
    assert!(signed.starts_with("POST /payments HTTP/1.1\r\n"));
    assert!(signed.contains("\r\nContent-Digest: sha-256=:"), "{signed}");
    assert!(signed.contains("\r\nSignature-Input: sig1=(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created="), "{signed}");
    assert!(signed.ends_with("\r\n\r\n{\"amount\": 1}"), "{signed}");
    let signed_path = dir.path().join("signed.http");
    std::fs::write(&signed_path, &signed).expect("write");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, custos_e2e::every_jwks(&c).await.to_string()).expect("write");
    for keys in [
        ["--keyset", "http"],
        ["--jwks", jwks_path.to_str().expect("utf8")],
    ] {
        let out = d.cli(
            &[
                "verify",
                "http",
                "--message",
                signed_path.to_str().expect("utf8"),
                keys[0],
                keys[1],
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tampered_path = dir.path().join("tampered.http");
    std::fs::write(
        &tampered_path,
        signed.replace("{\"amount\": 1}", "{\"amount\": 9}"),
    )
    .expect("write");
    let out = d.cli(
        &[
            "verify",
            "http",
            "--message",
            tampered_path.to_str().expect("utf8"),
            "--keyset",
            "http",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("digest_mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciba_requests_and_push_mode_id_tokens() {
    let (_hsm, _d, c) = setup().await;
    c.create_keyset(spec("client", "ES256", &["request_object"]))
        .await
        .expect("create");
    let mut oidc = spec("ids", "PS256", &["id_token"]);
    oidc.profile = Some("oidc".into());
    c.create_keyset(oidc).await.expect("create");
    c.create_keyset(spec("fapi-ids", "PS256", &["id_token"]))
        .await
        .expect("create");
    let set = jwks(&c).await;
    let claims = json!({"iss": "client-1", "aud": "https://as.bank", "scope": "openid payments",
        "login_hint": "alice@bank.example", "binding_message": "W4SCT",
        "client_notification_token": "8d67dc78-7faa-4d41-aabd-67707b374255", "requested_expiry": 120});
    let t = c
        .sign_request_object(proto::SignRequestObjectRequest {
            keyset: "client".into(),
            claims_json: claims.to_string(),
            lifetime_seconds: 0,
            kind: "ciba".into(),
        })
        .await
        .expect("sign");
    let v = verify_with_jwks(&t.token, &set).expect("independent verification");
    for k in ["iat", "nbf", "exp", "jti"] {
        assert!(v.claims.get(k).is_some(), "{k}");
    }
    assert_eq!(v.claims["binding_message"], "W4SCT");
    assert!(
        v.claims["exp"].as_i64().expect("exp") - v.claims["nbf"].as_i64().expect("nbf") <= 3600
    );

    let verify_ro = |token: String, jwks: String| {
        let c = c.clone();
        async move {
            c.verify_request_object(proto::VerifyRequestObjectRequest {
                token,
                jwks_json: jwks,
                client_id: "client-1".into(),
                issuer: "https://as.bank".into(),
                kind: "ciba".into(),
            })
            .await
            .expect("verify")
        }
    };
    let v = verify_ro(t.token.clone(), set.to_string()).await;
    assert!(v.valid, "{} {}", v.reason, v.detail);

    for (change, needle) in [
        (json!({"id_token_hint": "eyJ..."}), "hint"),
        (json!({"scope": "payments"}), "openid"),
        (json!({"redirect_uri": "https://c/cb"}), "redirect_uri"),
    ] {
        let mut bad = claims.clone();
        for (k, val) in change.as_object().expect("obj") {
            bad[k] = val.clone();
        }
        let (code, msg) = refused(
            c.sign_request_object(proto::SignRequestObjectRequest {
                keyset: "client".into(),
                claims_json: bad.to_string(),
                lifetime_seconds: 0,
                kind: "ciba".into(),
            })
            .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }

    // The AS side refuses a client-signed CIBA request without a hint.
    let client_key = EcKey::new();
    let mut client_jwk = client_key.public_jwk();
    client_jwk["kid"] = json!("ck");
    let client_jwks = json!({"keys": [client_jwk]}).to_string();
    let t = now();
    let good = json!({"iss": "client-1", "aud": "https://as.bank", "scope": "openid",
        "login_hint": "alice", "iat": t, "nbf": t, "exp": t + 300, "jti": "j-1"});
    let header = json!({"alg": "ES256", "kid": "ck", "typ": "oauth-authz-req+jwt"});
    let v = verify_ro(client_key.sign(&header, &good), client_jwks.clone()).await;
    assert!(v.valid, "{} {}", v.reason, v.detail);
    let mut no_hint = good.clone();
    no_hint.as_object_mut().expect("obj").remove("login_hint");
    let v = verify_ro(client_key.sign(&header, &no_hint), client_jwks).await;
    assert!(!v.valid);
    assert!(v.detail.contains("hint"), "{}", v.detail);

    // Push-mode ID token: auth_req_id and rt_hash, recomputed here.
    let id = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "ids".into(),
            claims_json: json!({"iss": "https://as.bank", "sub": "alice", "aud": "client-1", "exp": now() + 300}).to_string(),
            access_token: "at-123".into(),
            auth_req_id: "1c266114-a1be-4252-8ad1-04986c5b9ac1".into(),
            refresh_token: "rt-456".into(),
            ..Default::default()
        })
        .await
        .expect("push id token");
    // FAPI-CIBA forbids push mode: a FAPI keyset refuses it.
    let (code, msg) = refused(
        c.sign_id_token(proto::SignIdTokenRequest {
            keyset: "fapi-ids".into(),
            claims_json: json!({"iss": "https://as.bank", "sub": "alice", "aud": "client-1", "exp": now() + 300}).to_string(),
            access_token: "at-123".into(),
            auth_req_id: "1c266114".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("push"), "{msg}");
    let v = verify_with_jwks(&id.token, &set).expect("verify");
    assert_eq!(
        v.claims["urn:openid:params:jwt:claim:auth_req_id"],
        "1c266114-a1be-4252-8ad1-04986c5b9ac1"
    );
    assert_eq!(
        v.claims["urn:openid:params:jwt:claim:rt_hash"],
        oidc_hash("PS256", "rt-456")
    );
    assert_eq!(v.claims["at_hash"], oidc_hash("PS256", "at-123"));
}

/// `BASE64URL(header).BASE64URL(claims)`, as an external-signing AS builds it.
fn signing_input(header: &Value, claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// SignJwsInput signs what an external-signing authorization server built,
/// and only what passes the purpose's rules: each refusal names its rule, the
/// signature verifies independently once appended, and every call is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_built_jws_inputs_are_signed_only_when_they_follow_the_purposes_rules() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let hsm = Hsm::new();
    let audit = hsm.dir.path().join("audit.jsonl");
    let d = Daemon::start_with(&hsm, custos_e2e::DaemonConfig::audited(&audit)).await;
    let c = d.client().await;
    let issuer = "https://as.bank";
    let ks = c
        .create_keyset(custos_client::KeysetSpec {
            issuer: Some(issuer.into()),
            max_token_lifetime: Some(600),
            ..spec("as-sign", "ES256", &["id_token", "jarm", "introspection"])
        })
        .await
        .expect("create");
    let kid = ks.versions[0].kid.clone();
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create generic");
    let gen_kid = c.get_keyset("gen").await.expect("get").versions[0]
        .kid
        .clone();
    c.create_keyset(spec("client-1-ca", "ES256", &["client_assertion"]))
        .await
        .expect("create client keyset");
    let t = now();
    let header = json!({"alg": "ES256", "kid": kid});
    let id = json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t, "exp": t + 300,
                    "nonce": "n-1", "c_hash": "abc"});
    let sign = |keyset: &str, purpose: &str, input: String| {
        c.sign_jws_input(proto::SignJwsInputRequest {
            keyset: keyset.into(),
            purpose: purpose.into(),
            signing_input: input,
        })
    };

    // Accepted: the signature, appended, verifies with the published key.
    let input = signing_input(&header, &id);
    let signed = sign("as-sign", "id_token", input.clone())
        .await
        .expect("signed");
    assert_eq!(
        (signed.kid.as_str(), signed.alg.as_str()),
        (kid.as_str(), "ES256")
    );
    assert_eq!(signed.signature.len(), 64, "ES256 is r||s");
    let jws = format!("{input}.{}", B64.encode(&signed.signature));
    let verified = verify_with_jwks(&jws, &jwks(&c).await).expect("independent verifier");
    assert_eq!(verified.claims, id, "nothing was added or changed");

    // Each refusal names its rule.
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "as-sign",
            "id_token",
            signing_input(&json!({"alg": "PS256", "kid": kid}), &id),
            "not this keyset's algorithm",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(&json!({"alg": "ES256", "kid": "someone-elses"}), &id),
            "not this keyset's active key",
        ),
        (
            "as-sign",
            "introspection",
            signing_input(
                &header,
                &json!({"iss": issuer, "aud": "client-1", "iat": t,
                        "token_introspection": {"active": true}}),
            ),
            "must have header typ \"token-introspection+jwt\"",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(&json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}), &id),
            "has no typ or typ \"JWT\"",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(
                &header,
                &json!({"iss": issuer, "aud": "client-1", "iat": t, "exp": t + 300}),
            ),
            "claim \"sub\" is required",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(
                &header,
                &json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t, "exp": t + 3600}),
            ),
            "exceeds this keyset's maximum of 600 s",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(
                &header,
                &json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t + 3000,
                        "exp": t + 3100}),
            ),
            "is in the future",
        ),
        (
            "as-sign",
            "id_token",
            signing_input(
                &header,
                &json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t,
                        "exp": t + 300, "cnf": {"jkt": "x"}}),
            ),
            "cnf",
        ),
        (
            "gen",
            "generic",
            signing_input(
                &json!({"alg": "ES256", "kid": gen_kid, "typ": "at+jwt"}),
                &json!({"iss": issuer, "sub": "alice", "aud": "rs", "client_id": "c",
                        "jti": "j", "iat": t, "exp": t + 300}),
            ),
            "reserved",
        ),
    ];
    for (keyset, purpose, input, needle) in &cases {
        let (code, message) = refused(sign(keyset, purpose, input.clone()).await);
        assert_eq!(code, Code::InvalidArgument, "{needle}: {message}");
        assert!(
            message.contains(needle),
            "{message:?} should name {needle:?}"
        );
    }
    // A purpose this keyset does not serve, and one that only its typed RPC signs.
    let (code, message) = refused(sign("as-sign", "access_token", input.clone()).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    let ca_kid = c.get_keyset("client-1-ca").await.expect("get").versions[0]
        .kid
        .clone();
    let (code, message) = refused(
        sign(
            "client-1-ca",
            "client_assertion",
            signing_input(
                &json!({"alg": "ES256", "kid": ca_kid}),
                &json!({"iss": "client-1", "sub": "client-1", "aud": issuer, "jti": "j",
                        "exp": t + 60}),
            ),
        )
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("typed RPC"), "{message}");

    // Audited like the typed RPCs: the success with its kid and the digest
    // of the signing input, and each refusal.
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .filter(|l: &Value| l["operation"] == "sign_jws_input")
        .collect();
    let digest: String = Sha256::digest(input.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        lines.iter().any(|l| l["outcome"] == "ok"
            && l["kid"] == kid.as_str()
            && l["input_sha256"] == digest.as_str()),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "error").count(),
        cases.len() + 2,
        "{lines:?}"
    );
    // The claim at fault is named in the standard google.rpc.BadRequest
    // detail, so a caller can branch on it without reading the message.
    let named = [
        (
            json!({"iss": issuer, "aud": "client-1", "iat": t, "exp": t + 300}),
            "claims.sub",
        ),
        (
            json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t + 3000,
                    "exp": t + 3100}),
            "claims.iat",
        ),
        (
            json!({"iss": issuer, "sub": "alice", "aud": "client-1", "iat": t,
                    "exp": t + 3600}),
            "claims.exp",
        ),
    ];
    for (claims, field) in named {
        let e = sign("as-sign", "id_token", signing_input(&header, &claims))
            .await
            .expect_err("refused");
        assert_eq!(e.invalid_field().as_deref(), Some(field), "{e}");
    }
    // A message about no single claim names no field.
    let e = sign("as-sign", "id_token", "not a signing input".into())
        .await
        .expect_err("refused");
    assert_eq!(e.status().map(|s| s.code()), Some(Code::InvalidArgument));
    assert_eq!(e.invalid_field(), None, "{e}");
}

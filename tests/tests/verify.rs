//! End-to-end tests of verification: certificate- and DPoP-bound access
//! tokens, JWS against keysets and client JWKS, request objects and client
//! assertions. DPoP proofs and client tokens are made by RustCrypto here, not
//! by Custos.

use custos_client::{proto, Client, KeysetSpec};
use custos_e2e::sign::{alg_none, hs256_with, rand_jti, EcKey};
use custos_e2e::{client_cert, now, Daemon, Hsm};
use serde_json::{json, Value};
use tonic::Code;

fn spec(name: &str, alg: &str, purposes: &[&str]) -> KeysetSpec {
    KeysetSpec {
        name: name.into(),
        alg: alg.into(),
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        ..KeysetSpec::default()
    }
}

const HTU: &str = "https://rs.bank/accounts";

fn at_claims(extra: Value) -> String {
    let mut c = json!({"iss": "https://as.bank", "sub": "alice", "aud": "https://rs.bank", "exp": now() + 300, "client_id": "client-1"});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c.to_string()
}

async fn sign_at(
    c: &Client,
    binding: Option<proto::sign_access_token_request::Binding>,
    claims: String,
) -> String {
    c.sign_access_token(proto::SignAccessTokenRequest {
        keyset: "at".into(),
        claims_json: claims,
        binding,
    })
    .await
    .expect("sign access token")
    .token
}

fn with_cert(token: &str, der: &[u8]) -> proto::VerifyAccessTokenRequest {
    proto::VerifyAccessTokenRequest {
        token: token.into(),
        binding: Some(proto::verify_access_token_request::Binding::ClientCertificate(der.to_vec())),
        ..Default::default()
    }
}

fn with_dpop(token: &str, proof: String, htm: &str, htu: &str) -> proto::VerifyAccessTokenRequest {
    proto::VerifyAccessTokenRequest {
        token: token.into(),
        binding: Some(proto::verify_access_token_request::Binding::Dpop(
            proto::DpopProof {
                proof,
                htm: htm.into(),
                htu: htu.into(),
            },
        )),
        ..Default::default()
    }
}

async fn reason(c: &Client, req: proto::VerifyAccessTokenRequest) -> String {
    let v = c
        .verify_access_token(req)
        .await
        .expect("a verdict, not an error");
    if v.valid {
        return "valid".into();
    }
    assert!(!v.detail.is_empty());
    v.reason
}

async fn setup() -> (Hsm, Daemon, Client) {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("at", "ES256", &["access_token"]))
        .await
        .expect("create");
    (hsm, d, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_tokens_verify_only_with_their_certificate() {
    let (hsm, _d, c) = setup().await;
    let (pem_a, der_a) = client_cert(hsm.dir.path(), "client-a");
    let (_, der_b) = client_cert(hsm.dir.path(), "client-b");
    use proto::sign_access_token_request::Binding;
    let token = sign_at(
        &c,
        Some(Binding::ClientCertificate(der_a.clone())),
        at_claims(json!({})),
    )
    .await;

    let v = c
        .verify_access_token(with_cert(&token, &der_a))
        .await
        .expect("verdict");
    assert!(v.valid, "{} {}", v.reason, v.detail);
    let claims: Value = serde_json::from_str(&v.claims_json).expect("claims");
    assert_eq!(claims["sub"], "alice");
    assert!(!v.kid.is_empty());
    // The same certificate as PEM and as URL-encoded PEM (nginx $ssl_client_escaped_cert).
    let pem = std::fs::read_to_string(&pem_a).expect("pem");
    assert_eq!(reason(&c, with_cert(&token, pem.as_bytes())).await, "valid");
    let escaped: String = pem
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(
        reason(&c, with_cert(&token, escaped.as_bytes())).await,
        "valid"
    );

    assert_eq!(reason(&c, with_cert(&token, &der_b)).await, "cnf_mismatch");
    // Issuer and audience checks.
    let mut r = with_cert(&token, &der_a);
    r.issuer = "https://other-as".into();
    assert_eq!(reason(&c, r).await, "wrong_issuer");
    let mut r = with_cert(&token, &der_a);
    r.audience = "https://other-rs".into();
    assert_eq!(reason(&c, r).await, "wrong_audience");
    let mut r = with_cert(&token, &der_a);
    r.issuer = "https://as.bank".into();
    r.audience = "https://rs.bank".into();
    assert_eq!(reason(&c, r).await, "valid");
    // Garbage certificate input is a clear INVALID_ARGUMENT, not a verdict.
    let e = c
        .verify_access_token(with_cert(&token, b"not a certificate"))
        .await
        .expect_err("bad request");
    assert_eq!(e.status().expect("status").code(), Code::InvalidArgument);
    // A bound token with no binding presented, and a bearer token.
    let none = proto::VerifyAccessTokenRequest {
        token: token.clone(),
        ..Default::default()
    };
    assert_eq!(reason(&c, none).await, "cnf_missing");
    let bearer = sign_at(&c, None, at_claims(json!({}))).await;
    assert_eq!(reason(&c, with_cert(&bearer, &der_a)).await, "cnf_missing");
    let plain = proto::VerifyAccessTokenRequest {
        token: bearer.clone(),
        ..Default::default()
    };
    assert_eq!(
        reason(&c, plain.clone()).await,
        "cnf_missing",
        "FAPI: bearer refused by default"
    );
    assert_eq!(
        reason(
            &c,
            proto::VerifyAccessTokenRequest {
                allow_bearer: true,
                ..plain
            }
        )
        .await,
        "valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_and_every_broken_proof() {
    let (_hsm, _d, c) = setup().await;
    use proto::sign_access_token_request::Binding;
    let key = EcKey::new();
    let token = sign_at(&c, Some(Binding::Jkt(key.jkt())), at_claims(json!({}))).await;
    let ok = key.dpop("GET", HTU, now(), Some(&token));
    assert_eq!(
        reason(&c, with_dpop(&token, ok.clone(), "GET", HTU)).await,
        "valid"
    );
    // Replaying the same proof.
    assert_eq!(
        reason(&c, with_dpop(&token, ok, "GET", HTU)).await,
        "dpop_replay"
    );
    // The URL is compared without query and fragment, scheme and host case-insensitively.
    let p = key.dpop("GET", "HTTPS://RS.bank/accounts", now(), Some(&token));
    assert_eq!(
        reason(
            &c,
            with_dpop(&token, p, "GET", "https://rs.bank/accounts?page=2#x")
        )
        .await,
        "valid"
    );

    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "wrong htm",
            key.dpop("POST", HTU, now(), Some(&token)),
            "GET",
            HTU,
        ),
        (
            "wrong htu",
            key.dpop("GET", "https://rs.bank/payments", now(), Some(&token)),
            "GET",
            HTU,
        ),
        (
            "old iat",
            key.dpop("GET", HTU, now() - 600, Some(&token)),
            "GET",
            HTU,
        ),
        (
            "future iat",
            key.dpop("GET", HTU, now() + 600, Some(&token)),
            "GET",
            HTU,
        ),
        (
            "wrong ath",
            key.dpop("GET", HTU, now(), Some("another-token")),
            "GET",
            HTU,
        ),
        ("no ath", key.dpop("GET", HTU, now(), None), "GET", HTU),
        (
            "private jwk",
            key.dpop_with(
                "GET",
                HTU,
                now(),
                Some(&token),
                &rand_jti(),
                key.private_jwk(),
            ),
            "GET",
            HTU,
        ),
        (
            "jwk of another key",
            key.dpop_with(
                "GET",
                HTU,
                now(),
                Some(&token),
                &rand_jti(),
                EcKey::new().public_jwk(),
            ),
            "GET",
            HTU,
        ),
        ("not a JWT", "garbage".to_string(), "GET", HTU),
    ];
    for (what, proof, htm, htu) in cases {
        assert_eq!(
            reason(&c, with_dpop(&token, proof, htm, htu)).await,
            "dpop_invalid",
            "{what}"
        );
    }
    let header_typ = key.sign(
        &json!({"typ": "JWT", "alg": "ES256", "jwk": key.public_jwk()}),
        &json!({"jti": rand_jti(), "htm": "GET", "htu": HTU, "iat": now()}),
    );
    assert_eq!(
        reason(&c, with_dpop(&token, header_typ, "GET", HTU)).await,
        "dpop_invalid",
        "typ"
    );
    // A valid proof by another key: the token is not bound to it.
    let other = EcKey::new();
    let p = other.dpop("GET", HTU, now(), Some(&token));
    assert_eq!(
        reason(&c, with_dpop(&token, p, "GET", HTU)).await,
        "cnf_mismatch"
    );
    // A DPoP proof for a certificate-bound token.
    let bearer = sign_at(&c, None, at_claims(json!({}))).await;
    let p = key.dpop("GET", HTU, now(), Some(&bearer));
    assert_eq!(
        reason(&c, with_dpop(&bearer, p, "GET", HTU)).await,
        "cnf_missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_expired_and_unknown_tokens_fail() {
    let (_hsm, _d, c) = setup().await;
    let allow = |t: &str| proto::VerifyAccessTokenRequest {
        token: t.into(),
        allow_bearer: true,
        ..Default::default()
    };
    let token = sign_at(&c, None, at_claims(json!({}))).await;
    assert_eq!(reason(&c, allow(&token)).await, "valid");

    // Tampered payload.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = json!("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(reason(&c, allow(&tampered)).await, "bad_signature");
    // alg none, and HS256 keyed with the public key (JWK text and raw x||y).
    assert_eq!(
        reason(&c, allow(&alg_none(&token))).await,
        "alg_not_allowed"
    );
    let jwks = c.jwks(Some("at")).await.expect("jwks");
    let jwk: Value = serde_json::from_str::<Value>(&jwks).expect("json")["keys"][0].clone();
    assert_eq!(
        reason(&c, allow(&hs256_with(&token, jwk.to_string().as_bytes()))).await,
        "alg_not_allowed"
    );
    // Unknown kid: a token signed by another keyset's key, then presented with a made-up kid.
    let mut header: Value =
        serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
    header["kid"] = json!("no-such-kid");
    let unknown = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    assert_eq!(reason(&c, allow(&unknown)).await, "unknown_kid");
    header.as_object_mut().expect("obj").remove("kid");
    let no_kid = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    assert_eq!(reason(&c, allow(&no_kid)).await, "unknown_kid");
    // alg that does not match the key.
    let mut header: Value =
        serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
    header["alg"] = json!("PS256");
    let mismatch = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    assert_eq!(reason(&c, allow(&mismatch)).await, "alg_mismatch");
    // crit and typ.
    let mut header: Value =
        serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
    header["crit"] = json!(["exp"]);
    assert_eq!(
        reason(
            &c,
            allow(&format!(
                "{}.{}.{}",
                b64.encode(header.to_string()),
                parts[1],
                parts[2]
            ))
        )
        .await,
        "crit_unsupported"
    );
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let jwt_typed = c
        .sign_jwt("gen", "generic", Some("JWT"), &at_claims(json!({})))
        .await
        .expect("sign")
        .jws;
    assert_eq!(reason(&c, allow(&jwt_typed)).await, "wrong_typ");
    // Expired beyond the 60 s skew (issued an hour ago, expired two minutes ago).
    let expired = sign_at(
        &c,
        None,
        at_claims(json!({"iat": now() - 3500, "exp": now() - 120})),
    )
    .await;
    assert_eq!(reason(&c, allow(&expired)).await, "expired");
    let within_skew = sign_at(
        &c,
        None,
        at_claims(json!({"iat": now() - 3500, "exp": now() - 30})),
    )
    .await;
    assert_eq!(reason(&c, allow(&within_skew)).await, "valid");
    let nbf = sign_at(&c, None, at_claims(json!({"nbf": now() + 600}))).await;
    assert_eq!(reason(&c, allow(&nbf)).await, "not_yet_valid");
    assert_eq!(reason(&c, allow("a.b")).await, "malformed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_needs_no_hsm_call() {
    // The token is served through p11-kit-server; killing it takes the HSM
    // away. Signing then fails UNAVAILABLE while verification still works.
    let hsm = Hsm::new();
    let mut server = custos_e2e::P11KitServer::start(&hsm);
    let cfg = server.daemon_config();
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("at", "ES256", &["access_token"]))
        .await
        .expect("create");
    let (_, der) = client_cert(hsm.dir.path(), "client-1");
    use proto::sign_access_token_request::Binding;
    let token = sign_at(
        &c,
        Some(Binding::ClientCertificate(der.clone())),
        at_claims(json!({})),
    )
    .await;
    server.kill();
    let e = c
        .sign_access_token(proto::SignAccessTokenRequest {
            keyset: "at".into(),
            claims_json: at_claims(json!({})),
            binding: None,
        })
        .await
        .expect_err("the HSM is gone");
    assert_eq!(e.status().expect("status").code(), Code::Unavailable);
    for _ in 0..3 {
        assert_eq!(reason(&c, with_cert(&token, &der)).await, "valid");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jws_request_objects_and_client_assertions_against_client_jwks() {
    let (_hsm, d, c) = setup().await;
    // A client key held by the test, registered as a JWKS.
    let client = EcKey::new();
    let mut jwk = client.public_jwk();
    jwk["kid"] = json!("client-key-1");
    jwk["alg"] = json!("ES256");
    let jwks = json!({"keys": [jwk]}).to_string();
    let sign = |claims: Value, typ: Option<&str>| {
        let mut h = json!({"alg": "ES256", "kid": "client-key-1"});
        if let Some(t) = typ {
            h["typ"] = json!(t);
        }
        client.sign(&h, &claims)
    };
    let ro = |exp_after_nbf: i64| {
        json!({"iss": "client-1", "client_id": "client-1", "aud": "https://as.bank", "response_type": "code",
               "redirect_uri": "https://c/cb", "scope": "openid", "nbf": now(), "exp": now() + exp_after_nbf, "iat": now()})
    };
    let vro = |token: String| proto::VerifyRequestObjectRequest {
        token,
        jwks_json: jwks.clone(),
        client_id: "client-1".into(),
        issuer: "https://as.bank".into(),
        kind: String::new(),
    };
    let v = c
        .verify_request_object(vro(sign(ro(300), Some("oauth-authz-req+jwt"))))
        .await
        .expect("verdict");
    assert!(v.valid, "{} {}", v.reason, v.detail);
    assert_eq!(v.kid, "client-key-1");
    let r = |t| async {
        c.verify_request_object(vro(t))
            .await
            .expect("verdict")
            .reason
    };
    assert_eq!(
        r(sign(ro(3601), Some("oauth-authz-req+jwt"))).await,
        "lifetime_too_long"
    );
    assert_eq!(r(sign(ro(300), Some("JWT"))).await, "wrong_typ");
    let mut wrong_aud = ro(300);
    wrong_aud["aud"] = json!("https://other");
    assert_eq!(
        r(sign(wrong_aud, Some("oauth-authz-req+jwt"))).await,
        "wrong_audience"
    );
    let mut wrong_iss = ro(300);
    wrong_iss["iss"] = json!("client-2");
    assert_eq!(
        r(sign(wrong_iss, Some("oauth-authz-req+jwt"))).await,
        "claims_mismatch"
    );
    let mut no_nbf = ro(300);
    no_nbf.as_object_mut().expect("obj").remove("nbf");
    assert_eq!(
        r(sign(no_nbf, Some("oauth-authz-req+jwt"))).await,
        "missing_claim"
    );
    let stranger = EcKey::new();
    let forged = stranger.sign(&json!({"alg": "ES256", "kid": "client-key-1"}), &ro(300));
    assert_eq!(r(forged).await, "bad_signature");

    // Client assertions: a jti is accepted once.
    let assertion = |jti: &str| {
        sign(
            json!({"iss": "client-1", "sub": "client-1", "aud": "https://as.bank/token", "iat": now(), "exp": now() + 60, "jti": jti}),
            None,
        )
    };
    let vca = |token: String| proto::VerifyClientAssertionRequest {
        token,
        jwks_json: jwks.clone(),
        client_id: "client-1".into(),
        audiences: vec!["https://as.bank".into(), "https://as.bank/token".into()],
    };
    let a = assertion("jti-1");
    assert!(
        c.verify_client_assertion(vca(a.clone()))
            .await
            .expect("verdict")
            .valid
    );
    assert_eq!(
        c.verify_client_assertion(vca(a))
            .await
            .expect("verdict")
            .reason,
        "replay"
    );
    let other_sub = sign(
        json!({"iss": "client-1", "sub": "client-2", "aud": "https://as.bank", "exp": now() + 60, "jti": rand_jti()}),
        None,
    );
    assert_eq!(
        c.verify_client_assertion(vca(other_sub))
            .await
            .expect("verdict")
            .reason,
        "claims_mismatch"
    );
    let old = sign(
        json!({"iss": "client-1", "sub": "client-1", "aud": "https://as.bank", "exp": now() - 300, "jti": rand_jti()}),
        None,
    );
    assert_eq!(
        c.verify_client_assertion(vca(old))
            .await
            .expect("verdict")
            .reason,
        "expired"
    );
    // Bad JWKS is a request error.
    let mut bad = vca(assertion("jti-2"));
    bad.jwks_json = "[]".into();
    assert_eq!(
        c.verify_client_assertion(bad)
            .await
            .expect_err("bad jwks")
            .status()
            .expect("s")
            .code(),
        Code::InvalidArgument
    );

    // VerifyJws against a keyset and against a JWKS file, also from the CLI.
    let signed = sign_at(&c, None, at_claims(json!({"x": 1}))).await;
    let vj = c
        .verify_jws(proto::VerifyJwsRequest {
            token: signed.clone(),
            keys: Some(proto::verify_jws_request::Keys::Keyset("at".into())),
            typ: "at+jwt".into(),
        })
        .await
        .expect("verdict");
    assert!(vj.valid, "{}", vj.detail);
    let jwks_file = d.state_dir.parent().expect("dir").join("as.jwks");
    std::fs::write(&jwks_file, c.jwks(Some("at")).await.expect("jwks")).expect("write");
    let out = d.cli(
        &[
            "verify",
            "jws",
            "--token",
            &signed,
            "--jwks",
            jwks_file.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(
        &[
            "verify",
            "jws",
            "--token",
            &alg_none(&signed),
            "--keyset",
            "at",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alg_not_allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_access_token_exit_codes() {
    let (hsm, d, c) = setup().await;
    let (pem, der) = client_cert(hsm.dir.path(), "client-1");
    let (pem_b, _) = client_cert(hsm.dir.path(), "client-2");
    use proto::sign_access_token_request::Binding;
    let token = sign_at(
        &c,
        Some(Binding::ClientCertificate(der)),
        at_claims(json!({})),
    )
    .await;
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &token,
            "--cert",
            pem.to_str().expect("utf-8"),
            "--audience",
            "https://rs.bank",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).expect("claims JSON on stdout");
    assert_eq!(claims["client_id"], "client-1");
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &token,
            "--cert",
            pem_b.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cnf_mismatch"));
    assert!(out.stdout.is_empty());
    let garbage = hsm.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "nope").expect("write");
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &token,
            "--cert",
            garbage.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a certificate that does not parse is a usage error"
    );
    let key = EcKey::new();
    let dpop_token = sign_at(&c, Some(Binding::Jkt(key.jkt())), at_claims(json!({}))).await;
    let proof = key.dpop("POST", HTU, now(), Some(&dpop_token));
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &dpop_token,
            "--dpop",
            &proof,
            "--htm",
            "POST",
            "--htu",
            HTU,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &dpop_token,
            "--dpop",
            &proof,
            "--htm",
            "POST",
            "--htu",
            HTU,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dpop_replay"));
}

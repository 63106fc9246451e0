//! Trust boundaries, part 1: each finding of the security review performed
//! as an attack against a real custosd on a real SoftHSM2 token, with the
//! callers as distinct uids (`setpriv`), and shown refused with its reason.
//!
//! Callers: the test process (root, the daemon's owner) plays the
//! authorization server's operator; uid 65534 ("client") may sign with
//! `client-1-*` keysets and verify; uid 65533 ("resource server") may verify.

use custos_client::proto;
use custos_e2e::sign::{rand_jti, EcKey};
use custos_e2e::{as_uid, grant_self, jwe, now, shared_dir, spec, Daemon, DaemonConfig, Hsm};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const CLIENT: u32 = 65534;
const RS: u32 = 65533;
const ISSUER: &str = "https://as.bank";

fn rules() -> String {
    format!(
        "\n[[access]]\nname = \"client-1\"\nunix_uid = {CLIENT}\nkeysets = [\"client-1-*\"]\noperations = [\"sign\", \"verify\", \"jwks\"]\n\
         \n[[access]]\nname = \"resource-server\"\nunix_uid = {RS}\nkeysets = [\"as-*\"]\noperations = [\"verify\", \"jwks\"]\n"
    )
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Writes `text` where every uid can read it and returns the path.
fn public_file(dir: &Path, name: &str, text: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p.display().to_string()
}

async fn daemon(hsm: &Hsm, dir: &Path, extra: &str) -> Daemon {
    Daemon::start_with(
        hsm,
        DaemonConfig {
            socket_dir: Some(dir.to_path_buf()),
            server_toml: "socket_mode = \"0660\"\nsocket_group = \"65534\"\n".into(),
            extra_toml: format!("{}{extra}", rules()),
            ..DaemonConfig::default()
        },
    )
    .await
}

fn keyset(name: &str, purposes: &[&str], issuer: Option<&str>) -> custos_client::KeysetSpec {
    custos_client::KeysetSpec {
        issuer: issuer.map(String::from),
        ..spec(name, "ES256", purposes)
    }
}

/// Finding 1: a client signer cannot mint access tokens, and the verifier
/// trusts only access-token keys with the exact typ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_cannot_forge_access_tokens_and_verifiers_trust_only_access_token_keys() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let d = daemon(&hsm, shared.path(), "").await;
    let c = d.client().await;
    c.create_keyset(keyset("as-at", &["access_token"], Some(ISSUER)))
        .await
        .expect("as-at");
    c.create_keyset(keyset("as-id", &["id_token"], Some(ISSUER)))
        .await
        .expect("as-id");
    c.create_keyset(keyset("client-1-assert", &["client_assertion"], None))
        .await
        .expect("client key");
    c.create_keyset(keyset("client-1-gen", &["generic"], None))
        .await
        .expect("generic key");
    let (_, cert_der) = custos_e2e::client_cert(shared.path(), "client-1");
    let cert = shared.path().join("client-1.der");
    std::fs::write(&cert, &cert_der).expect("der");
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cert = cert.display().to_string();
    use base64::Engine;
    use sha2::Digest;
    let x5t =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert_der));
    let forged =
        json!({"iss": ISSUER, "sub": "admin", "aud": "https://rs.bank", "client_id": "client-1",
        "exp": now() + 300, "jti": rand_jti(), "cnf": {"x5t#S256": x5t}})
        .to_string();
    let claims = public_file(shared.path(), "forged.json", &forged);

    // The reproduction: sign under the client-assertion purpose with typ at+jwt.
    let o = as_uid(
        CLIENT,
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "client-1-assert",
            "--purpose",
            "client_assertion",
            "--typ",
            "at+jwt",
            "--claims",
            &claims,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("FailedPrecondition") && err(&o).contains("SignClientAssertion"),
        "{}",
        err(&o)
    );
    // A generic keyset refuses the reserved typ, in any spelling, and cnf.
    for typ in ["at+jwt", "application/AT+JWT"] {
        let o = as_uid(
            CLIENT,
            &cli,
            &d.socket,
            &[
                "sign",
                "jwt",
                "--keyset",
                "client-1-gen",
                "--purpose",
                "generic",
                "--typ",
                typ,
                "--claims",
                &claims,
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(err(&o).contains("reserved"), "{}", err(&o));
    }
    let o = as_uid(
        CLIENT,
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "client-1-gen",
            "--purpose",
            "generic",
            "--claims",
            &claims,
        ],
    );
    assert!(err(&o).contains("cnf"), "{}", err(&o));
    // What the client can sign (a generic JWT with typ JWT) is not an access token.
    let plain =
        json!({"iss": ISSUER, "sub": "admin", "aud": "https://rs.bank", "client_id": "client-1",
        "exp": now() + 300, "iat": now(), "jti": rand_jti()})
        .to_string();
    let plain_file = public_file(shared.path(), "plain.json", &plain);
    let o = as_uid(
        CLIENT,
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "client-1-gen",
            "--purpose",
            "generic",
            "--typ",
            "JWT",
            "--claims",
            &plain_file,
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let generic = out(&o);
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &generic,
            "--issuer",
            ISSUER,
            "--allow-bearer",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("wrong_typ"), "{}", err(&o));

    // An AS ID token (no typ) does not pass as an access token either.
    let id = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "as-id".into(),
            claims_json: json!({"sub": "alice", "aud": "client-1", "exp": now() + 300}).to_string(),
            ..Default::default()
        })
        .await
        .expect("id token");
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &id.token,
            "--issuer",
            ISSUER,
            "--allow-bearer",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("wrong_typ"), "{}", err(&o));

    // A real access token from the access-token keyset verifies, and the
    // verdict names the keyset it was checked against.
    let at = c
        .sign_access_token(proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: json!({"sub": "alice", "aud": "https://rs.bank", "client_id": "client-1",
                "exp": now() + 300})
            .to_string(),
            binding: Some(
                proto::sign_access_token_request::Binding::ClientCertificate(cert_der.clone()),
            ),
        })
        .await
        .expect("access token");
    let v = c
        .verify_access_token(proto::VerifyAccessTokenRequest {
            token: at.token.clone(),
            issuer: ISSUER.into(),
            binding: Some(
                proto::verify_access_token_request::Binding::ClientCertificate(cert_der.clone()),
            ),
            ..Default::default()
        })
        .await
        .expect("verify");
    assert!(v.valid, "{v:?}");
    assert_eq!(v.keyset, "as-at");
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &at.token,
            "--issuer",
            ISSUER,
            "--cert",
            &cert,
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    // Another issuer's expectation is refused.
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &at.token,
            "--issuer",
            "https://evil",
            "--cert",
            &cert,
        ],
    );
    assert!(err(&o).contains("wrong_issuer"), "{}", err(&o));
    // Generic keysets serve nothing else.
    let mixed = c
        .create_keyset(keyset("as-mixed", &["id_token", "generic"], Some(ISSUER)))
        .await
        .expect_err("generic mixed with a typed purpose");
    assert!(mixed.to_string().contains("generic"), "{mixed}");
    let mixed = c
        .create_keyset(keyset(
            "as-mixed",
            &["access_token", "client_assertion"],
            Some(ISSUER),
        ))
        .await
        .expect_err("issuer and client purposes mixed");
    assert!(mixed.to_string().contains("owners"), "{mixed}");
}

/// Finding 2: the published JWKS and `custos metadata` hold only the
/// issuer's own keys, never client, HTTP-message or generic keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_jwks_holds_only_the_issuers_own_keys() {
    let hsm = Hsm::new();
    let (shared, _cli) = shared_dir();
    let d = daemon(&hsm, shared.path(), "").await;
    let c = d.client().await;
    let own = c
        .create_keyset(keyset("as-id", &["id_token", "userinfo"], Some(ISSUER)))
        .await
        .expect("as-id");
    let mut foreign = Vec::new();
    for (name, purposes) in [
        ("client-1-ro", &["request_object"][..]),
        ("client-1-assert", &["client_assertion"][..]),
        ("rs-http", &["http_message"][..]),
        ("gen", &["generic"][..]),
    ] {
        let ks = c
            .create_keyset(keyset(name, purposes, None))
            .await
            .expect("create");
        foreign.push(ks.versions[0].kid.clone());
    }
    let kids = |v: &Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let o = d.cli(&["jwks"], None);
    assert!(o.status.success(), "{}", err(&o));
    let jwks: Value = serde_json::from_str(&out(&o)).expect("jwks");
    assert_eq!(kids(&jwks), vec![own.versions[0].kid.clone()]);
    let o = d.cli(&["metadata"], None);
    assert!(o.status.success(), "{}", err(&o));
    let meta: Value = serde_json::from_str(&out(&o)).expect("metadata");
    assert_eq!(
        kids(&meta["jwks_uri_content"]),
        vec![own.versions[0].kid.clone()]
    );
    for k in &foreign {
        assert!(!out(&o).contains(k.as_str()));
    }
    // A named keyset is still served (a client fetches its own JWKS).
    let o = d.cli(&["jwks", "--keyset", "client-1-ro"], None);
    assert!(out(&o).contains(foreign[0].as_str()));
    // Two issuers: the default JWKS refuses to mix them; --issuer picks one.
    let other = c
        .create_keyset(keyset("as2-id", &["id_token"], Some("https://other.bank")))
        .await
        .expect("as2");
    let o = d.cli(&["jwks"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("issuers"), "{}", err(&o));
    let o = d.cli(&["jwks", "--issuer", "https://other.bank"], None);
    let jwks: Value = serde_json::from_str(&out(&o)).expect("jwks");
    assert_eq!(kids(&jwks), vec![other.versions[0].kid.clone()]);
}

/// Finding 3: one caller's self-signed assertions fill only its own replay
/// partition; DPoP jtis are recorded only after the binding check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_exhaust_the_replay_cache_for_others() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let d = daemon(
        &hsm,
        shared.path(),
        "\n[verify]\nreplay_partition_entries = 4\nreplay_cache_entries = 8\n",
    )
    .await;
    let c = d.client().await;
    c.create_keyset(keyset("as-at", &["access_token"], Some(ISSUER)))
        .await
        .expect("as-at");
    let attacker = EcKey::new();
    let jwks = |k: &EcKey| {
        json!({"keys": [ {"kid": "k1", "alg": "ES256", "use": "sig", "kty": "EC",
        "crv": "P-256", "x": k.public_jwk()["x"], "y": k.public_jwk()["y"]} ]})
        .to_string()
    };
    let attacker_jwks = public_file(shared.path(), "evil.jwks", &jwks(&attacker));
    let assertion = |k: &EcKey, client: &str, iat: i64| {
        k.sign(
            &json!({"alg": "ES256", "kid": "k1"}),
            &json!({"iss": client, "sub": client, "aud": ISSUER, "jti": rand_jti(),
                "iat": iat, "exp": now() + 60}),
        )
    };
    let verify_assertion = |uid: u32, token: &str, jwks: &str, client: &str| {
        as_uid(
            uid,
            &cli,
            &d.socket,
            &[
                "verify",
                "client-assertion",
                "--token",
                token,
                "--jwks",
                jwks,
                "--client-id",
                client,
                "--audience",
                ISSUER,
            ],
        )
    };
    for i in 0..4 {
        let o = verify_assertion(
            CLIENT,
            &assertion(&attacker, "evil", now()),
            &attacker_jwks,
            "evil",
        );
        assert!(o.status.success(), "assertion {i}: {}", err(&o));
    }
    let o = verify_assertion(
        CLIENT,
        &assertion(&attacker, "evil", now()),
        &attacker_jwks,
        "evil",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("replay") && err(&o).contains("full"),
        "{}",
        err(&o)
    );
    // A negative iat no longer wraps the lifetime check into an entry that lives for ever.
    let o = verify_assertion(
        CLIENT,
        &assertion(&attacker, "evil2", -9_000_000_000_000_000_000),
        &attacker_jwks,
        "evil2",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("iat"), "{}", err(&o));

    // The resource server's checks go on: its client assertion and DPoP.
    let good = EcKey::new();
    let good_jwks = public_file(shared.path(), "good.jwks", &jwks(&good));
    let o = verify_assertion(
        RS,
        &assertion(&good, "client-1", now()),
        &good_jwks,
        "client-1",
    );
    assert!(o.status.success(), "{}", err(&o));
    let holder = EcKey::new();
    let other = EcKey::new();
    let token_for = |jkt: String| {
        let c = c.clone();
        async move {
            c.sign_access_token(proto::SignAccessTokenRequest {
                keyset: "as-at".into(),
                claims_json:
                    json!({"sub": "alice", "aud": "https://rs.bank", "client_id": "client-1",
                    "exp": now() + 300})
                    .to_string(),
                binding: Some(proto::sign_access_token_request::Binding::Jkt(jkt)),
            })
            .await
            .expect("access token")
            .token
        }
    };
    let bound_to_other = token_for(other.jkt()).await;
    let bound_to_holder = token_for(holder.jkt()).await;
    let htu = "https://rs.bank/accounts";
    let jti = rand_jti();
    let proof_for =
        |token: &str| holder.dpop_with("GET", htu, now(), Some(token), &jti, holder.public_jwk());
    // The same proof jti: first with a token bound to another key (refused:
    // cnf_mismatch, and the jti is not recorded), then with the right token.
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &bound_to_other,
            "--dpop",
            &proof_for(&bound_to_other),
            "--htm",
            "GET",
            "--htu",
            htu,
        ],
    );
    assert!(err(&o).contains("cnf_mismatch"), "{}", err(&o));
    let proof = proof_for(&bound_to_holder);
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &bound_to_holder,
            "--dpop",
            &proof,
            "--htm",
            "GET",
            "--htu",
            htu,
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = as_uid(
        RS,
        &cli,
        &d.socket,
        &[
            "verify",
            "access-token",
            "--token",
            &bound_to_holder,
            "--dpop",
            &proof,
            "--htm",
            "GET",
            "--htu",
            htu,
        ],
    );
    assert!(err(&o).contains("dpop_replay"), "{}", err(&o));
}

/// Finding 4: a compressed JWE is refused before anything is inflated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwe_decompression_bomb_is_refused() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let ks = c
        .create_keyset(spec(
            "as-enc",
            "RSA-OAEP-256",
            &["request_object_decryption"],
        ))
        .await
        .expect("enc keyset");
    let jwks: Value =
        serde_json::from_str(&c.jwks(Some("as-enc")).await.expect("jwks")).expect("json");
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], ks.versions[0].kid.as_str());
    let bomb = jwe::deflate_bomb(jwk, 64 << 20);
    assert!(bomb.len() < 256 * 1024, "the bomb fits the request limit");
    let e = c
        .decrypt_jwe("as-enc", &bomb)
        .await
        .expect_err("zip refused");
    assert!(e.to_string().contains("zip"), "{e}");
    // The daemon stayed small: it never inflated the payload.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(hwm_kib < 60 * 1024, "peak RSS {hwm_kib} KiB");
    // An uncompressed JWE still decrypts.
    let ok = jwe::encrypt_rsa_oaep_256(b"{\"a\":1}", jwk, "RSA-OAEP-256");
    assert_eq!(
        c.decrypt_jwe("as-enc", &ok)
            .await
            .expect("decrypt")
            .plaintext,
        b"{\"a\":1}"
    );
}

/// Finding 5: the daemon's own uid (root here) gets key administration by
/// default, never signing or decryption; admin is split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_owner_is_no_implicit_signer_and_admin_is_split() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            socket_dir: Some(shared.path().to_path_buf()),
            server_toml: "socket_mode = \"0660\"\nsocket_group = \"65534\"\n".into(),
            extra_toml: format!(
                "\n[[access]]\nname = \"client-admin\"\nunix_uid = {CLIENT}\nkeysets = [\"client-*\"]\noperations = [\"manage\", \"jwks\"]\n"
            ),
            bare: true,
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("as-id", "ES256", &["id_token"]))
        .await
        .expect("the owner manages keys");
    c.create_keyset(spec(
        "as-enc",
        "RSA-OAEP-256",
        &["request_object_decryption"],
    ))
    .await
    .expect("the owner manages keys");
    let e = c
        .sign_id_token(proto::SignIdTokenRequest {
            keyset: "as-id".into(),
            claims_json: json!({"iss": ISSUER, "sub": "a", "aud": "c", "exp": now() + 60})
                .to_string(),
            ..Default::default()
        })
        .await
        .expect_err("no implicit signing");
    assert!(
        e.to_string().contains("sign") && e.to_string().contains("denied"),
        "{e}"
    );
    let e = c
        .decrypt_jwe("as-enc", "a.b.c.d.e")
        .await
        .expect_err("no implicit decryption");
    assert!(e.to_string().contains("decrypt"), "{e}");
    assert!(c.jwks(None).await.is_ok());
    // A manage-only admin creates and rotates, but cannot disable or destroy.
    let o = as_uid(
        CLIENT,
        &cli,
        &d.socket,
        &[
            "keyset",
            "create",
            "client-9",
            "--alg",
            "ES256",
            "--purpose",
            "client_assertion",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = as_uid(
        CLIENT,
        &cli,
        &d.socket,
        &["keyset", "rotate", "client-9", "--now"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let ks = c.get_keyset("client-9").await.expect("show");
    let old = ks
        .versions
        .iter()
        .find(|v| v.state == "retired")
        .expect("retired version")
        .kid
        .clone();
    for args in [
        vec!["keyset", "disable", "client-9", "--kid", old.as_str()],
        vec![
            "keyset",
            "destroy",
            "client-9",
            "--kid",
            old.as_str(),
            "--yes",
        ],
    ] {
        let o = as_uid(CLIENT, &cli, &d.socket, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("destroy") && err(&o).contains("denied"),
            "{}",
            err(&o)
        );
    }
    // Granting the owner more is explicit.
    assert!(grant_self().contains("sign"));
}

/// Finding 6: a future iat cannot stretch a lifetime; request objects need
/// their typ; claim times out of range are refused instead of wrapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_values_cannot_dodge_lifetime_ceilings_or_wrap() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let d = daemon(&hsm, shared.path(), "").await;
    let c = d.client().await;
    c.create_keyset(keyset("as-at", &["access_token"], Some(ISSUER)))
        .await
        .expect("as-at");
    let year = 365 * 86400;
    let e = c
        .sign_access_token(proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: json!({"sub": "a", "aud": "https://rs", "client_id": "c1",
                "iat": now() + year, "exp": now() + year + 60})
            .to_string(),
            binding: None,
        })
        .await
        .expect_err("future iat");
    assert!(e.to_string().contains("future"), "{e}");
    let e = c
        .sign_access_token(proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: json!({"sub": "a", "aud": "https://rs", "client_id": "c1",
                "iat": i64::MIN, "exp": i64::MAX})
            .to_string(),
            binding: None,
        })
        .await
        .expect_err("out-of-range times");
    assert!(
        e.to_string().contains("iat") || e.to_string().contains("exp"),
        "{e}"
    );

    // Request objects verified by the resource server's uid.
    let client = EcKey::new();
    let jwks = public_file(
        shared.path(),
        "client.jwks",
        &json!({"keys": [ {"kid": "c1", "kty": "EC", "crv": "P-256", "x": client.public_jwk()["x"],
            "y": client.public_jwk()["y"]} ]})
        .to_string(),
    );
    let claims = |nbf: i64| {
        json!({"iss": "client-1", "client_id": "client-1", "aud": ISSUER, "response_type": "code",
            "redirect_uri": "https://c/cb", "scope": "openid", "nbf": nbf, "iat": now(), "exp": now() + 300})
    };
    let verify = |token: &str| {
        as_uid(
            RS,
            &cli,
            &d.socket,
            &[
                "verify",
                "request-object",
                "--token",
                token,
                "--jwks",
                &jwks,
                "--client-id",
                "client-1",
                "--issuer",
                ISSUER,
            ],
        )
    };
    let typed = client.sign(
        &json!({"alg": "ES256", "kid": "c1", "typ": "oauth-authz-req+jwt"}),
        &claims(now()),
    );
    let o = verify(&typed);
    assert!(o.status.success(), "{}", err(&o));
    let untyped = client.sign(&json!({"alg": "ES256", "kid": "c1"}), &claims(now()));
    let o = verify(&untyped);
    assert!(err(&o).contains("wrong_typ"), "{}", err(&o));
    let wrapping = client.sign(
        &json!({"alg": "ES256", "kid": "c1", "typ": "oauth-authz-req+jwt"}),
        &claims(-9_000_000_000_000_000_000),
    );
    let o = verify(&wrapping);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("nbf"), "{}", err(&o));
}

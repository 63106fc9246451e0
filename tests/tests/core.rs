//! End-to-end tests of the core: a real custosd on a private SoftHSM2 token,
//! driven through the client crate and the CLI, every signature checked by an
//! independent verifier.

use custos_client::Client;
use custos_e2e::verify::{decode, openssl_pss_verify, verify_with_jwks};
use custos_e2e::{bin, now, run_cli, spec, Daemon, Hsm};
use serde_json::{json, Value};
use tonic::Code;

async fn jwks(c: &Client, keyset: Option<&str>) -> Value {
    match keyset {
        Some(_) => {
            serde_json::from_str(&c.jwks(keyset).await.expect("jwks")).expect("JWKS is JSON")
        }
        None => custos_e2e::every_jwks(c).await,
    }
}

fn code(r: Result<impl std::fmt::Debug, custos_client::Error>) -> (Code, String) {
    let e = r.expect_err("the call must fail");
    let s = e.status().expect("a gRPC status, not a transport error");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_a_thousand_signatures_all_verify() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let ks = c
        .create_keyset(spec("as-id-token", "ES256", &["generic"]))
        .await
        .expect("create");
    let kid = ks.versions[0].kid.clone();
    let set = jwks(&c, Some("as-id-token")).await;
    let mut leading_zero = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in 0..250 {
                let claims = json!({"sub": format!("user-{worker}-{i}"), "n": i}).to_string();
                let r = c
                    .sign_jwt("as-id-token", "generic", Some("JWT"), &claims)
                    .await
                    .expect("sign");
                out.push((r, worker, i));
            }
            out
        });
    }
    let mut count = 0;
    while let Some(batch) = tasks.join_next().await {
        for (r, worker, i) in batch.expect("task") {
            let v = verify_with_jwks(&r.jws, &set).unwrap_or_else(|e| panic!("token {count}: {e}"));
            assert_eq!(v.header["alg"], "ES256");
            assert_eq!(v.header["kid"], kid.as_str());
            assert_eq!(v.header["typ"], "JWT");
            assert_eq!(v.claims["sub"], format!("user-{worker}-{i}"));
            assert_eq!(r.kid, kid);
            assert_eq!(v.signature.len(), 64);
            if v.signature[0] == 0 || v.signature[32] == 0 {
                leading_zero += 1;
            }
            count += 1;
        }
    }
    assert_eq!(count, 1000);
    eprintln!("{leading_zero} of 1000 signatures had an r or s with a leading zero byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps256_verifies_with_salt_length_exactly_32() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("as-ps", "PS256", &["generic"]))
        .await
        .expect("create");
    let set = jwks(&c, Some("as-ps")).await;
    let jwk = &set["keys"][0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert!(
        jwk.get("d").is_none() && jwk.get("p").is_none(),
        "no private members"
    );
    let n = base64_len(jwk["n"].as_str().expect("n"));
    assert!(n >= 256, "modulus is {n} bytes");
    for i in 0..5 {
        let r = c
            .sign_jwt(
                "as-ps",
                "generic",
                Some("JWT"),
                &json!({"i": i}).to_string(),
            )
            .await
            .expect("sign");
        let v = verify_with_jwks(&r.jws, &set).expect("RustCrypto PSS with salt 32");
        assert_eq!(v.header["typ"], "JWT");
        assert!(
            openssl_pss_verify(&r.jws, jwk, 32).expect("openssl"),
            "openssl saltlen 32"
        );
        // The negative control: the same check with another salt length fails,
        // so the check above really pins the salt length.
        assert!(
            !openssl_pss_verify(&r.jws, jwk, 64).expect("openssl"),
            "saltlen 64 must fail"
        );
    }
}

fn base64_len(s: &str) -> usize {
    s.len() * 3 / 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_and_rs256_verify_and_profiles_are_enforced() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("ed", "EdDSA", &["generic"]))
        .await
        .expect("create EdDSA");
    let mut rs = spec("legacy", "RS256", &["generic"]);
    rs.profile = Some("oidc".into());
    c.create_keyset(rs).await.expect("RS256 under oidc");
    let (code_, msg) = code(
        c.create_keyset(spec("legacy2", "RS256", &["generic"]))
            .await,
    );
    assert_eq!(code_, Code::FailedPrecondition);
    assert!(
        msg.contains("fapi2") && msg.contains("PS256, ES256, EdDSA"),
        "{msg}"
    );
    let mut f1 = spec("f1", "EdDSA", &["generic"]);
    f1.profile = Some("fapi1-advanced".into());
    let (code_, msg) = code(c.create_keyset(f1).await);
    assert_eq!(code_, Code::FailedPrecondition);
    assert!(msg.contains("fapi1-advanced"), "{msg}");

    let set = jwks(&c, None).await;
    assert_eq!(set["keys"].as_array().expect("keys").len(), 2);
    for (ks, alg) in [("ed", "EdDSA"), ("legacy", "RS256")] {
        let r = c
            .sign_jwt(ks, "generic", None, r#"{"sub":"s"}"#)
            .await
            .expect("sign");
        let v = verify_with_jwks(&r.jws, &set).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.header["alg"], alg);
        assert!(v.header.get("typ").is_none(), "no typ unless asked");
    }
    let ed = &set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["alg"] == "EdDSA")
        .expect("ed jwk")
        .clone();
    assert_eq!(ed["kty"], "OKP");
    assert_eq!(ed["crv"], "Ed25519");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_on_the_token_are_sensitive_and_not_extractable() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    for (name, alg) in [("e", "ES256"), ("p", "PS256"), ("d", "EdDSA")] {
        c.create_keyset(spec(name, alg, &["generic"]))
            .await
            .expect("create");
    }
    // Read back by OpenSC's pkcs11-tool, not by Custos.
    let listing = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let objects: Vec<&str> = listing.split("Private Key Object").skip(1).collect();
    assert_eq!(objects.len(), 3, "{listing}");
    for o in objects {
        let access = o
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .expect("Access line");
        assert!(access.contains("sensitive"), "{o}");
        assert!(access.contains("never extractable"), "{o}");
        assert!(access.contains("local"), "generated on the token: {o}");
        let usage = o
            .lines()
            .find(|l| l.trim_start().starts_with("Usage:"))
            .expect("Usage line");
        assert!(usage.contains("sign"), "{o}");
        assert!(
            !usage.contains("decrypt") && !usage.contains("unwrap"),
            "signing keys only sign: {o}"
        );
        assert!(o.contains("label:      custos:"), "{o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_keysets_and_kids_and_they_still_sign() {
    let hsm = Hsm::new();
    let mut d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let mut kids = Vec::new();
    for (name, alg) in [("e", "ES256"), ("p", "PS256"), ("d", "EdDSA")] {
        kids.push(
            c.create_keyset(spec(name, alg, &["generic"]))
                .await
                .expect("create")
                .versions[0]
                .kid
                .clone(),
        );
    }
    let before = jwks(&c, None).await;
    d.restart().await;
    let c = d.client().await;
    let after = jwks(&c, None).await;
    assert_eq!(before, after, "JWKS unchanged by restart");
    let list = c.list_keysets().await.expect("list");
    let mut got: Vec<_> = list.iter().map(|k| k.versions[0].kid.clone()).collect();
    got.sort();
    kids.sort();
    assert_eq!(got, kids);
    for name in ["e", "p", "d"] {
        let r = c
            .sign_jwt(name, "generic", None, "{}")
            .await
            .expect("sign after restart");
        verify_with_jwks(&r.jws, &before)
            .expect("verifies against the JWKS from before the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_right_status() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("ks", "ES256", &["generic"]))
        .await
        .expect("create");

    let (k, m) = code(c.sign_jwt("nope", "generic", None, "{}").await);
    assert_eq!(k, Code::NotFound);
    assert!(m.contains("nope"), "{m}");
    assert_eq!(code(c.get_keyset("nope").await).0, Code::NotFound);
    assert_eq!(code(c.jwks(Some("nope")).await).0, Code::NotFound);

    for bad in ["[1,2]", "\"str\"", "42", "{not json", "null"] {
        let (k, m) = code(c.sign_jwt("ks", "generic", None, bad).await);
        assert_eq!(k, Code::InvalidArgument, "{bad}: {m}");
    }
    let big = json!({"blob": "x".repeat(64 * 1024)}).to_string();
    let (k, m) = code(c.sign_jwt("ks", "generic", None, &big).await);
    assert_eq!(k, Code::InvalidArgument);
    assert!(m.contains("64 KiB"), "{m}");
    let (k, m) = code(
        c.sign_jwt("ks", "generic", None, r#"{"exp":"tomorrow"}"#)
            .await,
    );
    assert_eq!(k, Code::InvalidArgument, "{m}");

    let (k, m) = code(c.sign_jwt("ks", "jarm", None, "{}").await);
    assert_eq!(k, Code::FailedPrecondition);
    assert!(m.contains("generic"), "names the allowed purposes: {m}");
    let (k, m) = code(c.sign_jwt("ks", "teleport", None, "{}").await);
    assert_eq!(k, Code::InvalidArgument, "{m}");

    assert_eq!(
        code(c.create_keyset(spec("ks", "ES256", &["id_token"])).await).0,
        Code::AlreadyExists
    );
    assert_eq!(
        code(
            c.create_keyset(spec("bad/name", "ES256", &["id_token"]))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    let (k, m) = code(c.create_keyset(spec("x", "HS256", &["id_token"])).await);
    assert_eq!(k, Code::InvalidArgument);
    assert!(m.contains("ES256"), "{m}");
    assert_eq!(
        code(c.create_keyset(spec("x", "none", &["id_token"])).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.create_keyset(spec("x", "ES256", &[])).await).0,
        Code::InvalidArgument
    );
    let mut other = spec("x", "ES256", &["generic"]);
    other.backend = Some("tpm9".into());
    assert_eq!(code(c.create_keyset(other).await).0, Code::NotFound);
    // None of the refusals created anything.
    assert_eq!(c.list_keysets().await.expect("list").len(), 1);
    assert!(!d.log_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hsm_gives_unavailable() {
    // A network HSM simulated for real: p11-kit's RPC server exports the
    // SoftHSM2 token on a Unix socket and custosd loads p11-kit's client module.
    let hsm = Hsm::new();
    let mut server = custos_e2e::P11KitServer::start(&hsm);
    let cfg = server.daemon_config();
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("remote", "ES256", &["generic"]))
        .await
        .expect("create through p11-kit");
    let set = jwks(&c, None).await;
    let r = c
        .sign_jwt("remote", "generic", None, "{}")
        .await
        .expect("sign through p11-kit");
    verify_with_jwks(&r.jws, &set).expect("verifies");

    server.kill();
    let (k, m) = code(c.sign_jwt("remote", "generic", None, "{}").await);
    assert_eq!(k, Code::Unavailable, "{m}");
    assert!(m.contains("unavailable"), "{m}");
    assert!(!d.log_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_every_core_operation() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = d.cli(args, stdin);
        assert!(
            out.status.success(),
            "custos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let created = ok(
        &[
            "keyset",
            "create",
            "as-at",
            "--alg",
            "ES256",
            "--purpose",
            "access_token,id_token",
        ],
        None,
    );
    assert!(created.contains("as-at"), "{created}");
    let list: Value = serde_json::from_str(&ok(&["keyset", "list", "--json"], None)).expect("json");
    assert_eq!(list[0]["name"], "as-at");
    let show: Value =
        serde_json::from_str(&ok(&["keyset", "show", "as-at", "--json"], None)).expect("json");
    assert_eq!(show["alg"], "ES256");
    assert_eq!(show["backend"], "hsm");
    assert_eq!(show["purposes"], json!(["id_token", "access_token"]));
    let kid = show["versions"][0]["kid"]
        .as_str()
        .expect("kid")
        .to_string();
    assert_eq!(show["versions"][0]["state"], "active");
    assert!(show["versions"][0]["created_at"].as_i64().expect("time") > now() - 60);
    let text_list = ok(&["keyset", "list"], None);
    assert!(text_list.contains(&kid), "{text_list}");
    let set: Value = serde_json::from_str(&ok(&["jwks"], None)).expect("json");
    let set_one: Value =
        serde_json::from_str(&ok(&["jwks", "--keyset", "as-at"], None)).expect("json");
    assert_eq!(set, set_one);

    // Typed purposes sign through their typed operations.
    let claims = json!({"iss": "https://as.example", "sub": "alice", "aud": "client-1",
        "client_id": "client-1", "exp": now() + 300})
    .to_string();
    let from_stdin = ok(
        &["sign", "access-token", "--keyset", "as-at"],
        Some(&claims),
    );
    let v = verify_with_jwks(from_stdin.trim(), &set).expect("verifies");
    assert_eq!(v.claims["sub"], "alice");
    assert_eq!(v.header["typ"], "at+jwt");
    let file = hsm.dir.path().join("claims.json");
    std::fs::write(&file, &claims).expect("write");
    let from_file = ok(
        &[
            "sign",
            "id-token",
            "--keyset",
            "as-at",
            "--claims",
            file.to_str().expect("utf-8"),
        ],
        None,
    );
    let (_, c2, _, _) = decode(from_file.trim()).expect("decode");
    assert_eq!(c2["iss"], "https://as.example");

    // Refusals: exit 1 with the reason on stderr, nothing on stdout.
    let out = d.cli(
        &["sign", "jwt", "--keyset", "nope", "--purpose", "generic"],
        Some("{}"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(
        &["sign", "jwt", "--keyset", "as-at", "--purpose", "jarm"],
        Some("{}"),
    );
    assert_eq!(out.status.code(), Some(1));
    // Usage errors and an absent daemon: exit 2.
    assert_eq!(
        d.cli(&["keyset", "create", "x"], None).status.code(),
        Some(2)
    );
    let out = run_cli(
        &hsm.dir.path().join("absent.sock"),
        &["keyset", "list"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach custosd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_health_reflection_and_stale_or_live_sockets() {
    use std::os::unix::fs::PermissionsExt;
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    let c = d.client().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel());
    for service in ["", "custos.v1.KeyAdmin", "custos.v1.Signer"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health");
        assert_eq!(
            r.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(c.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("message")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "custos.v1.KeyAdmin",
        "custos.v1.Signer",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    // A live socket: a second daemon on the same socket refuses to start.
    let out = std::process::Command::new(bin("custosd"))
        .arg("--config")
        .arg(&d.config)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("CUSTOS_TEST_PIN", &hsm.pin)
        .output()
        .expect("second custosd");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already serving"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first one is unharmed.
    assert!(d.client().await.list_keysets().await.is_ok());

    // A stale socket (left by kill -9) is replaced.
    std::process::Command::new("kill")
        .args(["-KILL", &d.pid().to_string()])
        .status()
        .expect("kill");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(d.socket.exists(), "kill -9 leaves the socket file behind");
    let d2 = Daemon::start(&hsm).await;
    assert!(d2.client().await.list_keysets().await.is_ok());
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let hsm = Hsm::new();
    let mut d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("p", "PS256", &["generic"]))
        .await
        .expect("create");
    let set = jwks(&c, None).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..64 {
        let c = c.clone();
        calls.spawn(async move {
            c.sign_jwt("p", "generic", None, &json!({"i": i}).to_string())
                .await
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = d.stop();
        (s, d)
    });
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        match r.expect("task") {
            Ok(s) => {
                verify_with_jwks(&s.jws, &set).expect("a drained call's token verifies");
                ok += 1;
            }
            Err(e) => {
                let code = e.status().map(|s| s.code());
                assert!(
                    code.is_none() || code == Some(Code::Unavailable),
                    "a call refused at shutdown is UNAVAILABLE or not connected, not {e}"
                );
            }
        }
    }
    let (status, d) = status.await.expect("stop");
    assert!(status.success(), "exit status {status}:\n{}", d.log_text());
    assert!(ok > 0, "some in-flight calls completed");
    assert!(!d.socket.exists(), "socket removed on clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_are_clear() {
    let hsm = Hsm::new();
    let dir = hsm.dir.path();
    let run = |config: &str, pin: &str| {
        let path = dir.join(format!("c{}.toml", rand::random::<u32>()));
        std::fs::write(&path, config).expect("write");
        let out = std::process::Command::new(bin("custosd"))
            .arg("--config")
            .arg(&path)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("CUSTOS_TEST_PIN", pin)
            .output()
            .expect("custosd");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let good = format!(
        "[server]\nsocket = \"{0}/s.sock\"\nstate_dir = \"{0}/state\"\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{1}\"\ntoken_label = \"custos\"\npin = \"env:CUSTOS_TEST_PIN\"\n",
        dir.display(),
        &custos_e2e::softhsm_module()
    );
    let err = run(&good.replace("token_label", "token_lable"), &hsm.pin);
    assert!(err.contains("token_lable"), "{err}");
    let err = run(&good, "wrong-pin");
    assert!(err.contains("PIN"), "{err}");
    assert!(
        !err.contains("wrong-pin"),
        "the PIN is never printed: {err}"
    );
    let err = run(
        &good.replace("token_label = \"custos\"", "token_label = \"missing\""),
        &hsm.pin,
    );
    assert!(err.contains("no token labelled \"missing\""), "{err}");
    let err = run(
        &good.replace(&custos_e2e::softhsm_module(), "/nonexistent/libnope.so"),
        &hsm.pin,
    );
    assert!(err.contains("cannot load PKCS#11 module"), "{err}");
    let err = run(
        &good.replace("softhsm2\"\nmodule", "luna9\"\nmodule"),
        &hsm.pin,
    );
    assert!(err.contains("unknown HSM profile"), "{err}");
    let err = run(
        &good.replace("env:CUSTOS_TEST_PIN", "env:CUSTOS_UNSET_PIN_VAR"),
        &hsm.pin,
    );
    assert!(err.contains("CUSTOS_UNSET_PIN_VAR"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_runs_on_software_keys_with_a_banner() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("dev.log");
    let mut child = std::process::Command::new(bin("custosd"))
        .arg("--dev")
        .current_dir(dir.path())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("custosd --dev");
    let socket = dir.path().join("custos-dev.sock");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = Client::connect_unix(&socket).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = client.expect("dev daemon answers on ./custos-dev.sock");
    let ks = c
        .create_keyset(spec("dev-ks", "ES256", &["generic"]))
        .await
        .expect("create");
    assert_eq!(ks.backend, "dev");
    let r = c
        .sign_jwt("dev-ks", "generic", None, r#"{"sub":"x"}"#)
        .await
        .expect("sign");
    verify_with_jwks(&r.jws, &jwks(&c, None).await).expect("verifies");
    assert!(dir.path().join("custos-dev/keyring.json").exists());
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("exit").success());
    let banner = std::fs::read_to_string(&log).expect("log");
    assert!(banner.contains("NOT hardware-protected"), "{banner}");
}

//! End-to-end tests of caller identity, access policy, mutual TLS, the audit
//! log, secrets and limits.

use custos_client::{Client, KeysetSpec};
use custos_e2e::pki::{tls_client, uri, Pki};
use custos_e2e::{as_uid, bin, free_port, shared_dir, wait_for_audit, Daemon, DaemonConfig, Hsm};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tonic::Code;

fn spec(name: &str) -> KeysetSpec {
    KeysetSpec {
        name: name.into(),
        alg: "ES256".into(),
        purposes: vec!["generic".into()],
        ..KeysetSpec::default()
    }
}

/// Runs the CLI as uid/gid 65534 (nobody) with setpriv.
fn as_nobody(cli: &Path, socket: &Path, args: &[&str]) -> Output {
    as_uid(65534, cli, socket, args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_is_refused_until_a_policy_grants_it_and_only_what_it_grants() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let audit = hsm.dir.path().join("audit.jsonl");
    let base = DaemonConfig {
        socket_dir: Some(shared.path().to_path_buf()),
        server_toml: "socket_mode = \"0660\"\nsocket_group = \"65534\"\n".into(),
        extra_toml: format!("\n[audit]\nfile = \"{}\"\n", audit.display()),
        ..DaemonConfig::default()
    };
    let mut d = Daemon::start_with(&hsm, base.clone()).await;
    let c = d.client().await;
    for name in ["as-id", "as-at", "other"] {
        c.create_keyset(spec(name)).await.expect("create");
    }
    // No [[access]]: uid 65534 is refused, naming the operation and keyset.
    let out = as_nobody(
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "as-id",
            "--purpose",
            "generic",
            "--claims",
            "/dev/null",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PermissionDenied") && stderr(&out).contains("as-id"),
        "{}",
        stderr(&out)
    );
    let denials: Vec<Value> =
        wait_for_audit(&audit, |ls| ls.iter().any(|l| l["outcome"] == "denied"))
            .await
            .into_iter()
            .filter(|l| l["outcome"] == "denied")
            .collect();
    assert_eq!(denials.len(), 1);
    assert_eq!(denials[0]["caller"]["uid"], 65534);
    assert_eq!(denials[0]["keyset"], "as-id");

    // Grant uid 65534 sign and jwks on as-* only.
    let granted = DaemonConfig {
        extra_toml: format!(
            "{}\n[[access]]\nname = \"authorization-server\"\nunix_uid = 65534\nkeysets = [\"as-*\"]\noperations = [\"sign\", \"jwks\"]\n",
            base.extra_toml
        ),
        ..base
    };
    drop(c);
    d.stop();
    let d = Daemon::start_with(&hsm, granted).await;
    let claims = shared.path().join("claims.json");
    std::fs::write(&claims, r#"{"sub":"x"}"#).expect("claims");
    std::fs::set_permissions(&claims, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let claims = claims.to_str().expect("utf-8");
    let out = as_nobody(
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "as-id",
            "--purpose",
            "generic",
            "--claims",
            claims,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let out = as_nobody(
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "as-at",
            "--purpose",
            "generic",
            "--claims",
            claims,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Not the other keyset, not admin, not verify.
    let out = as_nobody(
        &cli,
        &d.socket,
        &[
            "sign",
            "jwt",
            "--keyset",
            "other",
            "--purpose",
            "generic",
            "--claims",
            claims,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("PermissionDenied"));
    let out = as_nobody(
        &cli,
        &d.socket,
        &[
            "keyset",
            "create",
            "as-new",
            "--alg",
            "ES256",
            "--purpose",
            "generic",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    // Creating needs the `manage` right (admin is split into manage and destroy).
    assert!(stderr(&out).contains("manage"), "{}", stderr(&out));
    let out = as_nobody(
        &cli,
        &d.socket,
        &["verify", "jws", "--token", &token, "--keyset", "as-id"],
    );
    assert_ne!(out.status.code(), Some(0));
    // The list and the JWKS show only granted keysets.
    let out = as_nobody(&cli, &d.socket, &["keyset", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["as-at", "as-id"]);
    // The published JWKS never holds generic keys (trust model); each
    // granted keyset's own JWKS is served, the others are refused.
    let out = as_nobody(&cli, &d.socket, &["jwks"]);
    let jwks: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 0);
    for (name, keys) in [("as-at", Some(1)), ("as-id", Some(1)), ("other", None)] {
        let out = as_nobody(&cli, &d.socket, &["jwks", "--keyset", name]);
        match keys {
            Some(n) => {
                let jwks: Value = serde_json::from_slice(&out.stdout).expect("json");
                assert_eq!(jwks["keys"].as_array().expect("keys").len(), n);
            }
            None => assert!(
                stderr(&out).contains("PermissionDenied"),
                "{}",
                stderr(&out)
            ),
        }
    }

    // Every sign and every denial has its audit line with the right caller and kid.
    let lines = wait_for_audit(&audit, |ls| {
        ls.iter().filter(|l| l["outcome"] == "denied").count() >= 4
    })
    .await;
    let signs: Vec<&Value> = lines
        .iter()
        .filter(|l| l["operation"] == "sign_jwt" && l["outcome"] == "ok")
        .collect();
    assert_eq!(signs.len(), 2, "{lines:?}");
    for s in &signs {
        assert_eq!(s["caller"]["uid"], 65534);
        assert!(s["kid"].is_string());
        assert_eq!(s["input_sha256"].as_str().expect("hash").len(), 64);
    }
    let (header, payload, _) = {
        let mut p = token.split('.');
        (p.next().expect("h"), p.next().expect("p"), p.next())
    };
    use sha2::Digest;
    let digest = hex_encode(&sha2::Sha256::digest(
        format!("{header}.{payload}").as_bytes(),
    ));
    assert!(
        signs.iter().any(|s| s["input_sha256"] == digest.as_str()),
        "the audit line carries the signing input's hash"
    );
    assert!(
        !std::fs::read_to_string(&audit)
            .expect("audit")
            .contains(r#""sub":"x""#),
        "claims are never logged"
    );
    let denied: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "denied").collect();
    assert!(denied.len() >= 4, "{denied:?}");
    assert!(denied
        .iter()
        .all(|l| l["caller"]["uid"] == 65534 && l["caller"]["pid"].is_number()));
    assert!(denied
        .iter()
        .any(|l| l["operation"] == "manage" && l["keyset"] == "as-new"));
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_granted_certificates_from_the_client_ca() {
    let hsm = Hsm::new();
    let pki = Pki::new(hsm.dir.path(), "bank-ca");
    let other = Pki::new(hsm.dir.path(), "other-ca");
    let (server_cert, server_key) = pki.issue(
        "custosd",
        vec![
            rcgen::SanType::DnsName("localhost".try_into().expect("dns")),
            rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")),
        ],
        false,
    );
    let (as_cert, as_key) = pki.issue("as", vec![uri("spiffe://bank/as")], false);
    let (rs_cert, rs_key) = pki.issue("rs", vec![uri("spiffe://bank/rs")], false);
    let (old_cert, old_key) = pki.issue("as-old", vec![uri("spiffe://bank/as")], true);
    let (foreign_cert, foreign_key) = other.issue("as", vec![uri("spiffe://bank/as")], false);
    let ca = pki.dir.join("ca.pem");
    let port = free_port();
    let cfg = DaemonConfig {
        server_toml: format!(
            "tcp = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
            server_cert.display(),
            server_key.display(),
            ca.display()
        ),
        extra_toml: "\n[[access]]\nname = \"as\"\ntls_san = \"spiffe://bank/as\"\nkeysets = [\"as-*\"]\noperations = [\"sign\", \"jwks\"]\n".into(),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    d.client()
        .await
        .create_keyset(spec("as-id"))
        .await
        .expect("create over the Unix socket");
    let url = format!("https://127.0.0.1:{port}");

    // The granted caller signs over TLS.
    let c = tls_client(&url, &as_cert, &as_key, &ca)
        .await
        .expect("connect");
    let s = c
        .sign_jwt("as-id", "generic", None, "{}")
        .await
        .expect("granted TLS caller signs");
    assert!(!s.kid.is_empty());
    // A valid certificate whose SAN no rule names: PERMISSION_DENIED.
    let c = tls_client(&url, &rs_cert, &rs_key, &ca)
        .await
        .expect("connect");
    let e = c
        .sign_jwt("as-id", "generic", None, "{}")
        .await
        .expect_err("not granted");
    assert_eq!(e.status().expect("status").code(), Code::PermissionDenied);
    // Another CA, an expired certificate, no certificate: never reach a service.
    for (what, cert, key) in [
        ("other CA", &foreign_cert, &foreign_key),
        ("expired", &old_cert, &old_key),
    ] {
        let r = match tls_client(&url, cert, key, &ca).await {
            Ok(c) => c.list_keysets().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = r.expect_err(what);
        // Refused in the handshake: the client sees a transport failure, never a service's answer.
        assert!(
            e.status().is_none_or(|s| matches!(
                s.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            )),
            "{what}: {e}"
        );
    }
    let no_identity = tonic::transport::Endpoint::from_shared(url.clone())
        .expect("url")
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(std::fs::read(&ca).expect("ca")),
        ))
        .expect("tls");
    let r = match no_identity.connect().await {
        Ok(ch) => Client::from_channel(ch).list_keysets().await.map(|_| ()),
        Err(e) => Err(custos_client::Error::Connect {
            path: PathBuf::from(&url),
            reason: e.to_string(),
        }),
    };
    assert!(r.is_err(), "no client certificate must be refused");
    // Other CA, expired and anonymous: three refusals in the handshake.
    d.wait_for_log("TLS handshake refused", 3).await;

    // The CLI over TLS.
    let out = Command::new(bin("custos"))
        .args(["--endpoint", &url, "--cert"])
        .arg(&as_cert)
        .arg("--key")
        .arg(&as_key)
        .arg("--ca")
        .arg(&ca)
        .args([
            "sign",
            "jwt",
            "--keyset",
            "as-id",
            "--purpose",
            "generic",
            "--claims",
            "/dev/null",
        ])
        .output()
        .expect("cli");
    // /dev/null is not a JSON object: refused by the daemon, which proves the call got through.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("InvalidArgument"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak_and_unsafe_files_are_refused() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("k")).await.expect("create");
    c.sign_jwt("k", "generic", None, "{}").await.expect("sign");
    let _ = c.sign_jwt("nope", "generic", None, "{}").await;
    let dir = hsm.dir.path();
    let write_config = |name: &str, pin_source: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[server]\nsocket = \"{0}/{name}.sock\"\nstate_dir = \"{0}/state\"\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{1}\"\ntoken_label = \"custos\"\npin = \"{pin_source}\"\n",
                dir.display(),
                &custos_e2e::softhsm_module()
            ),
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let run = |config: &Path| {
        Command::new(bin("custosd"))
            .arg("--config")
            .arg(config)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .output()
            .expect("custosd")
    };
    // A group-readable PIN file is refused, naming the fix.
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, &hsm.pin).expect("pin");
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = run(&write_config(
        "pinfile.toml",
        &format!("file:{}", pin_file.display()),
        0o600,
    ));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    // A config file others can write is refused.
    let out = run(&write_config("loose.toml", "env:X", 0o666));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );
    // A PIN file with mode 0600 and systemd credentials work.
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let creds = dir.join("creds");
    std::fs::create_dir(&creds).expect("dir");
    std::fs::copy(&pin_file, creds.join("custos-pin")).expect("copy");
    std::fs::set_permissions(
        creds.join("custos-pin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let cfg = write_config("creds.toml", "systemd-creds:custos-pin", 0o600);
    let child = Command::new(bin("custosd"))
        .arg("--config")
        .arg(&cfg)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("custosd");
    let sock = dir.join("creds.toml.sock");
    let mut up = false;
    for _ in 0..100 {
        if let Ok(c) = Client::connect_unix(&sock).await {
            up = c.list_keysets().await.is_ok();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("exit");
    assert!(
        up,
        "the daemon starts with a systemd credential: {}",
        stderr(&out)
    );
    // The PIN appears nowhere: not in the logs of any daemon, nor in errors.
    for text in [d.log_text(), stderr(&out)] {
        assert!(!text.contains(&hsm.pin), "the PIN leaked:\n{text}");
    }
    // Core dumps are off for the daemon (RLIMIT_CORE 0; PR_SET_DUMPABLE is cleared too).
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core line");
    assert!(
        core.split_whitespace().nth(4) == Some("0"),
        "core dumps disabled: {core}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_audit_failures_and_socket_safety() {
    let hsm = Hsm::new();
    let cfg = DaemonConfig {
        extra_toml: "\n[limits]\nrate_per_second = 5\nburst = 5\nmax_request_bytes = 8192\n[audit]\nfile = \"/dev/full\"\nrequired = true\n".into(),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    // The audit log cannot be written (/dev/full): admin and signing fail, nothing is created.
    let e = c
        .create_keyset(spec("k"))
        .await
        .expect_err("audit failure fails the operation");
    assert_eq!(e.status().expect("s").code(), Code::Unavailable);
    assert!(e.status().expect("s").message().contains("audit"));
    assert_eq!(e.outage(), Some("audit-log"), "{e}");
    // Rate limit: the bucket of 5 runs out within a quick burst.
    let mut exhausted = 0;
    for _ in 0..30 {
        if let Err(e) = c.list_keysets().await {
            assert_eq!(e.status().expect("s").code(), Code::ResourceExhausted);
            exhausted += 1;
            let wait = e.retry_after();
            // Five a second: the next token is at most 200 ms away.
            assert!(
                wait.is_some_and(
                    |w| w > std::time::Duration::ZERO && w <= std::time::Duration::from_millis(200)
                ),
                "RetryInfo says when: {wait:?}"
            );
        }
    }
    assert!(exhausted >= 20, "rate limited {exhausted} of 30");
    // A caller that waits as long as RetryInfo said gets through: the delay
    // of the latest refusal, with no call between it and the wait (one that
    // passed after it would have taken the refilled token).
    let wait = loop {
        if let Err(e) = c.list_keysets().await {
            break e.retry_after().expect("RetryInfo");
        }
    };
    tokio::time::sleep(wait).await;
    c.list_keysets().await.expect("after the RetryInfo delay");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // A request above max_request_bytes is refused by the transport, not a crash.
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(16 * 1024));
    let e = c
        .sign_jwt("k", "generic", None, &big)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            e.status().expect("s").code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e}"
    );
    assert!(c.list_keysets().await.is_ok(), "still serving");

    // A world-writable socket directory is refused at start.
    let open_dir = hsm.dir.path().join("open");
    std::fs::create_dir(&open_dir).expect("dir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let config = hsm.dir.path().join("open.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket = \"{}/s.sock\"\nstate_dir = \"{}/st\"\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{}\"\ntoken_label = \"custos\"\npin = \"env:CUSTOS_TEST_PIN\"\n",
            open_dir.display(),
            hsm.dir.path().display(),
            &custos_e2e::softhsm_module()
        ),
    )
    .expect("write");
    let out = Command::new(bin("custosd"))
        .arg("--config")
        .arg(&config)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("CUSTOS_TEST_PIN", &hsm.pin)
        .output()
        .expect("custosd");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("world-writable"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_claims_are_refused() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("k")).await.expect("create");
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
    let e = c
        .sign_jwt("k", "generic", None, &deep)
        .await
        .expect_err("too deep");
    assert_eq!(e.status().expect("s").code(), Code::InvalidArgument);
    assert!(e.status().expect("s").message().contains("nested"));
}

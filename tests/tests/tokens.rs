//! The same end-to-end checks on four PKCS#11 implementations (SoftHSM2,
//! NSS softokn, opencryptoki's software token, kryoptic): every algorithm the
//! token supports, the FAPI token operations, JWKS, decryption, a restart,
//! and `custos doctor`. Every signature is checked independently. Then what
//! `custos doctor` and `custosd` say about broken set-ups.

use custos_client::{proto, Client};
use custos_e2e::jwe::encrypt_rsa_oaep_256;
use custos_e2e::verify::{oidc_hash, openssl_pss_verify, verify_with_jwks};
use custos_e2e::{bin, now, spec, Daemon, Hsm};
use serde_json::{json, Value};
use std::process::{Command, Output};

async fn jwks(c: &Client) -> Value {
    custos_e2e::every_jwks(c).await
}

fn kids(set: &Value) -> Vec<String> {
    let mut k: Vec<String> = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect();
    k.sort();
    k
}

/// Runs `custos doctor` for the daemon's config with the token's environment.
fn doctor(hsm: &Hsm, config: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(bin("custos"))
        .arg("doctor")
        .arg("--config")
        .arg(config)
        .args(extra)
        .envs(hsm.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CUSTOS_TEST_PIN", &hsm.pin)
        .output()
        .expect("custos doctor runs")
}

/// Signs every token kind with every signing algorithm the token has,
/// checks each independently, decrypts, restarts, and runs the doctor.
async fn exercise(hsm: Hsm) {
    let mut d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let signing: Vec<&str> = hsm
        .algorithms
        .iter()
        .copied()
        .filter(|a| *a != "RSA-OAEP-256")
        .collect();
    for alg in &signing {
        let mut s = spec(
            &format!("k-{alg}"),
            alg,
            &["id_token", "access_token", "jarm"],
        );
        if *alg == "RS256" {
            s.profile = Some("oidc".into());
        }
        s.issuer = Some("https://as.bank".into());
        c.create_keyset(s)
            .await
            .unwrap_or_else(|e| panic!("{}: create {alg}: {e}\n{}", hsm.profile, d.log_text()));
    }
    let decrypts = hsm.algorithms.contains(&"RSA-OAEP-256");
    if decrypts {
        c.create_keyset(spec("enc", "RSA-OAEP-256", &["request_object_decryption"]))
            .await
            .expect("create decryption keyset");
    }
    let set = jwks(&c).await;
    let sign_all = |c: Client, set: Value, profile: String, signing: Vec<&'static str>| async move {
        for alg in signing {
            let keyset = format!("k-{alg}");
            let id = c
                .sign_id_token(proto::SignIdTokenRequest {
                    keyset: keyset.clone(),
                    claims_json: json!({"sub": "alice", "aud": "client-1", "exp": now() + 300})
                        .to_string(),
                    code: "SplxlOBeZQQYbYS6WxSbIA".into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{profile} {alg} id token: {e}"));
            let v = verify_with_jwks(&id.token, &set)
                .unwrap_or_else(|e| panic!("{profile} {alg}: independent verification: {e}"));
            assert_eq!(v.header["alg"], alg);
            assert_eq!(v.claims["c_hash"], oidc_hash(alg, "SplxlOBeZQQYbYS6WxSbIA"));
            if alg == "PS256" {
                let jwk = set["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .find(|k| k["kid"] == v.header["kid"])
                    .expect("jwk");
                assert!(openssl_pss_verify(&id.token, jwk, 32).expect("openssl"));
            }
            let at = c
                .sign_access_token(proto::SignAccessTokenRequest {
                    keyset: keyset.clone(),
                    claims_json: json!({"iss": "https://as.bank", "sub": "alice", "aud": "rs",
                        "exp": now() + 300, "client_id": "client-1"})
                    .to_string(),
                    binding: Some(proto::sign_access_token_request::Binding::Jkt(
                        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
                    )),
                })
                .await
                .unwrap_or_else(|e| panic!("{profile} {alg} access token: {e}"));
            let v = verify_with_jwks(&at.token, &set).expect("access token verifies");
            assert_eq!(v.header["typ"], "at+jwt");
            let jarm = c
                .sign_jarm_response(proto::SignJarmResponseRequest {
                    keyset: keyset.clone(),
                    client_id: "client-1".into(),
                    params_json: r#"{"code":"c-1","state":"s-1"}"#.into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{profile} {alg} jarm: {e}"));
            let v = verify_with_jwks(&jarm.token, &set).expect("jarm verifies");
            assert_eq!(v.claims["code"], "c-1");
        }
    };
    sign_all(c.clone(), set.clone(), hsm.profile.clone(), signing.clone()).await;
    if decrypts {
        let enc_jwk = set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["use"] == "enc")
            .expect("enc key")
            .clone();
        let jwe = encrypt_rsa_oaep_256(b"a request object", &enc_jwk, "RSA-OAEP-256");
        let out = c
            .decrypt_jwe("enc", &jwe)
            .await
            .unwrap_or_else(|e| panic!("{}: decrypt: {e}\n{}", hsm.profile, d.log_text()));
        assert_eq!(out.plaintext, b"a request object");
    }

    // A restart finds the same keys on the token.
    d.restart().await;
    let c = d.client().await;
    let after = jwks(&c).await;
    assert_eq!(
        kids(&after),
        kids(&set),
        "{}: kids survive a restart",
        hsm.profile
    );
    sign_all(c.clone(), after, hsm.profile.clone(), signing).await;

    // The doctor passes on this token, and finds no orphans.
    let out = doctor(&hsm, &d.config, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: doctor failed:\n{text}\n{}",
        hsm.profile,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("=> OK"), "{text}");
    println!("custos doctor on {}:\n{text}", hsm.profile);
    assert!(
        text.contains("orphans (on the token, not in the manifest): none"),
        "{text}"
    );
    for alg in &hsm.algorithms {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(alg) && l.contains(" ok ")),
            "{}: doctor row for {alg}:\n{text}",
            hsm.profile
        );
    }
    let json_out = doctor(&hsm, &d.config, &["--json"]);
    let report: Value = serde_json::from_slice(&json_out.stdout).expect("doctor --json");
    assert_eq!(
        report[0]["algorithms"].as_array().expect("rows").len(),
        hsm.algorithms.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm2_passes_the_suite_and_the_doctor() {
    exercise(Hsm::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nss_softokn_passes_the_suite_and_the_doctor() {
    exercise(Hsm::nss()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencryptoki_passes_the_suite_and_the_doctor() {
    exercise(Hsm::opencryptoki()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kryoptic_passes_the_suite_and_the_doctor() {
    exercise(Hsm::kryoptic()).await;
}

/// Writes a config for `hsm` with `backend` as the backend table body.
fn config_with(
    hsm: &Hsm,
    backend: &str,
    profiles_dir: Option<&std::path::Path>,
) -> std::path::PathBuf {
    let path = hsm
        .dir
        .path()
        .join(format!("doctor-{:08x}.toml", rand::random::<u32>()));
    let profiles = profiles_dir
        .map(|p| format!("profiles_dir = \"{}\"\n", p.display()))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "[server]\nsocket = \"{}\"\nstate_dir = \"{}\"\n{profiles}\n[backends.hsm]\nkind = \"pkcs11\"\n{backend}\n",
            hsm.dir.path().join("x.sock").display(),
            hsm.dir.path().join("state").display()
        ),
    )
    .expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_and_custosd_name_each_broken_setup() {
    let hsm = Hsm::new();
    let good = format!(
        "profile = \"softhsm2\"\nmodule = \"{}\"\ntoken_label = \"custos\"\npin = \"env:CUSTOS_TEST_PIN\"",
        &custos_e2e::softhsm_module()
    );
    // A profile promising a mechanism SoftHSM2 does not have, without fallback.
    let profiles = hsm.dir.path().join("profiles");
    std::fs::create_dir(&profiles).expect("profiles dir");
    std::fs::write(
        profiles.join("overpromise.toml"),
        "name = \"overpromise\"\ntested = false\n[algorithms.ES256]\nmechanism = \"CKM_ECDSA_SHA256\"\n[algorithms.PS256]\nmechanism = \"CKM_SHA256_RSA_PKCS_PSS\"\n",
    )
    .expect("profile");
    let cases: Vec<(String, i32, &str)> = vec![
        (
            good.replace("env:CUSTOS_TEST_PIN", "env:WRONG_PIN"),
            1,
            "PIN",
        ),
        (
            good.replace("token_label = \"custos\"", "token_label = \"nope\""),
            1,
            "no token labelled \"nope\"",
        ),
        (
            good.replace(&custos_e2e::softhsm_module(), "/nonexistent/libnope.so"),
            1,
            "cannot load PKCS#11 module /nonexistent/libnope.so",
        ),
        (
            good.replace("\"softhsm2\"", "\"overpromise\""),
            1,
            "CKM_ECDSA_SHA256",
        ),
    ];
    for (backend, code, needle) in cases {
        let config = config_with(&hsm, &backend, Some(&profiles));
        let out = Command::new(bin("custos"))
            .arg("doctor")
            .arg("--config")
            .arg(&config)
            .envs(hsm.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CUSTOS_TEST_PIN", &hsm.pin)
            .env("WRONG_PIN", "not-the-pin")
            .output()
            .expect("doctor");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{needle}: {text}");
        assert!(text.contains(needle), "{needle}: {text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(
            !text.contains("not-the-pin"),
            "the PIN is never printed: {text}"
        );
        // custosd itself refuses to start with the same message (except the
        // over-promising profile, which starts and warns).
        if needle != "CKM_ECDSA_SHA256" {
            let out = Command::new(bin("custosd"))
                .arg("--config")
                .arg(&config)
                .envs(hsm.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("CUSTOS_TEST_PIN", &hsm.pin)
                .env("WRONG_PIN", "not-the-pin")
                .output()
                .expect("custosd");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(err.contains(needle), "custosd: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // The over-promising profile: ES256 fails, PS256 passes, exit 1.
    let config = config_with(
        &hsm,
        &good.replace("\"softhsm2\"", "\"overpromise\""),
        Some(&profiles),
    );
    let out = doctor(&hsm, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = report[0]["algorithms"].as_array().expect("rows");
    let row = |alg: &str| rows.iter().find(|r| r["alg"] == alg).expect("row").clone();
    assert_eq!(row("ES256")["ok"], false);
    assert_eq!(row("PS256")["ok"], true);
    // An unknown backend name is a usage error.
    let out = doctor(&hsm, &config, &["--backend", "nope"]);
    assert_eq!(out.status.code(), Some(2));

    // With a file audit log, every throwaway key's creation and destruction
    // is recorded there.
    let audit = hsm.dir.path().join("audit.jsonl");
    let config = config_with(
        &hsm,
        &format!("{good}\n\n[audit]\nfile = \"{}\"", audit.display()),
        None,
    );
    let out = doctor(&hsm, &config, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let count = |op: &str| {
        lines
            .iter()
            .filter(|l| l["operation"] == op && l["outcome"] == "ok")
            .count()
    };
    assert_eq!(
        count("doctor_generate_key"),
        hsm.algorithms.len(),
        "{lines:?}"
    );
    assert_eq!(
        count("doctor_destroy_key"),
        hsm.algorithms.len(),
        "{lines:?}"
    );
    assert_eq!(lines[0]["caller"]["tool"], "custosd doctor");
}

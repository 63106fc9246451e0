//! One-second smoke runs of every bench command, so they keep working. The
//! figures themselves live in BENCHMARKS.md, not in assertions.

use custos_e2e::{bin, spec, Daemon, Hsm};
use serde_json::Value;

fn report(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    for field in ["ops_per_sec", "p50_us", "p99_us", "errors"] {
        assert!(v[field].is_number(), "{field} missing: {v}");
    }
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["ops"].as_u64().expect("ops") > 0, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_command_runs() {
    let hsm = Hsm::new();
    let mut d = Daemon::start(&hsm).await;
    let c = d.client().await;
    c.create_keyset(spec("es", "ES256", &["generic"]))
        .await
        .expect("create");
    // Access tokens come from an access_token keyset of their own (a generic
    // keyset serves no typed purpose).
    c.create_keyset(spec("at", "ES256", &["access_token"]))
        .await
        .expect("create");
    for args in [
        vec![
            "bench",
            "sign",
            "--keyset",
            "es",
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--json",
        ],
        vec![
            "bench",
            "sign",
            "--keyset",
            "es",
            "--concurrency",
            "4",
            "--batch",
            "8",
            "--duration",
            "1",
            "--json",
        ],
        vec![
            "bench",
            "verify",
            "--keyset",
            "at",
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--json",
        ],
        vec![
            "bench",
            "health",
            "--concurrency",
            "1",
            "--duration",
            "1",
            "--json",
        ],
    ] {
        let v = report(&d.cli(&args, None));
        if args.contains(&"8") {
            assert_eq!(v["batch"], 8);
            assert_eq!(v["ops"].as_u64().expect("ops") % 8, 0, "whole batches only");
        }
    }
    // The direct measurement needs the token to itself: stop the daemon first.
    d.stop();
    for extra in [&[][..], &["--no-pool"][..]] {
        let out = std::process::Command::new(bin("custosd"))
            .args(["bench", "--config"])
            .arg(&d.config)
            .args([
                "--keyset",
                "es",
                "--concurrency",
                "2",
                "--duration",
                "1",
                "--json",
            ])
            .args(extra)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("CUSTOS_TEST_PIN", &hsm.pin)
            .output()
            .expect("custosd bench");
        report(&out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_fail_alone_and_batches_are_bounded() {
    let hsm = Hsm::new();
    let audit = hsm.dir.path().join("audit.jsonl");
    let d = Daemon::start_with(
        &hsm,
        custos_e2e::DaemonConfig {
            extra_toml: format!("\n[audit]\nfile = \"{}\"\n", audit.display()),
            ..Default::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("es", "ES256", &["generic"]))
        .await
        .expect("create");
    let items = c
        .sign_jwt_batch(
            "es",
            "generic",
            Some("JWT"),
            vec!["{\"a\":1}".into(), "[1]".into(), "{\"b\":2}".into()],
        )
        .await
        .expect("batch");
    use custos_client::proto::batch_item::Result as R;
    let set: Value = custos_e2e::every_jwks(&c).await;
    match (&items[0].result, &items[1].result, &items[2].result) {
        (Some(R::Signed(a)), Some(R::Error(e)), Some(R::Signed(b))) => {
            assert_eq!(e.code, "InvalidArgument");
            custos_e2e::verify::verify_with_jwks(&a.jws, &set).expect("first verifies");
            let v = custos_e2e::verify::verify_with_jwks(&b.jws, &set).expect("third verifies");
            assert_eq!(v.claims["b"], 2);
            assert_eq!(v.header["typ"], "JWT");
        }
        other => panic!("unexpected batch result {other:?}"),
    }
    // One audit line per item, in order, written with the batch.
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|l: &Value| l["operation"] == "sign_jwt_batch")
        .collect();
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["ok", "error", "ok"]);
    assert_eq!(lines[1]["detail"], "InvalidArgument");
    assert!(lines[0]["input_sha256"].is_string() && lines[1].get("kid").is_none());
    let too_many = vec!["{}".to_string(); 65];
    let e = c
        .sign_jwt_batch("es", "generic", None, too_many)
        .await
        .expect_err("over max_batch");
    assert_eq!(e.status().expect("s").code(), tonic::Code::InvalidArgument);
    let e = c
        .sign_jwt_batch("nope", "generic", None, vec!["{}".into()])
        .await
        .expect_err("unknown keyset");
    assert_eq!(e.status().expect("s").code(), tonic::Code::NotFound);
}

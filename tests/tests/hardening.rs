//! Trust boundaries, part 2: files, clocks, quotas, stuck devices, floods.
//! Each finding of the review is performed against a real custosd on a real
//! SoftHSM2 token (through a real p11-kit server where a network HSM is
//! needed) and shown refused or survived.

use custos_client::proto;
use custos_client::proto::verify_jws_request::Keys;
use custos_e2e::pki::{tls_client, uri, Pki};
use custos_e2e::sign::EcKey;
use custos_e2e::{bin, free_port, health, spec, Daemon, DaemonConfig, Hsm, P11KitServer};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

fn code(e: &custos_client::Error) -> Option<Code> {
    e.status().map(tonic::Status::code)
}

/// Waits until `service`'s health is `want`, up to `limit`.
async fn wait_health(c: &custos_client::Client, service: &str, want: i32, limit: Duration) {
    let start = Instant::now();
    loop {
        let got = health(c, service).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{service}: health {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn b64_to_hex(s: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verify_with_keyset(token: &str, keyset: &str) -> proto::VerifyJwsRequest {
    proto::VerifyJwsRequest {
        token: token.into(),
        keys: Some(Keys::Keyset(keyset.into())),
        typ: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_another_public_key_quarantines_the_keyset_instead_of_trusting_it() {
    let hsm = Hsm::new();
    let audit = hsm.dir.path().join("audit.jsonl");
    let cfg = DaemonConfig {
        extra_toml: format!(
            "\n[keyring]\nrefresh = \"1s\"\n\n[audit]\nfile = \"{}\"\n",
            audit.display()
        ),
        ..DaemonConfig::default()
    };
    let mut d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    for name in ["gen", "other"] {
        c.create_keyset(spec(name, "ES256", &["generic"]))
            .await
            .expect("create");
    }
    let real = c
        .sign_jwt("gen", "generic", None, r#"{"sub":"alice"}"#)
        .await
        .expect("sign");
    let v = c
        .verify_jws(verify_with_keyset(&real.jws, "gen"))
        .await
        .expect("verify");
    assert!(v.valid, "{v:?}");

    // The attack: someone who can write state_dir swaps the recorded public
    // key of gen's version for their own (same kid) and signs with theirs.
    let attacker = EcKey::new();
    let (header, _, _, _) = custos_e2e::verify::decode(&real.jws).expect("decode");
    let forged = attacker.sign(&header, &json!({"sub": "mallory"}));
    let path = d.state_dir.join("keyring.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let jwk = attacker.public_jwk();
    m["keysets"]["gen"]["versions"][0]["public"] = json!({
        "kty": "EC",
        "x": b64_to_hex(jwk["x"].as_str().expect("x")),
        "y": b64_to_hex(jwk["y"].as_str().expect("y")),
    });
    m["generation"] = json!(m["generation"].as_u64().expect("generation") + 1);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");

    // At the next refresh (1 s) the keyset is held back, loudly.
    wait_health(
        &c,
        "custos.keyset.gen",
        NOT_SERVING,
        Duration::from_secs(15),
    )
    .await;
    let refused = |d: &Daemon| {
        let log = d.log_text();
        assert!(
            log.contains("keyset quarantined") && log.contains("does not hash to that kid"),
            "{log}"
        );
    };
    refused(&d);
    for round in ["after the refresh", "after a restart"] {
        let c = d.client().await;
        match c.verify_jws(verify_with_keyset(&forged, "gen")).await {
            Ok(v) => assert!(!v.valid, "{round}: the forged token must not verify: {v:?}"),
            Err(e) => assert!(
                matches!(code(&e), Some(Code::FailedPrecondition | Code::NotFound)),
                "{round}: {e}"
            ),
        }
        let e = c
            .sign_jwt("gen", "generic", None, "{}")
            .await
            .expect_err("a quarantined keyset does not sign");
        assert_eq!(code(&e), Some(Code::FailedPrecondition), "{round}: {e}");
        assert!(e.to_string().contains("quarantined"), "{round}: {e}");
        // Its keys are out of the JWKS; the other keyset carries on.
        let kid = header["kid"].as_str().expect("kid");
        match c.jwks(Some("gen")).await {
            Ok(jwks) => assert!(!jwks.contains(kid), "{round}: {jwks}"),
            Err(e) => assert!(code(&e).is_some(), "{round}: {e}"),
        }
        c.sign_jwt("other", "generic", None, "{}")
            .await
            .expect("other keysets still sign");
        if round == "after the refresh" {
            d.restart().await;
        }
    }
    let c = d.client().await;
    wait_health(
        &c,
        "custos.keyset.gen",
        NOT_SERVING,
        Duration::from_secs(10),
    )
    .await;
    let audited = std::fs::read_to_string(&audit).expect("audit");
    assert!(audited.contains("keyset_quarantined"), "audited: {audited}");
}

/// A copy of the built-in SoftHSM2 profile for a token reached through
/// p11-kit's RPC: calls cross a socket, so they never run inline.
fn remote_profile(dir: &Path) -> PathBuf {
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hsm-profiles/softhsm2.toml");
    let text = std::fs::read_to_string(builtin).expect("softhsm2 profile");
    assert!(text.contains("inline_calls = true"));
    let text = text
        .replace("inline_calls = true", "inline_calls = false")
        .replace("name = \"softhsm2\"", "name = \"softhsm2-remote\"");
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).expect("mkdir");
    std::fs::write(profiles.join("softhsm2-remote.toml"), text).expect("write profile");
    profiles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_network_hsm_stops_only_its_own_keysets_and_recovers_without_a_restart() {
    let mut remote = Hsm::new();
    let local = Hsm::new();
    let server = P11KitServer::start(&remote);
    let profiles = remote_profile(remote.dir.path());
    remote.profile = "softhsm2-remote".into();
    let mut cfg = server.daemon_config();
    cfg.server_toml = format!("profiles_dir = \"{}\"\n", profiles.display());
    cfg.extra_toml = format!(
        "call_timeout = \"2s\"\n\n[backends.local]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{}\"\n{}\npin = \"env:CUSTOS_LOCAL_PIN\"\n\n[keyring]\nmin_rotation_period = \"1s\"\nschedule_tick = \"1s\"\n",
        local.module, local.selector
    );
    cfg.env
        .push(("SOFTHSM2_CONF".into(), local.conf.display().to_string()));
    cfg.env.push(("CUSTOS_LOCAL_PIN".into(), local.pin.clone()));
    let d = Daemon::start_with(&remote, cfg).await;
    let c = d.client().await;
    let on = |name: &str, backend: &str| custos_client::KeysetSpec {
        backend: Some(backend.into()),
        ..spec(name, "ES256", &["generic"])
    };
    c.create_keyset(on("remote-ks", "hsm"))
        .await
        .expect("create on the network HSM");
    c.create_keyset(on("local-ks", "local"))
        .await
        .expect("create on the local token");
    c.sign_jwt("remote-ks", "generic", None, "{}")
        .await
        .expect("remote signs");
    let local_token = c
        .sign_jwt("local-ks", "generic", None, "{}")
        .await
        .expect("local signs");
    let local_jwks = c.jwks(Some("local-ks")).await.expect("jwks");
    wait_health(&c, "custos.backend.hsm", SERVING, Duration::from_secs(10)).await;
    // Both keysets rotate every few seconds by schedule.
    for name in ["remote-ks", "local-ks"] {
        c.set_policy(proto::SetPolicyRequest {
            name: name.into(),
            rotation_period: Some("3s".into()),
            publish_ahead: Some("1s".into()),
            ..proto::SetPolicyRequest::default()
        })
        .await
        .expect("policy");
    }

    // The network HSM stops answering.
    server.signal("STOP");
    let start = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.sign_jwt("remote-ks", "generic", None, "{}"),
    )
    .await
    .expect("the call is answered at its deadline, not left hanging");
    let e = r.expect_err("a stuck device cannot sign");
    assert_eq!(code(&e), Some(Code::Unavailable), "{e}");
    assert!(e.to_string().contains("\"hsm\""), "names the backend: {e}");
    assert_eq!(
        (e.outage(), e.backend()),
        (Some("device"), Some("hsm")),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );

    // Everything else keeps answering: the other backend, verification, health.
    for _ in 0..5 {
        let quick = tokio::time::timeout(
            Duration::from_secs(2),
            c.sign_jwt("local-ks", "generic", None, "{}"),
        )
        .await
        .expect("the other backend answers at once");
        quick.expect("the local token signs");
        let v = tokio::time::timeout(
            Duration::from_secs(2),
            c.verify_jws(proto::VerifyJwsRequest {
                token: local_token.jws.clone(),
                keys: Some(Keys::JwksJson(local_jwks.clone())),
                typ: String::new(),
            }),
        )
        .await
        .expect("verification answers")
        .expect("verify");
        assert!(v.valid, "{v:?}");
    }
    assert_eq!(
        health(&c, "").await,
        SERVING,
        "the daemon as a whole serves"
    );
    wait_health(
        &c,
        "custos.backend.hsm",
        NOT_SERVING,
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(health(&c, "custos.backend.local").await, SERVING);
    // The schedule of the other backend's keysets goes on.
    let versions = |ks: &proto::Keyset| ks.versions.len();
    let before = versions(&c.get_keyset("local-ks").await.expect("show"));
    let start = Instant::now();
    while versions(&c.get_keyset("local-ks").await.expect("show")) < before + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the local keyset's schedule stopped with the remote HSM:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let shown = c
        .get_keyset("remote-ks")
        .await
        .expect("keyset show answers");
    assert!(!shown.backend_problem.is_empty(), "{shown:?}");
    let out = d.cli(&["keyset", "show", "remote-ks"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT ANSWERING"), "{text}");

    // It answers again: the daemon recovers without a restart.
    server.signal("CONT");
    let start = Instant::now();
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.sign_jwt("remote-ks", "generic", None, "{}"),
        )
        .await;
        if matches!(r, Ok(Ok(_))) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no recovery: {r:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_health(&c, "custos.backend.hsm", SERVING, Duration::from_secs(10)).await;
    assert!(c
        .get_keyset("remote-ks")
        .await
        .expect("show")
        .backend_problem
        .is_empty());
}

/// A FIFO as the audit file with a reader that never reads: a disk that
/// stops taking writes once the pipe's buffer is full.
struct StuckDisk {
    fifo: PathBuf,
    reader: std::process::Child,
}

impl StuckDisk {
    fn new(dir: &Path) -> Self {
        let fifo = dir.join("audit.fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success());
        let reader = Command::new("sh")
            .arg("-c")
            .arg(format!("exec sleep 600 < '{}'", fifo.display()))
            .spawn()
            .expect("reader");
        Self { fifo, reader }
    }

    /// Starts reading (and discarding) what was written: the disk is back.
    fn drain(&self) -> std::process::Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec cat '{}' > /dev/null", self.fifo.display()))
            .spawn()
            .expect("cat")
    }
}

impl Drop for StuckDisk {
    fn drop(&mut self) {
        let _ = self.reader.kill();
        let _ = self.reader.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_disk_fails_signing_in_time_and_never_stops_verification() {
    let hsm = Hsm::new();
    let disk = StuckDisk::new(hsm.dir.path());
    let cfg = DaemonConfig {
        extra_toml: format!(
            "\n[audit]\nfile = \"{}\"\nrequired = true\nwrite_timeout = \"1s\"\nqueue_lines = 64\n",
            disk.fifo.display()
        ),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let token = c
        .sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("sign")
        .jws;
    let jwks = c.jwks(Some("gen")).await.expect("jwks");
    // Each signature writes an audit line until the pipe is full (64 KiB).
    let mut refused = None;
    for i in 0..5000 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.sign_jwt("gen", "generic", None, r#"{"sub":"alice"}"#),
        )
        .await
        .unwrap_or_else(|_| panic!("sign {i} hung on the audit disk instead of failing"));
        if let Err(e) = r {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("once the disk is stuck, required audit refuses signing");
    assert_eq!(code(&e), Some(Code::Unavailable), "{e}");
    assert!(e.to_string().contains("audit"), "{e}");
    assert_eq!(e.outage(), Some("audit-log"), "{e}");
    // Verification (no audit line for valid tokens) answers meanwhile.
    for _ in 0..20 {
        let v = tokio::time::timeout(
            Duration::from_secs(2),
            c.verify_jws(proto::VerifyJwsRequest {
                token: token.clone(),
                keys: Some(Keys::JwksJson(jwks.clone())),
                typ: String::new(),
            }),
        )
        .await
        .expect("verification is not held up by the audit disk")
        .expect("verify");
        assert!(v.valid);
    }
    // The disk is back: signing works again without a restart.
    let mut cat = disk.drain();
    let start = Instant::now();
    loop {
        if c.sign_jwt("gen", "generic", None, "{}").await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = cat.kill();
    let _ = cat.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_flood_the_audit_log_with_failures() {
    let hsm = Hsm::new();
    let audit = hsm.dir.path().join("audit.jsonl");
    let cfg = DaemonConfig {
        extra_toml: format!("\n[audit]\nfile = \"{}\"\n", audit.display()),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let real = c
        .sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("sign");
    let (header, _, _, _) = custos_e2e::verify::decode(&real.jws).expect("decode");
    let forged = EcKey::new().sign(&header, &json!({"sub": "mallory"}));
    let start = Instant::now();
    let sent = 1000;
    for _ in 0..sent {
        let v = c
            .verify_jws(verify_with_keyset(&forged, "gen"))
            .await
            .expect("verify answers");
        assert!(!v.valid);
    }
    let secs = start.elapsed().as_secs_f64();
    let invalid = |text: &str| text.lines().filter(|l| l.contains("\"invalid\"")).count();
    let text = std::fs::read_to_string(&audit).expect("audit");
    let written = invalid(&text);
    // Default: 50 lines per second per caller, bursts of 250.
    let ceiling = 250 + (50.0 * secs).ceil() as usize + 5;
    assert!(
        written <= ceiling && written < sent,
        "{written} of {sent} failure lines written in {secs:.1} s (ceiling {ceiling})"
    );
    // What was not written is counted in the next line let through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.verify_jws(verify_with_keyset(&forged, "gen"))
        .await
        .expect("verify");
    let text = std::fs::read_to_string(&audit).expect("audit");
    assert!(
        text.contains("audit_suppressed")
            && text.contains("failure lines of this caller were not written"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_bounded_durations_name_their_limit() {
    let hsm = Hsm::new();
    let cfg = DaemonConfig {
        extra_toml: "\n[keyring]\nmax_live_versions = 2\nmax_keysets_per_backend = 2\nmin_rotation_period = \"1h\"\n".into(),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    let c = d.client().await;
    c.create_keyset(spec("a", "ES256", &["generic"]))
        .await
        .expect("create");
    let policy = |field: &str, value: &str| {
        let mut p = proto::SetPolicyRequest {
            name: "a".into(),
            ..proto::SetPolicyRequest::default()
        };
        match field {
            "rotation_period" => p.rotation_period = Some(value.into()),
            "retain_for" => p.retain_for = Some(value.into()),
            _ => p.publish_ahead = Some(value.into()),
        }
        p
    };
    let e = c
        .set_policy(policy("rotation_period", "60s"))
        .await
        .expect_err("too fast");
    assert_eq!(code(&e), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("min_rotation_period"), "{e}");
    // A retention that would wrap the schedule's arithmetic (and destroy at once).
    for huge in ["9223372036854775807s", "100000000000d"] {
        let e = c
            .set_policy(policy("retain_for", huge))
            .await
            .expect_err("huge");
        assert_eq!(code(&e), Some(Code::InvalidArgument), "{huge}: {e}");
        let e = c
            .set_policy(policy("publish_ahead", huge))
            .await
            .expect_err("huge");
        assert_eq!(code(&e), Some(Code::InvalidArgument), "{huge}: {e}");
    }
    c.rotate("a", false).await.expect("a second version");
    let e = c
        .rotate("a", false)
        .await
        .expect_err("a third live version");
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("max_live_versions"), "{e}");
    c.create_keyset(spec("b", "ES256", &["generic"]))
        .await
        .expect("second keyset");
    let e = c
        .create_keyset(spec("c", "ES256", &["generic"]))
        .await
        .expect_err("a third keyset on the backend");
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("max_keysets_per_backend"), "{e}");
    // Nothing half-made: the refused version and keyset left no key behind.
    let listing = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert_eq!(
        listing.matches("Private Key Object").count(),
        3,
        "{listing}"
    );
}

/// Runs custosd on `config` and returns its stderr; it must refuse to start.
fn refused(hsm: &Hsm, config: &Path) -> String {
    let out = Command::new(bin("custosd"))
        .arg("--config")
        .arg(config)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("CUSTOS_TEST_PIN", &hsm.pin)
        .output()
        .expect("custosd");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "custosd must refuse {}: {err}",
        config.display()
    );
    err
}

fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn hostile_files_and_settings_are_refused_at_start() {
    let hsm = Hsm::new();
    let dir = hsm.dir.path();
    let config = |socket_dir: &Path, pin: &str, extra: &str| {
        format!(
            "[server]\nsocket = \"{}/s.sock\"\nstate_dir = \"{}/state\"\n{extra}\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{}\"\n{}\npin = \"{pin}\"\n",
            socket_dir.display(),
            dir.display(),
            hsm.module,
            hsm.selector
        )
    };
    let good = config(dir, "env:CUSTOS_TEST_PIN", "");
    let path = dir.join("custos.toml");
    write_private(&path, &good, 0o600);

    // The config: a symlink, someone else's file, a group-writable file.
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    assert!(refused(&hsm, &link).contains("symbolic link"));
    let theirs = dir.join("theirs.toml");
    write_private(&theirs, &good, 0o600);
    std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
    let err = refused(&hsm, &theirs);
    assert!(err.contains("belongs to uid 65534"), "{err}");
    let writable = dir.join("writable.toml");
    write_private(&writable, &good, 0o620);
    assert!(refused(&hsm, &writable).contains("chmod go-w"));

    // PIN files: readable by the group, a symlink, someone else's.
    let pin = dir.join("pin");
    write_private(&pin, &format!("{}\n", hsm.pin), 0o640);
    let with_pin = |p: &Path| {
        let c = dir.join(format!("pin-{}.toml", rand::random::<u32>()));
        write_private(
            &c,
            &config(dir, &format!("file:{}", p.display()), ""),
            0o600,
        );
        c
    };
    let err = refused(&hsm, &with_pin(&pin));
    assert!(
        err.contains("chmod 600") && !err.contains(&hsm.pin),
        "{err}"
    );
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let pin_link = dir.join("pin-link");
    std::os::unix::fs::symlink(&pin, &pin_link).expect("symlink");
    assert!(refused(&hsm, &with_pin(&pin_link)).contains("symbolic link"));
    let their_pin = dir.join("their-pin");
    write_private(&their_pin, &hsm.pin, 0o600);
    std::os::unix::fs::chown(&their_pin, Some(65534), None).expect("chown");
    assert!(refused(&hsm, &with_pin(&their_pin)).contains("belongs to uid 65534"));

    // Settings: every local user may connect; the on-token manifest store.
    let c = dir.join("mode.toml");
    write_private(
        &c,
        &config(dir, "env:CUSTOS_TEST_PIN", "socket_mode = \"0666\""),
        0o600,
    );
    assert!(refused(&hsm, &c).contains("lets every local user connect"));
    let c = dir.join("token-store.toml");
    write_private(
        &c,
        &(good.clone() + "\n[keyring]\nmanifest = \"token:hsm\"\n"),
        0o600,
    );
    assert!(refused(&hsm, &c).contains("no longer supported"));

    // Socket directories someone else could replace the socket in.
    for (name, mode, owner) in [("group-w", 0o770, None), ("theirs", 0o755, Some(65534))] {
        let sdir = dir.join(name);
        std::fs::create_dir(&sdir).expect("mkdir");
        std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&sdir, Some(uid), None).expect("chown");
        }
        let c = dir.join(format!("{name}.toml"));
        write_private(&c, &config(&sdir, "env:CUSTOS_TEST_PIN", ""), 0o600);
        let err = refused(&hsm, &c);
        assert!(
            err.contains("group-writable") || err.contains("belongs to uid 65534"),
            "{name}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_pin_leaves_the_process_environment() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let environ = std::fs::read(format!("/proc/{}/environ", d.pid())).expect("environ");
    let text = String::from_utf8_lossy(&environ);
    assert!(
        !text.contains(&hsm.pin),
        "the PIN is still in /proc/PID/environ"
    );
    assert!(
        !text.contains("CUSTOS_TEST_PIN="),
        "the variable is still set: {text}"
    );
    // And the daemon still signs with the PIN it took.
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    c.sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("sign");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_refuses_revoked_certificates_after_sighup_and_bounds_connections() {
    let hsm = Hsm::new();
    let pki = Pki::new(hsm.dir.path(), "bank-ca");
    let (server_cert, server_key) = pki.issue(
        "custosd",
        vec![rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip"))],
        false,
    );
    let (as_cert, as_key) = pki.issue("as", vec![uri("spiffe://bank/as")], false);
    let (as2_cert, as2_key) = pki.issue("as2", vec![uri("spiffe://bank/as")], false);
    let ca = pki.dir.join("ca.pem");
    let crl = pki.crl("client.crl.pem", &[]);
    let port = free_port();
    let cfg = DaemonConfig {
        server_toml: format!(
            "tcp = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\nclient_crl = [\"{}\"]\nmax_connections = 1\nhandshake_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
            server_cert.display(),
            server_key.display(),
            ca.display(),
            crl.display()
        ),
        extra_toml: "\n[[access]]\nname = \"as\"\ntls_san = \"spiffe://bank/as\"\nkeysets = [\"*\"]\noperations = [\"jwks\"]\n".into(),
        ..DaemonConfig::default()
    };
    let d = Daemon::start_with(&hsm, cfg).await;
    let url = format!("https://127.0.0.1:{port}");

    // A client that connects and never says anything is dropped at the handshake deadline.
    let start = Instant::now();
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).expect("tcp");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut raw, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(raw);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Not revoked yet: served.
    let c = tls_client(&url, &as_cert, &as_key, &ca)
        .await
        .expect("connect");
    c.list_keysets().await.expect("served over TLS");
    // With the only connection place taken, another client waits.
    let waiting = tokio::time::timeout(Duration::from_millis(1500), async {
        let c2 = tls_client(&url, &as2_cert, &as2_key, &ca).await?;
        c2.list_keysets().await
    })
    .await;
    assert!(
        waiting.is_err(),
        "max_connections = 1 admits a second connection: {waiting:?}"
    );
    // The idle connection is closed after idle_timeout; then the other gets in.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let c2 = tokio::time::timeout(
        Duration::from_secs(5),
        tls_client(&url, &as2_cert, &as2_key, &ca),
    )
    .await
    .expect("admitted once the idle connection is closed")
    .expect("connect");
    c2.list_keysets().await.expect("served");
    drop(c2);
    drop(c);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // "as" is revoked: a new CRL and SIGHUP, no restart.
    pki.crl("client.crl.pem", &["as"]);
    assert!(Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill")
        .success());
    d.wait_for_log("TLS files re-read", 1).await;
    let r = match tokio::time::timeout(
        Duration::from_secs(5),
        tls_client(&url, &as_cert, &as_key, &ca),
    )
    .await
    {
        Ok(Ok(c)) => c.list_keysets().await.map(|_| ()),
        Ok(Err(e)) => Err(e),
        Err(_) => panic!("the handshake neither completed nor failed"),
    };
    assert!(r.is_err(), "a revoked certificate must be refused");
    d.wait_for_log("TLS handshake refused", 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let c2 = tls_client(&url, &as2_cert, &as2_key, &ca)
        .await
        .expect("connect");
    c2.list_keysets()
        .await
        .expect("a certificate not on the CRL is still served");
}

//! Running Custos in production, end to end against real tools: Prometheus
//! metrics scraped under load and checked with `promtool`; sd_notify
//! messages received on a test `NOTIFY_SOCKET`; socket activation through
//! `systemd-socket-activate`; the units checked by `systemd-analyze`; SIGHUP
//! reloads of access rules and TLS files under load, and a broken config
//! refused while the old one serves.

use custos_client::Client;
use custos_e2e::pki::{tls_client, uri, Pki};
use custos_e2e::{free_port, spec, Daemon, DaemonConfig, Hsm};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `GET /metrics`, with a plain HTTP/1.1 request.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the sample `name{labels}` exactly (labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn sign_n(c: &Client, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.sign_jwt("gen", "generic", None, &format!("{{\"i\":{i}}}"))
                .await
                .expect("sign")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_operations_and_pass_promtool() {
    let hsm = Hsm::new();
    let port = free_port();
    let d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            extra_toml: format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let ops = "custos_operations_total{operation=\"sign_jwt\",keyset=\"gen\",outcome=\"ok\"}";
    let rpcs = "custos_grpc_requests_total{rpc=\"SignJwt\",code=\"Ok\"}";
    let before = scrape(port);
    assert_eq!(sample(&before, ops), None, "nothing signed yet");
    // Scraped while 200 signatures are being made, then after.
    let load = {
        let c = c.clone();
        tokio::spawn(async move { sign_n(&c, 200).await })
    };
    let during = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .expect("scrape");
    load.await.expect("load");
    assert!(sample(&during, ops).unwrap_or(0.0) <= 200.0);
    sign_n(&c, 50).await;
    // An unknown keyset is counted without its name.
    let _ = c.sign_jwt("no-such-keyset", "generic", None, "{}").await;
    // Backend and keyring gauges are updated every two seconds: scrape until
    // the keyring gauge has been set (a slow machine may need a second round).
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = scrape(port);
        let keys = "custos_keys{keyset=\"gen\",state=\"active\"}";
        if sample(&text, keys).is_some() || Instant::now() >= deadline {
            break text;
        }
    };
    assert_eq!(sample(&after, ops), Some(250.0), "{after}");
    assert_eq!(sample(&after, rpcs), Some(250.0), "{after}");
    assert_eq!(
        sample(&after, "custos_backend_up{backend=\"hsm\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "custos_keys{keyset=\"gen\",state=\"active\"}"),
        Some(1.0)
    );
    assert!(!after.contains("no-such-keyset"), "cardinality: {after}");
    assert!(after.contains("custos_build_info{version=\""), "{after}");
    assert!(after.contains("custos_grpc_request_duration_seconds_bucket{"));
    assert!(
        sample(
            &after,
            "custos_device_call_duration_seconds_count{backend=\"hsm\",alg=\"ES256\"}"
        )
        .is_some_and(|n| n >= 250.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "custos_session_pool_sessions{backend=\"hsm\",figure=\"size\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{after}"
    );

    // promtool (Debian's prometheus package) accepts the exposition.
    for text in [&during, &after] {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (apt-get install prometheus)");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_non_loopback_metrics_address_is_refused_unless_allowed() {
    let hsm = Hsm::new();
    let config = hsm.dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket = \"{0}/s.sock\"\nstate_dir = \"{0}/state\"\n\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\nmodule = \"{1}\"\n{2}\npin = \"env:CUSTOS_TEST_PIN\"\n\n[metrics]\nlisten = \"0.0.0.0:9464\"\n",
            hsm.dir.path().display(),
            hsm.module,
            hsm.selector
        ),
    )
    .expect("config");
    let out = Command::new(custos_e2e::bin("custosd"))
        .arg("--config")
        .arg(&config)
        .envs(hsm.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CUSTOS_TEST_PIN", &hsm.pin)
        .output()
        .expect("custosd runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("allow_remote"),
        "{err}"
    );
}

/// The datagrams custosd sends to `NOTIFY_SOCKET`, as they come.
struct Notifications {
    socket: std::os::unix::net::UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Self {
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a message containing `line`.
    fn wait_for(&mut self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let found = msg.lines().any(|l| l == line);
                self.seen.push(msg);
                if found {
                    return;
                }
            }
        }
        panic!("no {line:?} within {within:?}; got {:?}", self.seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_watchdog_reload_and_stopping_reach_notify_socket() {
    let hsm = Hsm::new();
    let path = hsm.dir.path().join("notify.sock");
    let mut n = Notifications::bind(&path);
    let mut d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            env: vec![
                ("NOTIFY_SOCKET".into(), path.display().to_string()),
                ("WATCHDOG_USEC".into(), "400000".into()),
            ],
            ..DaemonConfig::default()
        },
    )
    .await;
    let pid = d.pid();
    tokio::task::spawn_blocking(move || {
        n.wait_for("READY=1", Duration::from_secs(5));
        n.wait_for("WATCHDOG=1", Duration::from_secs(2));
        n.wait_for("WATCHDOG=1", Duration::from_secs(2));
        let hup = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(hup.success());
        n.wait_for("RELOADING=1", Duration::from_secs(5));
        n.wait_for("READY=1", Duration::from_secs(5));
        assert!(
            n.seen
                .iter()
                .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
            "{:?}",
            n.seen
        );
        n
    })
    .await
    .map(|mut n| {
        let status = d.stop();
        assert!(status.success());
        n.wait_for("STOPPING=1", Duration::from_secs(5));
    })
    .expect("notifications");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_through_systemd_socket_activate() {
    let hsm = Hsm::new();
    let d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            launcher: ["systemd-socket-activate", "-l", "{socket}", "{env}"]
                .map(String::from)
                .to_vec(),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create over the activated socket");
    c.sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("sign over the activated socket");
    assert!(
        d.log_text().contains("socket_activated=true"),
        "{}",
        d.log_text()
    );
}

#[test]
fn the_systemd_units_pass_systemd_analyze() {
    let units = Path::new(ROOT).join("deploy/systemd");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(units.join("custosd.service"))
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("a score");
    assert!(
        score < 2.0 && (overall.contains("OK") || overall.contains("SAFE")),
        "{overall}"
    );
    // verify: the units as shipped, ExecStart pointed at the built binary
    // (the package test verifies them where dpkg puts them).
    let dir = tempfile::tempdir().expect("tmp");
    let service = std::fs::read_to_string(units.join("custosd.service"))
        .expect("unit")
        .replace(
            "/usr/bin/custosd",
            &custos_e2e::bin("custosd").display().to_string(),
        );
    std::fs::write(dir.path().join("custosd.service"), service).expect("write");
    std::fs::copy(
        units.join("custosd.socket"),
        dir.path().join("custosd.socket"),
    )
    .expect("copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("custosd.service"))
        .arg(dir.path().join("custosd.socket"))
        .output()
        .expect("systemd-analyze verify");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err.lines().filter(|l| l.contains("custosd")).collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

/// Replaces `old` with `new` in the daemon's config file, keeping its mode.
fn rewrite(config: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(config).expect("config");
    assert!(text.contains(old), "{old:?} not in the config");
    std::fs::write(config, text.replace(old, new)).expect("write config");
}

fn hup(d: &Daemon) {
    let ok = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// The subject CN the TLS listener presents now (openssl s_client).
fn served_certificate(port: u16, cert: &Path, key: &Path, ca: &Path) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-CAfile")
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("subject=").map(str::to_string))
        .unwrap_or_else(|| panic!("no subject in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_access_rules_and_tls_under_load_and_refuses_a_broken_config() {
    let hsm = Hsm::new();
    let pki = Pki::new(hsm.dir.path(), "bank-ca");
    let ip = || vec![rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let (server_cert, server_key) = pki.issue("custosd-1", ip(), false);
    let (a_cert, a_key) = pki.issue("as-a", vec![uri("spiffe://bank/a")], false);
    let (b_cert, b_key) = pki.issue("as-b", vec![uri("spiffe://bank/b")], false);
    let ca = pki.dir.join("ca.pem");
    let port = free_port();
    let rule = |san: &str| {
        format!("\n[[access]]\nname = \"{san}\"\ntls_san = \"spiffe://bank/{san}\"\nkeysets = [\"*\"]\noperations = [\"sign\"]\n")
    };
    let audit = hsm.dir.path().join("audit.jsonl");
    let d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            server_toml: format!(
                "tcp = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
                server_cert.display(),
                server_key.display(),
                ca.display()
            ),
            extra_toml: format!("\n[audit]\nfile = \"{}\"\n{}", audit.display(), rule("a")),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    let url = format!("https://127.0.0.1:{port}");
    let a = tls_client(&url, &a_cert, &a_key, &ca).await.expect("a");
    let b = tls_client(&url, &b_cert, &b_key, &ca).await.expect("b");
    let denied = b.sign_jwt("gen", "generic", None, "{}").await;
    assert_eq!(
        denied
            .expect_err("b has no rule yet")
            .status()
            .map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    assert!(served_certificate(port, &a_cert, &a_key, &ca).contains("custosd-1"));

    // Load on both listeners for the whole test: not one call may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for client in [c.clone(), c.clone(), a.clone(), a.clone()] {
        let (stop, done) = (stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.sign_jwt("gen", "generic", None, "{}").await {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A rule for b and a new server certificate, by SIGHUP.
    let (new_cert, new_key) = pki.issue("custosd-2", ip(), false);
    std::fs::copy(&new_cert, &server_cert).expect("cert");
    std::fs::copy(&new_key, &server_key).expect("key");
    let appended = rule("b");
    {
        let text = std::fs::read_to_string(&d.config).expect("config");
        std::fs::write(&d.config, text + &appended).expect("config");
    }
    hup(&d);
    d.wait_for_log("configuration reloaded", 1).await;
    b.sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("b is allowed after the reload, on its existing connection");
    assert!(served_certificate(port, &a_cert, &a_key, &ca).contains("custosd-2"));

    // A broken config (an unknown key) is refused whole: b stays allowed.
    rewrite(
        &d.config,
        &appended,
        &format!("{appended}colour = \"red\"\n"),
    );
    hup(&d);
    d.wait_for_log("reload refused", 1).await;
    b.sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("the old configuration still serves");
    // A change that needs a restart is refused too, naming the section.
    rewrite(&d.config, "colour = \"red\"\n", "");
    rewrite(
        &d.config,
        "[backends.hsm]",
        "[backends.hsm]\ncall_timeout = \"3s\"",
    );
    hup(&d);
    d.wait_for_log("reload refused", 2).await;
    assert!(d.log_text().contains("[backends]"), "{}", d.log_text());

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in load {
        failures.extend(t.await.expect("load task"));
    }
    assert!(failures.is_empty(), "in-flight calls failed: {failures:?}");
    assert!(done.load(Ordering::Relaxed) > 20, "the load ran");

    // Each reload is audited with its outcome (waiting for the third line,
    // which may land a moment after the log line the test waited for).
    let reloads = |ls: &[serde_json::Value]| {
        ls.iter()
            .filter(|l| l["operation"] == "config_reload")
            .cloned()
            .collect::<Vec<_>>()
    };
    let lines = reloads(&custos_e2e::wait_for_audit(&audit, |ls| reloads(ls).len() >= 3).await);
    let outcomes: BTreeMap<String, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l["outcome"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(outcomes.get("ok"), Some(&1), "{lines:?}");
    assert_eq!(outcomes.get("error"), Some(&2), "{lines:?}");
}

/// A real rsyslogd (Debian's rsyslog) listening on its own socket, writing
/// the fields it parsed from each message (RFC 5424) to a file.
struct Rsyslog {
    child: std::process::Child,
    socket: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("log.sock");
        let out = dir.join("syslog.out");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{d}\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{s}\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n\
                 template(name=\"fields\" type=\"string\" string=\"%syslogfacility-text%|%syslogseverity-text%|%app-name%|%msgid%|%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{o}\" template=\"fields\")\n",
                d = dir.display(),
                s = socket.display(),
                o = out.display()
            ),
        )
        .expect("rsyslog.conf");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, socket, out }
    }

    /// The first line rsyslogd wrote that contains `needle`.
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd wrote no {needle:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn daemon_with_sink(hsm: &Hsm, sink: &str, socket: &Path) -> (Daemon, Client) {
    let d = Daemon::start_with(
        hsm,
        DaemonConfig {
            extra_toml: format!(
                "\n[audit]\nsink = \"{sink}\"\nsocket = \"{}\"\nwrite_timeout = \"1s\"\n",
                socket.display()
            ),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    c.sign_jwt("gen", "generic", None, "{}")
        .await
        .expect("sign");
    (d, c)
}

async fn refused_without_sink(c: &Client, what: &str) {
    let refused = c.sign_jwt("gen", "generic", None, "{}").await;
    assert_eq!(
        refused.expect_err("no sink").status().map(|s| s.code()),
        Some(tonic::Code::Unavailable),
        "{what}"
    );
}

fn audit_json(text: &str) -> serde_json::Value {
    let line: serde_json::Value = serde_json::from_str(text).expect("the same JSON line");
    assert_eq!(
        (line["keyset"].as_str(), line["outcome"].as_str()),
        (Some("gen"), Some("ok"))
    );
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_reach_a_real_rsyslogd_and_signing_stops_when_it_goes() {
    let hsm = Hsm::new();
    let rsyslog = Rsyslog::start(hsm.dir.path());
    let (_d, c) = daemon_with_sink(&hsm, "syslog", &rsyslog.socket).await;
    // rsyslogd parsed the RFC 5424 header: facility, severity, APP-NAME, MSGID.
    let line = rsyslog.line_with("\"operation\":\"sign_jwt\"");
    let fields: Vec<&str> = line.splitn(5, '|').collect();
    assert_eq!(
        &fields[..4],
        ["authpriv", "info", "custosd", "audit"],
        "{line}"
    );
    audit_json(fields[4].trim());
    // required = true: with rsyslogd gone, nothing is signed unrecorded.
    let socket = rsyslog.socket.clone();
    drop(rsyslog);
    let _ = std::fs::remove_file(&socket);
    refused_without_sink(&c, "syslog").await;
}

/// The journal's native protocol, received on a datagram socket of the test's
/// own (no journald runs in this container): the fields and the same JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_in_the_journal_protocol_and_a_lost_journal_refuses_signing() {
    let hsm = Hsm::new();
    let path = hsm.dir.path().join("journal.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).expect("sink socket");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (_d, c) = daemon_with_sink(&hsm, "journal", &path).await;
    let mut buf = vec![0u8; 65536];
    let signed = loop {
        let n = rx.recv(&mut buf).expect("an audit datagram");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.contains("\"operation\":\"sign_jwt\"") {
            break msg;
        }
    };
    assert!(signed.contains("\nSYSLOG_IDENTIFIER=custosd\n"), "{signed}");
    assert!(signed.contains("\nCUSTOS_AUDIT=1\n"), "{signed}");
    let message = signed
        .lines()
        .find_map(|l| l.strip_prefix("MESSAGE="))
        .expect("MESSAGE=");
    audit_json(message);
    drop(rx);
    std::fs::remove_file(&path).expect("rm");
    refused_without_sink(&c, "journal").await;
}

/// The example dashboard queries only metrics custosd exports.
#[test]
fn the_grafana_dashboard_names_only_exported_metrics() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/custos.json"))
        .expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let metrics =
        std::fs::read_to_string(Path::new(ROOT).join("daemon/src/metrics.rs")).expect("metrics.rs");
    let mut checked = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("custos_"))
            {
                let base = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    metrics.contains(&format!("\"{base}\"")),
                    "{name} in the dashboard is not registered in metrics.rs"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "{checked}");
}

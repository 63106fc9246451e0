//! High availability: three custosd on one SoftHSM2 token (its token
//! directory shared) and one keyring manifest in a real three-member etcd
//! cluster (Debian's etcd-server, on loopback, private data dirs and ports).

use custos_client::Client;
use custos_e2e::{free_port, spec, Daemon, DaemonConfig, Hsm};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A three-member etcd cluster on loopback.
struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client: String,
    child: Option<Child>,
}

impl Etcd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "custos-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd (apt-get install etcd-server)");
            members.push(Member {
                name,
                client: format!("http://127.0.0.1:{client}"),
                child: Some(child),
            });
        }
        let e = Self { members, _dir: dir };
        e.wait_healthy(&[0, 1, 2]);
        e
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    fn etcdctl(&self, member: usize, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.members[member].client])
            .args(["--command-timeout", "2s"])
            .args(args)
            .output()
            .expect("etcdctl")
    }

    fn wait_healthy(&self, which: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in which {
            while !self.etcdctl(i, &["endpoint", "health"]).status.success() {
                assert!(
                    Instant::now() < deadline,
                    "etcd {} not healthy",
                    self.members[i].name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The member that leads now.
    fn leader(&self) -> usize {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let out = self.etcdctl(i, &["endpoint", "status", "-w", "json"]);
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                continue;
            };
            let status = &v[0]["Status"];
            if status["leader"] == status["header"]["member_id"] && status["leader"] != 0 {
                return i;
            }
        }
        panic!("no etcd leader");
    }

    fn signal(&self, member: usize, sig: &str) {
        let pid = self.members[member].child.as_ref().expect("running").id();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill")
            .success());
    }

    fn kill(&mut self, member: usize) {
        let mut child = self.members[member].child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn keyring_toml(etcd: &Etcd, prefix: &str) -> String {
    let endpoints: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    format!(
        "\n[keyring]\nmanifest = \"etcd\"\nrefresh = \"30s\"\nschedule_tick = \"30s\"\n\n[keyring.etcd]\nendpoints = [{}]\nprefix = \"{prefix}\"\ntimeout = \"1s\"\n",
        endpoints.join(", ")
    )
}

async fn three_daemons(hsm: &Hsm, etcd: &Etcd) -> Vec<(Daemon, Client)> {
    let prefix = format!("/custos-{:08x}/", rand::random::<u32>());
    let mut out = Vec::new();
    for _ in 0..3 {
        let d = Daemon::start_with(
            hsm,
            DaemonConfig {
                extra_toml: keyring_toml(etcd, &prefix),
                ..DaemonConfig::default()
            },
        )
        .await;
        let c = d.client().await;
        out.push((d, c));
    }
    out
}

/// Each daemon's view: keyset -> (active kid, versions), and its JWKS kids.
async fn view(c: &Client) -> (BTreeMap<String, (String, usize)>, Vec<String>) {
    let mut keysets = BTreeMap::new();
    for ks in c.list_keysets().await.expect("list") {
        let active: Vec<_> = ks.versions.iter().filter(|v| v.state == "active").collect();
        assert!(
            active.len() <= 1,
            "{} has {} active versions",
            ks.name,
            active.len()
        );
        keysets.insert(
            ks.name.clone(),
            (
                active.first().map(|v| v.kid.clone()).unwrap_or_default(),
                ks.versions.len(),
            ),
        );
    }
    let mut kids = Vec::new();
    for name in keysets.keys() {
        let jwks: serde_json::Value =
            serde_json::from_str(&c.jwks(Some(name)).await.expect("jwks")).expect("json");
        for k in jwks["keys"].as_array().expect("keys") {
            kids.push(k["kid"].as_str().unwrap_or_default().to_string());
        }
    }
    kids.sort();
    (keysets, kids)
}

/// Waits until every daemon shows the same keysets and JWKS; returns how long it took.
async fn converged(daemons: &[(Daemon, Client)], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let mut views = Vec::new();
        for (_, c) in daemons {
            views.push(view(c).await);
        }
        if views.windows(2).all(|w| w[0] == w[1]) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not converged within {within:?}: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_on_three_daemons_converges_with_nothing_lost() {
    let etcd = Etcd::start();
    let hsm = Hsm::new();
    let daemons = three_daemons(&hsm, &etcd).await;
    // 10 keysets per daemon, created in parallel; then each is rotated on
    // another daemon and its first version retired and disabled on a third.
    let mut tasks = Vec::new();
    for (i, (_, c)) in daemons.iter().enumerate() {
        for j in 0..10 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.create_keyset(spec(&format!("d{i}-k{j}"), "ES256", &["generic"]))
                    .await
                    .expect("create")
            }));
        }
    }
    let mut first = BTreeMap::new();
    for t in tasks {
        let ks = t.await.expect("task");
        first.insert(ks.name.clone(), ks.versions[0].kid.clone());
    }
    let mut tasks = Vec::new();
    for (name, kid) in &first {
        let i: usize = name[1..2].parse().expect("daemon index");
        let (rotator, disabler) = (
            daemons[(i + 1) % 3].1.clone(),
            daemons[(i + 2) % 3].1.clone(),
        );
        let (name, kid) = (name.clone(), kid.clone());
        tasks.push(tokio::spawn(async move {
            rotator.rotate(&name, true).await.expect("rotate");
            disabler
                .disable(&name, &kid)
                .await
                .expect("disable (retired by the rotation)");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let took = converged(&daemons, Duration::from_secs(1)).await;
    eprintln!("all three daemons agree {took:?} after the last write");
    let (keysets, _) = view(&daemons[0].1).await;
    assert_eq!(keysets.len(), 30, "no create lost");
    for (name, (active, versions)) in &keysets {
        assert_eq!(*versions, 2, "{name}: one rotation each, none lost");
        assert_ne!(active, &first[name], "{name}: the new version is active");
    }
    for (_, c) in &daemons {
        let ks = c.get_keyset("d0-k0").await.expect("get");
        let old = ks
            .versions
            .iter()
            .find(|v| v.kid == first["d0-k0"])
            .expect("old");
        assert_eq!(
            old.state, "disabled",
            "the disable made on one daemon is seen on all"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_dies_during_rotations_and_nothing_is_lost() {
    let mut etcd = Etcd::start();
    let hsm = Hsm::new();
    let daemons = three_daemons(&hsm, &etcd).await;
    for i in 0..3 {
        daemons[0]
            .1
            .create_keyset(spec(&format!("r{i}"), "ES256", &["generic"]))
            .await
            .expect("create");
    }
    // Rotations from all three daemons while the leader is killed.
    let mut tasks = Vec::new();
    for (i, (_, c)) in daemons.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            let mut refused = Vec::new();
            for _ in 0..6 {
                match c.rotate(&format!("r{i}"), true).await {
                    Ok(_) => done += 1,
                    Err(e) => refused.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (done, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let leader = etcd.leader();
    etcd.kill(leader);
    let mut done = Vec::new();
    for t in tasks {
        let (n, refused) = t.await.expect("task");
        for r in &refused {
            assert!(
                r.contains("Unavailable") || r.contains("etcd"),
                "a clean refusal: {r}"
            );
        }
        done.push(n);
    }
    // After the election every rotation that was reported done is there.
    let took = converged(&daemons, Duration::from_secs(5)).await;
    eprintln!("converged {took:?} after the leader was killed");
    let (keysets, _) = view(&daemons[1].1).await;
    for (i, n) in done.iter().enumerate() {
        let (_, versions) = &keysets[&format!("r{i}")];
        assert_eq!(*versions, 1 + n, "r{i}: {n} rotations reported done");
    }
    assert!(
        done.iter().sum::<usize>() >= 9,
        "rotations resumed after the election: {done:?}"
    );
    // And one more from each daemon now.
    for (i, (_, c)) in daemons.iter().enumerate() {
        c.rotate(&format!("r{i}"), true)
            .await
            .expect("rotate after the election");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_stops_administration_cleanly_and_never_signing() {
    let etcd = Etcd::start();
    let hsm = Hsm::new();
    let daemons = three_daemons(&hsm, &etcd).await;
    let c = &daemons[0].1;
    c.create_keyset(spec("gen", "ES256", &["generic"]))
        .await
        .expect("create");
    converged(&daemons, Duration::from_secs(1)).await;

    // One member stopped: everything goes on.
    etcd.signal(0, "STOP");
    for (_, c) in &daemons {
        c.sign_jwt("gen", "generic", None, "{}")
            .await
            .expect("sign with one member stopped");
    }
    c.rotate("gen", true)
        .await
        .expect("admin with two of three members");
    // The whole cluster stopped: signing goes on, administration is refused.
    etcd.signal(1, "STOP");
    etcd.signal(2, "STOP");
    for (_, c) in &daemons {
        c.sign_jwt("gen", "generic", None, "{}")
            .await
            .expect("sign with etcd stopped");
    }
    let started = Instant::now();
    let refused = daemons[1].1.rotate("gen", true).await;
    let status = refused
        .expect_err("no store")
        .status()
        .cloned()
        .expect("status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("etcd"), "{}", status.message());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        custos_e2e::health(&daemons[2].1, "custos.keyring").await,
        2,
        "health says degraded (NOT_SERVING)"
    );
    // SIGCONT: back without restarting any daemon.
    for m in 0..3 {
        etcd.signal(m, "CONT");
    }
    etcd.wait_healthy(&[0, 1, 2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match daemons[2].1.rotate("gen", true).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "admin did not come back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    converged(&daemons, Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while custos_e2e::health(&daemons[2].1, "custos.keyring").await != 1 {
        assert!(
            Instant::now() < deadline,
            "custos.keyring not SERVING again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_manifest_migrates_to_etcd_and_back() {
    let etcd = Etcd::start();
    let hsm = Hsm::new();
    let prefix = format!("/custos-{:08x}/", rand::random::<u32>());
    let etcd_table = keyring_toml(&etcd, &prefix).replace("manifest = \"etcd\"\n", "");
    let mut d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            extra_toml: etcd_table,
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    let kid = c
        .create_keyset(spec("as-id", "ES256", &["generic"]))
        .await
        .expect("create")
        .versions[0]
        .kid
        .clone();
    assert!(d.stop().success());
    let config = d.config.clone();
    let migrate = |to: &str, force: bool| {
        let mut cmd = Command::new(custos_e2e::bin("custosd"));
        cmd.args(["migrate", "--config"])
            .arg(&config)
            .args(["--to", to]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().expect("custosd migrate")
    };
    let out = migrate("etcd", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied 1 keysets"));
    let again = migrate("etcd", false);
    assert!(!again.status.success(), "a second copy needs --force");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // The daemon on etcd serves the migrated keyset, screened against the token.
    let text = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        text.replace("[keyring]\n", "[keyring]\nmanifest = \"etcd\"\n"),
    )
    .expect("config");
    std::fs::remove_file(d.state_dir.join("keyring.json")).expect("the file copy is gone");
    d.respawn_after_kill().await;
    let c = d.client().await;
    assert_eq!(
        c.get_keyset("as-id").await.expect("get").versions[0].kid,
        kid
    );
    c.sign_jwt("as-id", "generic", None, "{}")
        .await
        .expect("sign");
    assert!(d.stop().success());
    // And back to the file.
    let out = migrate("file", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.state_dir.join("keyring.json").exists());
}

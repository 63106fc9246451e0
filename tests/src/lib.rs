//! The end-to-end harness: a private SoftHSM2 token per test, a real
//! `custosd` process on its own socket, and verifiers that are not Custos.
//!
//! The binaries come from the same target directory as the test executable,
//! so run `cargo build --workspace --bins` before `cargo test` (the README's
//! test command, `tests/run`, does).

#![forbid(unsafe_code)]

pub mod clock;
pub mod fault;
pub mod jwe;
pub mod pki;
pub mod sign;
pub mod tokens;
pub mod verify;

use custos_client::Client;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The SoftHSM2 module on Debian, the default of [`softhsm_module`].
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The SoftHSM2 module the tests use: `CUSTOS_SOFTHSM_MODULE` when set
/// (another distribution's path, a build of your own), else Debian's.
pub fn softhsm_module() -> String {
    std::env::var("CUSTOS_SOFTHSM_MODULE").unwrap_or_else(|_| SOFTHSM_MODULE.to_string())
}

/// Path of a workspace binary built next to the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run does)",
        path.display()
    );
    path
}

/// A private PKCS#11 token for one test: SoftHSM2 by default ([`Hsm::new`]),
/// or one of the other implementations in `tokens.rs`.
#[derive(Debug)]
pub struct Hsm {
    /// Temporary directory holding everything of this test.
    pub dir: tempfile::TempDir,
    /// The SOFTHSM2_CONF file (SoftHSM2 only).
    pub conf: PathBuf,
    /// Token label.
    pub label: String,
    /// User PIN (random per test, so tests can grep logs for it).
    pub pin: String,
    /// The HSM profile name.
    pub profile: String,
    /// The PKCS#11 module.
    pub module: String,
    /// The backend-table lines that pick the token (`token_label = ...`,
    /// `slot_id = ...`, `initialize_args = ...`).
    pub selector: String,
    /// Environment the module needs (SOFTHSM2_CONF, KRYOPTIC_CONF).
    pub env: Vec<(String, String)>,
    /// JOSE algorithms this token can do.
    pub algorithms: Vec<&'static str>,
    /// Held while the token is in use (opencryptoki slots are shared).
    pub lease: Option<tokens::SlotLease>,
}

impl Hsm {
    /// Initializes a fresh token labelled `custos`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let pin = format!("pin-{:016x}", rand::random::<u64>());
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                "custos",
                "--so-pin",
                "so-secret",
                "--pin",
                &pin,
            ])
            .output()
            .expect("softhsm2-util runs (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            env: vec![("SOFTHSM2_CONF".into(), conf.display().to_string())],
            dir,
            conf,
            label: "custos".into(),
            pin,
            profile: "softhsm2".into(),
            module: softhsm_module(),
            selector: "token_label = \"custos\"".into(),
            algorithms: vec!["ES256", "PS256", "EdDSA", "RS256", "RSA-OAEP-256"],
            lease: None,
        }
    }

    /// Runs `pkcs11-tool` (OpenSC, independent of Custos) against this token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let out = Command::new("pkcs11-tool")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args([
                "--module",
                &self.module,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                &self.pin,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool runs (apt-get install opensc)");
        assert!(
            out.status.success(),
            "pkcs11-tool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Default for Hsm {
    fn default() -> Self {
        Self::new()
    }
}

/// How to configure a daemon under test.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// PKCS#11 module path (empty: the token's own).
    pub module: String,
    /// Extra environment for the daemon process.
    pub env: Vec<(String, String)>,
    /// Extra TOML appended to the `[backends.hsm]` table's file (other tables).
    pub extra_toml: String,
    /// Extra keys for the `[server]` table.
    pub server_toml: String,
    /// Where the socket goes (default: the test's private directory).
    pub socket_dir: Option<PathBuf>,
    /// No `[[access]]` rule for the test's own uid: it then has only the
    /// daemon owner's default rights (`manage`, `destroy`, `jwks`).
    pub bare: bool,
    /// A program that starts custosd (e.g. `systemd-socket-activate`): its
    /// arguments, in which `{socket}` is the socket path and `{env}` expands
    /// to `-E NAME=VALUE` for each of the daemon's variables; custosd and
    /// its `--config` follow.
    pub launcher: Vec<String>,
}

impl DaemonConfig {
    /// A daemon writing its audit log to `file`.
    pub fn audited(file: &Path) -> Self {
        Self {
            extra_toml: format!("\n[audit]\nfile = \"{}\"\n", file.display()),
            ..Self::default()
        }
    }
}

/// Every line of an audit log, as JSON (empty when the file is missing).
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// The audit log's lines once `done` holds for them, polling for up to ten
/// seconds. A denial is audited without holding up the refused call, so its
/// line may land a moment after the client has seen the refusal; tests wait
/// for the lines they count rather than read the file once.
pub async fn wait_for_audit(
    path: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = audit_lines(path);
        if done(&lines) || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `[[access]]` rule the harness adds for the test process's own uid
/// (the daemon's owner, who has no signing rights by default).
pub fn grant_self() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    format!(
        "\n[[access]]\nname = \"test harness\"\nunix_uid = {uid}\nkeysets = [\"*\"]\noperations = [\"sign\", \"decrypt\", \"verify\", \"jwks\", \"admin\"]\n"
    )
}

/// A running `custosd` with its own socket and state directory.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The daemon's stderr log.
    pub log: PathBuf,
    env: Vec<(String, String)>,
    launcher: Vec<String>,
}

impl Daemon {
    /// Writes a config for `hsm` and starts the daemon on it.
    pub async fn start(hsm: &Hsm) -> Self {
        Self::start_with(hsm, DaemonConfig::default()).await
    }

    /// Starts a daemon with custom settings.
    pub async fn start_with(hsm: &Hsm, cfg: DaemonConfig) -> Self {
        let base = hsm.dir.path();
        let n = rand::random::<u32>();
        let socket = cfg
            .socket_dir
            .clone()
            .unwrap_or_else(|| base.to_path_buf())
            .join(format!("custos-{n:08x}.sock"));
        let state_dir = base.join("state");
        let config = base.join(format!("custos-{n:08x}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nsocket = \"{}\"\nstate_dir = \"{}\"\n{}\n\n[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"{}\"\nmodule = \"{}\"\n{}\npin = \"env:CUSTOS_TEST_PIN\"\n{}",
                socket.display(),
                state_dir.display(),
                cfg.server_toml,
                hsm.profile,
                if cfg.module.is_empty() { &hsm.module } else { &cfg.module },
                hsm.selector,
                cfg.extra_toml
            ) + &if cfg.bare { String::new() } else { grant_self() },
        )
        .expect("write config");
        let mut env = hsm.env.clone();
        env.push(("CUSTOS_TEST_PIN".to_string(), hsm.pin.clone()));
        env.extend(cfg.env);
        let mut d = Self {
            child: None,
            socket,
            state_dir,
            log: base.join(format!("custosd-{n:08x}.log")),
            config,
            env,
            launcher: cfg.launcher,
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut command = match self.launcher.split_first() {
            None => Command::new(bin("custosd")),
            Some((program, args)) => {
                let mut c = Command::new(program);
                for a in args {
                    if a == "{env}" {
                        for (k, v) in &self.env {
                            c.arg("-E").arg(format!("{k}={v}"));
                        }
                        c.arg("-E").arg("CUSTOS_LOG=info,cryptoki::mechanism=off");
                    } else {
                        c.arg(a.replace("{socket}", &self.socket.display().to_string()));
                    }
                }
                c.arg(bin("custosd"));
                c
            }
        };
        let child = command
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CUSTOS_LOG", "info,cryptoki::mechanism=off")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("custosd starts");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("custosd exited early ({status}):\n{}", self.log_text());
                }
            }
            if let Ok(c) = Client::connect_unix(&self.socket).await {
                if c.list_keysets().await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "custosd not ready:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log holds `needle` at least `count` times and returns the
    /// log. A line about an event the client has already seen (a refused handshake, a reload)
    /// may reach the log a moment after the client's call returns, so tests wait for it rather
    /// than read the log once.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log has {needle:?} fewer than {count} times:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connected client.
    pub async fn client(&self) -> Client {
        Client::connect_unix(&self.socket)
            .await
            .expect("connect to custosd")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        child.wait().expect("custosd exits")
    }

    /// Starts the daemon again after it was killed (kill -9) from outside:
    /// reaps the old process and waits until the new one answers.
    pub async fn respawn_after_kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.spawn().await;
    }

    /// Stops the daemon with SIGTERM (asserting exit 0) and starts it again
    /// with the same config, token and state.
    pub async fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "custosd exit status {status}:\n{}",
            self.log_text()
        );
        self.spawn().await;
    }

    /// Runs the `custos` CLI against this daemon.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&self.socket, args, stdin)
    }
}

/// Runs the `custos` CLI with `--socket`.
pub fn run_cli(socket: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("custos"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("custos runs");
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("custos finishes")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory under /tmp that unprivileged users can traverse, holding a
/// copy of the `custos` CLI (and, when a daemon is started with it as
/// `socket_dir`, the daemon's socket).
pub fn shared_dir() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("custos-shared")
        .tempdir_in("/tmp")
        .expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cli = dir.path().join("custos");
    std::fs::copy(bin("custos"), &cli).expect("copy cli");
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, cli)
}

/// Runs the CLI as `uid` (group 65534, no supplementary groups) with
/// `setpriv`: a distinct caller, as the kernel reports it to the daemon.
pub fn as_uid(uid: u32, cli: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .args(["--regid=65534", "--clear-groups"])
        .arg(cli)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("setpriv")
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A self-signed P-256 client certificate made by the `openssl` CLI:
/// returns the PEM file's path and the DER bytes.
pub fn client_cert(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl x509")
        .stdout;
    (pem, der)
}

/// A private swtpm (TPM 2.0 simulator) on free loopback ports, with its
/// state in its own directory so it can be restarted.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    /// The state directory.
    pub dir: tempfile::TempDir,
    /// The command port.
    pub port: u16,
    ctrl: u16,
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Swtpm {
    /// Starts a fresh swtpm.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        // The swtpm TCTI talks to the control channel on port + 1.
        let port = loop {
            let p = free_port();
            if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let mut t = Self {
            child: None,
            dir,
            port,
            ctrl: port + 1,
        };
        t.spawn();
        t
    }

    fn spawn(&mut self) {
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2"])
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.ctrl))
            .arg("--tpmstate")
            .arg(format!("dir={}", self.dir.path().display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm runs (apt-get install swtpm swtpm-tools)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI string for custosd.
    /// Sends `signal` (`STOP`, `CONT`) to swtpm.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("swtpm running");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal}");
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Kills swtpm and starts it again on the same state (a TPM restart).
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// The config table for a TPM backend named `tpm` on this swtpm.
    pub fn backend_toml(&self, rsa_raw: bool) -> String {
        format!(
            "\n[backends.tpm]\nkind = \"tpm\"\nprofile = \"tpm-swtpm\"\ntcti = \"{}\"\nkey_auth = \"env:CUSTOS_TPM_KEY_AUTH\"\nrsa_raw = {rsa_raw}\n",
            self.tcti()
        )
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A "network HSM" for real: p11-kit's RPC server exports a SoftHSM2 token
/// on a Unix socket, and custosd loads p11-kit's client module. Killing the
/// server is an HSM outage.
#[derive(Debug)]
pub struct P11KitServer {
    child: Option<Child>,
    socket: PathBuf,
}

impl P11KitServer {
    /// Serves `hsm`'s token.
    pub fn start(hsm: &Hsm) -> Self {
        use std::os::unix::process::CommandExt;
        let socket = hsm.dir.path().join("p11kit.sock");
        let child = Command::new("/usr/libexec/p11-kit/p11-kit-server")
            .env("SOFTHSM2_CONF", &hsm.conf)
            // Its own process group: it runs a p11-kit-remote child per connection.
            .process_group(0)
            .arg("-f")
            .arg("-n")
            .arg(&socket)
            .args(["--provider", &softhsm_module(), "pkcs11:token=custos"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("p11-kit-server runs (apt-get install p11-kit p11-kit-modules)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "p11-kit-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            socket,
        }
    }

    /// A daemon config that reaches the token through this server.
    pub fn daemon_config(&self) -> DaemonConfig {
        DaemonConfig {
            module: "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so".into(),
            env: vec![(
                "P11_KIT_SERVER_ADDRESS".into(),
                format!("unix:path={}", self.socket.display()),
            )],
            ..DaemonConfig::default()
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server and its per-connection
    /// children: `STOP` makes a network HSM that stops answering.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("p11-kit-server running");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal}");
    }

    /// Kills the server and every per-connection child: the HSM is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every keyset's public keys in one JWK Set (what an independent verifier
/// in these tests checks against). The daemon's default JWKS holds only the
/// issuer's published keysets, so this asks for each keyset by name.
pub async fn every_jwks(c: &Client) -> serde_json::Value {
    let mut keys = Vec::new();
    for ks in c.list_keysets().await.expect("list keysets") {
        let text = c.jwks(Some(&ks.name)).await.expect("jwks");
        let set: serde_json::Value = serde_json::from_str(&text).expect("JWKS is JSON");
        if let Some(k) = set["keys"].as_array() {
            keys.extend(k.iter().cloned());
        }
    }
    serde_json::json!({ "keys": keys })
}

/// The `grpc.health.v1` status of `service` (1 SERVING, 2 NOT_SERVING).
pub async fn health(c: &Client, service: &str) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(c.channel())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// A keyset request on the default backend.
pub fn spec(name: &str, alg: &str, purposes: &[&str]) -> custos_client::KeysetSpec {
    custos_client::KeysetSpec {
        name: name.into(),
        alg: alg.into(),
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        ..custos_client::KeysetSpec::default()
    }
}

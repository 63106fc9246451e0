//! The daemon's TOML configuration. Unknown keys are refused, naming the key,
//! so a typo never silently falls back to a default.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod audit;
mod keyring;

pub use audit::{AuditConfig, DualControl, DualControlConfig};
pub use keyring::{EtcdConfig, KeyringConfig};

/// The whole `custosd` configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the daemon listens and keeps its state.
    pub server: ServerConfig,
    /// Key backends by name; a keyset names the backend that holds its keys.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// Verification tunables.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// Where the keyring manifest lives and how often the schedule runs.
    #[serde(default)]
    pub keyring: KeyringConfig,
    /// Who may use which keysets for what (`[[access]]`).
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Operations that need other people's approval.
    #[serde(default)]
    pub dual_control: DualControlConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The daemon's own log.
    #[serde(default)]
    pub log: LogConfig,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: an HTTP listener serving `GET /metrics`, off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on, e.g. `"127.0.0.1:9464"`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Allow an address other than loopback (metrics carry keyset names and
    /// load figures; expose them beyond the host only on purpose).
    #[serde(default)]
    pub allow_remote: bool,
}

impl MetricsConfig {
    /// The listen address, checked: loopback unless `allow_remote`.
    ///
    /// # Errors
    /// A bad address, or a non-loopback one without `allow_remote`.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            format!("[metrics] listen {listen:?} is not an address:port, e.g. \"127.0.0.1:9464\"")
        })?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "[metrics] listen {listen:?} is not a loopback address; set allow_remote = true \
                 to serve metrics beyond this host"
            ));
        }
        Ok(Some(addr))
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `"info"` or `"info,custos_daemon::audit=debug"`
    /// (the `CUSTOS_LOG` environment variable wins when set).
    #[serde(default)]
    pub level: Option<String>,
}

/// One `[[access]]` rule: a caller and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// A name for logs and audit lines.
    pub name: String,
    /// Matches Unix callers with this uid.
    #[serde(default)]
    pub unix_uid: Option<u32>,
    /// Matches Unix callers with this gid.
    #[serde(default)]
    pub unix_gid: Option<u32>,
    /// Matches TLS callers whose certificate has this SAN (DNS name or URI).
    #[serde(default)]
    pub tls_san: Option<String>,
    /// Keyset name globs (`*` and `?`).
    pub keysets: Vec<String>,
    /// Operations: `sign`, `decrypt`, `verify`, `jwks`, `manage` (create,
    /// rotate, activate, retire, set policy), `destroy` (disable, destroy),
    /// or `admin` (both `manage` and `destroy`).
    pub operations: Vec<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted gRPC message, in bytes.
    pub max_request_bytes: usize,
    /// Requests per second allowed per caller (token bucket); 0 = unlimited.
    pub rate_per_second: u32,
    /// Burst size of the token bucket.
    pub burst: u32,
    /// Most claim sets in one SignJwtBatch call.
    pub max_batch: usize,
    /// Audit lines per second per caller for failures the caller can
    /// provoke at will (invalid tokens, denials); past it they are counted,
    /// not written. 0 = every line.
    pub failure_lines_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            rate_per_second: 20_000,
            burst: 20_000,
            max_batch: 64,
            failure_lines_per_second: 50,
        }
    }
}

/// `[verify]`: clock skew, DPoP window, replay cache.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Leeway for `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew: i64,
    /// How old a DPoP proof's `iat` may be, in seconds.
    pub dpop_window: i64,
    /// How many one-time identifiers (DPoP and assertion `jti`s) one caller
    /// may have remembered at a time, over all its clients and DPoP keys.
    pub replay_cache_entries: usize,
    /// How many one partition (one caller's one client, or one DPoP key)
    /// may have remembered at a time; a full partition refuses only itself.
    pub replay_partition_entries: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            clock_skew: 60,
            dpop_window: 60,
            replay_cache_entries: 100_000,
            replay_partition_entries: 10_000,
        }
    }
}

/// `[server]`: socket and state directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Path of the Unix socket to serve gRPC on.
    pub socket: PathBuf,
    /// Directory for the keyring manifest.
    pub state_dir: PathBuf,
    /// Directory with HSM profile files; the built-in profiles are used when unset
    /// or when a profile is not found there.
    #[serde(default)]
    pub profiles_dir: Option<PathBuf>,
    /// Mode of the Unix socket, octal (default `"0660"`).
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Group that owns the Unix socket (name or number).
    #[serde(default)]
    pub socket_group: Option<String>,
    /// Optional TCP listener with mutual TLS, e.g. `"127.0.0.1:7443"`.
    #[serde(default)]
    pub tcp: Option<String>,
    /// PEM certificate chain of the TCP listener.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TCP listener (mode 0600).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Instead of `tls_cert`/`tls_key`: a `tls_server` keyset whose active
    /// key (in the device) and stored certificate chain the listener presents.
    #[serde(default)]
    pub tls_keyset: Option<String>,
    /// PEM CA certificates that issue client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// What the daemon's own uid and root may do without an `[[access]]`
    /// rule. Default: key administration and reading public keys
    /// (`manage`, `destroy`, `jwks`); never signing, decryption or
    /// verification unless listed here or granted by a rule.
    #[serde(default = "default_owner_operations")]
    pub owner_operations: Vec<String>,
    /// PEM CRL files of the client CA: a revoked client certificate is
    /// refused at the handshake. Reloaded on SIGHUP.
    #[serde(default)]
    pub client_crl: Vec<PathBuf>,
    /// Longest a request may run before it gets DEADLINE_EXCEEDED (`"30s"`).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// TLS connections open at once; more wait in the kernel's backlog (1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent requests (HTTP/2 streams) per TLS connection (128).
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams: u32,
    /// A TLS connection that sends nothing for this long is closed (`"5m"`).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// A TLS handshake that takes longer is dropped (`"10s"`).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: String,
}

fn default_request_timeout() -> String {
    "30s".into()
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_streams() -> u32 {
    128
}
fn default_idle_timeout() -> String {
    "5m".into()
}
fn default_handshake_timeout() -> String {
    "10s".into()
}

impl ServerConfig {
    /// A `[server]` duration setting, checked (1 s to 1 day).
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn duration(name: &str, value: &str) -> Result<std::time::Duration, String> {
        match crate::duration::parse_duration(value) {
            Ok(s) if (1..=86_400).contains(&s) => {
                Ok(std::time::Duration::from_secs(s.unsigned_abs()))
            }
            Ok(_) => Err(format!(
                "[server] {name} {value:?} must be between 1s and 1d"
            )),
            Err(e) => Err(format!("[server] {name}: {e}")),
        }
    }

    /// With every optional setting at its default (for `--dev`).
    pub fn defaults(socket: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            socket,
            state_dir,
            profiles_dir: None,
            socket_mode: default_socket_mode(),
            socket_group: None,
            tcp: None,
            tls_cert: None,
            tls_key: None,
            tls_keyset: None,
            client_ca: None,
            owner_operations: default_owner_operations(),
            client_crl: Vec::new(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
            max_concurrent_streams: default_max_streams(),
            idle_timeout: default_idle_timeout(),
            handshake_timeout: default_handshake_timeout(),
        }
    }
}

/// Every operation an `[[access]]` rule (or `owner_operations`) can name.
/// `admin` is shorthand for `manage` and `destroy`.
pub const OPERATIONS: [&str; 7] = [
    "sign", "decrypt", "verify", "jwks", "manage", "destroy", "admin",
];

fn default_owner_operations() -> Vec<String> {
    ["manage", "destroy", "jwks"].map(String::from).to_vec()
}

/// Checks a list of operation names, saying where it came from.
fn check_operations(what: &str, ops: &[String]) -> Result<(), String> {
    for op in ops {
        if !OPERATIONS.contains(&op.as_str()) {
            return Err(format!(
                "{what}: unknown operation {op:?} ({})",
                OPERATIONS.join(", ")
            ));
        }
    }
    Ok(())
}

fn default_socket_mode() -> String {
    "0660".into()
}

impl ServerConfig {
    /// The socket mode as a number.
    ///
    /// # Errors
    /// A message when it is not octal or lets others write.
    pub fn socket_mode(&self) -> Result<u32, String> {
        let mode =
            u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).map_err(|_| {
                format!(
                    "[server] socket_mode {:?} is not an octal mode",
                    self.socket_mode
                )
            })?;
        if mode > 0o777 {
            return Err(format!(
                "[server] socket_mode {:?} is not a permission mode",
                self.socket_mode
            ));
        }
        if mode & 0o002 != 0 {
            return Err(format!(
                "[server] socket_mode {:?} lets every local user connect; use 0660 with \
                 socket_group for the callers' group",
                self.socket_mode
            ));
        }
        Ok(mode)
    }
}

/// `[backends.NAME]`: one key device.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// A PKCS#11 token (HSM or SoftHSM2).
    Pkcs11(Pkcs11Config),
    /// A TPM 2.0 (hardware, or swtpm in tests).
    Tpm(TpmConfig),
}

/// `kind = "tpm"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// TPM profile name (`hsm-profiles/NAME.toml`): `tpm-device` or `tpm-swtpm`.
    pub profile: String,
    /// TCTI: `device:/dev/tpmrm0`, `tabrmd:`, or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// Owner hierarchy auth, as a secret source (`env:`, `file:`, `systemd-creds:`).
    #[serde(default)]
    pub owner_auth: Option<String>,
    /// Auth value of the keys Custos creates, as a secret source.
    #[serde(default)]
    pub key_auth: Option<String>,
    /// Always sign RSA through the TPM's raw RSA operation with the padding
    /// done in software (instead of the TPM's own PSS/PKCS#1).
    #[serde(default)]
    pub rsa_raw: bool,
    /// How long one TPM command may take before its call is abandoned
    /// (`"10s"`; overrides the profile).
    #[serde(default)]
    pub call_timeout: Option<String>,
}

/// `kind = "pkcs11"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// HSM profile name (`hsm-profiles/NAME.toml`).
    pub profile: String,
    /// Path of the PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Label of the token to use (one of `token_label`, `token_serial`, `slot_id`).
    #[serde(default)]
    pub token_label: String,
    /// Serial number of the token to use, for tokens with repeated labels.
    #[serde(default)]
    pub token_serial: Option<String>,
    /// Slot id of the token, for modules whose token information cannot be
    /// read (opencryptoki) or whose slots do not move.
    #[serde(default)]
    pub slot_id: Option<u64>,
    /// The string handed to `C_Initialize` in `pReserved`, for modules that
    /// need one (NSS softokn: `configdir='sql:/var/lib/custos/nssdb' ...`).
    #[serde(default)]
    pub initialize_args: Option<String>,
    /// Where the user PIN comes from: `env:NAME` or `file:PATH`.
    pub pin: String,
    /// How long one device call may take before its call is abandoned
    /// (`"10s"`; overrides the profile's `[sessions] call_timeout_ms`).
    #[serde(default)]
    pub call_timeout: Option<String>,
    /// How many logged-in sessions to keep (overrides the profile's
    /// `[sessions] pool_size`; 1 to 1024). A network HSM signs in parallel
    /// across sessions: size it to the appliance's licence and the load.
    #[serde(default)]
    pub pool_size: Option<usize>,
}

/// A backend's `call_timeout` in milliseconds, checked (1 s to 10 min).
///
/// # Errors
/// A message naming the backend.
pub fn call_timeout_ms(backend: &str, value: &str) -> Result<u64, String> {
    match crate::duration::parse_duration(value) {
        Ok(s) if (1..=600).contains(&s) => Ok(s.unsigned_abs() * 1000),
        Ok(_) => Err(format!(
            "[backends.{backend}] call_timeout {value:?} must be between 1s and 10m"
        )),
        Err(e) => Err(format!("[backends.{backend}] call_timeout: {e}")),
    }
}

impl Config {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// A message naming the file and, for unknown or missing keys, the key.
    /// The file is opened without following a symlink and must belong to
    /// root or custosd's user with no group or other write (`files.rs`).
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = crate::files::read_trusted(path, crate::files::Kind::Config)
            .map_err(|e| format!("config: {e}"))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("config {} is not UTF-8", path.display()))?;
        Self::parse(text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Every `env:NAME` secret source the config names (PINs, TPM auth
    /// values), so `main` can take them out of the environment early.
    pub fn env_secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for b in self.backends.values() {
            let sources: Vec<&str> = match b {
                BackendConfig::Pkcs11(p) => vec![p.pin.as_str()],
                BackendConfig::Tpm(t) => [&t.owner_auth, &t.key_auth]
                    .into_iter()
                    .filter_map(|s| s.as_deref())
                    .collect(),
            };
            names.extend(
                sources
                    .into_iter()
                    .filter_map(|s| s.strip_prefix("env:"))
                    .map(String::from),
            );
        }
        names
    }

    /// Parses config text and checks what serde cannot.
    ///
    /// # Errors
    /// The TOML error (which names unknown keys) or a description of the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.backends.is_empty() {
            return Err("no [backends.NAME] table: configure at least one key backend".into());
        }
        let v = config.verify;
        if !(0..=600).contains(&v.clock_skew) || !(1..=3600).contains(&v.dpop_window) {
            return Err(
                "[verify] clock_skew must be 0..600 and dpop_window 1..3600 seconds".into(),
            );
        }
        config.server.socket_mode()?;
        if config.server.tcp.is_some() {
            let files = config.server.tls_cert.is_some() && config.server.tls_key.is_some();
            let keyset = config.server.tls_keyset.is_some();
            if files == keyset || config.server.client_ca.is_none() {
                return Err(
                    "[server] tcp needs client_ca (mutual TLS only) and either tls_cert and \
                     tls_key, or tls_keyset (a tls_server keyset holding the key)"
                        .into(),
                );
            }
        }
        for rule in &config.access {
            let selectors = [
                rule.unix_uid.is_some(),
                rule.unix_gid.is_some(),
                rule.tls_san.is_some(),
            ];
            if selectors.iter().filter(|s| **s).count() != 1 {
                return Err(format!(
                    "[[access]] {:?}: give exactly one of unix_uid, unix_gid, tls_san",
                    rule.name
                ));
            }
            check_operations(&format!("[[access]] {:?}", rule.name), &rule.operations)?;
        }
        check_operations("[server] owner_operations", &config.server.owner_operations)?;
        for (name, value) in [
            ("request_timeout", &config.server.request_timeout),
            ("idle_timeout", &config.server.idle_timeout),
            ("handshake_timeout", &config.server.handshake_timeout),
        ] {
            ServerConfig::duration(name, value)?;
        }
        if config.server.max_connections == 0 || config.server.max_concurrent_streams == 0 {
            return Err(
                "[server] max_connections and max_concurrent_streams must be at least 1".into(),
            );
        }
        config.audit.write_timeout()?;
        config.audit.datagram_socket()?;
        config.metrics.address()?;
        if let Some(level) = &config.log.level {
            crate::logging::parse(level)?;
        }
        config.keyring.limits()?;
        for d in [&config.keyring.refresh, &config.keyring.schedule_tick] {
            match crate::duration::parse_duration(d) {
                Ok(s) if s >= 1 => {}
                Ok(_) => return Err(format!("[keyring] interval {d:?} must be at least 1s")),
                Err(e) => return Err(format!("[keyring] {e}")),
            }
        }
        crate::duration::parse_duration(&config.keyring.max_stale)
            .map_err(|e| format!("[keyring] max_stale: {e}"))?;
        match config.keyring.manifest.as_str() {
            "file" => {}
            "etcd" => match &config.keyring.etcd {
                Some(e) if !e.endpoints.is_empty() => {
                    crate::duration::parse_duration(&e.timeout)
                        .map_err(|err| format!("[keyring.etcd] timeout: {err}"))?;
                    if e.user.is_some() != e.password.is_some() {
                        return Err("[keyring.etcd] user and password go together".into());
                    }
                    if e.cert.is_some() != e.key.is_some() {
                        return Err("[keyring.etcd] cert and key go together".into());
                    }
                }
                _ => {
                    return Err(
                        "[keyring] manifest = \"etcd\" needs [keyring.etcd] endpoints = [\"http://HOST:2379\", ...]"
                            .into(),
                    )
                }
            },
            other if other.starts_with("token:") => {
                return Err(format!(
                    "[keyring] manifest = {other:?}: the manifest kept on the token is no longer \
                     supported, because PKCS#11 has no compare-and-swap and a stalled writer could \
                     lose a change (a lost `disable`); use \"file\" (one daemon per state_dir)"
                ))
            }
            other => {
                return Err(format!(
                    "[keyring] manifest = {other:?}: use \"file\" or \"etcd\""
                ))
            }
        }
        for (name, b) in &config.backends {
            if let BackendConfig::Pkcs11(p) = b {
                let selectors = [
                    !p.token_label.is_empty(),
                    p.token_serial.is_some(),
                    p.slot_id.is_some(),
                ];
                if selectors.iter().filter(|s| **s).count() != 1 {
                    return Err(format!(
                        "[backends.{name}]: give exactly one of token_label, token_serial, slot_id"
                    ));
                }
            }
        }
        for name in config.backends.keys() {
            if name == "dev" {
                return Err(
                    "backend name \"dev\" is reserved for `custosd --dev`; pick another name"
                        .into(),
                );
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
socket = "/run/custos/custos.sock"
state_dir = "/var/lib/custos"

[backends.hsm]
kind = "pkcs11"
profile = "softhsm2"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "custos"
pin = "env:CUSTOS_PIN"
"#;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(GOOD).unwrap();
        let BackendConfig::Pkcs11(p) = &c.backends["hsm"] else {
            panic!("pkcs11 expected");
        };
        assert_eq!(p.token_label, "custos");
    }

    #[test]
    fn unknown_keys_are_named() {
        let bad = GOOD.replace("token_label", "token_lable");
        let err = Config::parse(&bad).unwrap_err();
        assert!(err.contains("token_lable"), "{err}");
        let bad = GOOD.replace("[server]", "[server]\nsocekt = \"x\"");
        let err = Config::parse(&bad).unwrap_err();
        assert!(err.contains("socekt"), "{err}");
    }

    #[test]
    fn software_backends_are_not_configurable() {
        let bad = GOOD.replace("kind = \"pkcs11\"", "kind = \"software\"");
        assert!(Config::parse(&bad).is_err());
    }
}

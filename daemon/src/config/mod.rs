//! The daemon's TOML configuration. Unknown keys are refused, naming the key,
//! so a typo never silently falls back to a default.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

mod audit;
mod backends;
mod keyring;
mod server;

pub(crate) use audit::{AuditConfig, DualControl, DualControlConfig};
pub(crate) use backends::{call_timeout_ms, BackendConfig, Pkcs11Config, TpmConfig};
pub(crate) use keyring::{EtcdConfig, KeyringConfig};
use server::check_operations;
pub(crate) use server::{ServerConfig, OPERATIONS};

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

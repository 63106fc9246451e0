//! `[server]`: the sockets, the state directory, TCP with mutual TLS, and
//! the operations a socket's owner may call.

use serde::Deserialize;
use std::path::PathBuf;

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
pub(crate) const OPERATIONS: [&str; 7] = [
    "sign", "decrypt", "verify", "jwks", "manage", "destroy", "admin",
];

fn default_owner_operations() -> Vec<String> {
    ["manage", "destroy", "jwks"].map(String::from).to_vec()
}

/// Checks a list of operation names, saying where it came from.
pub(super) fn check_operations(what: &str, ops: &[String]) -> Result<(), String> {
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

//! `[keyring]` and `[keyring.etcd]`: where the manifest lives.

use serde::Deserialize;
use std::path::PathBuf;

/// `[keyring]`: manifest location, refresh and schedule intervals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyringConfig {
    /// `"file"`: `state_dir/keyring.json`. (The on-token store of earlier
    /// releases, `"token:BACKEND"`, is refused: see `keyring/store.rs`.)
    pub manifest: String,
    /// How often to pick up changes other daemons made (`"10s"`).
    pub refresh: String,
    /// How often the rotation schedule runs (`"10s"`).
    pub schedule_tick: String,
    /// The shortest rotation period a policy may set (`"1h"`).
    pub min_rotation_period: String,
    /// Key versions a keyset may hold on the device at once (10).
    pub max_live_versions: usize,
    /// Keysets one backend may hold (1000).
    pub max_keysets_per_backend: usize,
    /// With a shared store: how long signing goes on with the last manifest
    /// seen while the store does not answer (`"1h"`).
    pub max_stale: String,
    /// `[keyring.etcd]`, for `manifest = "etcd"`.
    pub etcd: Option<EtcdConfig>,
}

/// `[keyring.etcd]`: the shared manifest's etcd cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the cluster members.
    pub endpoints: Vec<String>,
    /// Key prefix (`"/custos/"`); one deployment per prefix.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// Deadline of one request (`"2s"`).
    #[serde(default = "default_etcd_timeout")]
    pub timeout: String,
    /// User, when etcd authentication is on.
    #[serde(default)]
    pub user: Option<String>,
    /// Its password: `env:NAME`, `file:PATH` or `systemd-creds:NAME`.
    #[serde(default)]
    pub password: Option<String>,
    /// PEM CA of etcd's TLS certificates.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for etcd's TLS client authentication.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_etcd_prefix() -> String {
    "/custos/".into()
}

fn default_etcd_timeout() -> String {
    "2s".into()
}

impl KeyringConfig {
    /// The quotas, checked.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn limits(&self) -> Result<crate::keyring::Limits, String> {
        let min_rotation_period = crate::duration::parse_duration(&self.min_rotation_period)
            .map_err(|e| format!("[keyring] min_rotation_period: {e}"))?;
        if min_rotation_period < 1 || self.max_live_versions < 2 || self.max_keysets_per_backend < 1
        {
            return Err(
                "[keyring] min_rotation_period must be at least 1s, max_live_versions at least 2 \
                        and max_keysets_per_backend at least 1"
                    .into(),
            );
        }
        Ok(crate::keyring::Limits {
            min_rotation_period,
            max_live_versions: self.max_live_versions,
            max_keysets_per_backend: self.max_keysets_per_backend,
        })
    }
}

impl Default for KeyringConfig {
    fn default() -> Self {
        Self {
            manifest: "file".into(),
            refresh: "10s".into(),
            schedule_tick: "10s".into(),
            min_rotation_period: "1h".into(),
            max_live_versions: 10,
            max_keysets_per_backend: 1000,
            max_stale: "1h".into(),
            etcd: None,
        }
    }
}

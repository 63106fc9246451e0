//! `[backends.NAME]`: the key devices (PKCS#11 tokens and TPMs).

use serde::Deserialize;
use std::path::PathBuf;

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
pub(crate) fn call_timeout_ms(backend: &str, value: &str) -> Result<u64, String> {
    match crate::duration::parse_duration(value) {
        Ok(s) if (1..=600).contains(&s) => Ok(s.unsigned_abs() * 1000),
        Ok(_) => Err(format!(
            "[backends.{backend}] call_timeout {value:?} must be between 1s and 10m"
        )),
        Err(e) => Err(format!("[backends.{backend}] call_timeout: {e}")),
    }
}

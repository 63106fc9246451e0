//! HSM profiles (`hsm-profiles/NAME.toml`): how one PKCS#11 model does each
//! algorithm, so model differences live in data, not in code paths.
//!
//! The profiles shipped in the repository are built into the binary; a file of
//! the same name in the configured `profiles_dir` takes precedence.

use crate::alg::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Profiles compiled into the daemon, by name.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "softhsm2",
        include_str!("../../../hsm-profiles/softhsm2.toml"),
    ),
    (
        "kryoptic",
        include_str!("../../../hsm-profiles/kryoptic.toml"),
    ),
    (
        "opencryptoki",
        include_str!("../../../hsm-profiles/opencryptoki.toml"),
    ),
    (
        "nss-softokn",
        include_str!("../../../hsm-profiles/nss-softokn.toml"),
    ),
    (
        "tpm2-pkcs11",
        include_str!("../../../hsm-profiles/tpm2-pkcs11.toml"),
    ),
    (
        "tpm-swtpm",
        include_str!("../../../hsm-profiles/tpm-swtpm.toml"),
    ),
    (
        "tpm-device",
        include_str!("../../../hsm-profiles/tpm-device.toml"),
    ),
];

#[cfg(feature = "tpm")]
/// How a TPM backend makes RS256/PS256 signatures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RsaPssMode {
    /// Check the TPM's own PSS salt at key load; use the raw path when it is not 32.
    #[default]
    Auto,
    /// Always the TPM's own RSASSA-PSS / RSASSA-PKCS1-v1_5.
    Native,
    /// Always the raw RSA operation with the padding done in software.
    Raw,
}

#[cfg(feature = "tpm")]
/// A TPM model's profile (`hsm-profiles/tpm-*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TpmProfile {
    /// Profile name.
    pub name: String,
    /// What the profile is for.
    #[serde(default)]
    pub description: String,
    /// Whether it was checked against the real TPM.
    #[serde(default)]
    pub tested: bool,
    /// The JOSE algorithms offered.
    pub algorithms: Vec<String>,
    /// How RSA signatures are made.
    #[serde(default)]
    pub rsa_pss: RsaPssMode,
    /// How many Custos keys stay loaded in the TPM at once (TPMs without a
    /// resource manager have few object slots; the least recently used key
    /// is flushed and reloaded from its blob when needed).
    #[serde(default = "default_loaded")]
    pub max_loaded_keys: usize,
    /// How long one TPM command may take before its call is abandoned (milliseconds).
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
}

#[cfg(feature = "tpm")]
fn default_loaded() -> usize {
    2
}

#[cfg(feature = "tpm")]
impl TpmProfile {
    /// Loads the TPM profile `name` (from `dir`, else built in).
    ///
    /// # Errors
    /// A message naming the profile and the problem.
    pub(crate) fn load(name: &str, dir: Option<&Path>) -> Result<Self, String> {
        let text = profile_text(name, dir)?;
        let p: TpmProfile =
            toml::from_str(&text).map_err(|e| format!("TPM profile {name}: {e}"))?;
        for a in &p.algorithms {
            let alg: Algorithm = a.parse()?;
            if !matches!(alg, Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256) {
                return Err(format!(
                    "TPM profile {name}: {alg} is not offered by the TPM backend"
                ));
            }
        }
        Ok(p)
    }

    /// Whether the profile offers `alg`.
    pub(crate) fn offers(&self, alg: Algorithm) -> bool {
        self.algorithms.iter().any(|a| a == alg.as_str())
    }
}

fn profile_text(name: &str, dir: Option<&Path>) -> Result<String, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("invalid HSM profile name {name:?}"));
    }
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.toml"));
        if path.exists() {
            return std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read HSM profile {}: {e}", path.display()));
        }
    }
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| {
            let known: Vec<_> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown HSM profile {name:?}: built-in profiles are {known:?}; or set [server] profiles_dir to a folder with {name}.toml"
            )
        })
}

/// One HSM model's profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmProfile {
    /// Profile name (matches the file name).
    pub name: String,
    /// What the profile is for, shown by tools.
    #[serde(default)]
    pub description: String,
    /// Whether the profile was checked against the real module.
    #[serde(default)]
    pub tested: bool,
    /// Session pool settings.
    #[serde(default)]
    pub sessions: SessionSettings,
    /// RSA key generation settings.
    #[serde(default)]
    pub rsa: RsaSettings,
    /// Per-algorithm mechanism choice, keyed by JOSE `alg`.
    pub algorithms: BTreeMap<String, AlgorithmSettings>,
    /// How the token is found and the module initialised.
    #[serde(default)]
    pub token: TokenSettings,
    /// Additions to the key-generation templates.
    #[serde(default)]
    pub keygen: KeygenSettings,
    /// Known limits of the module, shown by `custos doctor`.
    #[serde(default)]
    pub limits: Vec<String>,
}

/// `[token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Whether `C_GetTokenInfo` can be read: when false (opencryptoki), the
    /// token must be selected by `slot_id` in the daemon config.
    #[serde(default = "yes")]
    pub info_readable: bool,
    /// Whether the module needs `initialize_args` (a `C_Initialize`
    /// `pReserved` string, as NSS softokn does).
    #[serde(default)]
    pub initialize_args_required: bool,
}

fn yes() -> bool {
    true
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            info_readable: true,
            initialize_args_required: false,
        }
    }
}

/// `[keygen]`: boolean attributes added to generated keys' templates, by
/// PKCS#11 name (`CKA_MODIFIABLE`, `CKA_COPYABLE`, `CKA_DESTROYABLE`,
/// `CKA_WRAP_WITH_TRUSTED`, `CKA_ALWAYS_AUTHENTICATE`). They can only add;
/// the security attributes Custos sets are not overridable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeygenSettings {
    /// Added to private-key templates.
    #[serde(default)]
    pub private: BTreeMap<String, bool>,
    /// Added to public-key templates.
    #[serde(default)]
    pub public: BTreeMap<String, bool>,
}

/// The template attributes a profile may add.
pub(crate) const KEYGEN_ATTRIBUTES: [&str; 5] = [
    "CKA_MODIFIABLE",
    "CKA_COPYABLE",
    "CKA_DESTROYABLE",
    "CKA_WRAP_WITH_TRUSTED",
    "CKA_ALWAYS_AUTHENTICATE",
];

/// `[sessions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// How many logged-in sessions the pool keeps open.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// How long a request waits for a free session before UNAVAILABLE, in milliseconds.
    #[serde(default = "default_wait")]
    pub wait_ms: u64,
    /// Run device calls on the request's own task instead of a blocking
    /// thread: for in-process software tokens, whose calls are short CPU
    /// work (never for network or USB HSMs, whose calls wait on I/O).
    #[serde(default)]
    pub inline_calls: bool,
    /// How long one device call may take before the request gets
    /// UNAVAILABLE and the call is abandoned to its thread (milliseconds).
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
    /// Retry a signature or decryption once, on a fresh session, when the
    /// first attempt fails with a device or session error (default true).
    /// Key generation is never retried blindly (see the PKCS#11 backend).
    #[serde(default = "default_true")]
    pub retry_once: bool,
}

fn default_true() -> bool {
    true
}

/// Ten seconds: far above any healthy HSM call, short enough that callers
/// see an outage instead of hanging.
pub(crate) fn default_call_timeout() -> u64 {
    10_000
}

fn default_pool() -> usize {
    4
}
fn default_wait() -> u64 {
    5_000
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            pool_size: default_pool(),
            wait_ms: default_wait(),
            inline_calls: false,
            call_timeout_ms: default_call_timeout(),
            retry_once: true,
        }
    }
}

/// `[rsa]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsaSettings {
    /// Modulus size of generated RSA keys (at least 2048).
    #[serde(default = "default_bits")]
    pub bits: u64,
}

fn default_bits() -> u64 {
    2048
}

impl Default for RsaSettings {
    fn default() -> Self {
        Self {
            bits: default_bits(),
        }
    }
}

/// `[algorithms.ALG]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmSettings {
    /// The PKCS#11 mechanism, e.g. `CKM_ECDSA` or `CKM_SHA256_RSA_PKCS_PSS`.
    pub mechanism: Mechanism,
    /// Used instead when the token does not list `mechanism` (e.g. the raw
    /// `CKM_ECDSA` with software hashing for a missing `CKM_ECDSA_SHA256`).
    #[serde(default)]
    pub fallback: Option<Mechanism>,
    /// How the module returns CKA_EC_POINT (`der` or `raw`); informative:
    /// Custos reads both.
    #[serde(default)]
    pub ec_point: EcPointStyle,
    /// How Ed25519 curve parameters are named at generation (`oid` or `printable`).
    #[serde(default)]
    pub ec_params: EcParamsStyle,
}

/// The mechanisms a profile may choose. Raw ones get the hash (and, for
/// PKCS#1 v1.5, the DigestInfo) computed in software first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum Mechanism {
    /// Raw ECDSA over a SHA-256 digest computed in software.
    CKM_ECDSA,
    /// ECDSA with SHA-256 done by the token.
    CKM_ECDSA_SHA256,
    /// PSS over a SHA-256 digest computed in software.
    CKM_RSA_PKCS_PSS,
    /// PSS with SHA-256 done by the token.
    CKM_SHA256_RSA_PKCS_PSS,
    /// PKCS#1 v1.5 over a DigestInfo computed in software.
    CKM_RSA_PKCS,
    /// PKCS#1 v1.5 with SHA-256 done by the token.
    CKM_SHA256_RSA_PKCS,
    /// Pure EdDSA.
    CKM_EDDSA,
    /// RSAES-OAEP (SHA-256, MGF1-SHA-256) decryption by the token.
    CKM_RSA_PKCS_OAEP,
    /// Raw RSA decryption by the token, OAEP (SHA-256) decoding in software.
    CKM_RSA_X_509,
}

impl Mechanism {
    /// Whether this mechanism can implement `alg`.
    pub fn implements(self, alg: Algorithm) -> bool {
        use Mechanism::*;
        matches!(
            (self, alg),
            (CKM_ECDSA | CKM_ECDSA_SHA256, Algorithm::ES256)
                | (CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS, Algorithm::PS256)
                | (CKM_RSA_PKCS | CKM_SHA256_RSA_PKCS, Algorithm::RS256)
                | (CKM_EDDSA, Algorithm::EdDSA)
                | (CKM_RSA_PKCS_OAEP | CKM_RSA_X_509, Algorithm::RsaOaep256)
        )
    }
}

/// How a module encodes CKA_EC_POINT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EcPointStyle {
    /// A DER OCTET STRING around the point (PKCS#11 as written).
    #[default]
    Der,
    /// The bare point.
    Raw,
}

/// How the Ed25519 curve is named in CKA_EC_PARAMS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EcParamsStyle {
    /// The DER OID 1.3.101.112.
    #[default]
    Oid,
    /// The PrintableString "edwards25519" (PKCS#11 3.0 curve name).
    Printable,
}

impl HsmProfile {
    /// Loads the profile `name`, from `dir` when it has `NAME.toml`, else built in.
    ///
    /// # Errors
    /// A message naming the profile and the problem.
    pub fn load(name: &str, dir: Option<&Path>) -> Result<Self, String> {
        let text = profile_text(name, dir)?;
        Self::parse(&text).map_err(|e| format!("HSM profile {name}: {e}"))
    }

    /// Parses and checks profile text.
    ///
    /// # Errors
    /// TOML errors (naming unknown keys) and mechanism/algorithm mismatches.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: HsmProfile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (alg, settings) in &p.algorithms {
            let a: Algorithm = alg.parse()?;
            if !settings.mechanism.implements(a) {
                return Err(format!(
                    "[algorithms.{alg}] mechanism {:?} cannot implement {alg}",
                    settings.mechanism
                ));
            }
            if let Some(f) = settings.fallback.filter(|f| !f.implements(a)) {
                return Err(format!(
                    "[algorithms.{alg}] fallback {f:?} cannot implement {alg}"
                ));
            }
        }
        for name in p.keygen.private.keys().chain(p.keygen.public.keys()) {
            if !KEYGEN_ATTRIBUTES.contains(&name.as_str()) {
                return Err(format!(
                    "[keygen] attribute {name:?} cannot be set by a profile (allowed: {KEYGEN_ATTRIBUTES:?})"
                ));
            }
        }
        if p.rsa.bits < 2048 {
            return Err(format!(
                "[rsa] bits = {} is below the minimum of 2048",
                p.rsa.bits
            ));
        }
        if p.sessions.pool_size == 0 {
            return Err("[sessions] pool_size must be at least 1".into());
        }
        Ok(p)
    }

    /// The settings for `alg`, or `None` when the profile does not promise it.
    pub fn algorithm(&self, alg: Algorithm) -> Option<&AlgorithmSettings> {
        self.algorithms.get(alg.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_softhsm2_profile_loads() {
        let p = HsmProfile::load("softhsm2", None).unwrap();
        assert_eq!(
            p.algorithm(Algorithm::ES256).unwrap().mechanism,
            Mechanism::CKM_ECDSA
        );
        assert!(p.algorithm(Algorithm::EdDSA).is_some());
    }

    #[test]
    fn every_shipped_profile_loads() {
        for (name, _) in BUILT_IN {
            if name.starts_with("tpm-") {
                // Loaded by the TPM backend, built with `--features tpm`.
                #[cfg(feature = "tpm")]
                {
                    let p = TpmProfile::load(name, None).unwrap();
                    assert!(p.offers(Algorithm::ES256), "{name}");
                }
            } else {
                let p = HsmProfile::load(name, None).unwrap();
                assert_eq!(&p.name, name);
                assert!(p.algorithm(Algorithm::PS256).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn mismatched_mechanism_is_refused() {
        let text = "name = \"x\"\n[algorithms.ES256]\nmechanism = \"CKM_EDDSA\"\n";
        assert!(HsmProfile::parse(text)
            .unwrap_err()
            .contains("cannot implement"));
    }

    #[test]
    fn unknown_profile_names_the_choices() {
        let err = HsmProfile::load("luna9", None).unwrap_err();
        assert!(err.contains("softhsm2"), "{err}");
    }
}

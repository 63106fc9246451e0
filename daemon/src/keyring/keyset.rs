//! Keysets and key versions: the keyring's data model.

use crate::alg::Algorithm;
use crate::backend::{KeyRef, PublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a keyset's tokens are for; a keyset signs only for its purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// OpenID Connect ID tokens.
    IdToken,
    /// JARM authorization responses.
    Jarm,
    /// JWT access tokens (RFC 9068).
    AccessToken,
    /// Signed UserInfo responses.
    Userinfo,
    /// Request objects (RFC 9101), signed with a client's key.
    RequestObject,
    /// `private_key_jwt` client assertions (RFC 7523).
    ClientAssertion,
    /// Anything else, signed with `SignJwt` only.
    Generic,
    /// Decrypting request objects encrypted to the authorization server
    /// (RSA-OAEP-256 keysets only; published with `use: enc`).
    RequestObjectDecryption,
    /// Signed token introspection responses (RFC 9701).
    Introspection,
    /// HTTP message signatures (RFC 9421) on FAPI 2.0 resource requests and responses.
    HttpMessage,
    /// A TLS client's transport key (RFC 8705 mutual TLS): signs the client's
    /// CertificateVerify, with `SignTlsHandshake` only.
    TlsClient,
    /// A TLS server's certificate key: signs the server's CertificateVerify
    /// (or TLS 1.2 ServerKeyExchange), with `SignTlsHandshake` only.
    TlsServer,
    /// The audit log's checkpoints: signed by custosd itself, never over
    /// the API (`[audit] keyset`).
    Audit,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 13] = [
        Self::IdToken,
        Self::Jarm,
        Self::AccessToken,
        Self::Userinfo,
        Self::RequestObject,
        Self::ClientAssertion,
        Self::Generic,
        Self::RequestObjectDecryption,
        Self::Introspection,
        Self::HttpMessage,
        Self::TlsClient,
        Self::TlsServer,
        Self::Audit,
    ];

    /// The purpose's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdToken => "id_token",
            Self::Jarm => "jarm",
            Self::AccessToken => "access_token",
            Self::Userinfo => "userinfo",
            Self::RequestObject => "request_object",
            Self::ClientAssertion => "client_assertion",
            Self::Generic => "generic",
            Self::RequestObjectDecryption => "request_object_decryption",
            Self::Introspection => "introspection",
            Self::HttpMessage => "http_message",
            Self::TlsClient => "tls_client",
            Self::TlsServer => "tls_server",
            Self::Audit => "audit",
        }
    }
}

impl Purpose {
    /// Whether keys of this purpose belong to the authorization server
    /// itself and go into its published JWKS (`jwks_uri`): ID tokens, JARM,
    /// access tokens, UserInfo, introspection, and the request-object
    /// encryption key. Client keys (request objects, client assertions),
    /// HTTP-message keys and generic keys are never published there.
    pub fn published_by_issuer(self) -> bool {
        matches!(
            self,
            Self::IdToken
                | Self::Jarm
                | Self::AccessToken
                | Self::Userinfo
                | Self::Introspection
                | Self::RequestObjectDecryption
        )
    }

    /// Whether this is a TLS purpose (a key that signs handshakes, never tokens).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::TlsClient | Self::TlsServer)
    }

    /// The operation that signs (or uses) keys of this purpose.
    pub fn operation(self) -> &'static str {
        match self {
            Self::IdToken => "SignIdToken, `custos sign id-token`",
            Self::Jarm => "SignJarmResponse, `custos sign jarm`",
            Self::AccessToken => "SignAccessToken, `custos sign access-token`",
            Self::Userinfo | Self::Generic => "SignJwt, `custos sign jwt`",
            Self::RequestObject => "SignRequestObject, `custos sign request-object`",
            Self::ClientAssertion => "SignClientAssertion, `custos sign client-assertion`",
            Self::RequestObjectDecryption => "DecryptJwe, `custos decrypt`",
            Self::Introspection => "SignIntrospectionResponse, `custos sign introspection`",
            Self::HttpMessage => "SignHttpMessage, `custos sign http`",
            Self::TlsClient | Self::TlsServer => {
                "SignTlsHandshake (custos-client's rustls signing key)"
            }
            Self::Audit => "custosd's audit checkpoints ([audit] keyset), never an RPC",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Self::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown purpose {s:?}: use one of {}", all.join(", "))
            })
    }
}

/// The FAPI profile a keyset was created under; `fapi/profile.rs` holds its rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// FAPI 1.0 Advanced: PS256 or ES256.
    #[serde(rename = "fapi1-advanced")]
    Fapi1Advanced,
    /// FAPI 2.0: PS256, ES256 or EdDSA.
    #[default]
    #[serde(rename = "fapi2")]
    Fapi2,
    /// Plain OpenID Connect: also RS256.
    #[serde(rename = "oidc")]
    Oidc,
}

impl Profile {
    /// The profile's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fapi1Advanced => "fapi1-advanced",
            Self::Fapi2 => "fapi2",
            Self::Oidc => "oidc",
        }
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fapi1-advanced" => Ok(Self::Fapi1Advanced),
            "fapi2" | "" => Ok(Self::Fapi2),
            "oidc" => Ok(Self::Oidc),
            _ => Err(format!(
                "unknown profile {s:?}: use fapi1-advanced, fapi2 or oidc"
            )),
        }
    }
}

/// The life-cycle state of a key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Published, not yet signing.
    Pending,
    /// The one version that signs.
    Active,
    /// Published and verifying, no longer signing.
    Retired,
    /// Unpublished, verifies nothing, still on the device.
    Disabled,
    /// Removed from the device; only its kid and history remain.
    Destroyed,
}

impl VersionState {
    /// The state's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Disabled => "disabled",
            Self::Destroyed => "destroyed",
        }
    }

    /// Whether a version in this state appears in the JWKS.
    pub fn is_published(self) -> bool {
        matches!(self, Self::Pending | Self::Active | Self::Retired)
    }

    /// Whether a token signed by a version in this state verifies: the
    /// active key and retired ones (a pending key has signed nothing yet;
    /// disabled and destroyed keys verify nothing). The one place this is said.
    pub fn verifies(self) -> bool {
        matches!(self, Self::Active | Self::Retired)
    }

    /// Whether a version in this state is still live on the device and may
    /// get a certificate or a request: pending, active or retired.
    pub fn is_live(self) -> bool {
        self.is_published()
    }
}

/// One recorded state change of a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before (`None` for creation).
    pub from: Option<VersionState>,
    /// The state after.
    pub to: VersionState,
    /// When (Unix seconds).
    pub at: i64,
    /// Who: a caller identity, or `schedule`.
    pub by: String,
}

/// One key of a keyset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Life-cycle state.
    pub state: VersionState,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// The device object.
    pub key_ref: KeyRef,
    /// The public key, kept so JWKS and verification need no device call.
    pub public: PublicKey,
    /// Every state change, oldest first.
    #[serde(default)]
    pub history: Vec<Transition>,
    /// TLS keysets: the certificate chain a CA issued for this key (DER,
    /// base64, leaf first), once `SetCertificate` stored it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
}

impl KeyVersion {
    /// The stored certificate chain as DER, leaf first (empty when none).
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        use base64::Engine;
        self.certificate_chain
            .iter()
            .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .collect()
    }
}

impl KeyVersion {
    /// When the version entered its current state.
    pub fn state_since(&self) -> i64 {
        self.history.last().map_or(self.created_at, |t| t.at)
    }

    /// When the version last entered `state`, if ever.
    pub fn entered(&self, state: VersionState) -> Option<i64> {
        self.history
            .iter()
            .rev()
            .find(|t| t.to == state)
            .map(|t| t.at)
    }

    fn set_state(&mut self, to: VersionState, at: i64, by: &str) {
        self.history.push(Transition {
            from: Some(self.state),
            to,
            at,
            by: by.into(),
        });
        self.state = to;
    }
}

/// A named, purpose-bound series of key versions on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyset {
    /// Unique name.
    pub name: String,
    /// The algorithm every version signs with.
    pub alg: Algorithm,
    /// What the keyset may sign.
    pub purposes: Vec<Purpose>,
    /// Backend name from the config.
    pub backend: String,
    /// FAPI profile.
    #[serde(default)]
    pub profile: Profile,
    /// The issuer (`iss`) tokens of this keyset must carry, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The longest lifetime (`exp - iat`) of a token this keyset signs, in seconds.
    #[serde(default = "default_max_lifetime")]
    pub max_token_lifetime: i64,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Rotation policy.
    #[serde(default)]
    pub policy: crate::keyring::policy::Policy,
    /// Versions, oldest first.
    pub versions: Vec<KeyVersion>,
}

fn refuse(msg: String) -> crate::error::Error {
    crate::error::Error::FailedPrecondition(msg)
}

impl Keyset {
    /// Whether this keyset's keys belong in the issuer's published JWKS:
    /// it has purposes and every one is the issuer's own
    /// ([`Purpose::published_by_issuer`]).
    pub fn published(&self) -> bool {
        !self.purposes.is_empty() && self.purposes.iter().all(|p| p.published_by_issuer())
    }
}

impl Keyset {
    /// The active version, if any.
    pub fn active(&self) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Active)
    }

    fn index(&self, kid: &str) -> crate::error::Result<usize> {
        self.versions
            .iter()
            .position(|v| v.kid == kid)
            .ok_or_else(|| {
                crate::error::Error::NotFound(crate::error::Missing::Version {
                    keyset: self.name.clone(),
                    kid: kid.to_string(),
                })
            })
    }

    /// The next version number, for device labels.
    pub fn next_number(&self) -> usize {
        self.versions.len() + 1
    }

    /// Adds a new version as `pending`, or as `active` (retiring the old
    /// active one) when `activate_now`.
    pub fn add_version(&mut self, mut v: KeyVersion, activate_now: bool, at: i64, by: &str) {
        v.state = VersionState::Pending;
        v.history = vec![Transition {
            from: None,
            to: VersionState::Pending,
            at,
            by: by.into(),
        }];
        let kid = v.kid.clone();
        self.versions.push(v);
        if activate_now {
            // The version was just added as pending; activating it cannot fail.
            let _ = self.activate(&kid, at, by);
        }
    }

    /// Makes `kid` active (from pending, or retired for a rollback); the
    /// previous active version becomes retired.
    ///
    /// # Errors
    /// `NotFound` for an unknown kid; `FailedPrecondition` for a disabled or
    /// destroyed version.
    pub fn activate(&mut self, kid: &str, at: i64, by: &str) -> crate::error::Result<()> {
        let i = self.index(kid)?;
        match self.versions[i].state {
            VersionState::Active => return Ok(()),
            VersionState::Pending | VersionState::Retired => {}
            s => {
                return Err(refuse(format!(
                    "kid {kid} is {} and can never sign again; rotate to a new key instead",
                    s.as_str()
                )))
            }
        }
        for v in self
            .versions
            .iter_mut()
            .filter(|v| v.state == VersionState::Active)
        {
            v.set_state(VersionState::Retired, at, by);
        }
        self.versions[i].set_state(VersionState::Active, at, by);
        Ok(())
    }

    /// Retires a pending version (it stays published, never signs).
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key (rotate first) or a disabled/destroyed one.
    pub fn retire(&mut self, kid: &str, at: i64, by: &str) -> crate::error::Result<()> {
        let i = self.index(kid)?;
        match self.versions[i].state {
            VersionState::Pending => {
                self.versions[i].set_state(VersionState::Retired, at, by);
                Ok(())
            }
            VersionState::Retired => Ok(()),
            VersionState::Active => Err(refuse(format!(
                "kid {kid} is the active key; `custos keyset rotate {} --now` or `keyset activate` another key first",
                self.name
            ))),
            s => Err(refuse(format!(
                "kid {kid} is {} and cannot be retired",
                s.as_str()
            ))),
        }
    }

    /// Takes a version out of the JWKS and out of every verification, keeping
    /// it on the device (a compromised or expired key).
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key or a destroyed one.
    pub fn disable(&mut self, kid: &str, at: i64, by: &str) -> crate::error::Result<()> {
        let i = self.index(kid)?;
        match self.versions[i].state {
            VersionState::Pending | VersionState::Retired => {
                self.versions[i].set_state(VersionState::Disabled, at, by);
                Ok(())
            }
            VersionState::Disabled => Ok(()),
            VersionState::Active => Err(refuse(format!(
                "kid {kid} is the active key; run `custos keyset rotate {} --now` first, then disable it",
                self.name
            ))),
            VersionState::Destroyed => Err(refuse(format!("kid {kid} is already destroyed"))),
        }
    }

    /// Marks a version destroyed and returns its device object to remove.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key.
    pub fn destroy(
        &mut self,
        kid: &str,
        at: i64,
        by: &str,
    ) -> crate::error::Result<Option<KeyRef>> {
        let i = self.index(kid)?;
        match self.versions[i].state {
            VersionState::Active => Err(refuse(format!(
                "kid {kid} is the active key and is never destroyed; rotate first"
            ))),
            VersionState::Destroyed => Ok(None),
            _ => {
                self.versions[i].set_state(VersionState::Destroyed, at, by);
                Ok(Some(self.versions[i].key_ref.clone()))
            }
        }
    }
}

/// The default token lifetime ceiling: one hour.
pub(crate) const DEFAULT_MAX_LIFETIME: i64 = 3600;

fn default_max_lifetime() -> i64 {
    DEFAULT_MAX_LIFETIME
}

/// Checks a keyset name: 1-64 characters of `[A-Za-z0-9._-]`.
///
/// # Errors
/// A message saying what is wrong with the name.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "keyset name must be 1 to 64 characters (got {})",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "keyset name {name:?} has the character {c:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("as-id-token").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn purposes_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(p.as_str().parse::<Purpose>(), Ok(p));
        }
        assert!("idtoken"
            .parse::<Purpose>()
            .unwrap_err()
            .contains("id_token"));
    }
}

#[cfg(test)]
mod vocabulary_tests {
    use super::*;

    #[test]
    fn the_cli_and_clients_name_exactly_these_purposes_and_profiles() {
        let purposes: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(purposes, custos_proto::PURPOSES);
        for p in custos_proto::PROFILES {
            let parsed: Profile = p.parse().expect("a known profile");
            assert_eq!(parsed.as_str(), *p);
        }
    }
}
